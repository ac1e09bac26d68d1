"""The ``cutover`` section of a job spec: the load check's limits, the rails of a rollout, how long the source stays,
and a cut-over by namespace alias inside one index (``orchestrator.cutover`` applies them)."""

from __future__ import annotations

import string
from typing import Any

from pydantic import Field, field_validator

from nsmigrate.orchestrator.spec.stores import _Model


class Cutover(_Model):
    """Switching traffic to the target (``nsmigrate cutover``): what the load check must show before reads move, and
    how long reads must be all new before ``cleanup`` may delete the source."""

    qps: float = Field(default=20, gt=0, le=1000, description="Queries per second of `cutover check`.")
    duration_s: float = Field(default=60, gt=0, le=3600, description="How long `cutover check` queries.")
    p95_ms: float = Field(default=100, gt=0, description="Largest allowed P95 of the target's query latency.")
    p99_ms: float = Field(default=200, gt=0, description="Largest allowed P99 of the target's query latency.")
    cold_query_ms: float = Field(
        default=500, gt=0, description="Largest allowed latency of the first query to each target namespace."
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Largest allowed share of failed queries.")
    min_agreement: float = Field(
        default=0.9, ge=0, le=1, description="Smallest allowed mean top-k overlap of source and target answers."
    )
    top_k: int = Field(default=10, gt=0, le=1000)
    decommission_after_s: float = Field(
        default=7 * 86400,
        ge=0,
        description="How long reads must have been 100 % new before `cleanup` may delete the source (7 days).",
    )
    check_valid_s: float = Field(
        default=3600,
        gt=0,
        description="How old the passing `cutover check` that each step toward the target needs may be, at most.",
    )
    min_step_s: float = Field(
        default=600,
        ge=0,
        description="How long a rollout step must run with no breach before the next step may follow.",
    )
    breach_window_s: float = Field(
        default=60,
        gt=0,
        description="`cutover watch`: the window over which the reads of the new side are judged against the limits.",
    )
    warm_top_n: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="`cutover set`: before a step toward the target, query the N namespaces it moves that the "
        "applications read most (by the reads their DualWriteIndex counted; else the largest), so their first reads "
        "are not cold. 0: none.",
    )
    aliases: str | None = Field(
        default=None,
        description="Cut over by namespace alias inside one Pinecone index: the name template of each namespace's "
        "alias, from {source} and {target}, e.g. `live.{source}` (see `nsmigrate cutover aliases`).",
    )

    @field_validator("aliases")
    @classmethod
    def _alias_template(cls, value: str | None) -> str | None:
        problem = template_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot name a job's namespace aliases (``cutover.aliases``), or None: it must use
    ``{source}`` or ``{target}`` (one alias per namespace) and nothing else in braces."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        return f"{template!r} is not a name template: {e}"
    if not fields & {"source", "target"} or fields - {"source", "target"}:
        return f"{template!r} must name each alias by {{source}} or {{target}} (the namespaces), and by nothing else"
    return None


def one_pinecone_index(source: Any, target: Any) -> bool:
    """Whether two store specs name one Pinecone index, by the same ``index`` or the same ``host``."""
    if source.kind != "pinecone" or target.kind != "pinecone":
        return False
    same_index = source.index is not None and source.index == target.index
    return same_index or (source.host is not None and source.host.rstrip("/") == (target.host or "").rstrip("/"))

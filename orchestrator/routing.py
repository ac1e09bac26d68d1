"""Routing and enrichment of records during a copy. Pure: no I/O here.

A copy batch calls ``route_records`` to learn which target namespace each record goes to and with what metadata;
verification calls ``expected_metadata`` to learn what the target must hold. Both use the same enrichment rule
(``_enrich``), so what is copied and what is checked cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import PlanError
from orchestrator.naming import PUBLIC, identifier_problem, parse_namespace, twin_namespace
from orchestrator.records import Record, display_namespace
from orchestrator.spec import Enrichment, JobSpec

_EXAMPLES = 5  # how many offending records an error lists


@dataclass(frozen=True)
class RouteContext:
    """Everything a copy batch needs to decide where each record goes and what metadata it gets."""

    source_label: str
    source_namespace: str
    target_namespace: str | None  # None: route each record by its twin id field
    enrichment: Enrichment
    creator_id: str | None = None
    twin_id: str | None = None
    twins: Mapping[str, str] = field(default_factory=dict)  # twin_id → creator_id, for routed runs
    override_creator: str | None = None
    twin_id_field: str = "twin_id"
    unknown_twin: str = "fail"


def route_context(
    spec: JobSpec,
    source_label: str,
    source_namespace: str,
    target_namespace: str | None,
    creator_id: str | None = None,
    twin_id: str | None = None,
    twins: Mapping[str, str] | None = None,
) -> RouteContext:
    """The RouteContext of one namespace run (a row of the plan) under ``spec``'s routing and enrichment."""
    return RouteContext(
        source_label=source_label,
        source_namespace=source_namespace,
        target_namespace=target_namespace,
        enrichment=spec.enrich,
        creator_id=creator_id,
        twin_id=twin_id,
        twins=dict(twins or {}),
        override_creator=spec.routing.override_creator,
        twin_id_field=spec.routing.twin_id_field,
        unknown_twin=spec.routing.unknown_twin,
    )


def _enrich(metadata: Mapping[str, Any], target_namespace: str, ctx: RouteContext) -> dict[str, Any]:
    """The metadata a record gets in ``target_namespace``: a new dict; the source's is never changed."""
    out = dict(metadata)
    rules = ctx.enrichment
    if rules.creator_fields:
        # From the target's name, not the context: a routed record's creator and twin are known only by its target.
        parsed = parse_namespace(target_namespace)
        if parsed.kind == "twin":
            out["creator_id"] = parsed.creator_id
            out["twin_id"] = parsed.twin_id
    if rules.migrated_from:
        out["migrated_from"] = f"{ctx.source_label}/{display_namespace(ctx.source_namespace)}"
    # Constants last: the spec's explicit values win over everything else.
    out.update(rules.constants)
    return out


def expected_metadata(source_record: Record, target_namespace: str, ctx: RouteContext) -> dict[str, Any]:
    """The metadata ``source_record`` must have in ``target_namespace`` after the copy (verification uses this; the
    copy uses the same rule)."""
    return _enrich(source_record.metadata, target_namespace, ctx)


def _twin_of(record: Record, ctx: RouteContext) -> str | None:
    value = record.metadata.get(ctx.twin_id_field)
    if value is None or value == "":
        return None
    # Metadata values may be numbers; a twin id is compared as text.
    return value if isinstance(value, str) else str(value)


def target_of(record: Record, ctx: RouteContext) -> str:
    """The target namespace of one record.

    Raises:
        PlanError: routed record whose twin has no creator (``unknown_twin == "fail"``), or whose twin id cannot be
            part of a namespace name.
    """
    if ctx.target_namespace is not None:
        return ctx.target_namespace
    twin = _twin_of(record, ctx)
    if twin is None:
        return PUBLIC
    creator = ctx.override_creator or ctx.twins.get(twin)
    if creator is None:
        if ctx.unknown_twin == "public":
            return PUBLIC
        raise PlanError(
            f"record {record.id!r} of namespace {display_namespace(ctx.source_namespace)!r} has "
            f"{ctx.twin_id_field}={twin!r}, a twin with no creator in the mapping",
            hint="add the twin to the twin → creator mapping, or set routing.unknown_twin: public",
            record_id=record.id,
            twin_id=twin,
        )
    problem = identifier_problem("twin_id", twin) or identifier_problem("creator_id", creator)
    if problem:
        raise PlanError(
            f"record {record.id!r} of namespace {display_namespace(ctx.source_namespace)!r}: {problem}",
            hint="ids are letters, digits, '.' and '-' (no '_'); fix the metadata or the mapping",
            record_id=record.id,
            twin_id=twin,
        )
    return twin_namespace(creator, twin)


def route_records(records: Sequence[Record], ctx: RouteContext) -> dict[str, list[Record]]:
    """Target namespace → enriched records (new Record objects, inputs untouched; the order of first appearance
    and, within a namespace, the input order are kept).

    A fixed-target context sends every record to its target. A routed context (target None) sends a record by
    ``metadata[twin_id_field]`` to the twin namespace of ``override_creator`` or of ``twins[twin]``; without that
    field to ``public``; a twin not in the mapping to ``public`` if ``unknown_twin == "public"``.

    Raises:
        PlanError: for the first record whose twin is unknown (``unknown_twin == "fail"``) or whose ids cannot form
            a namespace name; the message counts the others. Nothing is returned for the batch then: it fails whole,
            so it is never half copied.
    """
    routed: dict[str, list[Record]] = {}
    errors: list[PlanError] = []
    for record in records:
        try:
            target = target_of(record, ctx)
        except PlanError as e:
            errors.append(e)
            continue
        # The values list is shared, not copied: records are frozen and nothing here changes values.
        enriched = Record(record.id, record.values, _enrich(record.metadata, target, ctx), record.sparse_values)
        routed.setdefault(target, []).append(enriched)
    if errors:
        first = errors[0]
        others = ""
        if len(errors) > 1:
            more = ", ".join(str(e.ids.get("record_id")) for e in errors[1:_EXAMPLES])
            others = f" ({len(errors) - 1} more record(s) in this batch too, e.g. {more})"
        raise PlanError(first.message + others, hint=first.hint, **first.ids)
    return routed


def targets_by_id(records: Sequence[Record], ctx: RouteContext) -> dict[str, str]:
    """id → target namespace of each record: what ``planner.check_id_collisions`` takes for a routed source when
    its metadata was read, so that only ids that really land in a shared namespace are refused."""
    return {record.id: target_of(record, ctx) for record in records}

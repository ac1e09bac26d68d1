"""Pinecone's convert as a strategy (``strategy: convert``): Pinecone converts a serverless vector index into a new
document index, a snapshot taken when it starts, with the same namespaces; nsmigrate plans it, starts and tracks the
conversion as a job, then syncs what was written to the source after the snapshot and verifies every id and field
against the source. Pure: the plan, the offer a fleet plan shows, and the next step from what the control plane
says.

Steps, each taken again safely (a worker may die between two): start the conversion → wait while it is in progress
(its share converted shown on the runs) → the new index is ready: the runs are ``copied``, then synced and verified.
The phase in the job table (``ConvertPhase``) records how far it went; the conversion job is found again by its target
index (newest first), so a redelivered step never starts a second one. Where convert does not fit, the plan says
why (``store_refusals`` and ``orchestrator.spec.convert.convert_refusals``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.models import ConvertPhase
from nsmigrate.orchestrator.planning.plan import Estimate, Inventory, NamespacePlan, Plan
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, TargetIndex, shape_problems, wanted_shape
from nsmigrate.orchestrator.spec.convert import convert_refusals, create_of
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import CreateIndex, PineconeStoreSpec
from nsmigrate.orchestrator.states import phase_name

#: What the plan says convert is, in a few words (docs ``guides/index-data/convert-an-index``).
WHAT_CONVERT_IS = (
    "Pinecone copies the index itself into a new document index, a snapshot taken when it starts (Standard and "
    "Enterprise plans; charged at the import rate)"
)


@dataclass(frozen=True)
class ConversionInfo:
    """A conversion job as the control plane describes it (``GET /conversion-jobs/{id}``)."""

    job_id: str
    status: str  # InProgress, Completed, Failed, Cancelled
    source: str
    target: str
    percent_complete: float = 0.0
    records_converted: int = 0
    records_skipped: int = 0
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("Completed", "Failed", "Cancelled")


def store_refusals(
    source: IndexInfo | None, source_label: str, existing_target: str | None, *, source_asked: bool = True
) -> list[str]:
    """Why the stores keep convert from doing the job: the source is not a Ready serverless vector index, or the
    target index exists already (``existing_target``: its name; convert makes a new one). Empty when they do not.
    ``source_asked``: whether the control plane was asked about the source (a pgvector source or one named by host
    is not)."""
    reasons = []
    if not source_asked:
        pass
    elif source is None:
        reasons.append(f"the control plane does not know source index {source_label}")
    elif source.kind == "pod":
        reasons.append(f"{source_label} is a pod-based index (Pinecone converts serverless indexes only)")
    elif source.dense_field is not None:
        reasons.append(f"{source_label} is a document index already")
    elif source.model is not None:
        reasons.append(f"{source_label} is an integrated index (nsmigrate converts vector indexes)")
    elif not source.ready:
        reasons.append(f"{source_label} is {source.state or 'not ready'} (convert needs it Ready)")
    if existing_target is not None:
        reasons.append(f"target index {existing_target} exists already (convert creates a new index)")
    return reasons


def convert_offer(
    spec: JobSpec, source: IndexInfo | None, source_label: str, existing_target: str | None, *, source_asked: bool
) -> str:
    """The line a plan of strategy ``fleet`` into a document index shows: convert would do this job too, or why
    not (``store_refusals``' arguments)."""
    stores = store_refusals(source, source_label, existing_target, source_asked=source_asked)
    reasons = convert_refusals(spec) + stores
    if reasons:
        return f"strategy convert does not apply: {'; '.join(reasons)}"
    return (
        f"strategy convert applies: {WHAT_CONVERT_IS}; nsmigrate then syncs what was written after the snapshot and "
        "verifies it. Set `strategy: convert` to use it"
    )


def plan_convert(
    spec: JobSpec, source: Inventory, described: IndexInfo | None, existing_target: IndexInfo | None
) -> tuple[Plan, TargetIndex]:
    """The plan of a convert job: every namespace holding records, under its own name, no copy batches; and the
    document index the conversion creates (in the source's cloud and region, with the source's dimension and
    metric).

    Its estimate is what nsmigrate reads after the conversion: the sync's and the verification's listing of the
    source and fetching of both sides (the conversion itself costs no read or write units; Pinecone charges it at
    the import rate).

    Raises:
        PlanError: the source is not a Ready serverless vector index, the target index exists, or target.create asks
            for another place or shape than the source's.
    """
    target = spec.target
    assert isinstance(target, PineconeStoreSpec) and target.index is not None  # the spec made sure
    refused = store_refusals(described, source.label, existing_target.name if existing_target else None)
    if refused:
        raise PlanError(
            f"strategy `convert` cannot do this job: {'; '.join(refused)}",
            hint="use strategy `fleet`, which copies through the workers (pod and document sources, existing "
            "targets, renames)",
            source=source.label,
            target=target.index,
        )
    assert described is not None
    create = create_of(target)
    shape = wanted_shape(create, source.dimension, source.metric, documents=target.documents)
    place = (described.cloud or shape.cloud, described.region or shape.region)
    # The defaults (aws/us-east-1) name no place of their own: the index lands where the source runs, as shown.
    chosen = (create.cloud, create.region) != (CreateIndex().cloud, CreateIndex().region)
    if chosen and (create.cloud, create.region) != place:
        raise PlanError(
            f"target.create asks for {create.cloud}/{create.region}; Pinecone's convert creates the index where "
            f"source index {source.label} runs, {place[0]}/{place[1]}",
            hint=f"set target.create.cloud and .region to {place[0]} and {place[1]}, or use strategy `fleet`",
            target=target.index,
        )
    differs = shape_problems(shape, source.dimension, source.metric)
    if differs:
        raise PlanError(
            f"target.create asks for {shape.dimension}-dim {shape.metric}; convert keeps source index "
            f"{source.label}'s {source.dimension}-dim {source.metric}",
            hint="leave target.create.dimension and .metric out",
            target=target.index,
        )
    runs = [NamespacePlan(ns, ns, count, 0) for ns, count in sorted(source.namespaces.items()) if count]
    lists = 2 * sum(math.ceil(r.vector_count / LIST_MAX_PAGE_IDS) for r in runs)
    fetches = 4 * sum(math.ceil(r.vector_count / FETCH_MAX_IDS) for r in runs)
    read_units = lists + 4 * sum(max(1, math.ceil(r.vector_count / 10)) for r in runs)
    rate = spec.rate
    estimate = Estimate(lists, fetches, 0, read_units, 0, max(lists / rate.list_rps, fetches / rate.read_rps))
    warnings = [
        f"namespace {ns or '__default__'} is empty: Pinecone's convert skips it"
        for ns, n in sorted(source.namespaces.items())
        if not n
    ]
    index = TargetIndex(target.index, replace(shape, cloud=place[0], region=place[1]), "create")
    return Plan(runs=runs, estimate=estimate, warnings=warnings), index


def describe_strategy(spec: JobSpec) -> str:
    """One line for the plan: what Pinecone does and what nsmigrate checks."""
    return (
        f"strategy convert: {WHAT_CONVERT_IS}: serverless index {spec.source.label} into document index "
        f"{spec.target.label}, namespaces and records as they are; then nsmigrate syncs what was written after the "
        "snapshot and verifies every id and field against the source"
    )


Action = Literal["start", "wait", "converted", "fail"]


@dataclass(frozen=True)
class Step:
    """What a convert job does next: ``start`` the conversion, ``wait`` (it is in progress; ``share``: how much is
    done, 0 to 1), ``converted`` (the new index is ready: sync and verify), or ``fail`` with the reason."""

    action: Action
    reason: str = ""
    share: float | None = None


def next_step(phase: str | None, conversion: ConversionInfo | None, index: IndexInfo | None, target: str) -> Step:
    """The next step from the job's phase, the newest conversion job into ``target`` and the target index as the
    control plane describes them now (None: there is none)."""
    phase = phase_name(phase)
    if phase == ConvertPhase.CONVERTED:
        return Step("converted")
    if phase is None:
        if index is not None:
            return Step(
                "fail",
                f"target index {target} appeared before nsmigrate converted into it; convert creates a new index: "
                "name another target index",
            )
        return Step("start")
    if index is None:
        # Never started (the request was lost), or its failed index was deleted to free the name: start (again).
        return Step("start")
    if conversion is None:
        return Step(
            "fail",
            f"target index {target} exists but Pinecone lists no conversion job into it; delete the index if it is "
            "not needed, then `nsmigrate retry`",
        )
    if conversion.status == "Completed":
        if index.ready:
            return Step("converted")
        if index.state == "InitializationFailed":
            return Step("fail", f"target index {target} failed to initialize after conversion {conversion.job_id}")
        return Step("wait", f"target index {target} is {index.state or 'not ready'}", 1.0)
    if conversion.ended:
        why = f": {conversion.error}" if conversion.error else ""
        return Step(
            "fail",
            f"Pinecone's conversion {conversion.job_id} into {target} ended {conversion.status}{why}; delete index "
            f"{target} (it holds no data) to free its name, then `nsmigrate retry`",
        )
    share = min(1.0, max(0.0, conversion.percent_complete / 100))
    progress = f"{conversion.status} ({conversion.percent_complete:g} %)"
    return Step("wait", f"conversion {conversion.job_id} is {progress}", share)

"""The native path as a strategy (``strategy: collection``): Pinecone copies a pod index into a new serverless index
(a collection of the pod index, then an index created from it); nsmigrate plans it, drives it as a job and verifies
the result by ids and contents. Pure: the plan and the next step, from what the control plane says.

Steps, each taken again safely (a worker may die between two): create the collection → wait until it is Ready →
create the index from it → wait until the index is ready → the runs are ``copied`` and verified. The phase in the job
table (``CollectionPhase``) records how far it went; what to do next is decided from the facts (does the collection
exist, is it Ready, does the index exist, is it ready), so a redelivered step never creates anything twice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import (
    COLLECTION_MAX_NAMESPACES,
    COLLECTION_MAX_RECORDS,
    FETCH_MAX_IDS,
    LIST_MAX_PAGE_IDS,
)
from nsmigrate.orchestrator.models import CollectionPhase
from nsmigrate.orchestrator.planning.plan import Estimate, Inventory, NamespacePlan, Plan
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, TargetIndex
from nsmigrate.orchestrator.spec.jobspec import JobSpec

#: Polls of a busy step: the first after 0.5 s, then twice as late each time, up to this.
POLL_MAX_S = 30.0
FIRST_POLL_S = 0.5


def collection_name(job_name: str, job_id: int) -> str:
    """The collection a job makes: a Pinecone resource name (lower-case letters, digits, '-'; ≤ 45 characters),
    unique per job."""
    slug = re.sub(r"[^a-z0-9-]+", "-", job_name.lower()).strip("-")[:30].strip("-") or "job"
    return f"{slug}-nsm{job_id}"


def poll_delay_s(polls: int) -> float:
    """How long a step waits before asking again, after ``polls`` answers of "still busy"."""
    return min(POLL_MAX_S, FIRST_POLL_S * 2 ** min(polls, 16))


def plan_collection(
    spec: JobSpec, source: Inventory, target_index: TargetIndex | None, source_kind: str | None = "pod"
) -> Plan:
    """The plan of a collection job: every namespace of the pod index, under its own name, no copy batches.

    Its estimate is verification's: listing the target's ids and fetching each from both sides (the collection and
    the index made from it cost no read or write units).

    Raises:
        PlanError: the source is not a pod index (Pinecone makes collections of pod indexes only), the target
            index exists already (an index made from a collection is always new), or the pod index is past what
            Pinecone migrates this way.
    """
    if source_kind != "pod":
        raise PlanError(
            f"strategy `collection` needs a pod-based source; {source.label} is "
            f"{source_kind or 'not an index the control plane knows'} (Pinecone makes collections of pod indexes only)",
            hint="use strategy `fleet` for a serverless source",
            source=source.label,
        )
    if target_index is None or target_index.action != "create":
        name = target_index.name if target_index is not None else spec.target.label
        raise PlanError(
            f"strategy `collection` creates the target index {name}, and it exists already",
            hint="name a new index in target.index (an index made from a collection is always new), or use "
            "strategy `fleet` to copy into an existing index",
            target=name,
        )
    total = sum(source.namespaces.values())
    if total > COLLECTION_MAX_RECORDS or len(source.namespaces) > COLLECTION_MAX_NAMESPACES:
        raise PlanError(
            f"{source.label} holds {total} records in {len(source.namespaces)} namespaces; Pinecone migrates a pod "
            f"index through a collection up to {COLLECTION_MAX_RECORDS} records and "
            f"{COLLECTION_MAX_NAMESPACES} namespaces",
            hint="ask Pinecone support, or use strategy `fleet`",
            source=source.label,
        )
    runs = [NamespacePlan(ns, ns, count, 0) for ns, count in sorted(source.namespaces.items())]
    lists = sum(math.ceil(r.vector_count / LIST_MAX_PAGE_IDS) for r in runs)
    fetches = 2 * sum(math.ceil(r.vector_count / FETCH_MAX_IDS) for r in runs)
    read_units = lists + 2 * sum(max(1, math.ceil(r.vector_count / 10)) for r in runs if r.vector_count)
    rate = spec.rate
    estimate = Estimate(lists, fetches, 0, read_units, 0, max(lists / rate.list_rps, fetches / rate.read_rps))
    warnings = [f"namespace {ns or '__default__'} is empty" for ns, n in source.namespaces.items() if not n]
    return Plan(runs=runs, estimate=estimate, warnings=warnings)


def describe_strategy(spec: JobSpec, job_id: int | None = None) -> str:
    """One line for the plan: what Pinecone does and what nsmigrate checks."""
    collection = collection_name(spec.name, job_id) if job_id is not None else "a collection"
    return (
        f"strategy collection: {collection} of pod index {spec.source.label}, then serverless index "
        f"{spec.target.label} from it (free; namespaces and records as they are), then verified by nsmigrate: "
        "every target id fetched from the source and compared, and per-namespace counts"
    )


Action = Literal["create_collection", "wait", "create_index", "restored", "fail"]


@dataclass(frozen=True)
class Step:
    """What a collection job does next: ``create_collection``, ``wait`` (Pinecone is busy), ``create_index``,
    ``restored`` (the index is ready: verify), or ``fail`` with the reason."""

    action: Action
    reason: str = ""


def next_step(
    phase: str | None, collection_status: str | None, index: IndexInfo | None, target_name: str, collection: str
) -> Step:
    """The next step from the job's phase and what the control plane says now (None: does not exist)."""
    if phase == CollectionPhase.RESTORED:
        return Step("restored")
    if phase in (None, CollectionPhase.COLLECTING):
        if index is not None:
            return Step(
                "fail",
                f"target index {target_name} appeared before nsmigrate created it from {collection}; an index made "
                "from a collection must be new: name another target index",
            )
        if collection_status is None:
            return Step("create_collection")
        if collection_status == "Ready":
            return Step("create_index")
        if collection_status in ("Initializing", "Pending"):
            return Step("wait", f"collection {collection} is {collection_status}")
        return Step("fail", f"collection {collection} is {collection_status}")
    # restoring
    if index is None:
        if collection_status == "Ready":
            return Step("create_index")
        return Step("fail", f"target index {target_name} is gone and collection {collection} is {collection_status}")
    if index.ready:
        return Step("restored")
    if index.state == "InitializationFailed":
        return Step("fail", f"target index {target_name} failed to initialize from collection {collection}")
    return Step("wait", f"target index {target_name} is {index.state or 'not ready'}")

"""A new job's namespaces crossing another unfinished job's (pure): its target namespace is another job's source,
whose cleanup would delete what the new job writes there, or its source is another job's target, still being written
and whose copies the new job's cleanup would delete. Two jobs that do both form a cycle (``a`` → ``b`` and ``b`` →
``a``). Those are warnings; a target namespace another unfinished job writes into too is refused
(``check_shared_targets``). Stores are compared by what their specs say (``spec_identity``: spelling taken out); the
cleanups themselves compare resolved identities under the namespaces' locks (``workers.steps.cleaning``), and refuse
the second of two that cross.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.plan import Plan
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.store_identity import key_of_json, spec_identity

#: Crossings named one by one; the rest are counted.
CROSSINGS_SHOWN = 5


@dataclass(frozen=True)
class OpenRun:
    """A run of another job that is not cleaned nor cancelled (a cleanup may still delete its source), as the job
    table keeps it."""

    job_id: int
    job_name: str
    spec: dict[str, object]
    source_namespace: str
    target_namespaces: frozenset[str]
    #: Its copy has not ended (a lister or batches still to come): it may still write, and its target's count not
    #: show it.
    still_writing: bool = False


def stores_may_cross(spec: JobSpec, other: dict[str, object]) -> bool:
    """Whether another job (its spec as the job table keeps it) reads from this job's target or writes into its
    source: only then can their namespaces cross."""
    other_source, other_target = (
        store if isinstance(store, dict) else None for store in (other.get("source"), other.get("target"))
    )
    return key_of_json(other_source) == spec_identity(spec.target) or key_of_json(other_target) == spec_identity(
        spec.source
    )


def writes_same_store(spec: JobSpec, other: dict[str, object]) -> bool:
    """Whether another job (its spec as the job table keeps it) writes into this job's target store."""
    other_target = other.get("target")
    return isinstance(other_target, dict) and key_of_json(other_target) == spec_identity(spec.target)


def check_shared_targets(spec: JobSpec, plan: Plan, others: Iterable[OpenRun]) -> None:
    """Refuse a target namespace of ``plan`` that a run of another job still writes into (its copy has not ended), in
    the same store, unless ``allow_id_overwrite``. An id both sources hold would be overwritten by whichever copy
    lands last; once one job's cleanup has deleted its source, the other's copy replaces the only one left. The
    target's vector count cannot rule this out: it is 0 until the other job writes, and it lags the writes. A copy
    that ended is left to that count: a job run with verification off stays ``copied`` for good, and its target
    may have been emptied since."""
    if spec.allow_id_overwrite:
        return
    target_key = spec_identity(spec.target)
    writes = {r.target_namespace: r.source_namespace for r in plan.runs if r.target_namespace and r.vector_count}
    for other in others:
        shared = sorted(other.target_namespaces & writes.keys())
        if shared and other.still_writing and key_of_json(_store(other, "target")) == target_key:
            theirs = f"unfinished job {other.job_id} ({other.job_name})"
            raise PlanError(
                f"target namespace {display_namespace(shared[0])!r} is also written by {theirs}, from its source "
                f"namespace {display_namespace(other.source_namespace)!r}: an id both hold would be replaced by the "
                "last copy, and lost for good once the other's cleanup deleted its source; nothing was started",
                hint=f"choose another target namespace, cancel job {other.job_id} (`nsmigrate cancel "
                f"{other.job_id}`), or set allow_id_overwrite: true to write into it anyway",
                target_namespace=display_namespace(shared[0]),
                source_namespace=display_namespace(writes[shared[0]]),
            )


def crossing_warnings(spec: JobSpec, plan: Plan, others: Iterable[OpenRun]) -> list[str]:
    """What ``plan`` would write into or read from ``others``' namespaces, one warning each."""
    source_key, target_key = spec_identity(spec.source), spec_identity(spec.target)
    sources = {run.source_namespace for run in plan.runs}
    targets = {run.target_namespace for run in plan.runs if run.target_namespace is not None}
    found: list[str] = []
    keys: dict[tuple[int, str], str] = {}  # each job's stores compared once, not once per run

    def key(other: OpenRun, role: str) -> str:
        if (other.job_id, role) not in keys:
            keys[other.job_id, role] = key_of_json(_store(other, role))
        return keys[other.job_id, role]

    for other in others:
        theirs = f"job {other.job_id} ({other.job_name})"
        if other.source_namespace in targets and key(other, "source") == target_key:
            found.append(
                f"target namespace {display_namespace(other.source_namespace)!r} is the source of unfinished {theirs}: "
                f"its cleanup would delete what this job writes there — finish or cancel {theirs} first"
            )
        for ns in sorted(other.target_namespaces & sources):
            if key(other, "target") == source_key:
                found.append(
                    f"source namespace {display_namespace(ns)!r} is a target of unfinished {theirs}: this job would "
                    f"copy its copies, and this job's cleanup would delete them — finish or cancel {theirs} first"
                )
    if len(found) > CROSSINGS_SHOWN:
        found = [*found[:CROSSINGS_SHOWN], f"… and {len(found) - CROSSINGS_SHOWN} more namespaces crossing other jobs"]
    return found


def _store(run: OpenRun, role: str) -> dict[str, object] | None:
    store = run.spec.get(role)
    return store if isinstance(store, dict) else None

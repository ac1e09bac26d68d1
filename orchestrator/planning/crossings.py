"""A new job's namespaces crossing another unfinished job's (pure): its target namespace is another job's source,
whose cleanup would delete what the new job writes there, or its source is another job's target, still being written
and whose copies the new job's cleanup would delete. Two jobs that do both form a cycle (``a`` → ``b`` and ``b`` →
``a``). Stores are compared by what their specs say (``spec_identity``: spelling taken out); the cleanups themselves
compare resolved identities under the namespaces' locks (``workers.steps.cleaning``), and refuse the second of two that
cross.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


def stores_may_cross(spec: JobSpec, other: dict[str, object]) -> bool:
    """Whether another job (its spec as the job table keeps it) reads from this job's target or writes into its
    source: only then can their namespaces cross."""
    other_source, other_target = (
        store if isinstance(store, dict) else None for store in (other.get("source"), other.get("target"))
    )
    return key_of_json(other_source) == spec_identity(spec.target) or key_of_json(other_target) == spec_identity(
        spec.source
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

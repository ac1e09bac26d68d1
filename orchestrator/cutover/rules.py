"""The rules of a cut-over, pure: the rollout steps, which reads go to the new store, the load check's verdict
and the gate that keeps ``cleanup`` off a source the application may still read.

The rollout is kept in the job table's audit log (``orchestrator.cutover.rollout``); the application's side is
``orchestrator.cutover.dualwrite``; the commands are ``nsmigrate cutover set|check``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nsmigrate.orchestrator.spec.jobspec import Cutover

#: The shares of reads that may go to the new store, in the order a rollout takes them (0 = all reads old).
ROLLOUT_STEPS = (0, 5, 25, 50, 100)


@dataclass(frozen=True)
class Rollout:
    """Where a job's reads go: ``percent`` of namespaces read the new store. ``started_at``: the first
    ``cutover set``; ``full_since``: since when reads have been 100 % new without a step back (None when not)."""

    percent: int = 0
    started_at: datetime | None = None
    full_since: datetime | None = None

    @property
    def under_way(self) -> bool:
        return self.started_at is not None

    def as_dict(self) -> dict[str, Any]:
        """The rollout in `status --json`."""
        return {
            "reads_new_percent": self.percent,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "full_since": self.full_since.isoformat() if self.full_since else None,
        }


def rollout_from(steps: Sequence[tuple[int, datetime]]) -> Rollout:
    """The rollout that a job's ``cutover set`` steps (percent, when; oldest first) leave."""
    if not steps:
        return Rollout()
    full_since = None
    for percent, at in reversed(steps):  # the trailing streak of 100 %: its first step
        if percent != 100:
            break
        full_since = at
    return Rollout(percent=steps[-1][0], started_at=steps[0][1], full_since=full_since)


def rollout_problem(percent: int) -> str | None:
    """Why ``percent`` is not a rollout step, or None."""
    if percent in ROLLOUT_STEPS:
        return None
    return f"--percent {percent} is not a rollout step; use one of {', '.join(map(str, ROLLOUT_STEPS[1:]))}"


def reads_new(namespace: str, percent: int) -> bool:
    """Whether reads of ``namespace`` go to the new store at ``percent``. By namespace, not by request: a tenant
    sees one store's answers at a time, and each step only adds namespaces to those already reading new."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    bucket = int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "big") % 100
    return bucket < percent


def overlap(source_ids: Sequence[str], target_ids: Sequence[str]) -> float:
    """Top-k agreement of one query: the share of the source's answer the target's answer also holds (1.0 when the
    source answers nothing and the target neither)."""
    if not source_ids:
        return 1.0 if not target_ids else 0.0
    return len(set(source_ids) & set(target_ids)) / len(source_ids)


def check_problems(figures: dict[str, Any], limits: Cutover) -> list[str]:
    """What in a ``cutover check`` report breaks the spec's limits (empty: the target is ready for reads). A
    figure that could not be measured (no successful query) is a problem too."""
    target = figures["target"]
    problems = []
    if target.get("p95_ms") is None:
        problems.append("no latency of the target: none of its queries succeeded")
    for name, limit in (("p95_ms", limits.p95_ms), ("p99_ms", limits.p99_ms)):
        value = target.get(name)
        if value is not None and value > limit:
            problems.append(f"target {name[:3].upper()} {value} ms is above cutover.{name} = {limit} ms")
    cold = figures.get("cold_query_ms")
    if cold is None:
        problems.append("no cold query of the target succeeded")
    elif cold > limits.cold_query_ms:
        over = [f"{ns} {ms} ms" for ns, ms in figures.get("cold_slowest") or [] if ms > limits.cold_query_ms]
        problems.append(
            f"target cold query {cold} ms is above cutover.cold_query_ms = {limits.cold_query_ms} ms"
            + (f" (the first query to {', '.join(over)})" if over else "")
        )
    cold_errors = figures.get("cold_errors") or []
    if cold_errors:
        problems.append(
            f"{len(cold_errors)} first queries to target namespaces failed: {'; '.join(cold_errors[:3])}"
            + (" …" if len(cold_errors) > 3 else "")
        )
    if figures["error_rate"] > limits.max_error_rate:
        problems.append(
            f"target error rate {figures['error_rate']:.2%} is above cutover.max_error_rate = "
            f"{limits.max_error_rate:.2%} ({figures['errors']} of {figures['queries']} queries failed)"
        )
    agreement = figures.get("agreement")
    if agreement is None and figures.get("comparable_queries", 1):
        problems.append("no query was answered by both source and target: agreement unknown")
    elif agreement is not None and agreement < limits.min_agreement:
        problems.append(
            f"top-{limits.top_k} agreement of source and target {agreement:.3f} is below cutover.min_agreement = "
            f"{limits.min_agreement}"
        )
    return problems


def cleanup_gate(
    rollout: Rollout,
    decommission_after_s: float,
    now: datetime,
    *,
    last_sync_at: datetime | None,
    last_write_failure_at: datetime | None,
    override: bool = False,
    followed: bool = False,
) -> str | None:
    """Why a namespace of a job under cut-over must keep its source, or None. Under cut-over the application reads
    the source until reads are 100 % new, and for ``decommission_after_s`` more (to step back); and a write the new
    store missed must have been synced (a ``sync`` of the namespace after the cut-over began and after its last
    failed dual write). ``override`` (``--decommission-now``) skips the waiting only: never the sync, and never
    reads being 100 % new, since deleting a source the application still reads loses its answers (`cutover set
    --reads new --percent 100` is the recorded way there). ``followed``: the job's cut-over was published for its
    applications (``cutover publish``): before any ``cutover set`` their ``DualWriteIndex`` reads the source."""
    if not rollout.under_way:
        if followed:
            return (
                "the job's applications follow its cut-over (`nsmigrate cutover publish`) and read the source until "
                "reads are 100 % new: `nsmigrate cutover set --reads new --percent 100` first (--decommission-now "
                "skips only the wait after that)"
            )
        return None
    if rollout.full_since is None:
        return (
            f"reads are {rollout.percent} % new: the application still reads the source; `nsmigrate cutover set "
            "--reads new --percent 100` first (--decommission-now skips only the wait after that)"
        )
    if rollout.started_at is not None and (last_sync_at is None or last_sync_at < rollout.started_at):
        return "no `nsmigrate sync` of this namespace since the cut-over began: sync (and verify) it first"
    if last_write_failure_at is not None and (last_sync_at is None or last_sync_at < last_write_failure_at):
        return "a dual write to the new store failed after the last sync: `nsmigrate sync` it (and verify) first"
    if override:
        return None
    ready_at = rollout.full_since + timedelta(seconds=decommission_after_s)
    if now < ready_at:
        return (
            f"reads have been 100 % new since {rollout.full_since.isoformat(timespec='seconds')}; cutover."
            f"decommission_after_s keeps the source until {ready_at.isoformat(timespec='seconds')} "
            "(--decommission-now to delete it earlier)"
        )
    return None

"""A job's cut-over in the job table. The audit log is where it lives: each ``cutover set`` is a ``cutover_set``
event (the newest is the rollout), a dual write the new store missed is a ``dual_write_failed`` event (for ``sync``
and the cleanup gate), a load check's report is a ``cutover_check`` event. One record, so what the applications
read, what ``status`` shows and what the audit says cannot disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, Rollout, cleanup_gate, rollout_from
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs.database import Database, add_event
from nsmigrate.orchestrator.models import Event, Job, NamespaceRun, utcnow
from nsmigrate.orchestrator.records.namespaces import shown_namespaces

SET, WRITE_FAILED, CHECKED = "cutover_set", "dual_write_failed", "cutover_check"


def set_rollout(db: Database, job_id: int, percent: int, actor: str) -> Rollout:
    """Record that ``percent`` of the job's namespaces now read the new store; returns the rollout as it is now.

    Raises:
        StateError: ``percent`` is below 100 while a cleanup is deleting, or has deleted, a source namespace of the
            job: some reads would go back to a source that is gone (nothing is recorded).
    """
    with db.transaction() as s:
        s.scalars(sa.select(Job.id).where(Job.id == job_id).with_for_update()).one()  # one setter at a time
        if percent < ROLLOUT_STEPS[-1]:
            # Under the job's row lock, which `start_cleanup` shares: a cleanup starting now waits for this set.
            runs = s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id))
            deleted = [r.source_namespace for r in runs if r.source_may_be_deleted]
            if deleted:
                raise StateError(
                    f"reads of job {job_id} cannot go back to its source: a cleanup is deleting or deleted source "
                    f"namespace {shown_namespaces(deleted)}, so the application would read vectors that are gone; "
                    "nothing was changed",
                    hint="reads stay 100 % new; `nsmigrate rollback` restores the originals if the target must go",
                    job_id=job_id,
                )
        previous = _percents(s, job_id)
        add_event(s, SET, actor, job_id, percent=percent, previous=previous[-1][0] if previous else 0)
    return rollout_of(db, job_id)


def rollout_of(db: Database, job_id: int) -> Rollout:
    """The job's rollout: its newest ``cutover_set``, when it began and since when it has been 100 % new."""
    with db.transaction() as s:
        return rollout_from(_percents(s, job_id))


def _percents(s: Any, job_id: int) -> list[tuple[int, datetime]]:
    rows = s.execute(
        sa.select(Event.detail, Event.at).where(Event.job_id == job_id, Event.action == SET).order_by(Event.id)
    )
    return [(int(detail["percent"]), at) for detail, at in rows]


def record_write_failure(
    db: Database, job_id: int, run_id: int | None, namespace: str, operation: str, ids: list[str], error: str
) -> None:
    """A write the old store took and the new one did not: ``sync`` copies it (or, a delete, propagates it), and
    cleanup of the namespace waits for that sync."""
    record = {"namespace": namespace, "operation": operation, "ids": ids, "error": error}
    with db.transaction() as s:
        add_event(s, WRITE_FAILED, "dual-writer", job_id, run_id, **record)


def last_event_at(db: Database, run_id: int, action: str) -> datetime | None:
    """When the newest ``action`` event of a namespace run was written (None: never)."""
    with db.transaction() as s:
        return s.scalar(sa.select(sa.func.max(Event.at)).where(Event.run_id == run_id, Event.action == action))


def record_check(db: Database, job_id: int, report: dict[str, Any], actor: str) -> None:
    """Keep a ``cutover check`` report in the audit log."""
    with db.transaction() as s:
        add_event(s, CHECKED, actor, job_id, **report)


def last_check(db: Database, job_id: int) -> dict[str, Any] | None:
    """The newest ``cutover check`` report of the job."""
    with db.transaction() as s:
        return s.scalar(
            sa.select(Event.detail)
            .where(Event.job_id == job_id, Event.action == CHECKED)
            .order_by(Event.id.desc())
            .limit(1)
        )


def cleanup_refusal(db: Database, run: NamespaceRun, decommission_after_s: float, *, override: bool) -> str | None:
    """Why the cut-over keeps ``run``'s source now (``cutover.cleanup_gate``), or None."""
    return cleanup_gate(
        rollout_of(db, run.job_id),
        decommission_after_s,
        utcnow(),
        last_sync_at=last_event_at(db, run.id, "sync"),
        last_write_failure_at=last_event_at(db, run.id, WRITE_FAILED),
        override=override,
    )

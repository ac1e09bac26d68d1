"""Read-only views of the job table for `status`, `jobs` and `events`: a job's typed snapshot, the job list, the
audit log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from orchestrator.jobs.database import Database
from orchestrator.models import Event, Job
from orchestrator.snapshot import BatchCounts, JobStatus, PlaceStatus, RunStatus, Totals, read_snapshot

__all__ = ["BatchCounts", "JobStatus", "PlaceStatus", "RunStatus", "Totals", "events_of", "job_status", "list_jobs"]


def job_status(db: Database, job_id: int) -> JobStatus:
    """A snapshot of a job for `status` (``as_dict()`` for --json), in one statement (``snapshot.SNAPSHOT_SQL``).

    Raises:
        NotFound: no job ``job_id``.
    """
    with db.engine.connect() as conn:

        def execute(sql: str, params: dict[str, Any]) -> Any:
            return conn.exec_driver_sql(sql, params).scalar()

        return read_snapshot(execute, job_id)


def list_jobs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    with db.transaction() as s:
        return [
            {"job_id": j.id, "name": j.name, "kind": j.kind, "state": j.state, "created_at": j.created_at.isoformat()}
            for j in s.scalars(sa.select(Job).order_by(Job.id.desc()).limit(limit))
        ]


def events_of(db: Database, job_id: int) -> list[dict[str, Any]]:
    with db.transaction() as s:
        return [
            {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "run_id": e.run_id, "detail": e.detail}
            for e in s.scalars(sa.select(Event).where(Event.job_id == job_id).order_by(Event.id))
        ]

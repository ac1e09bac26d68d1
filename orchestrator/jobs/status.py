"""Read-only views of the job table for `status`, `jobs`, `events` and the commands that follow a job: a job's typed
snapshot, its summary, its progress at each poll, the verdicts `verify` waits for, the job list (each the one reader
of ``orchestrator.snapshot`` run over the engine, ``read_status``), and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import Event
from nsmigrate.orchestrator.progress import JobProgress, read_progress
from nsmigrate.orchestrator.snapshot import (
    BatchCounts,
    Execute,
    JobStatus,
    JobSummary,
    PlaceStatus,
    RunStatus,
    RunVerdict,
    Totals,
    read_jobs,
    read_snapshot,
    read_summary,
    read_verdicts,
)

T = TypeVar("T")

__all__ = [
    "BatchCounts",
    "JobProgress",
    "JobStatus",
    "JobSummary",
    "PlaceStatus",
    "RunStatus",
    "RunVerdict",
    "Totals",
    "events_of",
    "job_progress",
    "job_status",
    "job_summary",
    "list_jobs",
    "read_status",
    "verdicts_of",
]


def read_status(db: Database, read: Callable[[Execute], T]) -> T:
    """``read`` (one of the job table's readers, ``orchestrator.snapshot``) over a connection of ``db``'s engine:
    the statements a command reads over plain psycopg (``cli.options.read_job_table``), here for code that holds the
    job table open."""
    with db.engine.connect() as conn:
        return read(_executor(conn))


def job_status(db: Database, job_id: int) -> JobStatus:
    """A snapshot of a job for `status` (``as_dict()`` for --json), in one statement (``snapshot.SNAPSHOT_SQL``).

    Raises:
        NotFound: no job ``job_id``.
    """
    return read_status(db, lambda execute: read_snapshot(execute, job_id))


def job_summary(db: Database, job_id: int, rows: int | None) -> JobSummary:
    """What `status` shows of a job, aggregated in one statement (``snapshot.SUMMARY_SQL``): the count of runs in each
    state, the totals, and at most ``rows`` runs, the ones to look at first.

    Raises:
        NotFound: no job ``job_id``.
    """
    return read_status(db, lambda execute: read_summary(execute, job_id, rows))


def job_progress(db: Database, job_id: int, rows: int) -> JobProgress:
    """What a command following a job reads at each poll, in one statement (``progress.PROGRESS_SQL``): the job's
    summary with at most ``rows`` runs, and the shapes of its runs.

    Raises:
        NotFound: no job ``job_id``.
    """
    return read_status(db, lambda execute: read_progress(execute, job_id, rows))


def verdicts_of(db: Database, run_ids: Collection[int]) -> list[RunVerdict]:
    """The ``RunVerdict`` of each of the runs ``run_ids``, in one statement (a waiting `verify` reads them at each
    poll)."""
    return read_status(db, lambda execute: read_verdicts(execute, run_ids))


def _utc(at: datetime) -> str:
    """``at`` in UTC, ISO 8601 (the session's TimeZone may be another: what is shown is UTC)."""
    return at.astimezone(UTC).isoformat()


def list_jobs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs, newest first (``snapshot.JOBS_SQL``)."""
    return read_status(db, lambda execute: read_jobs(execute, limit))


def _executor(conn: sa.Connection) -> Execute:
    def execute(sql: str, params: dict[str, Any]) -> Any:
        return conn.exec_driver_sql(sql, params).scalar()

    return execute


#: What a job's ``sync`` events count, summed by ``sync_totals``: namespaces synced, ids new and changed in the
#: source (copied again), ids deleted in the source, ids deleted from the target (``--propagate-deletes``).
SYNC_TOTALS = ("syncs", "new", "changed", "deleted_in_source", "deleted")


def sync_totals(db: Database, job_id: int) -> dict[str, int]:
    """A job's syncs and what they found and did, summed over its ``sync`` audit events (one per namespace synced;
    the sync runs in the command's process, so the job table is where its counts live)."""
    totals = dict.fromkeys(SYNC_TOTALS, 0)
    with db.transaction() as s:
        for detail in s.scalars(sa.select(Event.detail).where(Event.job_id == job_id, Event.action == "sync")):
            totals["syncs"] += 1
            for key in SYNC_TOTALS[1:]:
                totals[key] += int(detail.get(key) or 0)
    return totals


def events_of(db: Database, job_id: int, last: int | None = None) -> list[dict[str, Any]]:
    """A job's audit log, oldest first; ``last``: only its newest ``last`` events (a page's tail of a long log)."""
    query = sa.select(Event).where(Event.job_id == job_id)
    query = query.order_by(Event.id) if last is None else query.order_by(Event.id.desc()).limit(last)
    with db.transaction() as s:
        events = [
            {"at": _utc(e.at), "actor": e.actor, "action": e.action, "run_id": e.run_id, "detail": e.detail}
            for e in s.scalars(query)
        ]
    return events if last is None else events[::-1]

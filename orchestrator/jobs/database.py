"""The job table's database handle (engine, sessions, single statements), who is acting, and the session helpers
every transition shares: the audit event, a row count, a run by id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from nsmigrate.orchestrator.actor import default_actor  # noqa: F401  (re-exported: the job table's callers use it)
from nsmigrate.orchestrator.connections.liveness import find_dead_connections
from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.jobs.lifecycle import check_run_transition
from nsmigrate.orchestrator.models import Event, Job, JobKind, NamespaceRun, RunState, ensure_schema

if TYPE_CHECKING:  # the spec's pydantic models are not needed to read the job table
    from nsmigrate.orchestrator.spec.jobspec import JobSpec


#: Postgres ends a job-table session that sits inside a transaction, waiting for its client, longer than this. A
#: transition is a few statements sent back to back; a client that stops between two is a host cut off or gone, and
#: without this its row locks would hold up the rest of the fleet until TCP gave up on it (hours).
IDLE_IN_TRANSACTION_S = 60


class Database:
    """The job table database: an engine, a session factory and the schema made sure of once."""

    def __init__(
        self, url: str, *, create: bool = True, pool_size: int = 5, idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S
    ) -> None:
        kwargs: dict[str, Any] = {}
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=pool_size, max_overflow=10)
            timeout_ms = int(idle_in_transaction_s * 1000)
            kwargs["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={timeout_ms}"}
        # A dead pooled connection is replaced as it is checked out, so a restarted Postgres costs no transition an
        # error; found without a ping per checkout, which would double a batch's round trips.
        self.engine = find_dead_connections(sa.create_engine(url, **kwargs))
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A job's spec never changes after it is written: validate it once per process, not once per batch. Kept,
        # as its run count, by ``jobs_and_runs.job_key`` (id and creation), never by id alone: a job table made again
        # under this process starts its ids over.
        self._specs: dict[tuple[int, datetime], JobSpec] = {}
        self._spec_lock = threading.Lock()
        self._run_counts: dict[tuple[int, datetime], int] = {}  # its runs, which never change once it is written
        if create:
            ensure_schema(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def single_statement(self) -> Iterator[sa.Connection]:
        """A connection for a change made by one statement, which Postgres applies atomically on its own."""
        with self._autocommit.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def add_event(
    s: Session, action: str, actor: str, job_id: int | None, run_id: int | None = None, **detail: Any
) -> None:
    s.add(Event(job_id=job_id, run_id=run_id, actor=actor, action=action, detail=detail))


def _is_rollback_run(s: Session, run: NamespaceRun) -> bool:
    return s.scalar(sa.select(Job.kind).where(Job.id == run.job_id)) == JobKind.ROLLBACK


def _rowcount(s: Session | sa.Connection, statement: sa.Executable, params: dict[str, Any] | None = None) -> int:
    """Rows changed by an UPDATE/DELETE (a DML result is a CursorResult, which carries the count)."""
    result = cast(CursorResult[Any], s.execute(statement, params))
    return int(result.rowcount or 0)


def _get_run(s: Session, run_id: int, *, lock: bool = False) -> NamespaceRun:
    stmt = sa.select(NamespaceRun).where(NamespaceRun.id == run_id)
    if lock:
        stmt = stmt.with_for_update()
    run = s.scalars(stmt).one_or_none()
    if run is None:
        raise NotFound(f"namespace run {run_id} does not exist", run_id=run_id)
    return run


def _get_job(s: Session, job_id: int, *, lock: bool = False) -> Job:
    job = s.get(Job, job_id, with_for_update=True if lock else None)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return job


def _move_run(run: NamespaceRun, to_state: RunState) -> None:
    """Set a loaded run's state, or raise ``StateError`` when ``lifecycle.RUN_TRANSITIONS`` forbids the move."""
    check_run_transition(run.id, run.state, to_state, job_id=run.job_id, namespace=run.source_namespace)
    run.state = to_state

"""State transitions of the job table. Each public function is one transaction; a task never leaves half a change.

Counters that many workers bump at once (copied, failed) are updated with ``SET x = x + n`` so concurrent batches
cannot lose each other's increments, and "is this namespace copied?" is a single conditional UPDATE so exactly one
finishing batch wins it (and enqueues verification).
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import NotFound, StateError
from orchestrator.liveness import ping_when_in_doubt
from orchestrator.models import (
    Batch,
    BatchState,
    Event,
    Job,
    JobKind,
    JobState,
    NamespaceRun,
    RunState,
    ensure_schema,
    utcnow,
)
from orchestrator.planner import Plan
from orchestrator.spec import JobSpec, spec_to_json

ACTIVE_BATCH_STATES = (BatchState.QUEUED, BatchState.RUNNING)
FINAL_RUN_STATES = (RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.CLEANED, RunState.CANCELLED)


def default_actor() -> str:
    """Who is acting, for the audit log: user@host (a worker passes its own hostname)."""
    try:
        user = getpass.getuser()
    except OSError:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Database:
    """The job table database: an engine, a session factory and the schema made sure of once."""

    def __init__(self, url: str, *, create: bool = True, pool_size: int = 5) -> None:
        kwargs: dict[str, Any] = {}
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=pool_size, max_overflow=10)
        self.engine = sa.create_engine(url, **kwargs)
        ping_when_in_doubt(self.engine)
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A job's spec never changes after it is written: validate it once per process, not once per batch.
        self._specs: dict[int, JobSpec] = {}
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


def _event(s: Session, action: str, actor: str, job_id: int | None, run_id: int | None = None, **detail: Any) -> None:
    s.add(Event(job_id=job_id, run_id=run_id, actor=actor, action=action, detail=detail))


def _is_rollback_run(s: Session, run: NamespaceRun) -> bool:
    return s.scalar(sa.select(Job.kind).where(Job.id == run.job_id)) == JobKind.ROLLBACK


def _rowcount(s: Session, statement: sa.Executable) -> int:
    """Rows changed by an UPDATE/DELETE (a DML result is a CursorResult, which carries the count)."""
    result = cast(CursorResult[Any], s.execute(statement))
    return int(result.rowcount or 0)


def _get_run(s: Session, run_id: int, *, lock: bool = False) -> NamespaceRun:
    stmt = sa.select(NamespaceRun).where(NamespaceRun.id == run_id)
    if lock:
        stmt = stmt.with_for_update()
    run = s.scalars(stmt).one_or_none()
    if run is None:
        raise NotFound(f"namespace run {run_id} does not exist", run_id=run_id)
    return run


# ---------------------------------------------------------------------------------------------------------- jobs


def create_job(
    db: Database,
    spec: JobSpec,
    plan: Plan,
    *,
    source_label: str,
    target_label: str,
    kind: JobKind = JobKind.MIGRATE,
    actor: str | None = None,
    parent_job_id: int | None = None,
) -> int:
    """Write the job and one namespace run per planned namespace; returns the job id."""
    actor = actor or default_actor()
    with db.transaction() as s:
        job = Job(
            name=spec.name, kind=kind, spec=spec_to_json(spec), state=JobState.RUNNING, parent_job_id=parent_job_id
        )
        s.add(job)
        s.flush()
        for p in plan.runs:
            s.add(
                NamespaceRun(
                    job_id=job.id,
                    source_store=source_label,
                    source_namespace=p.source_namespace,
                    target_store=target_label,
                    target_namespace=p.target_namespace,
                    creator_id=p.creator_id,
                    twin_id=p.twin_id,
                    source_count=p.vector_count,
                    routing_table=dict(plan.twins) if p.target_namespace is None else {},
                )
            )
        _event(s, "job_created", actor, job.id, kind=str(kind), namespaces=len(plan.runs), vectors=plan.total_vectors)
        return job.id


def create_action_job(
    db: Database, name: str, kind: JobKind, spec: dict[str, Any], actor: str | None = None, **detail: Any
) -> int:
    """A job with no namespace runs (erase): a row for the record and its audit events."""
    with db.transaction() as s:
        job = Job(name=name[:64], kind=kind, spec=spec, state=JobState.RUNNING)
        s.add(job)
        s.flush()
        _event(s, f"{kind}_started", actor or default_actor(), job.id, **detail)
        return job.id


def finish_action_job(db: Database, job_id: int, actor: str | None = None, **detail: Any) -> None:
    with db.transaction() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        job.state = JobState.FINISHED
        _event(s, f"{job.kind}_finished", actor or default_actor(), job_id, **detail)


def find_job(db: Database, ref: str | int) -> Job:
    """A job by id, or the newest job of that name."""
    with db.transaction() as s:
        if isinstance(ref, int) or str(ref).isdigit():
            job = s.get(Job, int(ref))
        else:
            job = s.scalars(sa.select(Job).where(Job.name == ref).order_by(Job.id.desc()).limit(1)).one_or_none()
        if job is None:
            raise NotFound(f"no job {ref!r} in the job table", hint="`nsmigrate jobs` lists the jobs")
        return job


def latest_unfinished_job(db: Database, name: str, kind: JobKind = JobKind.MIGRATE) -> Job | None:
    with db.transaction() as s:
        return s.scalars(
            sa.select(Job)
            .where(Job.name == name, Job.kind == kind, Job.state == JobState.RUNNING)
            .order_by(Job.id.desc())
            .limit(1)
        ).one_or_none()


def job_spec(db: Database, job_id: int) -> JobSpec:
    """The job's spec, read and validated once per process (a spec never changes once its job is written)."""
    spec = db._specs.get(job_id)
    if spec is None:
        with db.transaction() as s:
            spec = _job_spec(db, s, job_id)
    return spec


def _job_spec(db: Database, s: Session, job_id: int) -> JobSpec:
    spec = db._specs.get(job_id)
    if spec is None:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        spec = db._specs.setdefault(job_id, JobSpec.model_validate(job.spec))
    return spec


def runs_of(db: Database, job_id: int, namespace: str | None = None) -> list[NamespaceRun]:
    with db.transaction() as s:
        stmt = sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id)
        if namespace is not None:
            stmt = stmt.where(NamespaceRun.source_namespace == namespace)
        return list(s.scalars(stmt))


def get_run(db: Database, run_id: int) -> NamespaceRun:
    with db.transaction() as s:
        return _get_run(s, run_id)


def cancel_job(db: Database, job_id: int, actor: str | None = None) -> int:
    """Stop handing out work: unfinished runs become cancelled, queued batches are dropped by the workers."""
    with db.transaction() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        job.state = JobState.CANCELLED
        stopped = _rowcount(
            s,
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id, NamespaceRun.state.not_in(FINAL_RUN_STATES))
            .values(state=RunState.CANCELLED),
        )
        _event(s, "job_cancelled", actor or default_actor(), job_id)
        return stopped


def maybe_finish_job(db: Database, job_id: int) -> bool:
    """Mark the job finished when every namespace run is in a final state."""
    with db.transaction() as s:
        open_runs = s.scalar(
            sa.select(sa.func.count())
            .select_from(NamespaceRun)
            .where(NamespaceRun.job_id == job_id, NamespaceRun.state.not_in(FINAL_RUN_STATES))
        )
        if open_runs:
            return False
        return bool(
            _rowcount(
                s, sa.update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(state=JobState.FINISHED)
            )
        )


# -------------------------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class Listing:
    """What a lister needs of its run, as ``start_listing`` found it."""

    job_id: int
    source_namespace: str
    list_token: str | None
    #: Batches of the run queued or running.
    in_flight: int


# The lister's two transitions are single conditional UPDATE … RETURNING statements on the tables (Core), built once:
# the row lock, the state checks, the change and the answers in one round trip. They run once per page, and building
# statements and the ORM's bookkeeping cost more client CPU than the database work (a large share of a list task).
_runs, _batches = cast(sa.Table, NamespaceRun.__table__), cast(sa.Table, Batch.__table__)
_in_flight_of_run = (
    sa.select(sa.func.count())
    .where(_batches.c.run_id == _runs.c.id, _batches.c.state.in_(ACTIVE_BATCH_STATES))
    .scalar_subquery()
)
_START_LISTING = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.listing_done.is_(False),
        _runs.c.state.in_((RunState.PENDING, RunState.LISTING, RunState.COPYING)),
    )
    .values(state=sa.case((_runs.c.state == RunState.PENDING, sa.literal(RunState.LISTING.value)), else_=_runs.c.state))
    .returning(_runs.c.job_id, _runs.c.source_namespace, _runs.c.list_token, _in_flight_of_run)
)
_RECORD_PAGE = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.listing_done.is_(False),
        _runs.c.list_token.is_not_distinct_from(sa.bindparam("listed_from")),
    )
    .values(
        batches_total=_runs.c.batches_total + sa.bindparam("n_batches"),
        listed=_runs.c.listed + sa.bindparam("n_ids"),
        list_token=sa.bindparam("next_token"),
        listing_done=sa.bindparam("listing_done"),
        state=sa.case(
            (_runs.c.state.in_((RunState.PENDING, RunState.LISTING)), sa.bindparam("listing_state")),
            else_=_runs.c.state,
        ),
        updated_at=sa.bindparam("now"),  # the column's onupdate is not applied to an UPDATE in a CTE
    )
    .returning(_runs.c.state, _runs.c.batches_total, _in_flight_of_run.label("in_flight"))
)
_INSERT_BATCH = sa.insert(_batches).returning(_batches.c.id, sort_by_parameter_order=True)
# A page of one batch, the lister's usual record, in one statement: the page's UPDATE and the batch's INSERT (which
# adds no row when the UPDATE found the token moved on, so nothing is written then).
_page = _RECORD_PAGE.cte("page")
_batch_of_page = (
    sa.insert(_batches)
    .from_select(
        ["run_id", "seq", "ids"],
        sa.select(
            sa.bindparam("run_id", type_=sa.Integer),
            _page.c.batches_total - 1,
            sa.bindparam("ids", type_=_batches.c.ids.type),
        ),
    )
    .returning(_batches.c.id)
    .cte("batch_of_page")
)
_RECORD_PAGE_OF_ONE_BATCH = sa.select(
    _page.c.state, _page.c.batches_total, _page.c.in_flight, _batch_of_page.c.id
).select_from(_page.join(_batch_of_page, sa.true()))


def start_listing(db: Database, run_id: int) -> Listing | None:
    """pending/listing/copying → listing work may go on (pending becomes listing): what the lister needs. None when
    the run is past listing or cancelled (or does not exist)."""
    with db.single_statement() as conn:
        row = conn.execute(_START_LISTING, {"run_id": run_id}).one_or_none()
        return None if row is None else Listing(row[0], row[1], row[2], int(row[3] or 0))


@dataclass(frozen=True)
class Recorded:
    """What ``add_batches`` wrote and found, so the lister needs no further query before its next page."""

    batch_ids: list[int]
    #: Batches of the run queued or running, the new ones included.
    in_flight: int
    cancelled: bool
    #: Listing ended with every batch already done (or none at all): this call moved the run to ``copied``.
    copied: bool


def add_batches(
    db: Database,
    run_id: int,
    id_batches: Sequence[Sequence[str]],
    next_token: str | None,
    *,
    listing_done: bool,
    listed_from: str | None = None,
) -> Recorded:
    """Record new batches and the lister's resume point together, so a restarted lister neither skips nor repeats
    a page. ``listed_from`` is the token the ids were listed from (None: the start of the namespace).

    Raises:
        StateError: the saved token is no longer ``listed_from`` (or listing is done): another lister recorded
            these pages first — e.g. a redelivered lister while the one it replaces was still alive, or two listers
            after a Redis restart lost their lock. Nothing is written, so no id is ever batched twice.
    """
    id_batches = [list(ids) for ids in id_batches]
    page = {
        "run_id": run_id,
        "listed_from": listed_from,
        "n_batches": len(id_batches),
        "n_ids": sum(len(ids) for ids in id_batches),
        "next_token": None if listing_done else next_token,
        "listing_done": listing_done,
        "listing_state": RunState.COPYING.value if listing_done else RunState.LISTING.value,
        "now": utcnow(),
    }
    if len(id_batches) == 1:  # what a lister records page after page: one statement, one round trip
        with db.single_statement() as conn:
            recorded = conn.execute(_RECORD_PAGE_OF_ONE_BATCH, {**page, "ids": id_batches[0]}).one_or_none()
            if recorded is None:
                raise _recorded_by_another(conn, run_id, listed_from)
        state, _, in_flight, batch_id = recorded
        return Recorded([batch_id], int(in_flight or 0) + 1, state == RunState.CANCELLED, copied=False)
    with db.transaction() as s:
        conn = s.connection()
        row = conn.execute(_RECORD_PAGE, page).one_or_none()
        if row is None:
            raise _recorded_by_another(conn, run_id, listed_from)
        state, batches_total, in_flight = row
        first_seq = batches_total - len(id_batches)
        batch_ids = (
            list(
                conn.execute(
                    _INSERT_BATCH,
                    [{"run_id": run_id, "seq": first_seq + n, "ids": ids} for n, ids in enumerate(id_batches)],
                ).scalars()
            )
            if id_batches
            else []
        )
        # Only a last page that added nothing can find every batch done; otherwise the last batch to finish moves on.
        copied = listing_done and not batch_ids and _mark_copied(s, run_id)
        return Recorded(batch_ids, int(in_flight or 0) + len(batch_ids), state == RunState.CANCELLED, copied)


def _recorded_by_another(conn: sa.Connection, run_id: int, listed_from: str | None) -> StateError | NotFound:
    """The error for a page that was not recorded: another lister recorded it first (or the run is gone)."""
    run = conn.execute(sa.select(_runs.c.job_id, _runs.c.source_namespace).where(_runs.c.id == run_id)).one_or_none()
    if run is None:
        return NotFound(f"namespace run {run_id} does not exist", run_id=run_id)
    return StateError(
        f"another lister already recorded the pages after token {listed_from!r} of namespace {run.source_namespace!r}",
        hint="nothing to do: that lister carries on",
        job_id=run.job_id,
        run_id=run_id,
    )


def queued_batches(db: Database, run_id: int) -> list[int]:
    """Ids of this run's ``queued`` batches, oldest first (a lister that died may have recorded some of them
    without sending their copy tasks)."""
    with db.transaction() as s:
        return list(
            s.scalars(
                sa.select(Batch.id).where(Batch.run_id == run_id, Batch.state == BatchState.QUEUED).order_by(Batch.seq)
            )
        )


# -------------------------------------------------------------------------------------------------------- batches


def run_of_batch(db: Database, batch_id: int) -> int:
    with db.transaction() as s:
        run_id = s.scalar(sa.select(Batch.run_id).where(Batch.id == batch_id))
        if run_id is None:
            raise NotFound(f"batch {batch_id} does not exist", batch_id=batch_id)
        return int(run_id)


@dataclass(frozen=True)
class BatchWork:
    """What a copy task needs, loaded in one go."""

    batch_id: int
    run_id: int
    job_id: int
    seq: int
    ids: list[str]
    source_namespace: str
    target_namespace: str | None
    creator_id: str | None
    twin_id: str | None
    routing_table: dict[str, str]
    spec: JobSpec


# A copy's two transitions run on the tables with statements built once, like the lister's (see `_START_LISTING`).
_IDS_OF_BATCH = sa.select(_batches.c.ids).where(_batches.c.id == sa.bindparam("batch_id"))
_BATCH_EXISTS = sa.select(_batches.c.id).where(_batches.c.id == sa.bindparam("batch_id"))
# Starting a batch is one statement, so one round trip: it locks the batch, then its run (FOR SHARE: a concurrent
# cancel_job, an UPDATE of that row, either waits for the start or commits first and is seen, so no batch starts
# after `cancel` returned; batches of one run still start side by side), and marks the batch running unless it is
# done or the run cancelled. Batch before run, as `finish_batch` locks them.
_batch_to_start = sa.select(_batches.c.run_id).where(_batches.c.id == sa.bindparam("batch_id")).with_for_update()
_run_of_batch = (
    sa.select(
        _runs.c.id,
        _runs.c.state,
        _runs.c.job_id,
        _runs.c.source_namespace,
        _runs.c.target_namespace,
        _runs.c.creator_id,
        _runs.c.twin_id,
        _runs.c.routing_table,
    )
    .where(_runs.c.id == _batch_to_start.scalar_subquery())
    .with_for_update(read=True)
    .cte("run_of_batch")
)
_START_BATCH = (
    sa.update(_batches)
    .where(
        _batches.c.id == sa.bindparam("batch_id"),
        _batches.c.state != BatchState.DONE,
        _batches.c.run_id == _run_of_batch.c.id,
        _run_of_batch.c.state != RunState.CANCELLED,
    )
    .values(
        state=BatchState.RUNNING.value,
        attempts=_batches.c.attempts + 1,
        worker=sa.bindparam("worker"),
        started_at=sa.bindparam("now"),
    )
    .returning(
        _batches.c.run_id,
        _batches.c.seq,
        _batches.c.ids,
        _run_of_batch.c.job_id,
        _run_of_batch.c.source_namespace,
        _run_of_batch.c.target_namespace,
        _run_of_batch.c.creator_id,
        _run_of_batch.c.twin_id,
        _run_of_batch.c.routing_table,
    )
)
# Finishing a batch takes two statements: the first locks the batch, then its run; the second marks the batch done,
# counts it on the run and, when it was the run's last, moves the run to copied. The run's row lock orders batches
# that finish together, and the second statement's snapshot, taken after that lock, sees every batch that finished
# before it. Its own batch's change is not visible to its counts (one statement, one snapshot), so they leave that
# batch out.
_LOCK_BATCH_AND_RUN = (
    sa.select(_batches.c.state, _batches.c.run_id, _runs.c.state, _runs.c.target_namespaces, _runs.c.failed)
    .join_from(_batches, _runs, _runs.c.id == _batches.c.run_id)
    .where(_batches.c.id == sa.bindparam("batch_id"))
    .with_for_update(of=[_batches, _runs])
)
_MARK_DONE = (
    sa.update(_batches)
    .where(_batches.c.id == sa.bindparam("batch_id"))
    .values(
        state=BatchState.DONE.value,
        vectors=sa.bindparam("vectors"),
        missing=sa.bindparam("missing"),
        bytes=sa.bindparam("nbytes"),
        last_error=None,
        finished_at=sa.bindparam("now"),
    )
    .returning(_batches.c.id)
    .cte("done")
)
_unfinished_of_run = (
    sa.select(sa.func.count())
    .where(_batches.c.run_id == _runs.c.id, _batches.c.state != BatchState.DONE)
    .scalar_subquery()
)
_others_of_run = (_batches.c.run_id == _runs.c.id, _batches.c.id != sa.bindparam("batch_id"))
_others_unfinished = sa.exists().where(*_others_of_run, _batches.c.state != BatchState.DONE)
_COUNT_BATCH_DONE = (
    sa.update(_runs)
    .add_cte(_MARK_DONE)
    # Not "run_id": execute() would take a parameter named like a column of `batches` as a value for it.
    .where(_runs.c.id == sa.bindparam("batch_run"))
    .values(
        copied=_runs.c.copied + sa.bindparam("vectors"),
        failed=sa.bindparam("failed"),
        target_namespaces=sa.bindparam("targets", type_=_runs.c.target_namespaces.type),
        state=sa.case(
            (
                _runs.c.listing_done & (_runs.c.state == RunState.COPYING) & ~_others_unfinished,
                sa.literal(RunState.COPIED.value),
            ),
            else_=_runs.c.state,
        ),
        updated_at=sa.bindparam("now"),  # the column's onupdate is not applied to an UPDATE with a DML CTE
    )
    .returning(
        _runs.c.listing_done,
        _runs.c.state,
        sa.select(sa.func.count()).where(*_others_of_run, _batches.c.state.in_(ACTIVE_BATCH_STATES)).scalar_subquery(),
    )
)
_RUN_PROGRESS = sa.select(_runs.c.listing_done, _runs.c.state, _in_flight_of_run, _unfinished_of_run).where(
    _runs.c.id == sa.bindparam("run_id")
)


def start_batch(db: Database, batch_id: int, worker: str) -> BatchWork | None:
    """queued/running/failed → running (attempts + 1). None when the batch is done or its run was cancelled, so a
    redelivered or duplicate task does nothing."""
    with db.single_statement() as conn:
        row = conn.execute(_START_BATCH, {"batch_id": batch_id, "worker": worker, "now": utcnow()}).one_or_none()
        if row is None:  # done, cancelled or missing: only the last is an error
            if conn.execute(_BATCH_EXISTS, {"batch_id": batch_id}).scalar() is None:
                raise NotFound(f"batch {batch_id} does not exist", batch_id=batch_id)
            return None
    return BatchWork(
        batch_id=batch_id,
        run_id=row.run_id,
        job_id=row.job_id,
        seq=row.seq,
        ids=list(row.ids),
        source_namespace=row.source_namespace,
        target_namespace=row.target_namespace,
        creator_id=row.creator_id,
        twin_id=row.twin_id,
        routing_table=dict(row.routing_table or {}),
        spec=job_spec(db, row.job_id),
    )


def finish_batch(
    db: Database,
    batch_id: int,
    *,
    vectors: int,
    missing: int,
    nbytes: int,
    targets: Sequence[str],
    max_in_flight: int,
) -> tuple[bool, bool]:
    """running → done; the run's copied counter and the set of target namespaces it wrote grow with it. Returns
    what ``after_batch`` would, from the same transaction: (this caller moved the run to ``copied``, wake the
    lister). The run's row lock orders the batches that finish together, so the last of them sees all done."""
    with db.transaction() as s:
        conn = s.connection()
        state, run_id, run_state, target_namespaces, failed = conn.execute(
            _LOCK_BATCH_AND_RUN, {"batch_id": batch_id}
        ).one()
        if state == BatchState.DONE:  # a duplicate delivery: only the decision of what follows
            return _what_follows(s, run_id, conn.execute(_RUN_PROGRESS, {"run_id": run_id}).one(), max_in_flight)
        if state == BatchState.FAILED:  # its ids were counted as failed; the run's row lock keeps that current
            failed = max(0, failed - len(conn.execute(_IDS_OF_BATCH, {"batch_id": batch_id}).scalar_one()))
        listing_done, now_state, in_flight = conn.execute(
            _COUNT_BATCH_DONE,
            {
                "batch_id": batch_id,
                "vectors": vectors,
                "missing": missing,
                "nbytes": nbytes,
                "now": utcnow(),
                "batch_run": run_id,
                "failed": failed,
                "targets": sorted(set(target_namespaces or []) | set(targets)),
            },
        ).one()
        copied = run_state != RunState.COPIED and now_state == RunState.COPIED
        return copied, not listing_done and in_flight < max_in_flight


def fail_batch(db: Database, batch_id: int, error: str) -> None:
    """running → failed with the error; `nsmigrate retry` re-queues it."""
    with db.transaction() as s:
        batch = s.scalars(sa.select(Batch).where(Batch.id == batch_id).with_for_update()).one()
        if batch.state in (BatchState.DONE, BatchState.FAILED):
            return
        batch.state = BatchState.FAILED
        batch.last_error = error[:2000]
        batch.finished_at = utcnow()
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == batch.run_id)
            .values(failed=NamespaceRun.failed + len(batch.ids))
        )


def maybe_mark_copied(db: Database, run_id: int) -> bool:
    """copying → copied once listing is done and every batch is done. True for exactly one caller."""
    with db.transaction() as s:
        return _mark_copied(s, run_id)


_MARK_COPIED = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.state == RunState.COPYING,
        _runs.c.listing_done.is_(True),
        ~sa.exists().where(_batches.c.run_id == _runs.c.id, _batches.c.state != BatchState.DONE),
    )
    .values(state=RunState.COPIED.value)
)


def _mark_copied(s: Session, run_id: int) -> bool:
    result = cast(CursorResult[Any], s.connection().execute(_MARK_COPIED, {"run_id": run_id}))
    return bool(result.rowcount)


def after_batch(db: Database, run_id: int, max_in_flight: int) -> tuple[bool, bool]:
    """After a batch ends, in one transaction: (this caller moved the run to ``copied``, the lister should be woken
    because listing is unfinished and fewer than ``max_in_flight`` batches are queued or running)."""
    with db.transaction() as s:
        return _after_batch(s, run_id, max_in_flight)


def _after_batch(s: Session, run_id: int, max_in_flight: int) -> tuple[bool, bool]:
    return _what_follows(s, run_id, s.connection().execute(_RUN_PROGRESS, {"run_id": run_id}).one(), max_in_flight)


def _what_follows(
    s: Session, run_id: int, progress: sa.Row[Any, Any, Any, Any], max_in_flight: int
) -> tuple[bool, bool]:
    """From the run's (listing_done, state, in-flight batches, unfinished batches): (this caller moved the run to
    ``copied``, wake the lister). The conditional UPDATE re-checks, so exactly one caller wins ``copied``."""
    listing_done, state, in_flight, unfinished = progress
    if listing_done and state == RunState.COPYING and not unfinished:
        return _mark_copied(s, run_id), False
    return False, (not listing_done and in_flight < max_in_flight)


def compile_task_statements(db: Database) -> None:
    """Compile the statements that every list and copy task runs, before the first task: SQLAlchemy compiles a
    statement on its first use in a process (~1 ms of CPU apiece) and caches it. Each runs once against ids that do
    not exist, so it matches no row, in a transaction that is rolled back."""
    now = utcnow()
    page = {"run_id": -1, "listed_from": None, "n_batches": 1, "n_ids": 1, "next_token": None, "listing_done": False}
    done = {"vectors": 0, "missing": 0, "nbytes": 0}
    no_rows: list[tuple[sa.Executable, dict[str, Any]]] = [
        (_START_LISTING, {"run_id": -1}),
        (_RECORD_PAGE_OF_ONE_BATCH, {**page, "listing_state": RunState.LISTING.value, "now": now, "ids": []}),
        (_START_BATCH, {"batch_id": -1, "worker": "", "now": now}),
        (_LOCK_BATCH_AND_RUN, {"batch_id": -1}),
        (_COUNT_BATCH_DONE, {"batch_id": -1, "batch_run": -1, "failed": 0, "targets": [], "now": now, **done}),
        (_RUN_PROGRESS, {"run_id": -1}),
        (_MARK_COPIED, {"run_id": -1}),
    ]
    with db.engine.connect() as conn:
        for statement, params in no_rows:
            conn.execute(statement, params)
        conn.rollback()


def requeue_failed(
    db: Database, job_id: int, namespace: str | None = None, actor: str | None = None
) -> list[tuple[int, int]]:
    """failed → queued for the job's (or one namespace's) failed batches; returns (run_id, batch_id) to enqueue."""
    with db.transaction() as s:
        stmt = (
            sa.select(Batch, NamespaceRun)
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == job_id, Batch.state == BatchState.FAILED)
            .with_for_update()
        )
        if namespace is not None:
            stmt = stmt.where(NamespaceRun.source_namespace == namespace)
        out: list[tuple[int, int]] = []
        for batch, run in s.execute(stmt).all():
            batch.state = BatchState.QUEUED
            run.failed = max(0, run.failed - len(batch.ids))
            if run.state == RunState.CANCELLED:
                run.state = RunState.COPYING
            out.append((run.id, batch.id))
        _event(s, "batches_requeued", actor or default_actor(), job_id, namespace=namespace, batches=len(out))
        return out


def unfinished_work(db: Database, job_id: int) -> tuple[list[int], list[tuple[int, int]]]:
    """For resume: runs whose listing is unfinished, and (run_id, batch_id) of batches queued or running."""
    with db.transaction() as s:
        listing = list(
            s.scalars(
                sa.select(NamespaceRun.id).where(
                    NamespaceRun.job_id == job_id,
                    NamespaceRun.listing_done.is_(False),
                    NamespaceRun.state.in_((RunState.PENDING, RunState.LISTING, RunState.COPYING)),
                )
            )
        )
        batches = [
            (r, b)
            for r, b in s.execute(
                sa.select(Batch.run_id, Batch.id)
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(
                    NamespaceRun.job_id == job_id,
                    Batch.state.in_(ACTIVE_BATCH_STATES),
                    NamespaceRun.state != RunState.CANCELLED,
                )
            ).all()
        ]
        return listing, batches


def runs_in_state(db: Database, job_id: int, *states: RunState) -> list[int]:
    with db.transaction() as s:
        return list(
            s.scalars(sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id, NamespaceRun.state.in_(states)))
        )


# ------------------------------------------------------------------------------------------- verification/cleanup


def start_verify(db: Database, run_id: int) -> bool:
    """copied/verified/verify_failed → verifying. Never for a rollback job's runs: they name an original as their
    source, and rollback verifies them itself."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if run.state not in (RunState.COPIED, RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.VERIFYING):
            return False
        if _is_rollback_run(s, run):
            return False
        run.state = RunState.VERIFYING
        return True


def finish_verify(db: Database, run_id: int, report: dict[str, Any], passed: bool, actor: str) -> None:
    with db.transaction() as s:
        _record_judgement(s, _get_run(s, run_id, lock=True), report, passed, actor, ("verified", "verify_failed"))


def _record_judgement(
    s: Session, run: NamespaceRun, report: dict[str, Any], passed: bool, actor: str, actions: tuple[str, str]
) -> None:
    """verified / verify_failed with its report and an audit event (``actions``: the event names for pass, fail)."""
    run.state = RunState.VERIFIED if passed else RunState.VERIFY_FAILED
    run.verification = report
    _event(
        s,
        actions[0] if passed else actions[1],
        actor,
        run.job_id,
        run.id,
        namespace=run.source_namespace,
        summary=report.get("summary"),
    )


def start_cleanup(db: Database, run_id: int) -> NamespaceRun:
    """verified → cleaning, or StateError saying why not. The caller re-checks the source fingerprint first."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if _is_rollback_run(s, run):
            # Its "source" is a restored original: cleanup must never delete it.
            raise StateError(
                f"run {run.id} belongs to a rollback job: there is no source to clean up",
                hint="cleanup acts on migrate jobs only",
                job_id=run.job_id,
                run_id=run.id,
            )
        if run.state != RunState.VERIFIED:
            # No event here: it would roll back with the raise; callers (workers.cleaning) record the refusal.
            raise StateError(
                f"refusing to delete source namespace {run.source_namespace!r}: its run is {run.state}, not verified",
                hint="run `nsmigrate verify JOB` first; only a verified namespace can be cleaned up",
                job_id=run.job_id,
                run_id=run.id,
            )
        run.state = RunState.CLEANING
        return run


def finish_cleanup(db: Database, run_id: int, detail: dict[str, Any], actor: str) -> None:
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.state = RunState.CLEANED
        run.cleanup = detail
        _event(s, "source_deleted", actor, run.job_id, run.id, namespace=run.source_namespace, **detail)


def abort_cleanup(db: Database, run_id: int, reason: str, actor: str, back_to: RunState) -> None:
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.state = back_to
        _event(s, "cleanup_refused", actor, run.job_id, run.id, namespace=run.source_namespace, reason=reason)


def record_event(
    db: Database, action: str, actor: str, job_id: int | None = None, run_id: int | None = None, **detail: Any
) -> None:
    with db.transaction() as s:
        _event(s, action, actor, job_id, run_id, **detail)


# ------------------------------------------------------------------------------------------------ sync / rollback

#: A run in one of these states finished copying and may be synced (its new and changed ids copied again).
SYNCABLE_RUN_STATES = (RunState.COPIED, RunState.VERIFIED, RunState.VERIFY_FAILED)
#: A forward run in one of these states writes nothing any more: a rollback may judge and remove its targets.
ROLLBACK_READY_STATES = (
    RunState.COPIED,
    RunState.VERIFIED,
    RunState.VERIFY_FAILED,
    RunState.CLEANED,
    RunState.CANCELLED,
)


def written_ids(db: Database, run_id: int) -> list[str]:
    """Every id the run's batches may have written — those of every batch that ran at least once (the first copy's
    and every sync's; a failed batch may have written some chunks) — each once, in batch order."""
    with db.transaction() as s:
        rows = s.scalars(sa.select(Batch.ids).where(Batch.run_id == run_id, Batch.attempts > 0).order_by(Batch.seq))
        return list(dict.fromkeys(i for ids in rows for i in ids))


def _sync_refusal(s: Session, run: NamespaceRun) -> str | None:
    job = s.get(Job, run.job_id)
    assert job is not None
    if job.kind != JobKind.MIGRATE:
        return f"job {job.id} is a {job.kind} job; only a migrate job can be synced"
    if job.state == JobState.CANCELLED:
        return f"job {job.id} was cancelled (or rolled back); there is nothing to sync into"
    if run.state == RunState.CLEANED:
        return (
            "its source namespace was deleted by cleanup: there is nothing left to sync from "
            "(writers must already be on the target)"
        )
    if run.state not in SYNCABLE_RUN_STATES:
        return (
            f"the run is {run.state}; sync runs once its copy finished (copied, verified or verify_failed): "
            "wait for it, or `nsmigrate retry` its failed batches"
        )
    return None


def sync_refusal(db: Database, run_id: int) -> str | None:
    """Why ``run_id`` cannot be synced now, or None."""
    with db.transaction() as s:
        return _sync_refusal(s, _get_run(s, run_id))


def start_sync(db: Database, run_id: int, id_batches: Sequence[Sequence[str]], actor: str, **detail: Any) -> list[int]:
    """copied/verified/verify_failed → copying, with one new batch per group of ids a sync found new or changed, and
    the ``sync`` audit event carrying ``detail`` (its counts) — one transaction. The last batch to finish marks the
    run copied and verification follows, exactly as after the first copy; with no batches the caller marks it
    copied at once (``maybe_mark_copied``). The job is running again until its runs are final.

    Raises:
        StateError: the run cannot be synced (cleaned, still copying, cancelled; another sync got there first).
    """
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        refusal = _sync_refusal(s, run)
        if refusal is not None:
            raise StateError(
                f"cannot sync namespace {run.source_namespace!r}: {refusal}", job_id=run.job_id, run_id=run.id
            )
        new = [Batch(run_id=run_id, seq=run.batches_total + n, ids=list(ids)) for n, ids in enumerate(id_batches)]
        s.add_all(new)
        run.batches_total += len(new)
        run.listed += sum(len(b.ids) for b in new)
        run.state = RunState.COPYING
        s.execute(sa.update(Job).where(Job.id == run.job_id).values(state=JobState.RUNNING))
        s.flush()
        _event(s, "sync", actor, run.job_id, run.id, namespace=run.source_namespace, batches=len(new), **detail)
        return [b.id for b in new]


def open_rollback(db: Database, forward_job_id: int, actor: str) -> tuple[int, bool]:
    """The rollback job (kind ``rollback``, ``parent_job_id`` = the forward job) to work on, and whether an earlier
    rollback already completed. The newest rollback job is taken up again unless all its runs are ``cleaned`` (a
    refused or interrupted rollback resumes in place); otherwise a new one is written with one run per forward run
    (same ``source_namespace``: the original it restores; ``target_namespaces``: the namespaces it removes).

    Raises:
        StateError: the job is not a migrate job, or one of its runs is still listing, copying, verifying or
            cleaning (cancel it or wait first).
    """
    with db.transaction() as s:
        forward = s.scalars(sa.select(Job).where(Job.id == forward_job_id).with_for_update()).one_or_none()
        if forward is None:
            raise NotFound(f"job {forward_job_id} does not exist", job_id=forward_job_id)
        if forward.kind != JobKind.MIGRATE:
            raise StateError(
                f"job {forward.id} is a {forward.kind} job; only a migrate job can be rolled back",
                hint="give the id of the migration to undo",
                job_id=forward.id,
            )
        runs = list(
            s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == forward.id).order_by(NamespaceRun.id))
        )
        busy = [r for r in runs if r.state not in ROLLBACK_READY_STATES]
        if busy:
            raise StateError(
                f"job {forward.id} is still working: namespace {busy[0].source_namespace!r} is {busy[0].state}"
                + (f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""),
                hint=f"wait for it, or `nsmigrate cancel {forward.id}`, then roll back",
                job_id=forward.id,
            )
        existing = s.scalars(
            sa.select(Job)
            .where(Job.parent_job_id == forward.id, Job.kind == JobKind.ROLLBACK)
            .order_by(Job.id.desc())
            .limit(1)
        ).one_or_none()
        if existing is not None:
            states = set(s.scalars(sa.select(NamespaceRun.state).where(NamespaceRun.job_id == existing.id)))
            if states <= {RunState.CLEANED}:
                return existing.id, True
            existing.state = JobState.RUNNING
            _event(s, "rollback_resumed", actor, existing.id, forward_job_id=forward.id)
            return existing.id, False
        job = Job(
            name=f"{forward.name}.rollback"[:64],
            kind=JobKind.ROLLBACK,
            spec=forward.spec,
            state=JobState.RUNNING,
            parent_job_id=forward.id,
        )
        s.add(job)
        s.flush()
        for r in runs:
            targets = [r.target_namespace] if r.target_namespace is not None else list(r.target_namespaces or [])
            s.add(
                NamespaceRun(
                    job_id=job.id,
                    source_store=r.target_store,
                    source_namespace=r.source_namespace,
                    target_store=r.source_store,
                    target_namespace=r.source_namespace,
                    creator_id=r.creator_id,
                    twin_id=r.twin_id,
                    target_namespaces=targets,
                    listing_done=True,
                )
            )
        _event(
            s, "job_created", actor, job.id, kind=str(JobKind.ROLLBACK), forward_job_id=forward.id, namespaces=len(runs)
        )
        _event(s, "rollback_started", actor, forward.id, rollback_job_id=job.id)
        return job.id, False


def rollback_checked(
    db: Database, run_id: int, report: dict[str, Any], passed: bool, actor: str, *, written: int
) -> None:
    """A rollback run's originals were judged: verified (they match the targets) or verify_failed (nothing will be
    deleted), with the report and the number of ids the forward run wrote."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.source_count = written
        _record_judgement(s, run, report, passed, actor, ("originals_verified", "originals_refused"))


def rollback_restoring(db: Database, run_id: int) -> None:
    """A rollback run starts writing missing originals back (copying)."""
    with db.transaction() as s:
        _get_run(s, run_id, lock=True).state = RunState.COPYING


def rollback_restored(db: Database, run_id: int, restored: int, actor: str) -> None:
    """copying → copied: ``restored`` originals were written back from the targets."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.state = RunState.COPIED
        run.copied += restored
        _event(s, "originals_restored", actor, run.job_id, run.id, namespace=run.source_namespace, count=restored)


def claim_forward_runs(db: Database, rollback_job_id: int, expected: dict[int, str], actor: str) -> None:
    """Right before a rollback deletes anything: every forward run must still be in the state it was in when the
    originals were verified (``expected``: run id → state); then they all become cancelled, with the forward job, so
    no cleanup, sync or verify of the forward job can run against a rolled-back migration. Rollback runs → cleaning.

    Raises:
        StateError: a forward run changed meanwhile (e.g. a cleanup or sync ran); nothing is claimed.
    """
    with db.transaction() as s:
        rollback = s.get(Job, rollback_job_id)
        assert rollback is not None and rollback.parent_job_id is not None
        runs = list(
            s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == rollback.parent_job_id).with_for_update())
        )
        changed = [r for r in runs if r.state != expected.get(r.id, r.state)]
        if changed:
            raise StateError(
                f"namespace {changed[0].source_namespace!r} of job {rollback.parent_job_id} changed while the rollback "
                f"checked it (now {changed[0].state}); nothing was deleted",
                hint="run the rollback again",
                job_id=rollback.parent_job_id,
            )
        for r in runs:
            r.state = RunState.CANCELLED
        s.execute(sa.update(Job).where(Job.id == rollback.parent_job_id).values(state=JobState.CANCELLED))
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == rollback_job_id, NamespaceRun.state != RunState.CLEANED)
            .values(state=RunState.CLEANING)
        )
        _event(s, "rolled_back", actor, rollback.parent_job_id, rollback_job_id=rollback_job_id)


def rollback_run_done(db: Database, run_id: int, detail: dict[str, Any], actor: str) -> None:
    """cleaning → cleaned: the run's target namespaces (or its ids in them) are gone; ``detail`` says what went."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.state = RunState.CLEANED
        run.cleanup = detail
        _event(s, "targets_deleted", actor, run.job_id, run.id, namespace=run.source_namespace, **detail)


def finish_rollback(db: Database, rollback_job_id: int, actor: str, *, passed: bool, reason: str = "") -> None:
    """The rollback job is finished: completed, or refused/failed with ``reason`` (its runs say where)."""
    with db.transaction() as s:
        job = s.get(Job, rollback_job_id)
        assert job is not None
        job.state = JobState.FINISHED
        _event(
            s,
            "rollback_finished" if passed else "rollback_refused",
            actor,
            job.id,
            forward_job_id=job.parent_job_id,
            reason=reason or None,
        )


# --------------------------------------------------------------------------------------------------------- status


def job_status(db: Database, job_id: int) -> dict[str, Any]:
    """A plain-data snapshot of a job for `status` (and --json)."""
    with db.transaction() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        counts = {
            (run_id, state): n
            for run_id, state, n in s.execute(
                sa.select(Batch.run_id, Batch.state, sa.func.count())
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id)
                .group_by(Batch.run_id, Batch.state)
            ).all()
        }
        errors = {
            run_id: err
            for run_id, err in s.execute(
                sa.select(Batch.run_id, sa.func.max(Batch.last_error))
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id, Batch.state == BatchState.FAILED)
                .group_by(Batch.run_id)
            ).all()
        }
        runs = []
        for run in s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id)):
            runs.append(
                {
                    "run_id": run.id,
                    "source_namespace": run.source_namespace,
                    "target_namespace": run.target_namespace,
                    "targets": list(run.target_namespaces or []),
                    "state": run.state,
                    "source_count": run.source_count,
                    "listed": run.listed,
                    "copied": run.copied,
                    "failed": run.failed,
                    "batches": {st.value: counts.get((run.id, st), 0) for st in BatchState},
                    "last_error": errors.get(run.id),
                    "verification": (run.verification or {}).get("summary"),
                    "verified_ok": (run.verification or {}).get("passed"),
                }
            )
        return {
            "job_id": job.id,
            "name": job.name,
            "kind": job.kind,
            "state": job.state,
            "created_at": job.created_at.isoformat(),
            "runs": runs,
            "totals": {
                "source": sum(r["source_count"] for r in runs),
                "listed": sum(r["listed"] for r in runs),
                "copied": sum(r["copied"] for r in runs),
                "failed": sum(r["failed"] for r in runs),
            },
        }


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

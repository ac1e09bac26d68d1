"""A copy batch's transitions (start, finish, fail), what follows a batch, and re-queueing work for retry and
resume. The hot statements are built once on the tables, like the lister's (see ``pages``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.jobs import erasure_ledger
from nsmigrate.orchestrator.jobs.database import Database, _move_run, _rowcount, add_event, default_actor
from nsmigrate.orchestrator.jobs.jobs_and_runs import _refuse_stopped, job_spec
from nsmigrate.orchestrator.jobs.lifecycle import ACTIVE_BATCH_STATES, LISTABLE_RUN_STATES
from nsmigrate.orchestrator.jobs.pages import (
    _PAGE_ANSWERS,
    _PAGE_UPDATE,
    _RECORD_PAGE_OF_ONE_BATCH,
    _START_LISTING,
    Recorded,
    _recorded_by_another,
    page_params,
)
from nsmigrate.orchestrator.jobs.tables import (
    _JOB_CREATED_OF_RUN,
    _MARK_COPIED,
    _batches,
    _event_per_run,
    _in_flight_of_run,
    _runs,
    none_of,
    one_of,
)
from nsmigrate.orchestrator.jobs.verdicts import _FINISH_VERIFY, _RUN_COUNT, _START_VERIFY, _WRITERS
from nsmigrate.orchestrator.models import Batch, BatchState, NamespaceRun, RunState, utcnow

if TYPE_CHECKING:
    from nsmigrate.orchestrator.spec.jobspec import JobSpec


def run_of_batch(db: Database, batch_id: int) -> int:
    with db.transaction() as s:
        if (run_id := s.scalar(sa.select(Batch.run_id).where(Batch.id == batch_id))) is None:
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
    #: The erasure ledger as the statement that started the batch read it (``erasure_ledger.LEDGER_KEY``): what the
    #: batch holds back (``erasure_ledger.subjects_of_key``). None: no line holds anything back.
    ledger_key: str | None
    #: Deliveries whose worker died while they ran this batch, this one's redelivery included (``start_batch``).
    lost_attempts: int = 0
    #: The run was listed whole into this one batch when it started: a table's rows may go in streams of their own.
    only_batch: bool = False
    #: This delivery's start (``workers.transfer.write_fence``): the batch's attempts it counted (a later start counts
    #: another), when (``time.monotonic``) and the erasure mark read before it (None: not read).
    attempt: int = 1
    started: float = field(default_factory=time.monotonic)
    erasure_mark: str | None = None


# A copy's two transitions run on the tables with statements built once, like the lister's (see `_START_LISTING`).
_THE_BATCH = _batches.c.id == sa.bindparam("batch_id")
_IDS_OF_BATCH = sa.select(_batches.c.ids).where(_THE_BATCH)
# Starting a batch is one statement, so one round trip: it locks the batch, then its run (FOR SHARE: a concurrent
# cancel_job, an UPDATE of that row, either waits for the start or commits first and is seen, so no batch starts
# after `cancel` returned; batches of one run still start side by side), and marks the batch running unless it is
# done or the run cancelled. Batch before run, as `finish_batch` locks them. A redelivered message that finds its
# batch still `running` counts a lost attempt: the worker that had it died before it ended the batch (an out-of-memory
# kill, SIGKILL, a host lost); Celery's retry after an outage is a new message, never counted. A `failed` batch (found
# so once its row is locked, a failure committed meanwhile included) is started only with `failed_too`, in the
# transaction that takes its ids off its run's failed count (``start_batch``).
_batch_to_start = sa.select(_batches.c.run_id).where(_THE_BATCH).with_for_update().cte("batch_to_start")
#: What a copy needs of its batch's run, beside the run's id and state.
_RUN_FOR_COPY = (
    _runs.c.job_id,
    _runs.c.source_namespace,
    _runs.c.target_namespace,
    _runs.c.creator_id,
    _runs.c.twin_id,
    _runs.c.routing_table,
    _JOB_CREATED_OF_RUN,  # with the job id, what its spec is kept by (``job_spec``)
)
_run_of_batch = (
    sa.select(_runs.c.id, _runs.c.state, _runs.c.listing_done, _runs.c.batches_total, *_RUN_FOR_COPY)
    .where(_runs.c.id == sa.select(_batch_to_start.c.run_id).scalar_subquery())
    .with_for_update(read=True)
    .cte("run_of_batch")
)
_START_BATCH = (
    sa.update(_batches)
    .where(
        _batches.c.id == sa.bindparam("batch_id"),
        _batches.c.state != BatchState.DONE,
        sa.or_(_batches.c.state != BatchState.FAILED, sa.bindparam("failed_too", type_=sa.Boolean)),
        _batches.c.run_id == _run_of_batch.c.id,
        _batches.c.run_id == _batch_to_start.c.run_id,
        _run_of_batch.c.state != RunState.CANCELLED,
    )
    .values(
        state=BatchState.RUNNING.value,
        attempts=_batches.c.attempts + 1,
        lost_attempts=_batches.c.lost_attempts
        + sa.case(
            (sa.and_(sa.bindparam("redelivered", type_=sa.Boolean), _batches.c.state == BatchState.RUNNING), 1),
            else_=0,
        ),
        worker=sa.bindparam("worker"),
        started_at=sa.bindparam("now"),
    )
    .returning(
        _batches.c.run_id,
        _batches.c.seq,
        _batches.c.ids,
        _batches.c.lost_attempts,
        _batches.c.attempts,
        _run_of_batch.c.job_id,
        _run_of_batch.c.source_namespace,
        _run_of_batch.c.target_namespace,
        _run_of_batch.c.creator_id,
        _run_of_batch.c.twin_id,
        _run_of_batch.c.routing_table,
        _run_of_batch.c.job_created_at,
        _run_of_batch.c.listing_done,
        _run_of_batch.c.batches_total,
        erasure_ledger.LEDGER_KEY.label("ledger_key"),
    )
)
_FAILED_IDS = sa.select(_batches.c.ids).where(_THE_BATCH, _batches.c.state == BatchState.FAILED).with_for_update()
_FAILED_LESS = sa.func.greatest(0, _runs.c.failed - sa.bindparam("ids_failed", type_=sa.Integer))
_UNCOUNT_FAILED = sa.update(_runs).where(_runs.c.id == sa.bindparam("run_id")).values(failed=_FAILED_LESS)
# Finishing a batch is one autocommit statement: no row lock waits on the worker between two round trips (a host cut
# off there would hold its run's row, its other batches, lister and sweep, until ``IDLE_IN_TRANSACTION_S``). It marks
# the batch done and counts it on its run (batch row, then run row, as `start_batch` locks them), unless the batch is
# done already or another delivery failed it (``_FINISH_FAILED_BATCH``), and moves the run to copied when that was its
# last batch, as read in the statement's snapshot, taken before it locked the run's row. Every statement that records
# or finishes a batch changes its run's row too, so the snapshot misses none when the row it locked is the version it
# holds (``settled``: the same ``xmin``). When not, two statements of the run met, and a second one, its snapshot taken
# after the first committed, moves the run on (``_AFTER_BATCH``: one caller wins its UPDATE) and says whether to wake
# the lister.
#: A finished batch's columns, from the finishing call's parameters.
_DONE: dict[str, Any] = {
    "state": BatchState.DONE.value,
    "vectors": sa.bindparam("vectors"),
    "missing": sa.bindparam("missing"),
    "bytes": sa.bindparam("nbytes"),
    "last_error": None,
    "finished_at": sa.bindparam("now"),
}
_MARK_DONE = (
    sa.update(_batches)
    .where(_batches.c.id == sa.bindparam("batch_id"), none_of(_batches.c.state, [BatchState.DONE, BatchState.FAILED]))
    .values(**_DONE)
    .returning(_batches.c.run_id)
    .cte("done")
)
#: The run's target namespaces with the batch's: distinct, in code point order (as Python sorts them).
_targets = (
    sa.func.jsonb_array_elements_text(
        sa.func.coalesce(_runs.c.target_namespaces, sa.cast(sa.literal("[]"), JSONB)).op("||")(
            sa.bindparam("targets", type_=_runs.c.target_namespaces.type)
        )
    )
    .table_valued("value")
    .render_derived("t")
)
_target_names = sa.select(_targets.c.value.collate("C").label("name")).distinct().subquery("names")
# jsonb_agg of no rows is NULL, not []: a run whose batches have written nothing yet (all their ids deleted from the
# source before the fetch) keeps its empty list.
_TARGETS_WITH_BATCH = sa.select(
    sa.func.coalesce(
        sa.func.jsonb_agg(aggregate_order_by(_target_names.c.name, _target_names.c.name)),
        sa.cast(sa.literal("[]"), JSONB),
    )
).scalar_subquery()
#: A finished batch counted on its run's row, from the finishing call's parameters.
_COUNTED: dict[str, Any] = {
    "copied": _runs.c.copied + sa.bindparam("vectors"),
    "target_namespaces": _TARGETS_WITH_BATCH,
    "updated_at": sa.bindparam("now"),  # the column's onupdate is not applied to an UPDATE with a DML CTE
}
# The run's row locked as it stands now: a locking read returns its latest version, not the snapshot's.
_run_now = (
    sa.select(_runs.c.id, _runs.c.state, sa.literal_column("namespace_runs.xmin").label("version"))
    .where(_runs.c.id == sa.select(_MARK_DONE.c.run_id).scalar_subquery())
    .with_for_update(key_share=True)
    .cte("run_now")
)
_seen = _runs.alias("seen")
_SETTLED = _run_now.c.version == (
    sa.select(sa.literal_column("seen.xmin")).where(_seen.c.id == _runs.c.id).scalar_subquery()
)
_LAST_BATCH = sa.and_(
    _SETTLED,
    _runs.c.listing_done.is_(True),
    _runs.c.state == RunState.COPYING,
    ~sa.exists().where(
        _batches.c.run_id == _runs.c.id,
        _batches.c.state != BatchState.DONE,
        _batches.c.id != sa.bindparam("batch_id"),  # done by this statement, which its snapshot does not show
    ),
)
_FINISH_BATCH = (
    sa.update(_runs)
    .where(_runs.c.id == _run_now.c.id)
    .values(**_COUNTED, state=sa.case((_LAST_BATCH, sa.literal(RunState.COPIED.value)), else_=_runs.c.state))
    .returning(
        _runs.c.id,
        sa.and_(_run_now.c.state == RunState.COPYING, _runs.c.state == RunState.COPIED).label("copied"),
        _runs.c.listing_done,
        _runs.c.state,
        _SETTLED.label("settled"),
        (_in_flight_of_run - 1).label("in_flight"),  # less this batch, running in the snapshot
    )
)
_moved_to_copied = _MARK_COPIED.values(updated_at=sa.bindparam("now")).returning(_runs.c.id).cte("moved_to_copied")
_AFTER_BATCH = sa.select(
    _runs.c.listing_done,
    _in_flight_of_run.label("in_flight"),
    sa.exists(sa.select(_moved_to_copied.c.id)).label("copied"),
    _runs.c.state,  # as the statement's snapshot saw it: before `_moved_to_copied`
).where(_runs.c.id == sa.bindparam("run_id"))
# A batch another delivery failed while this one copied it, its ids counted failed: finished by one autocommit
# statement after an unlocked read of its ids (written once), as failing is: done unless it left `failed` meanwhile (a
# retry re-queued it), its ids off the run's failed count as its vectors go on the copied count (batch row, then run
# row). What follows is `_what_follows`, a statement whose snapshot sees every batch finished before it.
_MARK_FAILED_DONE = (
    sa.update(_batches)
    .where(_batches.c.id == sa.bindparam("batch_id"), _batches.c.state == BatchState.FAILED)
    .values(**_DONE)
    .returning(_batches.c.run_id)
    .cte("done")
)
_FINISH_FAILED_BATCH = (
    sa.update(_runs)
    .add_cte(_MARK_FAILED_DONE)
    .where(_runs.c.id == _MARK_FAILED_DONE.c.run_id)
    .values(**_COUNTED, failed=_FAILED_LESS)
    .returning(_runs.c.id)
)


# A small run's one batch (``workers.steps.small_group``) is recorded and claimed by the task that copies it in one
# statement: the page's UPDATE, as a lister records it, returning what the copy needs of the run, and the batch's
# INSERT already running for this worker, as ``_START_BATCH`` would make it; queued and unclaimed when the run was
# cancelled (the run's row lock, taken by the UPDATE, orders this against ``cancel_job`` as ``_START_BATCH``'s FOR
# SHARE does).
def _record_and_claim(page_update: sa.Update) -> sa.Select[Any]:
    claimed_page = page_update.returning(*_PAGE_ANSWERS, *_RUN_FOR_COPY, _runs.c.listing_done).cte("claimed_page")
    cancelled = claimed_page.c.state == RunState.CANCELLED
    claimed_batch = (
        sa.insert(_batches)
        .from_select(
            ["run_id", "seq", "ids", "state", "attempts", "worker", "started_at"],
            sa.select(
                sa.bindparam("run_id", type_=sa.Integer),
                claimed_page.c.batches_total - 1,
                sa.bindparam("ids", type_=_batches.c.ids.type),
                sa.case((cancelled, sa.literal(BatchState.QUEUED.value)), else_=sa.literal(BatchState.RUNNING.value)),
                sa.case((cancelled, 0), else_=1),
                sa.case((cancelled, None), else_=sa.bindparam("worker", type_=sa.String)),
                sa.case((cancelled, None), else_=sa.bindparam("now", type_=_batches.c.started_at.type)),
            ),
        )
        .returning(_batches.c.id, _batches.c.seq)
        .cte("claimed_batch")
    )
    return sa.select(
        claimed_page,
        claimed_batch.c.id.label("batch_id"),
        claimed_batch.c.seq,
        erasure_ledger.LEDGER_KEY.label("ledger_key"),
    ).select_from(claimed_page.join(claimed_batch, sa.true()))


_RECORD_AND_CLAIM_BATCH = _record_and_claim(_PAGE_UPDATE)
# A page read before its run was started (``workers.steps.listing.read_ahead``) is recorded only while the run may
# still be listed, as ``start_listing`` would have found it: its own statement is the run's start.
_RECORD_AND_CLAIM_UNSTARTED = _record_and_claim(_PAGE_UPDATE.where(one_of(_runs.c.state, LISTABLE_RUN_STATES)))
_BATCH_STATE = sa.select(_batches.c.state, _batches.c.run_id).where(_batches.c.id == sa.bindparam("batch_id"))


def start_batch(db: Database, batch_id: int, worker: str, *, redelivered: bool = False) -> BatchWork | None:
    """queued/running/failed → running (attempts + 1). None when the batch is done or its run was cancelled, so a
    redelivered or duplicate task does nothing. ``redelivered``: Redis handed this message out again (its worker
    never acknowledged it); found still ``running``, the batch counts a lost attempt (``BatchWork.lost_attempts``).
    A ``failed`` batch (a message sent before it failed) leaves its run's failed count as it starts, as on retry."""
    params = {"batch_id": batch_id, "worker": worker, "now": utcnow(), "redelivered": redelivered, "failed_too": False}
    with db.single_statement() as conn:
        row = conn.execute(_START_BATCH, params).one_or_none()
        found = None if row is not None else conn.execute(_BATCH_STATE, {"batch_id": batch_id}).one_or_none()
    if found is not None and found.state == BatchState.FAILED:
        row = _start_failed(db, found.run_id, {**params, "failed_too": True})
    elif row is None and found is None:
        raise NotFound(f"batch {batch_id} does not exist", batch_id=batch_id)
    return None if row is None else _work_of(db, row, batch_id, row.run_id, row.ids)  # None: done or cancelled


def _start_failed(db: Database, run_id: int, params: dict[str, Any]) -> Any:
    """A failed batch started and its ids taken off its run's failed count in one transaction (two commits, a death
    between them, and the next delivery would find it running and leave its ids counted as failed for good). Its row,
    then its run's, locked first, as the batch's other statements lock them; nothing is kept if its run is cancelled."""
    with db.engine.connect() as conn:
        ids = conn.execute(_FAILED_IDS, params).scalar()  # None: retried meanwhile, and taken off the count then
        if ids is not None:
            conn.execute(_UNCOUNT_FAILED, {"run_id": run_id, "ids_failed": len(ids)})
        row = conn.execute(_START_BATCH, params).one_or_none()
        if row is None:
            conn.rollback()
        else:
            conn.commit()
    return row


def _work_of(db: Database, row: Any, batch_id: int, run_id: int, ids: Sequence[str]) -> BatchWork:
    """What a copy needs of a started batch, from a row carrying ``_RUN_FOR_COPY`` and the batch's ``seq``."""
    return BatchWork(
        batch_id=batch_id,
        run_id=run_id,
        job_id=row.job_id,
        seq=row.seq,
        ids=list(ids),
        source_namespace=row.source_namespace,
        target_namespace=row.target_namespace,
        creator_id=row.creator_id,
        twin_id=row.twin_id,
        routing_table=dict(row.routing_table or {}),
        spec=job_spec(db, row.job_id, row.job_created_at),
        ledger_key=row.ledger_key,
        lost_attempts=getattr(row, "lost_attempts", 0),
        attempt=getattr(row, "attempts", 1),  # 1: claimed as it was recorded
        only_batch=bool(row.listing_done) and row.batches_total == 1,
    )


def record_and_claim_batch(
    db: Database,
    run_id: int,
    ids: Sequence[str],
    next_token: str | None,
    *,
    listed_from: str | None,
    worker: str,
    listing_started: bool = True,
) -> tuple[Recorded, BatchWork | None]:
    """A small run's one page of ``ids`` recorded as ``add_batches`` records it, and its batch started for ``worker``
    as ``start_batch`` starts it, in one statement. The work is None when the run was cancelled (the batch stays
    queued, as a lister leaves it). ``listing_started`` False: the page was read before the run was started
    (``pages.start_listing``), and this statement is its start: it records nothing unless the run may still be listed.

    Raises:
        StateError: another lister recorded the page first (``add_batches``), or, not started, the run may no longer
            be listed; nothing is written.
    """
    page = page_params(run_id, [ids], next_token, listing_done=next_token is None, listed_from=listed_from)
    statement = _RECORD_AND_CLAIM_BATCH if listing_started else _RECORD_AND_CLAIM_UNSTARTED
    with db.single_statement() as conn:
        row = conn.execute(statement, {**page, "ids": list(ids), "worker": worker}).one_or_none()
        if row is None:
            raise _recorded_by_another(conn, run_id, listed_from)
    cancelled = row.state == RunState.CANCELLED
    recorded = Recorded([row.batch_id], int(row.in_flight or 0) + 1, cancelled, copied=False)
    if cancelled:
        return recorded, None
    return recorded, _work_of(db, row, row.batch_id, run_id, ids)


def finish_batch(
    db: Database,
    batch_id: int,
    *,
    vectors: int,
    missing: int,
    nbytes: int,
    targets: Sequence[str],
    max_in_flight: int,
) -> AfterBatch:
    """running → done (or failed → done: another delivery failed it meanwhile); the run's copied counter and the set
    of target namespaces it wrote grow with it. Returns what ``after_batch`` returns. One autocommit statement, a
    second when another statement of the run met it (``settled``), none holding a lock while this worker is waited
    on (see ``_FINISH_BATCH``)."""
    done = {"batch_id": batch_id, "targets": list(targets), "vectors": vectors, "missing": missing, "nbytes": nbytes}
    with db.single_statement() as conn:
        row = conn.execute(_FINISH_BATCH, {**done, "now": utcnow()}).one_or_none()
        if row is not None and row.settled:
            return AfterBatch.of(row, max_in_flight)
        if row is not None:
            run_id = row.id
        else:
            state, run_id = conn.execute(_BATCH_STATE, {"batch_id": batch_id}).one()
            if state == BatchState.FAILED:  # rare: see `_FINISH_FAILED_BATCH`
                ids = conn.execute(_IDS_OF_BATCH, {"batch_id": batch_id}).scalar_one()
                conn.execute(_FINISH_FAILED_BATCH, {**done, "ids_failed": len(ids), "now": utcnow()})
            # else done already: a duplicate delivery, which only decides what follows
        return _what_follows(conn, run_id, max_in_flight)


# Failing a batch is one autocommit statement after an unlocked read of its ids (written once): mark it failed unless
# it ended already or another delivery started it since (an older one's give-up is not the batch's), count its ids on
# its run (batch row, then run row, as `start_batch` locks them) and record the event; no row lock waits on a worker.
_failed_batch = (
    sa.update(_batches)
    .where(
        _batches.c.id == sa.bindparam("batch_id"),
        one_of(_batches.c.state, ACTIVE_BATCH_STATES),
        _batches.c.attempts == sa.func.coalesce(sa.bindparam("attempt", type_=sa.Integer), _batches.c.attempts),
    )
    .values(
        state=BatchState.FAILED.value,
        last_error=sa.bindparam("error_text", type_=sa.String),
        finished_at=sa.bindparam("now"),
    )
    .returning(_batches.c.run_id, _batches.c.attempts)
    .cte("failed_batch")
)
_failed_counted = (
    sa.update(_runs)
    .where(_runs.c.id == _failed_batch.c.run_id)
    .values(failed=_runs.c.failed + sa.bindparam("ids_failed"), updated_at=sa.bindparam("now"))
    .returning(_runs.c.id, _runs.c.job_id, _runs.c.source_namespace, _failed_batch.c.attempts)
    .cte("failed_counted")
)
_FAIL_BATCH = _event_per_run(
    _failed_counted,
    sa.literal("batch_failed"),
    sa.func.jsonb_build_object(
        "batch_id",
        sa.bindparam("batch_id", type_=sa.Integer),
        "namespace",
        _failed_counted.c.source_namespace,
        "attempts",
        _failed_counted.c.attempts,
        "error",
        sa.bindparam("error_text", type_=sa.String),
    ),
).add_cte(_failed_batch)


def fail_batch(db: Database, batch_id: int, error: str, actor: str | None = None, attempt: int | None = None) -> bool:
    """running → failed with the error, and a ``batch_failed`` event (``actor``: the worker); `nsmigrate retry`
    re-queues it. False when it was not: it ended, or (``attempt``: the caller's start) was started again since."""
    with db.single_statement() as conn:
        ids = conn.execute(_IDS_OF_BATCH, {"batch_id": batch_id}).scalar_one()
        params = {"batch_id": batch_id, "error_text": error[:2000], "ids_failed": len(ids), "now": utcnow()}
        failed = conn.execute(_FAIL_BATCH, {**params, "actor": actor or default_actor(), "attempt": attempt})
        return failed.first() is not None


def maybe_mark_copied(db: Database, run_id: int) -> bool:
    """copying → copied once listing is done and every batch is done. True for exactly one caller."""
    # One autocommit statement: a transaction would hold the run's row until its COMMIT, a round trip later.
    with db.single_statement() as conn:
        return bool(_rowcount(conn, _MARK_COPIED, {"run_id": run_id}))


class AfterBatch(NamedTuple):
    """What follows the end of a batch, as the statement that ended it (or one right after) found its run."""

    #: This caller moved the run to ``copied`` (exactly one caller does).
    copied: bool
    #: Listing is unfinished (its lister has not failed for good) and fewer than the spec's ``max_batches_in_flight``
    #: batches are queued or running.
    wake_lister: bool
    #: No batch is queued or running and the run is not copied: listing is done and only failed batches are left, or
    #: its lister failed for good. Nothing more happens until `nsmigrate retry` (a command waiting may stop waiting).
    stuck: bool

    @classmethod
    def of(cls, row: Any, max_in_flight: int) -> AfterBatch:
        """From a row of the run: ``copied``, ``listing_done``, ``in_flight`` (its queued and running batches but the
        one that ended) and ``state``."""
        copied, in_flight, state = bool(row.copied), row.in_flight, row.state
        list_failed = state == RunState.LIST_FAILED  # no lister to wake: only `retry` lists it again
        wake_lister = not row.listing_done and not list_failed and in_flight < max_in_flight
        left_as_is = list_failed or (row.listing_done and state == RunState.COPYING)
        return cls(copied, wake_lister, in_flight == 0 and not copied and left_as_is)


def after_batch(db: Database, run_id: int, max_in_flight: int) -> AfterBatch:
    """After a batch ends (``max_in_flight``: the spec's ``max_batches_in_flight``), in one statement."""
    with db.single_statement() as conn:
        return _what_follows(conn, run_id, max_in_flight)


def _what_follows(conn: sa.Connection, run_id: int, max_in_flight: int) -> AfterBatch:
    """``_AFTER_BATCH``: the run moved to ``copied`` when every batch is done (the conditional UPDATE re-checks, so
    exactly one caller wins it), and what else follows."""
    return AfterBatch.of(conn.execute(_AFTER_BATCH, {"run_id": run_id, "now": utcnow()}).one(), max_in_flight)


def compile_task_statements(db: Database) -> None:
    """Compile the statements that every list, copy and verify task runs, before the first task: SQLAlchemy compiles a
    statement on its first use in a process (its cost: ``bench/README.md``) and caches it. Each runs once against ids
    that do not exist, so it matches no row, in a transaction that is rolled back."""
    now = utcnow()
    page = {"run_id": -1, "listed_from": None, "n_batches": 1, "n_ids": 1, "next_token": None, "listing_done": False}
    done = {"vectors": 0, "missing": 0, "nbytes": 0}
    verdict = {"to_state": RunState.VERIFIED.value, "report": {}, "actor": "", "action": "", "detail": {}}
    no_rows: list[tuple[sa.Executable, dict[str, Any]]] = [
        (_START_LISTING, {"run_id": -1}),
        (_RECORD_PAGE_OF_ONE_BATCH, {**page, "listing_state": RunState.LISTING.value, "now": now, "ids": []}),
        (_START_BATCH, {"batch_id": -1, "worker": "", "now": now, "redelivered": False, "failed_too": False}),
        (
            _RECORD_AND_CLAIM_BATCH,
            {**page, "listing_state": RunState.LISTING.value, "now": now, "ids": [], "worker": ""},
        ),
        (_FINISH_BATCH, {"batch_id": -1, "targets": [], "now": now, **done}),
        (_BATCH_STATE, {"batch_id": -1}),
        (_AFTER_BATCH, {"run_id": -1, "now": now}),
        (_START_VERIFY, {"run_ids": [-1], "from_states": [RunState.COPIED.value], "now": now}),
        (_WRITERS, {"job_id": -1, "targets": [""]}),
        (_RUN_COUNT, {"job_id": -1}),
        (_FINISH_VERIFY, {**verdict, "run_id": -1, "started_at": now, "now": now}),
        (erasure_ledger._SUBJECTS, {}),
        (erasure_ledger._SUBJECTS_WITH_KEY, {}),
    ]
    with db.engine.connect() as conn:
        for statement, params in no_rows:
            conn.execute(statement, params)
        conn.rollback()


_job_runs = _runs.alias("job_runs")


def _of_the_jobs_runs(job_id: int, *run_conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """A batch of one of job ``job_id``'s runs (those meeting ``run_conditions``, on ``_job_runs``): the job's runs are
    read once, by its index, into an array that each of their unfinished batches is found by (one index probe a run),
    in a subquery the planner never turns into a join. Joined to the job's runs instead, while the statistics predate
    the job (they put its runs at one row), a nested loop read the job's runs again for each batch: its cost grew as
    the batches times the runs. Nor are the batches a job left unfinished read: a cancelled job leaves its queued and
    failed batches for good."""
    runs = sa.select(_job_runs.c.id).where(_job_runs.c.job_id == job_id, *run_conditions).scalar_subquery()
    return _batches.c.run_id == sa.any_(sa.func.array(runs))


def requeue_failed(
    db: Database, job_id: int, namespace: str | None = None, actor: str | None = None
) -> list[tuple[int, int]]:
    """failed → queued for the job's (or one namespace's) failed batches, and a ``retry`` event naming their
    namespaces; returns (run_id, batch_id) to enqueue.

    Raises:
        JobStopped: the job was cancelled or rolled back (its copies would land where a rollback removed them, or
            end in verdicts a cleanup would act on).
    """
    with db.transaction() as s:
        _refuse_stopped(s, job_id, "retry")
        stmt = (
            sa.select(Batch, NamespaceRun)
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(Batch.state == BatchState.FAILED, _of_the_jobs_runs(job_id))
            .order_by(Batch.id)
            .with_for_update()
        )
        if namespace is not None:
            stmt = stmt.where(NamespaceRun.source_namespace == namespace)
        out: list[tuple[int, int]] = []
        namespaces: set[str] = set()
        for batch, run in s.execute(stmt).all():
            batch.state = BatchState.QUEUED
            batch.lost_attempts = 0  # an operator looked: it gets the full count of deaths again
            run.failed = max(0, run.failed - len(batch.ids))
            if run.state == RunState.CANCELLED:
                _move_run(run, RunState.COPYING)
            out.append((run.id, batch.id))
            namespaces.add(run.source_namespace)
        who = actor or default_actor()
        add_event(s, "retry", who, job_id, namespace=namespace, namespaces=sorted(namespaces), batches=len(out))
        return out


def unfinished_work(db: Database, job_id: int) -> tuple[list[int], list[tuple[int, int]]]:
    """For resume: runs whose listing is unfinished, and (run_id, batch_id) of batches queued or running."""
    listable = NamespaceRun.state.in_(LISTABLE_RUN_STATES)
    unlisted = sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id, ~NamespaceRun.listing_done, listable)
    active = sa.select(Batch.run_id, Batch.id).where(
        Batch.state.in_(ACTIVE_BATCH_STATES), _of_the_jobs_runs(job_id, _job_runs.c.state != RunState.CANCELLED)
    )
    with db.transaction() as s:
        return list(s.scalars(unlisted)), [(r, b) for r, b in s.execute(active).all()]

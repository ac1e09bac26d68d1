"""The lister's transitions: start listing a run, record each page with its batches and the resume point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from nsmigrate.orchestrator.errors import NotFound, StateError
from nsmigrate.orchestrator.jobs.database import Database, _rowcount, add_event, default_actor
from nsmigrate.orchestrator.jobs.jobs_and_runs import _refuse_stopped
from nsmigrate.orchestrator.jobs.lifecycle import (
    ACTIVE_BATCH_STATES,
    LIST_FAILABLE_RUN_STATES,
    LISTABLE_RUN_STATES,
    LISTER_MOVES_RUN_STATES,
)
from nsmigrate.orchestrator.jobs.tables import (
    _JOB_CREATED_OF_RUN,
    _MARK_COPIED,
    _batches,
    _event_per_run,
    _in_flight_of_run,
    _runs,
    one_of,
)
from nsmigrate.orchestrator.models import Batch, BatchState, NamespaceRun, RunState, utcnow
from nsmigrate.orchestrator.packed_ids import pack_ids


@dataclass(frozen=True)
class Listing:
    """What a lister needs of its run, as ``start_listing`` found it."""

    job_id: int
    source_namespace: str
    list_token: str | None
    #: Batches of the run queued or running.
    in_flight: int
    #: The namespace's count at plan time: how a fresh listing is cut (``workers.steps.chain_listing.chains_for``).
    source_count: int = 0
    #: When the run's job was made: with its id, the key of its spec (``jobs_and_runs.job_spec``), read here so the
    #: lister needs no round trip of its own for it.
    job_created_at: datetime | None = None


# The lister's two transitions are single conditional UPDATE … RETURNING statements on the tables (Core), built once:
# the row lock, the state checks, the change and the answers in one round trip. They run once per page, and building
# statements and the ORM's bookkeeping cost more client CPU than the database work (a large share of a list task).
_START_LISTING = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.listing_done.is_(False),
        one_of(_runs.c.state, LISTABLE_RUN_STATES),
    )
    .values(state=sa.case((_runs.c.state == RunState.PENDING, sa.literal(RunState.LISTING.value)), else_=_runs.c.state))
    .returning(
        _runs.c.job_id,
        _runs.c.source_namespace,
        _runs.c.list_token,
        _in_flight_of_run,
        _runs.c.source_count,
        _JOB_CREATED_OF_RUN,
    )
)
# What the small runs of a group will list from, read in one statement before any of them is started.
_RUNS_TO_LIST = sa.select(
    _runs.c.id, _runs.c.job_id, _runs.c.source_namespace, _runs.c.list_token, _JOB_CREATED_OF_RUN
).where(
    _runs.c.id.in_(sa.bindparam("run_ids", expanding=True)),
    _runs.c.listing_done.is_(False),
    one_of(_runs.c.state, LISTABLE_RUN_STATES),
)
_PAGE_UPDATE = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.listing_done.is_(False),
        _runs.c.list_token.is_not_distinct_from(sa.bindparam("listed_from")),
        # Another lister of the run (two after a Redis restart lost their lock) failed it for good: `retry` lists it
        # again from this token. A page recorded now would leave it list_failed with listing done, stuck after retry.
        _runs.c.state != RunState.LIST_FAILED,
    )
    .values(
        batches_total=_runs.c.batches_total + sa.bindparam("n_batches"),
        listed=_runs.c.listed + sa.bindparam("n_ids"),
        list_token=sa.bindparam("next_token"),
        listing_done=sa.bindparam("listing_done"),
        state=sa.case(
            (one_of(_runs.c.state, LISTER_MOVES_RUN_STATES), sa.bindparam("listing_state")),
            else_=_runs.c.state,
        ),
        updated_at=sa.bindparam("now"),  # the column's onupdate is not applied to an UPDATE in a CTE
    )
)
_PAGE_ANSWERS = (_runs.c.state, _runs.c.batches_total, _in_flight_of_run.label("in_flight"))
_RECORD_PAGE = _PAGE_UPDATE.returning(*_PAGE_ANSWERS)
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
# A page of any other number of batches, in one statement too: no row lock waits on the lister between two round
# trips (a lister whose host was cut off there would hold its run's row, and every batch of the run, until Postgres
# ended its session). One row per new batch, in order; one row without a batch for a page of none; no row when
# another lister recorded the page first. ``id_batches``: each batch's ids as ``pack_ids`` stores them.
_packed = (
    sa.func.unnest(sa.bindparam("id_batches", type_=ARRAY(sa.LargeBinary)))
    .table_valued("ids", with_ordinality="n")
    .render_derived("packed")
)
_batches_of_page = (
    sa.insert(_batches)
    .from_select(
        ["run_id", "seq", "ids"],
        sa.select(
            sa.bindparam("run_id", type_=sa.Integer),
            _page.c.batches_total - sa.bindparam("n_batches") + _packed.c.n - 1,
            _packed.c.ids,
        ).select_from(_page.join(_packed, sa.true())),
    )
    .returning(_batches.c.id, _batches.c.seq)
    .cte("batches_of_page")
)
_RECORD_PAGE_OF_BATCHES = (
    sa.select(_page.c.state, _page.c.in_flight, _batches_of_page.c.id)
    .select_from(_page.outerjoin(_batches_of_page, sa.true()))
    .order_by(_batches_of_page.c.seq)
)


def start_listing(db: Database, run_id: int) -> Listing | None:
    """pending/listing/copying → listing work may go on (pending becomes listing): what the lister needs. None when
    the run is past listing or cancelled (or does not exist)."""
    with db.single_statement() as conn:
        row = conn.execute(_START_LISTING, {"run_id": run_id}).one_or_none()
        return None if row is None else Listing(row[0], row[1], row[2], int(row[3] or 0), int(row[4] or 0), row[5])


def runs_to_list(db: Database, run_ids: Sequence[int]) -> dict[int, Listing]:
    """The runs of ``run_ids`` that may still be listed, as they are now, in one read-only statement: what their
    listers will list from unless another lister moves first (``start_listing`` under the lock says)."""
    with db.single_statement() as conn:
        rows = conn.execute(_RUNS_TO_LIST, {"run_ids": list(run_ids)}).all()
    return {row[0]: Listing(row[1], row[2], row[3], 0, job_created_at=row[4]) for row in rows}


@dataclass(frozen=True)
class Recorded:
    """What ``add_batches`` wrote and found, so the lister needs no further query before its next page."""

    batch_ids: list[int]
    #: Batches of the run queued or running, the new ones included.
    in_flight: int
    cancelled: bool
    #: Listing ended with every batch already done (or none at all): this call moved the run to ``copied``.
    copied: bool


def page_params(
    run_id: int,
    id_batches: Sequence[Sequence[str]],
    next_token: str | None,
    *,
    listing_done: bool,
    listed_from: str | None,
) -> dict[str, object]:
    """The parameters of ``_RECORD_PAGE`` for a page of ``id_batches`` listed from ``listed_from``."""
    return {
        "run_id": run_id,
        "listed_from": listed_from,
        "n_batches": len(id_batches),
        "n_ids": sum(len(ids) for ids in id_batches),
        "next_token": None if listing_done else next_token,
        "listing_done": listing_done,
        "listing_state": RunState.COPYING.value if listing_done else RunState.LISTING.value,
        "now": utcnow(),
    }


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
    page = page_params(run_id, id_batches, next_token, listing_done=listing_done, listed_from=listed_from)
    if len(id_batches) == 1:  # what a lister records page after page: one statement, one round trip
        with db.single_statement() as conn:
            recorded = conn.execute(_RECORD_PAGE_OF_ONE_BATCH, {**page, "ids": id_batches[0]}).one_or_none()
            if recorded is None:
                raise _recorded_by_another(conn, run_id, listed_from)
        state, _, in_flight, batch_id = recorded
        return Recorded([batch_id], int(in_flight or 0) + 1, state == RunState.CANCELLED, copied=False)
    with db.single_statement() as conn:
        rows = conn.execute(
            _RECORD_PAGE_OF_BATCHES, {**page, "id_batches": [pack_ids(ids) for ids in id_batches]}
        ).all()
        if not rows:
            raise _recorded_by_another(conn, run_id, listed_from)
        state, in_flight, _ = rows[0]
        batch_ids = [batch_id for _, _, batch_id in rows if batch_id is not None]
        # Only a last page that added nothing can find every batch done; otherwise the last batch to finish moves on.
        copied = listing_done and not batch_ids and bool(_rowcount(conn, _MARK_COPIED, {"run_id": run_id}))
    return Recorded(batch_ids, int(in_flight or 0) + len(batch_ids), state == RunState.CANCELLED, copied)


def _recorded_by_another(conn: sa.Connection, run_id: int, listed_from: str | None) -> StateError | NotFound:
    """The error for a page that was not recorded: another lister recorded it first, or, still at its token, the run
    may no longer be listed (or the run is gone)."""
    query = sa.select(_runs.c.job_id, _runs.c.source_namespace, _runs.c.state, _runs.c.list_token, _runs.c.listing_done)
    run = conn.execute(query.where(_runs.c.id == run_id)).one_or_none()
    if run is None:
        return NotFound(f"namespace run {run_id} does not exist", run_id=run_id)
    if run.list_token == listed_from and not run.listing_done and run.state not in LISTABLE_RUN_STATES:
        return StateError(
            f"namespace {run.source_namespace!r} is {run.state}: it is not listed any more",
            hint="nothing to do",
            job_id=run.job_id,
            run_id=run_id,
        )
    return StateError(
        f"another lister already recorded the pages after token {listed_from!r} of namespace {run.source_namespace!r}",
        hint="nothing to do: that lister carries on",
        job_id=run.job_id,
        run_id=run_id,
    )


# A lister that failed for good: the run's move to list_failed and its audit event in one autocommit statement, so no
# row lock waits on the worker between two round trips (a host cut off there would hold the run's row for a minute).
_list_failed = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.listing_done.is_(False),
        one_of(_runs.c.state, LIST_FAILABLE_RUN_STATES),
    )
    .values(state=RunState.LIST_FAILED.value, last_error=sa.bindparam("last_error"), updated_at=sa.bindparam("now"))
    .returning(_runs.c.id, _runs.c.job_id, _runs.c.source_namespace)
    .cte("list_failed")
)
_FAIL_LISTING = _event_per_run(
    _list_failed,
    sa.literal("listing_failed"),
    sa.func.jsonb_build_object(
        "namespace", _list_failed.c.source_namespace, "error", sa.bindparam("error", type_=sa.String)
    ),
)


def fail_listing(db: Database, run_id: int, error: str) -> bool:
    """listing (or pending/copying with listing unfinished) → list_failed with the error, and an audit event: the
    lister failed for good. False when the run was past listing or cancelled meanwhile (nothing changed)."""
    params = {"run_id": run_id, "last_error": error[:2000], "error": error, "actor": default_actor(), "now": utcnow()}
    with db.single_statement() as conn:
        return conn.execute(_FAIL_LISTING, params).first() is not None


def requeue_failed_listers(
    db: Database, job_id: int, namespace: str | None = None, actor: str | None = None
) -> list[tuple[int, str]]:
    """list_failed → listing for the job's (or one namespace's) failed listers, their error cleared; returns
    (run_id, source namespace) of the listers to enqueue (each resumes from its saved token). Raises
    ``JobStopped`` for a job cancelled or rolled back (``requeue_failed``)."""
    with db.transaction() as s:
        _refuse_stopped(s, job_id, "retry")
        stmt = (
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.LIST_FAILED)
            .values(state=RunState.LISTING, last_error=None)
            .returning(NamespaceRun.id, NamespaceRun.source_namespace)
        )
        if namespace is not None:
            stmt = stmt.where(NamespaceRun.source_namespace == namespace)
        out = [(run_id, ns) for run_id, ns in s.execute(stmt).all()]
        if out:
            add_event(s, "listers_requeued", actor or default_actor(), job_id, namespace=namespace, listers=len(out))
        return out


def queued_batches(db: Database, run_id: int, *, running_too: bool = False) -> list[int]:
    """Ids of this run's ``queued`` batches (``running_too``: and ``running`` ones), oldest first (a lister that
    died may have recorded some of them without sending their copy tasks)."""
    states = ACTIVE_BATCH_STATES if running_too else (BatchState.QUEUED,)
    with db.transaction() as s:
        return list(
            s.scalars(sa.select(Batch.id).where(Batch.run_id == run_id, Batch.state.in_(states)).order_by(Batch.seq))
        )


# -------------------------------------------------------------------------------------------------------- batches

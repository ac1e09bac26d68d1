"""A worker that stops half-way through finishing a batch (its host cut off from the network between two of its
statements) holds up no other worker of the job table.

Postgres keeps the row locks of a transaction until its client sends the next statement, or until it ends the
session after ``IDLE_IN_TRANSACTION_S`` (a minute): a batch finished in a transaction that locked its run's row
and waited on its worker between two statements froze every batch, lister and stalled-run sweep of that run for
that minute when the worker's host was cut off there (seen in tests/fleet/test_hosts.py). Here the worker is
stopped after each statement of `finish_batch` in turn, and another worker must finish, start and sweep the same
run's batches meanwhile. "Held up" is read from Postgres (a session of this database waiting for a lock), not from
a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.models import Batch, Event, NamespaceRun
from nsmigrate.orchestrator.recovery import claim_stalled_runs
from tests.integration.test_job_table import a_job
from tests.polling import wait_until

#: What finishing a batch answers when its run's listing is done: nothing follows, or this caller moved the run to
#: ``copied``.
NOTHING_FOLLOWS = jobs_batches.AfterBatch(copied=False, wake_lister=False, stuck=False)
COPIED = jobs_batches.AfterBatch(copied=True, wake_lister=False, stuck=False)


@pytest.fixture
def databases(job_table_url: str) -> Iterator[tuple[jobs_database.Database, jobs_database.Database]]:
    """Two workers' handles on one job table: the one that stops, and the other."""
    stopping, other = (jobs_database.Database(job_table_url, create=False) for _ in range(2))
    yield stopping, other
    stopping.dispose()
    other.dispose()


class Stopper:
    """Stops the thread using ``db`` after its ``nth`` statement (counted from ``arm``) until ``release``."""

    def __init__(self, db: jobs_database.Database, nth: int) -> None:
        self.nth, self.seen = nth, 0
        self.armed, self.stopped, self.released = False, threading.Event(), threading.Event()
        event.listen(db.engine, "after_cursor_execute", self._after)

    def _after(self, *_: Any) -> None:
        if not self.armed:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.stopped.set()
            self.released.wait()

    def arm(self) -> None:
        self.armed = True


def waiting_for_a_lock(db: jobs_database.Database) -> list[str]:
    """The statements of this database's sessions that wait for a lock right now."""
    with db.single_statement() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        )


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    return thread, out


def finishes(db: jobs_database.Database, batch_id: int) -> tuple[bool, bool]:
    return jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["ns0"], max_in_flight=8)


def assert_not_held_up(other: jobs_database.Database, work: Callable[[], object]) -> None:
    """``work`` (on ``other``) ends without waiting for a lock: read from Postgres, which shows every session of this
    database that waits for one."""
    thread, result = in_thread(work)
    outcome = wait_until(
        lambda: ["done"] if result else waiting_for_a_lock(other),
        what="the other worker to finish its work, or to wait for a lock",
        timeout_s=60,
        interval_s=0.02,
    )
    assert outcome == ["done"], f"the other worker waits for the stopped one's lock: {outcome}"
    thread.join()


def the_others_work(other: jobs_database.Database, to_finish: int, to_start: int) -> Callable[[], object]:
    """Another worker finishes a batch of the run, starts one, and sweeps for stalled runs (claiming the run)."""
    return lambda: (
        finishes(other, to_finish),
        jobs_batches.start_batch(other, to_start, "w2"),
        claim_stalled_runs(other, 0),
    )


def test_a_worker_stopped_while_finishing_a_batch_holds_up_no_other_batch_of_its_run(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    """Finishing a batch is one statement; the second it takes when another statement of its run met it moves the
    run on as ``maybe_mark_copied`` does (its own test below)."""
    stopping, other = databases
    _, [run_id] = a_job(stopping)
    assert jobs_pages.start_listing(stopping, run_id) is not None
    first, second, third = jobs_pages.add_batches(
        stopping, run_id, [["a"], ["b"], ["c"]], None, listing_done=True
    ).batch_ids
    for batch_id in (first, second):
        assert jobs_batches.start_batch(stopping, batch_id, "w") is not None
    stopper = Stopper(stopping, 1)
    stopper.arm()
    stopped_thread, stopped_result = in_thread(lambda: finishes(stopping, first))
    try:
        assert stopper.stopped.wait(60), "the stopping worker never ran a statement"
        assert_not_held_up(other, the_others_work(other, second, third))
    finally:
        stopper.released.set()
        stopped_thread.join(60)

    assert len(stopped_result) == 1
    with other.transaction() as s:
        states = dict(s.execute(sa.select(Batch.id, Batch.state).where(Batch.run_id == run_id)).all())
        run = s.get(NamespaceRun, run_id)
        assert run is not None
        assert states == {first: "done", second: "done", third: "running"}
        assert (run.copied, run.target_namespaces, run.state) == (2, ["ns0"], "copying")


def test_a_lister_stopped_while_recording_a_page_of_batches_holds_up_no_batch_of_its_run(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    stopping, other = databases
    _, [run_id] = a_job(stopping)
    assert jobs_pages.start_listing(stopping, run_id) is not None
    first, second = jobs_pages.add_batches(stopping, run_id, [["a"], ["b"]], "page-2", listing_done=False).batch_ids
    assert jobs_batches.start_batch(stopping, first, "w") is not None
    stopper = Stopper(stopping, 1)
    stopper.arm()
    page = [["c"], ["d"]]  # the next page, two batches (a batch size below the page size)
    stopped_thread, stopped_result = in_thread(
        lambda: jobs_pages.add_batches(stopping, run_id, page, None, listing_done=True, listed_from="page-2")
    )
    try:
        assert stopper.stopped.wait(60), "the stopping lister never ran a statement"
        assert_not_held_up(other, the_others_work(other, first, second))
    finally:
        stopper.released.set()
        stopped_thread.join(60)

    [recorded] = stopped_result
    assert isinstance(recorded, jobs_pages.Recorded) and len(recorded.batch_ids) == 2
    with other.transaction() as s:
        found = s.execute(sa.select(Batch.seq, Batch.ids, Batch.state).where(Batch.run_id == run_id)).all()
        run = s.get(NamespaceRun, run_id)
        assert run is not None
    assert sorted((seq, ids, state) for seq, ids, state in found) == [
        (0, ["a"], "done"),
        (1, ["b"], "running"),
        (2, ["c"], "queued"),
        (3, ["d"], "queued"),
    ]
    assert (run.batches_total, run.listing_done, run.copied) == (4, True, 1)


def stopped_while(
    stopping: jobs_database.Database,
    nth: int,
    work: Callable[[], object],
    other: jobs_database.Database,
    others: Callable[[], object],
) -> tuple[list[object], object]:
    """``work`` on ``stopping`` stops after its ``nth`` statement; meanwhile ``others`` on ``other`` must end
    without waiting for a lock. (what ``work`` returned once let go, what ``others`` returned)."""
    stopper = Stopper(stopping, nth)
    stopper.arm()
    stopped_thread, stopped_result = in_thread(work)
    other_result: list[object] = []
    try:
        assert stopper.stopped.wait(60), "the stopping worker never ran a statement"
        assert_not_held_up(other, lambda: other_result.append(others()))
    finally:
        stopper.released.set()
        stopped_thread.join(60)
    return stopped_result, other_result[0]


def locks_run(db: jobs_database.Database, run_id: int) -> None:
    """A transaction that locks a run's row (as one cut off mid-transaction would hold it)."""
    with db.transaction() as s:
        s.execute(sa.select(NamespaceRun.id).where(NamespaceRun.id == run_id).with_for_update())


def test_a_worker_stopped_holding_a_run_row_holds_up_no_sweep_for_other_runs(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    """The sweep skips a run whose row a stopped worker holds, claims every other stalled run meanwhile, and claims
    the skipped one at its next sweep."""
    stopping, other = databases
    job_id, [held, free] = a_job(stopping, namespaces=2)
    assert jobs_pages.start_listing(stopping, held) is not None
    _, swept = stopped_while(
        stopping, 1, lambda: locks_run(stopping, held), other, lambda: claim_stalled_runs(other, 0)
    )
    assert swept == {job_id: [free]}
    [(claimed_job, claimed_runs)] = claim_stalled_runs(other, 0).items()  # next sweep: the held run too
    assert (claimed_job, sorted(claimed_runs)) == (job_id, sorted([held, free]))


def a_run_left_copying(db: jobs_database.Database) -> int:
    """A run whose last batch is done but which is still ``copying`` (its worker died before moving it on)."""
    _, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    [batch_id] = jobs_pages.add_batches(db, run_id, [["a"]], None, listing_done=True).batch_ids
    assert jobs_batches.start_batch(db, batch_id, "w") is not None
    finishes(db, batch_id)
    with db.single_statement() as conn:
        conn.execute(sa.update(NamespaceRun).where(NamespaceRun.id == run_id).values(state="copying"))
    return run_id


def test_a_worker_stopped_while_marking_a_run_copied_holds_up_no_other(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    stopping, other = databases
    run_id = a_run_left_copying(stopping)
    outcome = stopped_while(
        stopping,
        1,
        lambda: jobs_batches.maybe_mark_copied(stopping, run_id),
        other,
        lambda: jobs_batches.maybe_mark_copied(other, run_id),
    )
    assert outcome == ([True], False)  # exactly one moved it
    with other.transaction() as s:
        run = s.get(NamespaceRun, run_id)
        assert run is not None and run.state == "copied"


def test_a_lister_stopped_while_failing_holds_up_no_other_worker_of_its_run(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    stopping, other = databases
    _, [run_id] = a_job(stopping)
    assert jobs_pages.start_listing(stopping, run_id) is not None
    outcome = stopped_while(
        stopping,
        1,
        lambda: jobs_pages.fail_listing(stopping, run_id, "gone"),
        other,
        lambda: jobs_pages.fail_listing(other, run_id, "again"),
    )
    assert outcome == ([True], False)  # exactly one failed it
    with other.transaction() as s:
        run = s.get(NamespaceRun, run_id)
        assert run is not None and (run.state, run.last_error) == ("list_failed", "gone")
        failed = s.scalars(sa.select(Event.detail).where(Event.run_id == run_id, Event.action == "listing_failed"))
        assert list(failed) == [{"namespace": "ns0", "error": "gone"}]


def test_a_worker_stopped_while_failing_a_batch_holds_up_no_other_batch_of_its_run(
    databases: tuple[jobs_database.Database, jobs_database.Database],
) -> None:
    stopping, other = databases
    _, [run_id] = a_job(stopping)
    assert jobs_pages.start_listing(stopping, run_id) is not None
    first, second = jobs_pages.add_batches(stopping, run_id, [["a", "b"], ["c"]], None, listing_done=True).batch_ids
    for batch_id in (first, second):
        assert jobs_batches.start_batch(stopping, batch_id, "w") is not None

    def the_others_work() -> object:  # another delivery fails the same batch; another batch finishes
        return jobs_batches.fail_batch(other, first, "again"), finishes(other, second)

    stopped_while(stopping, 2, lambda: jobs_batches.fail_batch(stopping, first, "boom"), other, the_others_work)
    with other.transaction() as s:
        states = dict(s.execute(sa.select(Batch.id, Batch.state).where(Batch.run_id == run_id)).all())
        run = s.get(NamespaceRun, run_id)
        assert run is not None
        events = list(s.scalars(sa.select(Event.detail).where(Event.run_id == run_id, Event.action == "batch_failed")))
    assert states == {first: "failed", second: "done"}
    assert (run.failed, run.copied) == (2, 1)  # the failed batch's two ids, counted once
    assert events == [{"batch_id": first, "namespace": "ns0", "attempts": 1, "error": "boom"}]


@pytest.mark.parametrize("stops_after", [1, 2, 3, 4], ids=["finish", "state", "lock-or-ids", "count"])
def test_a_worker_stopped_while_finishing_a_batch_another_delivery_failed_holds_up_no_other_batch_of_its_run(
    databases: tuple[jobs_database.Database, jobs_database.Database], stops_after: int
) -> None:
    """The rare path of ``finish_batch``: the batch was failed meanwhile by another delivery (its ids counted as
    failed), and this delivery, which copied it, finishes it. Stopped after each of its statements in turn, it must
    hold no lock on the run's row that the run's other batches, its lister or the sweep would wait for."""
    stopping, other = databases
    _, [run_id] = a_job(stopping)
    assert jobs_pages.start_listing(stopping, run_id) is not None
    first, second, third = jobs_pages.add_batches(
        stopping, run_id, [["a", "b"], ["c"], ["d"]], None, listing_done=True
    ).batch_ids
    for batch_id in (first, second):
        assert jobs_batches.start_batch(stopping, batch_id, "w") is not None
    jobs_batches.fail_batch(other, first, "another delivery gave up")

    stopped_result, _ = stopped_while(
        stopping, stops_after, lambda: finishes(stopping, first), other, the_others_work(other, second, third)
    )

    assert stopped_result == [NOTHING_FOLLOWS]  # not the run's last batch: the third is still running
    with other.transaction() as s:
        states = dict(s.execute(sa.select(Batch.id, Batch.state).where(Batch.run_id == run_id)).all())
        run = s.get(NamespaceRun, run_id)
        assert run is not None
    assert states == {first: "done", second: "done", third: "running"}
    assert (run.failed, run.copied, run.target_namespaces, run.state) == (0, 2, ["ns0"], "copying")
    assert finishes(other, third) == COPIED  # the run's last batch moves it on
    assert finishes(stopping, first) == NOTHING_FOLLOWS  # a duplicate delivery changes nothing
    with other.transaction() as s:
        run = s.get(NamespaceRun, run_id)
        assert run is not None and (run.failed, run.copied, run.state) == (0, 3, "copied")

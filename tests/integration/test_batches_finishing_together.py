"""Batches of one run that finish at the same moment, and a lister's page that lands while a batch finishes, on a
real Postgres: the run moves to ``copied`` exactly once, and only once every batch it will ever have is done.

Finishing a batch is one statement, which reads "was that the run's last batch?" in its snapshot, taken before it
waits for the run's row. The moments where that snapshot is stale are made here, not hoped for: a transaction holds
the run's row while the statements start and wait behind it (read from Postgres: a session waiting for a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from tests.integration.test_job_table import a_job, one_listed_batch
from tests.integration.test_stopped_worker import waiting_for_a_lock
from tests.polling import wait_until

#: What finishing a batch answers when its run's listing is done: nothing follows, or this caller moved the run to
#: ``copied``.
NOTHING_FOLLOWS = jobs_batches.AfterBatch(copied=False, wake_lister=False, stuck=False)
COPIED = jobs_batches.AfterBatch(copied=True, wake_lister=False, stuck=False)


@pytest.fixture
def db(job_table_url: str) -> Iterator[jobs_database.Database]:
    database = jobs_database.Database(job_table_url, create=False)
    yield database
    database.dispose()


def finishes(db: jobs_database.Database, batch_id: int) -> tuple[bool, bool]:
    return jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["ns0"], max_in_flight=8)


class Waiting:
    """Calls started in threads that each wait for the run's row behind ``holder``'s lock before they go on."""

    def __init__(self, db: jobs_database.Database) -> None:
        self.db = db
        self.threads: list[threading.Thread] = []
        self.results: dict[str, object] = {}

    def start(self, name: str, call: Callable[[], object]) -> None:
        """Start ``call`` and return once it waits for a lock (behind the ones started before it)."""
        thread = threading.Thread(target=lambda: self.results.__setitem__(name, call()), daemon=True)
        thread.start()
        self.threads.append(thread)
        wait_until(
            lambda: len(waiting_for_a_lock(self.db)),
            what=f"{len(self.threads)} statement(s) waiting for the run's row",
            timeout_s=30,
            interval_s=0.01,
            done=lambda n: n == len(self.threads),
        )

    def join(self) -> dict[str, object]:
        for thread in self.threads:
            thread.join(30)
        return self.results


def holding_the_run(db: jobs_database.Database, run_id: int) -> sa.Connection:
    """A connection inside a transaction that holds the run's row, as a statement of another worker holds it."""
    conn = db.engine.connect()
    conn.begin()
    conn.execute(sa.select(NamespaceRun.id).where(NamespaceRun.id == run_id).with_for_update())
    return conn


def test_the_last_two_batches_finishing_together_move_their_run_to_copied_exactly_once(
    db: jobs_database.Database,
) -> None:
    """Each statement starts before the other commits, so neither snapshot shows the other batch done: the first to
    get the row finds it as its snapshot saw it and the other batch still running (not the last); the second finds
    the row changed since its snapshot and asks again in a statement of its own, which sees both done."""
    _, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    first, second = jobs_pages.add_batches(db, run_id, [["a"], ["b"]], None, listing_done=True).batch_ids
    for batch_id in (first, second):
        assert jobs_batches.start_batch(db, batch_id, "w") is not None
    holder, waiting = holding_the_run(db, run_id), Waiting(db)
    try:
        waiting.start("first", lambda: finishes(db, first))
        waiting.start("second", lambda: finishes(db, second))
    finally:
        holder.rollback()
        holder.close()

    assert waiting.join() == {"first": NOTHING_FOLLOWS, "second": COPIED}
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied) == (RunState.COPIED, 2)


def test_a_batch_that_wrote_nothing_finishes_its_run_with_no_target_namespace(db: jobs_database.Database) -> None:
    """A small namespace's only batch whose ids the application deleted before the fetch writes nothing: the run
    has no target namespace yet, and the batch adds none. It finishes the run (before, the run's list of target
    namespaces came out NULL, refused by its column, and the batch failed)."""
    _, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    [batch_id] = jobs_pages.add_batches(db, run_id, [["gone"]], None, listing_done=True).batch_ids
    assert jobs_batches.start_batch(db, batch_id, "w") is not None

    after = jobs_batches.finish_batch(db, batch_id, vectors=0, missing=1, nbytes=0, targets=[], max_in_flight=8)

    assert after == COPIED
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied, run.target_namespaces) == (RunState.COPIED, 0, [])


def test_a_batch_finishing_as_the_last_page_lands_leaves_the_run_to_the_pages_batch(
    db: jobs_database.Database,
) -> None:
    """The lister records its last page (a new batch, and listing done) between the finishing statement's snapshot
    and its lock on the run's row: the row then says listing is done, and the snapshot knows no other unfinished
    batch. The run is not copied until the page's batch is."""
    _, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    [first] = jobs_pages.add_batches(db, run_id, [["a"]], "page-2", listing_done=False).batch_ids
    assert jobs_batches.start_batch(db, first, "w") is not None
    holder, waiting = holding_the_run(db, run_id), Waiting(db)
    try:
        waiting.start("first", lambda: finishes(db, first))
        page = jobs_pages.page_params(run_id, [["b"]], None, listing_done=True, listed_from="page-2")
        [(_, _, _, last)] = holder.execute(jobs_pages._RECORD_PAGE_OF_ONE_BATCH, {**page, "ids": ["b"]}).all()
        holder.commit()
    finally:
        holder.close()

    assert waiting.join() == {"first": NOTHING_FOLLOWS}  # listing is done: nobody to wake
    assert jobs_and_runs.get_run(db, run_id).state == RunState.COPYING
    assert jobs_batches.start_batch(db, last, "w") is not None
    assert finishes(db, last) == COPIED
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied, run.listed, run.batches_total) == (RunState.COPIED, 2, 2, 2)


def test_a_batch_finishing_alone_moves_its_run_on_in_its_one_statement(db: jobs_database.Database) -> None:
    """Held up only by a lock that changes nothing, the finishing statement still finds the run's row as its snapshot
    saw it, and needs no second statement."""
    _, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    [batch_id] = jobs_pages.add_batches(db, run_id, [["a"]], None, listing_done=True).batch_ids
    assert jobs_batches.start_batch(db, batch_id, "w") is not None
    statements: list[tuple[int, str]] = []
    sa.event.listen(
        db.engine, "before_cursor_execute", lambda *a: statements.append((threading.get_ident(), a[2].split()[0]))
    )
    holder, waiting = holding_the_run(db, run_id), Waiting(db)
    try:
        waiting.start("only", lambda: (threading.get_ident(), finishes(db, batch_id)))
    finally:
        holder.rollback()
        holder.close()

    finisher, outcome = waiting.join()["only"]
    assert outcome == jobs_batches.AfterBatch(copied=True, wake_lister=False, stuck=False)
    assert [sql for thread, sql in statements if thread == finisher] == ["WITH"]
    assert jobs_and_runs.get_run(db, run_id).state == RunState.COPIED


def test_a_start_waiting_on_a_failure_that_commits_meanwhile_takes_its_ids_off_the_failed_count(
    db: jobs_database.Database,
) -> None:
    # Another delivery fails the batch, committing while this start waits for the batch's row: the start must judge
    # the state it finds once it holds the row (failed: its ids leave the failed count), not the one it began with.
    _, run_id, batch_id = one_listed_batch(db)
    assert jobs_batches.start_batch(db, batch_id, "w1") is not None
    failing = db.engine.connect()
    failing.begin()
    failing.execute(sa.text("UPDATE batches SET state = 'failed' WHERE id = :b"), {"b": batch_id})  # as fail_batch
    failing.execute(sa.text("UPDATE namespace_runs SET failed = failed + 2 WHERE id = :r"), {"r": run_id})

    waiting = Waiting(db)
    waiting.start("start", lambda: jobs_batches.start_batch(db, batch_id, "w2"))
    failing.commit()
    failing.close()

    assert waiting.join()["start"] is not None
    assert jobs_and_runs.get_run(db, run_id).failed == 0  # started again: its ids are not failed any more
    jobs_batches.finish_batch(db, batch_id, vectors=2, missing=0, nbytes=8, targets=["ns0"], max_in_flight=4)
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied, run.failed) == (RunState.COPIED, 2, 0)


class CutOff(Exception):
    """The worker's death, or its connection's, at one statement (``cut_off_at``)."""


def cut_off_at(prefix: str) -> Callable[..., None]:
    def hook(conn: sa.Connection, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith(prefix):
            raise CutOff(prefix)

    return hook


def test_a_start_cut_off_before_a_failed_batchs_ids_left_the_count_leaves_the_count_to_the_next_delivery(
    db: jobs_database.Database,
) -> None:
    # A message sent before its batch failed starts it again, and the batch's ids leave its run's failed count: both
    # or neither. The worker dies (or its connection drops) where the count is changed; Redis hands the message out
    # again, and that delivery must still take the ids off, or the run says 2 failed for good once the batch is done.
    _, run_id, batch_id = one_listed_batch(db)
    assert jobs_batches.start_batch(db, batch_id, "w1") is not None
    jobs_batches.fail_batch(db, batch_id, "the target refused it", actor="w1")
    assert jobs_and_runs.get_run(db, run_id).failed == 2
    hook = cut_off_at("UPDATE namespace_runs SET failed=")
    sa.event.listen(db.engine, "before_cursor_execute", hook)
    try:
        with pytest.raises(CutOff):
            jobs_batches.start_batch(db, batch_id, "w2")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", hook)

    assert jobs_batches.start_batch(db, batch_id, "w2", redelivered=True) is not None
    assert jobs_and_runs.get_run(db, run_id).failed == 0
    jobs_batches.finish_batch(db, batch_id, vectors=2, missing=0, nbytes=8, targets=["ns0"], max_in_flight=4)
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied, run.failed) == (RunState.COPIED, 2, 0)

"""A kill at an exact point of a step, played in process: what makes the fleet's recovery from a killed worker
(``test_chaos_workers_killed.py``) hold wherever the kill lands. Each test records the state a killed task left
(through the job table's own functions) and runs the step as its redelivery would (``again=True``), against the real
Redis, Postgres and data plane, with a dispatcher that records what would be sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from pinecone import Pinecone

from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs.batches import AfterBatch
from nsmigrate.orchestrator.messaging.task_names import job_wake_key, lock_key
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, listing
from nsmigrate.workers.steps.next_steps import advance, lister_wake_key
from nsmigrate_sandbox.pinecone_server import PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY
from tests.chaos import DIM, SRC
from tests.chaos import sandbox_indexes as sandbox_indexes
from tests.fleet_jobs import batches
from tests.sent_tasks import SentTasks, sent

pytestmark = pytest.mark.chaos


def one_run_job(
    db: jobs_database.Database, source_host: str = "http://127.0.0.1:9", **spec_fields: Any
) -> tuple[int, int]:
    """A job with one namespace run (``ns0``) and no worker, for playing a kill at an exact point: (job id, run id)."""
    spec = parse_spec(
        {
            "name": "exact",
            "source": {"kind": "pinecone", "host": source_host},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            **spec_fields,
        }
    )
    plan = Plan(runs=[NamespacePlan("ns0", "ns0", 3, 2)], estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    return job_id, jobs_and_runs.runs_of(db, job_id)[0].id


@pytest.fixture
def worker_ctx(redis_url: str, job_table_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=SentTasks())


def test_two_listers_listing_from_the_same_token_cannot_both_record_the_page(worker_ctx: WorkerContext) -> None:
    """What makes "no id in two batches" hold even when two listers run at once (a lock lost with a Redis restart,
    a lister redelivered while the one it replaces was still alive): a page is recorded only if the run's saved
    token is still the one it was listed from."""
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)

    jobs_pages.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    with pytest.raises(StateError):
        jobs_pages.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    jobs_pages.add_batches(db, run_id, [["c"]], None, listing_done=True, listed_from="t1")
    with pytest.raises(StateError):
        jobs_pages.add_batches(db, run_id, [["c"]], None, listing_done=True, listed_from="t1")

    assert [b.ids for b in batches(db, job_id)] == [["a", "b"], ["c"]]
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.listed, run.batches_total, run.listing_done) == (3, 2, True)


def test_recording_a_page_reports_what_the_lister_checks_next(worker_ctx: WorkerContext) -> None:
    """``add_batches`` answers, in its own transaction, the questions the lister used to ask in three more: how many
    batches are in flight, whether the run was cancelled, and whether a last page that added nothing found every
    batch done (then it, and only it, moves the run to ``copied``)."""
    db = worker_ctx.db
    _, run_id = one_run_job(db)

    first = jobs_pages.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    second = jobs_pages.add_batches(db, run_id, [["c"]], "t2", listing_done=False, listed_from="t1")
    assert (second.in_flight, second.cancelled, second.copied) == (2, False, False)

    for batch_id in (*first.batch_ids, *second.batch_ids):
        assert jobs_batches.start_batch(db, batch_id, "test") is not None
        jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64)
    # listing unfinished: the lister is woken, not copied
    assert jobs_batches.after_batch(db, run_id, 64) == AfterBatch(copied=False, wake_lister=True, stuck=False)

    last = jobs_pages.add_batches(db, run_id, [], None, listing_done=True, listed_from="t2")
    assert (last.batch_ids, last.in_flight, last.copied) == ([], 0, True)
    assert jobs_and_runs.get_run(db, run_id).state == RunState.COPIED


def test_the_last_batch_to_finish_moves_its_run_on_in_the_same_transaction(worker_ctx: WorkerContext) -> None:
    db = worker_ctx.db
    _, run_id = one_run_job(db)
    first, last = jobs_pages.add_batches(db, run_id, [["a"], ["b"]], None, listing_done=True).batch_ids
    for batch_id in (first, last):
        assert jobs_batches.start_batch(db, batch_id, "test") is not None

    def finish(batch_id: int) -> AfterBatch:
        return jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64)

    # listing is done: nobody to wake; the last batch still runs: not stuck
    assert finish(first) == AfterBatch(copied=False, wake_lister=False, stuck=False)
    assert finish(last) == AfterBatch(copied=True, wake_lister=False, stuck=False)
    # A duplicate delivery of the last batch changes nothing and does not win the run a second time.
    assert finish(last) == AfterBatch(copied=False, wake_lister=False, stuck=False)
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied) == (RunState.COPIED, 2)


@pytest.mark.parametrize("last_to_end", ["finishes", "fails"])
def test_the_batch_that_leaves_only_failed_ones_wakes_the_command_waiting_on_the_job(
    worker_ctx: WorkerContext, last_to_end: str
) -> None:
    """Nothing more happens to a run left with only failed batches until `nsmigrate retry`: the batch that ends last
    says so (``stuck``), and a command waiting on the job (`run --wait`) is woken to report it, not left to its next
    poll."""
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)
    failed, last = jobs_pages.add_batches(db, run_id, [["a"], ["b"]], None, listing_done=True).batch_ids
    for batch_id in (failed, last):
        assert jobs_batches.start_batch(db, batch_id, "test") is not None
    jobs_batches.fail_batch(db, failed, "boom: the target refused")
    assert jobs_batches.after_batch(db, run_id, 64) == AfterBatch(copied=False, wake_lister=False, stuck=False)
    assert not worker_ctx.redis.exists(job_wake_key(job_id))

    if last_to_end == "finishes":
        follows = jobs_batches.finish_batch(db, last, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64)
    else:
        jobs_batches.fail_batch(db, last, "boom again")
        follows = jobs_batches.after_batch(db, run_id, 64)
    assert follows == AfterBatch(copied=False, wake_lister=False, stuck=True)
    advance(worker_ctx, run_id, job_id, "ns0", jobs_and_runs.job_spec(db, job_id), outcome=follows)
    assert worker_ctx.redis.lrange(job_wake_key(job_id), 0, -1) == [str(run_id).encode()]
    assert jobs_and_runs.get_run(db, run_id).state == RunState.COPYING  # for `retry` to take up


def test_the_last_batch_of_a_run_whose_lister_failed_for_good_wakes_the_command_not_a_lister(
    worker_ctx: WorkerContext,
) -> None:
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    first, last = jobs_pages.add_batches(db, run_id, [["a"], ["b"]], "t1", listing_done=False).batch_ids
    for batch_id in (first, last):
        assert jobs_batches.start_batch(db, batch_id, "test") is not None
    assert jobs_pages.fail_listing(db, run_id, "the source refused to list")

    def finish(batch_id: int) -> AfterBatch:
        return jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64)

    assert finish(first) == AfterBatch(copied=False, wake_lister=False, stuck=False)  # the other batch still runs
    follows = finish(last)
    assert follows == AfterBatch(copied=False, wake_lister=False, stuck=True)
    advance(worker_ctx, run_id, job_id, "ns0", jobs_and_runs.job_spec(db, job_id), outcome=follows)
    assert worker_ctx.redis.lrange(job_wake_key(job_id), 0, -1) == [str(run_id).encode()]
    assert not worker_ctx.redis.exists(lister_wake_key(run_id))  # no lister sent: only `retry` lists it again
    assert jobs_and_runs.get_run(db, run_id).state == RunState.LIST_FAILED


def test_a_cancelled_run_tells_its_lister_to_stop(worker_ctx: WorkerContext) -> None:
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)
    jobs_and_runs.cancel_job(db, job_id, actor="test")
    recorded = jobs_pages.add_batches(db, run_id, [["a"]], "t1", listing_done=False, listed_from=None)
    assert recorded.cancelled and recorded.in_flight == 1


class ListCalls:
    """Wraps the lister's source store: records the token of every list request as it starts."""

    def __init__(self, ctx: WorkerContext, job_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
        store = ctx.store(jobs_and_runs.job_spec(ctx.db, job_id).source)  # the lister's own (per-process) store
        self.tokens: list[str | None] = []
        self.started = threading.Condition()
        list_ids = store.list_ids

        def recorded(namespace: str, *, limit: int = 100, token: str | None = None) -> Any:
            with self.started:
                self.tokens.append(token)
                self.started.notify_all()
            return list_ids(namespace, limit=limit, token=token)

        monkeypatch.setattr(store, "list_ids", recorded)

    def wait_for(self, token: str | None) -> bool:
        """Whether a list request from ``token`` starts (or started) within 10 s."""
        with self.started:
            return self.started.wait_for(lambda: token in self.tokens, timeout=10)


@pytest.fixture
def five_ids(worker_ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    """A data plane whose ``src`` index holds ids a…e in namespace ns0; returns its host."""
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host(SRC))
    index.upsert(vectors=[(i, [1.0] * DIM) for i in "abcde"], namespace="ns0")
    sandbox.settle(SRC)  # written long before the job: listed
    return sandbox.host(SRC)


def test_the_lister_lists_the_next_batch_while_it_records_and_sends_the_last(
    worker_ctx: WorkerContext, five_ids: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace's pages are a chain, each listed from the token of the one before: the lister starts the next
    batch's list request before recording (and sending) the batch it has, so those round trips are not links of
    the chain. Every id is still batched once, in order."""
    db = worker_ctx.db
    job_id, run_id = one_run_job(db, five_ids, batch_size=2)
    calls = ListCalls(worker_ctx, job_id, monkeypatch)
    overlapped = []
    add_batches = jobs_pages.add_batches

    def add_batches_once_the_next_is_listing(*args: Any, **kwargs: Any) -> jobs_pages.Recorded:
        next_token = args[3]
        if not kwargs["listing_done"]:
            overlapped.append(calls.wait_for(next_token))
        return add_batches(*args, **kwargs)

    monkeypatch.setattr(jobs_pages, "add_batches", add_batches_once_the_next_is_listing)
    listing.list_run(worker_ctx, run_id)

    assert overlapped == [True, True]
    assert [b.ids for b in batches(db, job_id)] == [["a", "b"], ["c", "d"], ["e"]]
    assert [kind for kind, _ in sent(worker_ctx)] == ["copy"] * 3


def test_the_lister_lists_nothing_ahead_that_the_bound_would_leave_unused(
    worker_ctx: WorkerContext, five_ids: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At ``max_batches_in_flight`` the lister stops (a finished batch wakes it): it lists no batch ahead that it
    could not record, so the source's list budget is not spent twice on the same page."""
    db = worker_ctx.db
    job_id, run_id = one_run_job(db, five_ids, batch_size=2, max_batches_in_flight=2)
    calls = ListCalls(worker_ctx, job_id, monkeypatch)

    listing.list_run(worker_ctx, run_id)

    assert [b.ids for b in batches(db, job_id)] == [["a", "b"], ["c", "d"]]
    assert len(calls.tokens) == 2  # one page per batch of two: nothing listed for the third
    run = jobs_and_runs.get_run(db, run_id)
    assert run.list_token is not None and not run.listing_done  # where the woken lister goes on


def test_a_lister_killed_between_recording_a_batch_and_sending_it_is_made_good_by_its_redelivery(
    worker_ctx: WorkerContext,
) -> None:
    """The kill lands exactly after ``add_batches`` committed the last batch and before its copy task was sent.
    Nothing else would ever send it; the lister's redelivered task (``again``) sends the run's queued batches."""
    _, run_id = one_run_job(worker_ctx.db)
    [batch_id] = jobs_pages.add_batches(worker_ctx.db, run_id, [["a", "b", "c"]], None, listing_done=True).batch_ids

    listing.list_run(worker_ctx, run_id)  # a plain wake-up cannot know
    assert sent(worker_ctx) == []
    listing.list_run(worker_ctx, run_id, again=True)  # the redelivery does
    assert sent(worker_ctx) == [("copy", batch_id)]


def test_a_redelivered_lister_that_finds_the_lock_taken_still_sends_what_its_killed_run_left(
    worker_ctx: WorkerContext,
) -> None:
    """The killed lister recorded a batch and died before sending it; by the time its task is redelivered, a
    wake-up lister (sent by a finishing batch once the dead lister's lock expired) holds the lock and keeps it
    fresh for longer than the redelivered one waits. That live lister only sends the batches it records itself,
    so the redelivered lister must send the run's queued batches whether or not it gets the lock (it once did so
    only under the lock, and the batch stayed ``queued`` until `resume`)."""
    db = worker_ctx.db
    _, run_id = one_run_job(db)
    [orphan] = jobs_pages.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False).batch_ids
    worker_ctx.settings.lister_lock_ttl_s = 0.5  # the redelivered lister waits ~1.5 s for the lock
    live = worker_ctx.redis.lock(lock_key(f"list:{run_id}"), timeout=0.5, thread_local=False)
    assert live.acquire(blocking=False)
    stop = threading.Event()

    def keep_fresh() -> None:  # what the live lister's heartbeat does
        while not stop.wait(0.1):
            live.reacquire()

    heartbeat = threading.Thread(target=keep_fresh, daemon=True)
    heartbeat.start()
    try:
        listing.list_run(worker_ctx, run_id, again=True)
    finally:
        stop.set()
        heartbeat.join()
        live.release()

    assert sent(worker_ctx) == [("copy", orphan)]


def test_a_lister_killed_after_its_empty_last_page_finished_the_run_is_made_good_by_its_redelivery(
    worker_ctx: WorkerContext,
) -> None:
    """The namespace ended on a page boundary: the last page added no batch, every batch was done, and recording it
    moved the run to ``copied`` — then the kill, before the verification was sent. A plain wake-up finds nothing to
    do; the redelivered lister sends the verification."""
    db = worker_ctx.db
    _, run_id = one_run_job(db)
    [batch_id] = jobs_pages.add_batches(db, run_id, [["a", "b", "c"]], "t1", listing_done=False).batch_ids
    assert jobs_batches.start_batch(db, batch_id, "test") is not None
    jobs_batches.finish_batch(db, batch_id, vectors=3, missing=0, nbytes=0, targets=["ns0"], max_in_flight=64)
    assert jobs_pages.add_batches(db, run_id, [], None, listing_done=True, listed_from="t1").copied

    listing.list_run(worker_ctx, run_id)
    assert sent(worker_ctx) == []
    listing.list_run(worker_ctx, run_id, again=True)
    assert sent(worker_ctx) == [("verify", run_id)]


def test_a_copy_killed_after_marking_its_run_copied_is_made_good_by_its_redelivery(worker_ctx: WorkerContext) -> None:
    """The kill lands after the run's last batch marked it ``copied`` and before verification was sent (and after
    a wake-up flag was set without its message). The redelivered copy task finds its batch done and sends what
    should have followed."""
    _, run_id = one_run_job(worker_ctx.db)
    [batch_id] = jobs_pages.add_batches(worker_ctx.db, run_id, [["a", "b", "c"]], None, listing_done=True).batch_ids
    assert jobs_batches.start_batch(worker_ctx.db, batch_id, "doomed") is not None
    follows = jobs_batches.finish_batch(
        worker_ctx.db, batch_id, vectors=3, missing=0, nbytes=0, targets=["ns0"], max_in_flight=64
    )
    assert follows.copied
    worker_ctx.redis.set(lister_wake_key(run_id), 1)

    copying.copy_batch(worker_ctx, batch_id)  # a duplicate delivery does nothing …
    assert sent(worker_ctx) == []
    copying.copy_batch(worker_ctx, batch_id, again=True)  # … the redelivery of the killed one sends verification
    assert sent(worker_ctx) == [("verify", run_id)]
    assert not worker_ctx.redis.exists(lister_wake_key(run_id))

"""Small namespaces (one list page and one batch at plan time) listed and copied by one task, several to a task
(``workers.steps.small_group``), and how ``launch`` sends them.

Real Postgres (job table), Redis (lister locks, rate budget) and the local Pinecone data plane through the SDK; what
the task would send (copy, list and verify tasks) is recorded instead. Each test plays one moment: a group that runs
through, a group sent again after its worker was killed between two steps of its runs, a namespace that grew since
it was planned, an empty one, a run whose lister fails, a lock another lister holds, a cancelled job. A real worker
killed mid-group is in ``tests/fleet/test_chaos_workers_killed.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import GroupFailed, StoreError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import TaskName, job_wake_key, lock_key
from nsmigrate.orchestrator.models import Batch, BatchState, JobState, NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, listing, verifying
from nsmigrate.workers.steps.small_group import copy_small_runs
from nsmigrate.workers.transfer.ratelimit import window_for
from nsmigrate_sandbox.pinecone_server import Faults, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY
from tests.sent_tasks import SentTasks, sent

DIM = 8


@pytest.fixture
def ctx(
    redis_url: str,
    job_table_url: str,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerContext:
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    return worker_context(job_table_url, redis_url, dispatcher=SentTasks())


def small_job(
    ctx: WorkerContext,
    sandbox: PineconeSandbox,
    ids: dict[str, int],
    planned: dict[str, int] | None = None,
    rate: dict[str, float] | None = None,
) -> tuple[int, dict[str, int]]:
    """A job over namespaces holding ``ids[ns]`` vectors each (planned with ``planned[ns]``, by default as many), under
    the spec's ``rate`` budgets (by default the spec's defaults); returns (job id, namespace → run id)."""
    for k, (ns, n) in enumerate(ids.items()):
        sandbox.load("src", ns, [(f"{ns}-{i:03d}", [float(k + 1)] * DIM, {"i": i}) for i in range(n)])
    spec = parse_spec(
        {
            "name": "small",
            "source": {"kind": "pinecone", "host": sandbox.host("src")},
            "target": {"kind": "pinecone", "host": sandbox.host("dst")},
            **({"rate": rate} if rate else {}),
        }
    )
    counts = {**ids, **(planned or {})}
    plan = Plan(
        runs=[NamespacePlan(ns, ns, count, 1) for ns, count in counts.items()], estimate=Estimate(0, 0, 0, 0, 0, 0.0)
    )
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label="src", target_label="dst")
    return job_id, {run.source_namespace: run.id for run in jobs_and_runs.runs_of(ctx.db, job_id)}


def batches_of(db: jobs_database.Database, job_id: int) -> list[Batch]:
    with db.transaction() as s:
        return list(
            s.scalars(
                sa.select(Batch)
                .join(NamespaceRun)
                .where(NamespaceRun.job_id == job_id)
                .order_by(Batch.run_id, Batch.seq)
            )
        )


def assert_each_id_copied_once(ctx: WorkerContext, sandbox: PineconeSandbox, job_id: int, ids: dict[str, int]) -> None:
    """Every id in exactly one batch, every batch done, and the target holding each namespace whole."""
    runs = {run.id: run.source_namespace for run in jobs_and_runs.runs_of(ctx.db, job_id)}
    batched: dict[str, Counter[str]] = {ns: Counter() for ns in ids}
    for batch in batches_of(ctx.db, job_id):
        assert batch.state == BatchState.DONE, batch.id
        batched[runs[batch.run_id]].update(batch.ids)
    for ns, n in ids.items():
        assert batched[ns] == Counter(f"{ns}-{i:03d}" for i in range(n)), ns
        assert sandbox.count("dst", ns) == n, ns


@contextmanager
def statements_on(db: jobs_database.Database) -> Iterator[list[str]]:
    """The statements ``db`` sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def state(ctx: WorkerContext, run_id: int) -> RunState:
    return RunState(jobs_and_runs.get_run(ctx.db, run_id).state)


@pytest.mark.parametrize("whole_reads", [False, True], ids=["fetched", "read by query"])
def test_a_group_lists_and_copies_each_run_through_its_usual_states(
    ctx: WorkerContext, sandbox: PineconeSandbox, whole_reads: bool
) -> None:
    ids = {"a": 3, "b": 1, "c": 100}  # 100: a whole page and a whole batch
    job_id, runs = small_job(ctx, sandbox, ids)
    ctx.settings = ctx.settings.model_copy(update={"whole_reads": whole_reads})

    copy_small_runs(ctx, list(runs.values()))

    assert_each_id_copied_once(ctx, sandbox, job_id, ids)
    for ns, run_id in runs.items():
        run = jobs_and_runs.get_run(ctx.db, run_id)
        assert (run.state, run.listing_done, run.listed, run.copied, run.batches_total) == (
            RunState.COPIED,
            True,
            ids[ns],
            ids[ns],
            1,
        ), ns
    # Each run's verification, in order, all in one task once the group is done, and no message between a run's
    # listing and its copy.
    assert sent(ctx) == [("verify", run_id) for run_id in runs.values()]
    assert isinstance(ctx.dispatcher, SentTasks) and ctx.dispatcher.verify_groups == [list(runs.values())]
    # With whole reads, each namespace, listed whole, is read by one query: none takes a fetch of the index's budget.
    requests = sandbox.stats("src")["requests"]
    reads = (0, 3) if whole_reads else (3, 0)
    assert (requests["list"], requests.get("fetch", 0), requests.get("query", 0)) == (3, *reads)


def test_a_namespace_a_query_read_only_in_part_is_fetched_whole(ctx: WorkerContext, sandbox: PineconeSandbox) -> None:
    """A query that missed a listed record (Pinecone's search is approximate) is not used at all: the namespace's
    records are fetched, and each copied once, as they were before queries read them."""
    ids = {"a": 4, "b": 2}
    job_id, runs = small_job(ctx, sandbox, ids)
    ctx.settings = ctx.settings.model_copy(update={"whole_reads": True})
    sandbox.set_faults("src", dataclasses.replace(sandbox.faults("src"), query_miss_fraction=0.5))

    copy_small_runs(ctx, list(runs.values()))

    assert_each_id_copied_once(ctx, sandbox, job_id, ids)
    requests = sandbox.stats("src")["requests"]
    assert (requests["query"], requests["fetch"]) == (2, 2)


@pytest.mark.parametrize("threads", [1, 4])
def test_a_group_lists_and_copies_small_group_threads_of_its_runs_at_once(
    ctx: WorkerContext, sandbox: PineconeSandbox, threads: int
) -> None:
    """One after the other, a run's list waits for the round trips of the runs before it: a job of many small
    namespaces then leaves its fetch budget unused in its first second. ``small_group_threads`` runs go at once,
    each through its own states, and the group's verifications still go as one task in the group's order."""
    ids = {f"n{k}": 2 for k in range(8)}
    job_id, runs = small_job(ctx, sandbox, ids)
    ctx.settings = ctx.settings.model_copy(update={"small_group_threads": threads})
    sandbox.set_faults("src", Faults(latency_ms=250))

    copy_small_runs(ctx, list(runs.values()))

    assert_each_id_copied_once(ctx, sandbox, job_id, ids)
    in_flight = sandbox.stats("src")["max_requests_in_flight"]
    assert in_flight == 1 if threads == 1 else 1 < in_flight <= threads
    assert isinstance(ctx.dispatcher, SentTasks) and ctx.dispatcher.verify_groups == [list(runs.values())]


def test_a_group_sent_again_makes_good_what_its_killed_delivery_left(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """The first delivery was killed: run ``recorded`` after its batch was recorded, ``running`` mid-copy,
    ``copied`` after its run was marked copied but before its verification was sent; ``untouched`` was never
    reached. A duplicate of the first delivery cannot tell; the delivery sent again (``again``) sends the batches
    whose copy died with it and the verification, and goes on with the runs it never reached."""
    ids = {"recorded": 3, "running": 3, "copied": 3, "untouched": 3}
    job_id, runs = small_job(ctx, sandbox, ids)
    left: dict[str, int] = {}
    for ns in ("recorded", "running", "copied"):
        recorded = jobs_pages.add_batches(
            ctx.db, runs[ns], [[f"{ns}-{i:03d}" for i in range(3)]], None, listing_done=True
        )
        left[ns] = recorded.batch_ids[0]
    assert jobs_batches.start_batch(ctx.db, left["running"], "killed") is not None
    copying.copy_batch(ctx, left["copied"])
    assert state(ctx, runs["copied"]) == RunState.COPIED
    sent(ctx).clear()  # the verification the killed delivery never sent

    copy_small_runs(ctx, [runs["recorded"], runs["running"], runs["copied"]])  # a duplicate: cannot know
    assert sent(ctx) == []

    copy_small_runs(ctx, list(runs.values()), again=True)
    assert sent(ctx) == [
        ("copy", left["recorded"]),
        ("copy", left["running"]),
        ("verify", runs["copied"]),
        ("verify", runs["untouched"]),
    ]
    for _, batch_id in sent(ctx)[:2]:
        copying.copy_batch(ctx, batch_id)  # the copy tasks it sent
    assert_each_id_copied_once(ctx, sandbox, job_id, ids)
    assert {state(ctx, run_id) for run_id in runs.values()} == {RunState.COPIED}


def test_a_group_that_raises_sends_no_verification_and_its_retry_sends_them(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage after the first run was copied: the group's held verifications are not sent (the task is retried),
    and the retry (``again``) sends the copied run's verification with the others'."""
    ids = {"first": 3, "second": 3}
    _, runs = small_job(ctx, sandbox, ids)
    real_list_one_batch = listing.list_one_batch

    def outage_at_second(ctx_: WorkerContext, run_id: int, **kwargs: Any) -> int | None:
        if run_id == runs["second"]:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("the job table is down"))
        return real_list_one_batch(ctx_, run_id, **kwargs)

    monkeypatch.setattr(listing, "list_one_batch", outage_at_second)
    with pytest.raises(sa.exc.OperationalError):
        copy_small_runs(ctx, list(runs.values()))
    assert state(ctx, runs["first"]) == RunState.COPIED
    assert sent(ctx) == []

    monkeypatch.setattr(listing, "list_one_batch", real_list_one_batch)
    copy_small_runs(ctx, list(runs.values()), again=True)
    assert isinstance(ctx.dispatcher, SentTasks)
    assert ctx.dispatcher.verify_groups == [[runs["first"], runs["second"]]]


def test_a_group_verification_sent_again_keeps_the_verdicts_it_recorded(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """``verify_runs`` (the group's verification task) judges its copied runs; sent again, it leaves a judged run
    as it is (it may be on its way to cleanup) and judges only what is still to judge."""
    ids = {"a": 3, "b": 3}
    job_id, runs = small_job(ctx, sandbox, ids)
    copy_small_runs(ctx, list(runs.values()))
    verifying.verify_runs(ctx, [runs["a"]], job_id)
    judged = jobs_and_runs.get_run(ctx.db, runs["a"])
    assert judged.state == RunState.VERIFIED

    verifying.verify_runs(ctx, list(runs.values()), job_id)  # sent again, with a run it had not reached

    assert state(ctx, runs["b"]) == RunState.VERIFIED
    again = jobs_and_runs.get_run(ctx.db, runs["a"])
    assert (again.state, again.updated_at, again.verification) == (
        RunState.VERIFIED,
        judged.updated_at,
        judged.verification,
    )
    verdicts = [e["action"] for e in jobs_status.events_of(ctx.db, job_id) if e["run_id"] == runs["a"]]
    assert verdicts.count("verified") == 1


def test_a_group_verification_finishes_its_job_once_and_when_sent_again_after_its_last_verdict(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group asks once, after its verdicts, whether the job is finished. A worker that died between the last
    verdict and that question leaves the job running; the group sent again judges nothing and still finishes it."""
    ids = {"a": 3, "b": 3}
    job_id, runs = small_job(ctx, sandbox, ids)
    copy_small_runs(ctx, list(runs.values()))
    asked: list[int] = []
    real_maybe_finish_job = jobs_and_runs.maybe_finish_job

    def died_before_asking(db: jobs_database.Database, job_id_: int) -> bool:
        asked.append(job_id_)
        raise sa.exc.OperationalError("UPDATE jobs", {}, Exception("the worker died here"))

    monkeypatch.setattr(jobs_and_runs, "maybe_finish_job", died_before_asking)
    with pytest.raises(sa.exc.OperationalError):
        verifying.verify_runs(ctx, list(runs.values()), job_id)
    assert asked == [job_id]  # once for the group, after both verdicts
    assert {state(ctx, run_id) for run_id in runs.values()} == {RunState.VERIFIED}
    assert jobs_status.job_status(ctx.db, job_id).state == JobState.RUNNING

    monkeypatch.setattr(jobs_and_runs, "maybe_finish_job", real_maybe_finish_job)
    verifying.verify_runs(ctx, list(runs.values()), job_id)  # the redelivered task

    assert jobs_status.job_status(ctx.db, job_id).state == JobState.FINISHED
    verdicts = [e["action"] for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "verified"]
    assert len(verdicts) == 2  # nothing judged twice


def test_a_group_verification_of_a_job_cancelled_meanwhile_records_no_verdict_and_ends_quietly(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's runs are moved to verifying together; the job is cancelled while the first is being checked:
    no run gets a verdict, and the task ends instead of failing on the first refusal."""
    job_id, runs = small_job(ctx, sandbox, {"a": 3, "b": 3})
    copy_small_runs(ctx, list(runs.values()))
    real_run = verifying._Verifier.run

    def cancelled_meanwhile(self: Any) -> None:
        if jobs_status.job_status(ctx.db, job_id).state == JobState.RUNNING:
            jobs_and_runs.cancel_job(ctx.db, job_id, actor="tester")
        real_run(self)

    monkeypatch.setattr(verifying._Verifier, "run", cancelled_meanwhile)
    verifying.verify_runs(ctx, list(runs.values()), job_id)

    assert {state(ctx, run_id) for run_id in runs.values()} == {RunState.CANCELLED}
    actions = [e["action"] for e in jobs_status.events_of(ctx.db, job_id)]
    assert "verified" not in actions and "verify_failed" not in actions


def test_nsmigrate_verify_sends_small_namespaces_in_groups_that_judge_them_again(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """`nsmigrate verify` of a verified job: its small namespaces go several to a task, which judges them again
    (a new report and event each); a namespace of more ids than one list page goes alone, as before."""
    ids = {"a": 3, "b": 3, "big": 150}
    job_id, runs = small_job(ctx, sandbox, ids)
    copy_small_runs(ctx, list(runs.values()))
    listing.list_run(ctx, runs["big"])  # "big" had more than one page: a lister lists the rest
    for kind, batch_id in list(sent(ctx)):
        if kind == "copy":
            copying.copy_batch(ctx, batch_id)
    verifying.verify_runs(ctx, list(runs.values()), job_id)
    assert {state(ctx, run_id) for run_id in runs.values()} == {RunState.VERIFIED}
    first = {ns: jobs_and_runs.get_run(ctx.db, run_id).verification for ns, run_id in runs.items()}
    assert isinstance(ctx.dispatcher, SentTasks)
    sent_before = len(sent(ctx))

    # a job this small is otherwise cut into a task per run
    run_ids = launch.request_verification(ctx.db, ctx.dispatcher, job_id, settings=Settings(small_group_min_tasks=1))

    assert sorted(run_ids) == sorted(runs.values())
    assert ctx.dispatcher.rejudged_groups == [[runs["a"], runs["b"]]]
    assert ("verify", runs["big"]) in sent(ctx)[sent_before:]
    verifying.verify_runs(ctx, [runs["a"], runs["b"]], job_id, rejudge=True)  # the group's task
    for ns in ("a", "b"):
        again = jobs_and_runs.get_run(ctx.db, runs[ns])
        assert again.state == RunState.VERIFIED
        assert again.verification is not None and first[ns] is not None
        assert again.verification["checked_at"] != first[ns]["checked_at"]
        verdicts = [e["action"] for e in jobs_status.events_of(ctx.db, job_id) if e["run_id"] == runs[ns]]
        assert verdicts.count("verified") == 2


def test_a_namespace_that_grew_since_it_was_planned_is_listed_on_by_a_lister(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """Planned with 3 ids, it holds 250 by the time its group runs: the group copies the first batch of 100 and
    records the token after it; that batch's finish wakes a lister, which lists the rest as for any namespace."""
    ids = {"grew": 250}
    job_id, runs = small_job(ctx, sandbox, ids, planned={"grew": 3})
    run_id = runs["grew"]

    copy_small_runs(ctx, [run_id])

    run = jobs_and_runs.get_run(ctx.db, run_id)
    assert (run.state, run.listing_done, run.batches_total, run.copied) == (RunState.LISTING, False, 1, 100)
    assert run.list_token is not None
    assert sent(ctx) == [("list", run_id)]

    listing.list_run(ctx, run_id)  # the woken lister
    rest = [batch_id for kind, batch_id in sent(ctx) if kind == "copy"]
    assert len(rest) == 2
    for batch_id in rest:
        copying.copy_batch(ctx, batch_id)
    assert_each_id_copied_once(ctx, sandbox, job_id, ids)
    assert state(ctx, run_id) == RunState.COPIED
    assert sent(ctx)[-1] == ("verify", run_id)


def test_a_run_fetches_before_it_starts_when_its_slot_is_free_and_starts_before_a_slot_further_off(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """Each run's page is listed and its fetch's slot taken before the run is locked or started
    (``listing.read_ahead``). A slot free now is fetched at once and the run started after, so a job's first window
    of fetches waits for no job-table statement; a slot further off than ``START_BEFORE_SLOT_S`` has the run started
    while it waits, so only its upsert and finish follow its fetch. One fetch a second: the second run's slot is a
    window after the first's."""
    job_id, runs = small_job(ctx, sandbox, {"a": 2, "b": 2}, rate={"read_rps": 1})
    ctx.settings = ctx.settings.model_copy(update={"small_group_threads": 2})

    copy_small_runs(ctx, list(runs.values()))

    assert_each_id_copied_once(ctx, sandbox, job_id, {"a": 2, "b": 2})
    fetches = sandbox.stats("src")["first_request_times"]["fetch"]
    starts = sorted(batch.started_at.timestamp() for batch in batches_of(ctx.db, job_id) if batch.started_at)
    assert len(fetches) == len(starts) == 2
    assert fetches[1] - fetches[0] > listing.START_BEFORE_SLOT_S  # one a window: the second slot was further off
    assert fetches[0] < starts[0] < starts[1] < fetches[1]


def test_a_start_slowed_past_its_runs_fetch_slot_does_not_hold_the_fetch_back(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started while it waits for its fetch slot is fetched at the slot in another thread: a start slowed by the
    job table (here 1.2 s a start) delays its upsert, not its fetch. Sent after the slot went by, the fetch would take
    a slot of its own a window later, and every run behind it too. One fetch a second."""
    job_id, runs = small_job(ctx, sandbox, {"a": 2, "b": 2}, rate={"read_rps": 1})
    ctx.settings = ctx.settings.model_copy(update={"small_group_threads": 2})
    record_and_claim = jobs_batches.record_and_claim_batch

    def slow_start(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.2)
        return record_and_claim(*args, **kwargs)

    monkeypatch.setattr(jobs_batches, "record_and_claim_batch", slow_start)

    copy_small_runs(ctx, list(runs.values()))

    assert_each_id_copied_once(ctx, sandbox, job_id, {"a": 2, "b": 2})
    first, second = sandbox.stats("src")["first_request_times"]["fetch"]
    _, window_s = window_for(1)
    assert second - first < window_s + 0.4  # at its slot, one window after the first: not a window later still


def test_a_page_read_ahead_is_recorded_and_copied_as_read_in_the_statement_that_starts_its_run(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """The page read ahead is recorded, its batch started and the run moved on in one statement, then copied with the
    records fetched for it: no second list or fetch, and two job-table statements for the run (its start, its
    finish). Read from a token the run has moved on from, it is not recorded: the run is its other lister's."""
    job_id, runs = small_job(ctx, sandbox, {"ahead": 2, "moved": 2})
    ahead = jobs_pages.runs_to_list(ctx.db, list(runs.values()))
    assert set(ahead) == set(runs.values())
    read = listing.read_ahead(ctx, runs["ahead"], ahead[runs["ahead"]])
    assert read is not None and read.fetch is not None and read.fetch.records is not None
    requests = dict(sandbox.stats("src")["requests"])
    stale = listing.EarlyRead("a-token-moved-on-from", ["moved-000"], None, read.fetch)

    with statements_on(ctx.db) as statements:
        listed = listing.list_one_batch(ctx, runs["ahead"], early=read)
        assert listed is not None
        copying.copy_batch(ctx, listed.work.batch_id, started=listed.work, early=listed.early)
    assert listing.list_one_batch(ctx, runs["moved"], early=stale) is None

    assert_each_id_copied_once(ctx, sandbox, job_id, {"ahead": 2})
    assert len(statements) == 2
    assert dict(sandbox.stats("src")["requests"]) == requests  # neither listed nor fetched again
    assert [batch.run_id for batch in batches_of(ctx.db, job_id)] == [runs["ahead"]]
    assert state(ctx, runs["moved"]) == RunState.PENDING


def test_a_page_read_ahead_of_a_run_cancelled_meanwhile_is_not_recorded(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    """The statement that starts a run read ahead records its page only while the run may still be listed, as
    ``start_listing`` would have checked: a job cancelled between the read and the start gets no batch."""
    job_id, runs = small_job(ctx, sandbox, {"a": 2})
    read = listing.read_ahead(ctx, runs["a"], jobs_pages.runs_to_list(ctx.db, [runs["a"]])[runs["a"]])
    jobs_and_runs.cancel_job(ctx.db, job_id, actor="test")

    assert listing.list_one_batch(ctx, runs["a"], early=read) is None

    assert batches_of(ctx.db, job_id) == []
    assert state(ctx, runs["a"]) == RunState.CANCELLED
    assert sandbox.count("dst", "a") == 0


def test_an_empty_namespace_is_copied_at_once(ctx: WorkerContext, sandbox: PineconeSandbox) -> None:
    job_id, runs = small_job(ctx, sandbox, {"full": 2}, planned={"empty": 0})

    copy_small_runs(ctx, [runs["empty"], runs["full"]])

    assert [batch.run_id for batch in batches_of(ctx.db, job_id)] == [runs["full"]]  # the empty one has none
    assert state(ctx, runs["empty"]) == RunState.COPIED
    assert sent(ctx) == [("verify", runs["empty"]), ("verify", runs["full"])]


def test_a_run_whose_lister_fails_for_good_ends_list_failed_and_the_group_goes_on(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = {"ok1": 2, "refused": 2, "ok2": 2}
    job_id, runs = small_job(ctx, sandbox, ids)
    store = ctx.store(jobs_and_runs.job_spec(ctx.db, job_id).source)
    list_ids = store.list_ids

    def refusing(namespace: str, **kwargs: Any) -> Any:
        if namespace == "refused":
            raise StoreError("the source refused to list 'refused'")
        return list_ids(namespace, **kwargs)

    monkeypatch.setattr(store, "list_ids", refusing)
    with pytest.raises(GroupFailed, match=r"1 of 3 namespaces failed: refused: StoreError: the source refused"):
        copy_small_runs(ctx, list(runs.values()))  # the task ends FAILURE, naming the namespace, after the others

    failed = jobs_and_runs.get_run(ctx.db, runs["refused"])
    assert failed.state == RunState.LIST_FAILED
    assert "the source refused to list 'refused'" in (failed.last_error or "")
    assert (state(ctx, runs["ok1"]), state(ctx, runs["ok2"])) == (RunState.COPIED, RunState.COPIED)
    assert sent(ctx) == [("verify", runs["ok1"]), ("verify", runs["ok2"])]
    # a command waiting on the job is woken for it: nothing more happens to it until `nsmigrate retry`
    assert ctx.redis.lrange(job_wake_key(job_id), 0, -1) == [str(runs["refused"]).encode()]


def test_a_run_whose_lock_another_lister_holds_is_left_to_it(ctx: WorkerContext, sandbox: PineconeSandbox) -> None:
    _, runs = small_job(ctx, sandbox, {"taken": 2, "free": 2})
    other = ctx.redis.lock(lock_key(f"list:{runs['taken']}"), timeout=30, thread_local=False)
    assert other.acquire(blocking=False)
    try:
        copy_small_runs(ctx, list(runs.values()))
    finally:
        other.release()

    assert (state(ctx, runs["taken"]), state(ctx, runs["free"])) == (RunState.PENDING, RunState.COPIED)
    assert sent(ctx) == [("verify", runs["free"])]


def test_the_runs_of_a_cancelled_job_are_neither_listed_nor_copied(
    ctx: WorkerContext, sandbox: PineconeSandbox
) -> None:
    job_id, runs = small_job(ctx, sandbox, {"a": 2, "b": 2})
    jobs_and_runs.cancel_job(ctx.db, job_id, actor="test")

    copy_small_runs(ctx, list(runs.values()))

    assert batches_of(ctx.db, job_id) == []
    assert sent(ctx) == []
    assert "list" not in sandbox.stats("src")["requests"]


class Sends:
    """Stands in for the launching command's dispatcher: records the tasks it sends, by name."""

    def __init__(self) -> None:
        self.sent: list[tuple[TaskName, dict[str, Any]]] = []
        #: How many tasks each ``together`` block sent (one round trip to the broker each).
        self.blocks: list[int] = []

    def list_namespace(self, run_id: int, **kwargs: Any) -> None:
        self.sent.append((TaskName.LIST_NAMESPACE, {"run_id": run_id, **kwargs}))

    def copy_small_namespaces(self, run_ids: list[int], **kwargs: Any) -> None:
        self.sent.append((TaskName.COPY_SMALL_NAMESPACES, {"run_ids": run_ids, **kwargs}))

    @contextmanager
    def together(self) -> Iterator[None]:
        before = len(self.sent)
        yield
        self.blocks.append(len(self.sent) - before)


@pytest.mark.parametrize(("small", "per_task"), [(3, 1), (200, 3)])
def test_launch_sends_small_namespaces_in_groups_after_the_listers_of_the_others(
    job_table_url: str, small: int, per_task: int
) -> None:
    db = jobs_database.Database(job_table_url)
    spec = parse_spec(
        {
            "name": "mixed",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "batch_size": 50,
        }
    )
    counts = {"big": 5000, "two-batches": 51, **{f"s{k:03d}": k % 51 for k in range(small)}}
    plan = Plan(
        runs=[NamespacePlan(ns, ns, count, 1) for ns, count in counts.items()], estimate=Estimate(0, 0, 0, 0, 0, 0.0)
    )
    dispatcher = Sends()

    job_id = launch.launch(db, dispatcher, Prepared(spec, plan, "src", "dst"))  # type: ignore[arg-type]

    runs = {run.id: run.source_namespace for run in jobs_and_runs.runs_of(db, job_id)}
    groups = [kw for name, kw in dispatcher.sent if name == TaskName.COPY_SMALL_NAMESPACES]
    # The others' listers first, the largest first, then the groups.
    assert [name for name, _ in dispatcher.sent] == [TaskName.LIST_NAMESPACE] * 2 + [
        TaskName.COPY_SMALL_NAMESPACES
    ] * len(groups)
    assert [kw["namespace"] for _, kw in dispatcher.sent[:2]] == ["big", "two-batches"]
    sizes = [len(g["run_ids"]) for g in groups]
    assert sizes == [per_task] * (small // per_task) + ([small % per_task] if small % per_task else [])
    grouped = [runs[run_id] for g in groups for run_id in g["run_ids"]]
    assert sorted(grouped) == sorted(ns for ns in counts if ns.startswith("s"))  # each small namespace once
    assert all(g["namespaces"] == [runs[r] for r in g["run_ids"]] and g["job_id"] == job_id for g in groups)
    db.dispose()


def test_launch_sends_work_for_a_fleets_threads_before_building_the_rest(job_table_url: str) -> None:
    """Building a task takes the launching process a few ms: the first round trip to the broker carries
    ``FIRST_SENDS`` tasks, so the fleet starts on them while the others are built, then ``ROWS_PER_INSERT`` each."""
    db = jobs_database.Database(job_table_url)
    spec = parse_spec(
        {
            "name": "many",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        }
    )
    tasks = launch.FIRST_SENDS + jobs_and_runs.ROWS_PER_INSERT + 5
    plan = Plan(
        runs=[NamespacePlan(f"s{k:04d}", f"s{k:04d}", 3, 1) for k in range(tasks)],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
    )
    dispatcher = Sends()

    launch.launch(db, dispatcher, Prepared(spec, plan, "src", "dst"), settings=Settings(small_group_min_tasks=tasks))  # type: ignore[arg-type]

    assert dispatcher.blocks == [launch.FIRST_SENDS, jobs_and_runs.ROWS_PER_INSERT, 5]
    db.dispose()

"""A copy delivery held back past another delivery of its batch writes nothing more (``workers.transfer.write_fence``):
the copy task's own code, called in process, on the job table in Postgres, Redis and the local Pinecone data plane
through the real SDK.

Delivery A starts a batch and is held in its upsert's backoff (the target refuses it); an erasure of a.1 is recorded;
B, the same batch handed out again (Redis after the visibility timeout, or an operator's `resume`), starts it with
the ledger as it is now, holds a.1's records back and finishes; a.1 is erased again, everywhere, and verified. When
the storm ends, A's next attempt must not write a.1's records back where the erasure looked: it stops, neither
finishing nor failing the batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from nsmigrate.orchestrator.errors import Superseded
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import Batch, BatchState
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.transfer import write_fence
from nsmigrate.workers.transfer.write_fence import WriteFence
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_erasure_and_copies import SHARED_IDS, Dispatcher, a_copy_job, erased, shared_namespace
from tests.integration.test_verify_cleanup import DIM, make_spec
from tests.polling import wait_until

KEY_ENV = "NSMIGRATE_TEST_SUPERSEDED_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def context_with(
    job_table_url: str,
    redis_url: str,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., WorkerContext]:
    """A worker's context with these settings (``NSMIGRATE_…=value``); by default a storm outlasts the other
    delivery: short waits, attempts enough for the whole test."""

    def make(**settings: str) -> WorkerContext:
        chosen = {"NSMIGRATE_RETRY_ATTEMPTS": "200", "NSMIGRATE_RETRY_MAX_WAIT_S": "0.1", **settings}
        for name, value in chosen.items():
            monkeypatch.setenv(name, value)
        return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())

    return make


@pytest.fixture
def ctx(context_with: Callable[..., WorkerContext]) -> WorkerContext:
    return context_with()


@pytest.fixture
def store_specs(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], ...]:
    monkeypatch.setenv(KEY_ENV, "pcsk-superseded-test")
    return tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))


@pytest.fixture
def storm(sandbox: PineconeSandbox) -> Any:
    """The target refuses (503) every upsert holding a.1's first record, until the test calms it."""
    sandbox.set_faults("dst", Faults(refuse_ids=("m-000",), status_5xx=503))
    yield lambda: sandbox.set_faults("dst", Faults())
    sandbox.set_faults("dst", Faults())


def test_a_delivery_held_in_backoff_writes_nothing_once_another_started_its_batch(
    ctx: WorkerContext, store_specs: tuple, sandbox: PineconeSandbox, storm: Callable[[], None]
) -> None:
    spec = make_spec(store_specs)
    shared_namespace(ctx, spec)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")
    outcome: dict[str, Any] = {}

    def delivery_a() -> None:
        try:
            outcome["vectors"] = copying.copy_batch(ctx, batch_id)
        except Exception as e:  # reported below, with what it was
            outcome["error"] = e

    a = threading.Thread(target=delivery_a, name="delivery-a")
    a.start()
    wait_until(lambda: sandbox.stats("dst").get("injected_5xx", 0), what="A's upsert refused", timeout_s=30)
    erased(ctx, Subject("a.1"))  # a line of the ledger A did not read

    assert copying.copy_batch(ctx, batch_id, again=True, redelivered=True) == 3  # B: a.10's; a.1's held back
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)  # a.1 erased again, everywhere
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1-again", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and receipt["verified"]
    storm()  # the storm ends: A's next attempt would succeed
    a.join(timeout=60)

    assert not a.is_alive() and outcome == {"vectors": 0}
    target = ctx.store(spec.target)
    assert sorted(r.id for r in target.fetch("public-copy", SHARED_IDS)) == ["o-000", "o-001", "o-002"]
    [run] = jobs_and_runs.runs_of(ctx.db, _job_of(ctx, batch_id))
    assert run.failed == 0 and run.copied == 3
    assert _batch_state(ctx, batch_id) == BatchState.DONE
    actions = [e["action"] for e in jobs_status.events_of(ctx.db, run.job_id)]
    assert "batch_failed" not in actions


def test_a_later_delivery_writes_nothing_once_an_earlier_one_ended_the_batch_and_an_erasure_deleted(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    """D1 starts the batch, then D2 (`resume`), which fetches it and is held; D1 writes it all and ends it. a.1's
    erasure, recorded after that end, waits for no one and deletes; D2, started before it with no ledger line to hold
    a.1 back, must not write a.1's records back: the batch ended is no longer its to write."""
    spec = make_spec(store_specs)
    shared_namespace(ctx, spec)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")
    first, second = (started(ctx, batch_id, worker) for worker in ("d1", "d2"))
    fetched_by_second = copying.EarlyFetch(records=ctx.store(spec.source).fetch("public", SHARED_IDS))  # then held

    assert copying.copy_batch(ctx, batch_id, started=first) == 6
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and receipt["verified"]

    assert copying.copy_batch(ctx, batch_id, started=second, early=fetched_by_second) == 0
    target = ctx.store(spec.target)
    assert sorted(r.id for r in target.fetch("public-copy", SHARED_IDS)) == ["o-000", "o-001", "o-002"]


def test_an_older_delivery_that_gives_up_leaves_the_batch_to_the_one_that_started_it_since(
    context_with: Callable[..., WorkerContext], store_specs: tuple, storm: Callable[[], None]
) -> None:
    """D1's upsert is refused until its retries are used up, after D2 started the batch: D1's failure is not the
    batch's (it stays D2's, running), and D2 copies it."""
    impatient = context_with(NSMIGRATE_RETRY_ATTEMPTS="1")
    spec = make_spec(store_specs)
    shared_namespace(impatient, spec)
    batch_id = a_copy_job(impatient, spec, "public", "public-copy")
    first, second = (started(impatient, batch_id, worker) for worker in ("d1", "d2"))

    assert copying.copy_batch(impatient, batch_id, started=first) == 0  # no BatchFailed: nothing failed
    assert _batch_state(impatient, batch_id) == BatchState.RUNNING
    storm()
    assert copying.copy_batch(impatient, batch_id, started=second) == 6
    [run] = jobs_and_runs.runs_of(impatient.db, _job_of(impatient, batch_id))
    assert run.failed == 0 and run.copied == 6 and _batch_state(impatient, batch_id) == BatchState.DONE


def started(ctx: WorkerContext, batch_id: int, worker: str) -> jobs_batches.BatchWork:
    """A delivery's start, as ``copy_batch`` makes it: the erasure mark read, then the batch started."""
    work = write_fence.started_after_the_mark(ctx.redis, lambda: jobs_batches.start_batch(ctx.db, batch_id, worker))
    assert work is not None
    return work


def test_a_delivery_held_past_its_share_of_the_timeout_sends_its_batch_to_be_started_afresh(
    context_with: Callable[..., WorkerContext], store_specs: tuple, storm: Callable[[], None]
) -> None:
    """No other delivery took the batch over, but an erasure no longer waits for this one (0.9 s of a 1 s visibility
    timeout here): it stops writing, and a new message starts the batch with the ledger as it is then."""
    short = context_with(NSMIGRATE_VISIBILITY_TIMEOUT_S="1")
    spec = make_spec(store_specs)
    shared_namespace(short, spec)
    batch_id = a_copy_job(short, spec, "public", "public-copy")

    assert copying.copy_batch(short, batch_id) == 0  # held by the storm past 0.9 s

    assert [(kind, batch) for kind, batch, _ in short.dispatcher.sent] == [("copy", batch_id)]
    assert short.store(spec.target).fetch("public-copy", SHARED_IDS) == []
    assert _batch_state(short, batch_id) == BatchState.RUNNING  # not failed: the message sent starts it again
    storm()
    assert copying.copy_batch(short, batch_id) == 6
    assert _batch_state(short, batch_id) == BatchState.DONE


def test_a_delivery_that_outlived_the_visibility_timeout_writes_nothing(ctx: WorkerContext, store_specs: tuple) -> None:
    """An erasure stops waiting for a batch started over the visibility timeout ago (``jobs.erasure.known_runs``):
    its delivery, however alive, must stop writing before that."""
    spec = make_spec(store_specs)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")
    work = jobs_batches.start_batch(ctx.db, batch_id, "worker-a")
    assert work is not None
    lifetime = ctx.settings.visibility_timeout_s
    WriteFence(ctx.db, batch_id, work.attempt, time.monotonic(), lifetime, None).check(None)  # its own, in time
    with pytest.raises(Superseded, match="writes nothing more"):
        WriteFence(ctx.db, batch_id, work.attempt, time.monotonic() - lifetime, lifetime, None).check(None)
    again = jobs_batches.start_batch(ctx.db, batch_id, "worker-b")
    assert again is not None and again.attempt == work.attempt + 1
    with pytest.raises(Superseded, match="started again since"):
        WriteFence(ctx.db, batch_id, work.attempt, time.monotonic(), lifetime, None).check(None)


def _job_of(ctx: WorkerContext, batch_id: int) -> int:
    return jobs_and_runs.get_run(ctx.db, jobs_batches.run_of_batch(ctx.db, batch_id)).job_id


def _batch_state(ctx: WorkerContext, batch_id: int) -> BatchState:
    with ctx.db.transaction() as s:
        batch = s.get(Batch, batch_id)
        assert batch is not None
        return batch.state

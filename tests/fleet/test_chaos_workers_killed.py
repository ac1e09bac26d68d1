"""Nothing is lost when a worker or a lister is killed (SIGKILL) mid-job: the killed worker's messages come back by
Redis' redelivery (``acks_late``), a dead lister's lock expires, and listing goes on from the saved token.

The successor is a standby worker (``tests.chaos.start_standby``) booted while the job runs and given the job's
queues at the kill. The shared setup and checks are in ``tests/chaos.py``; the other kinds of fault are in the
other ``test_chaos_*.py`` files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import redis as redis_lib

from nsmigrate.orchestrator import recovery
from nsmigrate.orchestrator.jobs import jobs_and_runs, status
from nsmigrate.orchestrator.messaging.task_names import TaskName, lock_key
from nsmigrate.orchestrator.models import CLEANUP_WORKER_LOST, BatchState
from nsmigrate.workers.steps.proving import PROOF_CHUNK_IDS
from nsmigrate_sandbox.pinecone_server import Faults
from nsmigrate_sandbox.stack import Stack
from tests.chaos import (
    DST,
    FAST_RECOVERY,
    QUEUES,
    QUICK_RETRIES,
    SRC,
    assert_nothing_lost,
    assert_target_holds_source,
    chaos_spec,
    fault_landed,
    freeze_mid_batch,
    kill_frozen,
    load_source,
    slow_data_plane,
    start_standby,
    take_over,
    wait_for,
)
from tests.chaos import sandbox_indexes as sandbox_indexes
from tests.fleet_jobs import batches, start_job
from tests.flower_api import failures_of, open_flower

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_kill_9_of_a_worker_mid_batch_is_recovered_by_redelivery(stack: Stack, pool: str) -> None:
    """SIGKILL of the whole worker (pool and all) while batches run. Recovered **without** `resume`: the tasks are
    ``acks_late``, so the killed worker's messages (the batches it was running and the ones it had prefetched) stay
    in Redis' ``unacked`` set; once they are older than the visibility timeout (5 s here), the new worker's restore
    sweep puts them back on their queues and they run again. ``start_batch`` accepts a batch left ``running``, and
    the upsert is idempotent, so the second run completes it. A lister killed with the worker left its lock behind;
    the lock expires (3 s here, before the redelivery) and the redelivered lister continues from the saved token.
    A redelivered task also re-sends what its killed run may have recorded but not yet sent (the lister's queued
    batches, a copied run's verification): see ``test_chaos_exact_moments.py``. A message Redis had just handed the
    killed worker is in no queue and not unacked; the workers' stalled-run sweep sends its work again (see
    ``test_chaos_lost_messages.py``)."""
    loaded = load_source(stack, namespaces=4, per_namespace=400)
    slow_data_plane(stack, latency_ms=120)
    first = stack.start_worker(QUEUES, 6, pool=pool, name="doomed", **FAST_RECOVERY, **QUICK_RETRIES)
    successor = start_standby(stack, "successor", pool=pool, **FAST_RECOVERY, **QUICK_RETRIES)
    db, _, job_id = start_job(stack, chaos_spec(stack))

    freeze_mid_batch(first, db, job_id, total_batches=80)
    orphaned = kill_frozen(stack, first, db, job_id)
    fault_landed(stack)
    take_over(stack, successor)

    assert_nothing_lost(stack, db, job_id, loaded)
    rerun = {b.id: b.attempts for b in batches(db, job_id) if b.id in orphaned}
    assert all(n >= 2 for n in rerun.values()), rerun  # the orphans were started again, by redelivery


def test_kill_9_of_a_worker_mid_group_of_small_namespaces_is_recovered_by_redelivery(stack: Stack) -> None:
    """Small namespaces (one list page and one batch each) go several to a task that lists and copies them one after
    the other (``workers.steps.small_group``). SIGKILL of the worker mid-group: each group's message is redelivered
    (``acks_late``) and first sends what its killed run left between two steps of a run (a batch recorded or
    running with no copy task of its own, a copied run's verification), then goes on with the runs it never
    reached. Every id is still batched once, and every namespace copied whole."""
    loaded = load_source(stack, namespaces=48, per_namespace=5)
    slow_data_plane(stack, latency_ms=120)
    pool = {"pool": "threads", **FAST_RECOVERY, **QUICK_RETRIES}
    first = stack.start_worker(QUEUES, 6, name="doomed", **pool)
    successor = start_standby(stack, "successor", **pool)
    # one task a group of 16 (a job this small is otherwise cut into a task per namespace)
    db, _, job_id = start_job(stack, chaos_spec(stack), small_group_min_tasks=1)

    freeze_mid_batch(first, db, job_id, total_batches=48)
    orphaned = kill_frozen(stack, first, db, job_id)
    fault_landed(stack)
    take_over(stack, successor)

    assert_nothing_lost(stack, db, job_id, loaded)
    rerun = {b.id: b.attempts for b in batches(db, job_id) if b.id in orphaned}
    assert all(n >= 2 for n in rerun.values()), rerun  # the batches the kill left running were copied again
    assert len(batches(db, job_id)) == 48


def test_lister_killed_mid_listing_resumes_from_its_token_without_batching_an_id_twice(stack: Stack) -> None:
    """A worker that only lists is SIGKILLed while it is listing a big namespace (the in-flight bound keeps the
    listing going for the whole copy). Its lock is left behind and its wake-up flag may be too. Recovered by a new
    list worker and **`resume`**: the resumed lister waits out the dead lister's lock (3 s TTL here, refreshed while
    a lister is alive) and continues from the list token saved with the last batch. The dead lister's own task is
    redelivered too (visibility timeout); a batch is only written if the token it was listed from is still the
    saved one, so the two can never batch an id twice."""
    loaded = load_source(stack, namespaces=1, per_namespace=1200)
    stack.pinecone.set_faults(SRC, Faults(latency_ms=80))
    stack.pinecone.set_faults(DST, Faults(latency_ms=80))
    lister = stack.start_worker("list", 2, name="lister", **FAST_RECOVERY)
    # the copy worker lists too once the lister is dead: a new list worker, without a boot of its own
    copier = start_standby(stack, "copier", 4, pool="prefork", consuming="copy,verify", **FAST_RECOVERY)
    db, dispatcher, job_id = start_job(stack, chaos_spec(stack, max_batches_in_flight=3))
    run_id = jobs_and_runs.runs_of(db, job_id)[0].id
    broker = redis_lib.Redis.from_url(stack.redis_url)

    def listing_in_progress() -> bool:
        run = jobs_and_runs.get_run(db, run_id)
        return 8 <= run.batches_total <= 40 and bool(broker.exists(lock_key(f"list:{run_id}")))

    def frozen_holding_its_lock() -> bool:
        """The lister frozen (SIGSTOP) while it holds its lock: it may have let go of it since it was seen held, as
        it does each time the in-flight bound stops it; then it is thawed to go on."""
        wait_for(listing_in_progress, "the lister to be listing (lock held) after a few batches", poll_s=0.01)
        os.killpg(lister.pid, signal.SIGSTOP)
        if broker.exists(lock_key(f"list:{run_id}")):
            return True
        os.killpg(lister.pid, signal.SIGCONT)
        return False

    assert any(frozen_holding_its_lock() for _ in range(20)), "the lister never held its lock when frozen"
    stack.kill(lister, signal.SIGKILL)
    assert broker.exists(lock_key(f"list:{run_id}"))  # the dead lister's lock is still there
    at_kill = jobs_and_runs.get_run(db, run_id)
    assert not at_kill.listing_done and at_kill.list_token
    fault_landed(stack)
    take_over(stack, copier, "list")
    recovery.resume(db, dispatcher, job_id)

    assert_nothing_lost(stack, db, job_id, loaded)
    assert jobs_and_runs.get_run(db, run_id).batches_total == 60


def test_a_batch_whose_worker_is_killed_every_time_fails_with_that_reason_and_retry_copies_it(stack: Stack) -> None:
    """A batch that kills its worker whenever it runs (as the kernel's OOM killer would: SIGKILL of the pool process
    copying it) is not redelivered for ever: each death hands the message out again (``reject_on_worker_lost``), and
    once ``NSMIGRATE_BATCH_MAX_LOST_ATTEMPTS`` (2 here) deliveries died in it, the next one fails it, in the job
    table with that reason and in Flower as a FAILURE. The job's other batch is copied meanwhile; `nsmigrate retry`
    then copies the failed one once the cause is gone. The worker logs JSON lines, each naming its task's job."""
    loaded = load_source(stack, namespaces=1, per_namespace=40)  # two batches of 20
    worker = stack.start_worker(
        QUEUES, 1, pool="prefork", name="oom", NSMIGRATE_BATCH_MAX_LOST_ATTEMPTS="2", NSMIGRATE_LOG_FORMAT="json"
    )
    flower = open_flower(stack, "oom")
    # The source answers slowly from the job's first request on: each delivery of a batch is caught mid-copy.
    db, _, job_id = start_job(stack, chaos_spec(stack), after_plan=lambda: slow_data_plane(stack, 1000, (SRC,)))

    def first_batch_running(attempt: int) -> int | None:
        first = batches(db, job_id)[:1]
        started = [b.id for b in first if b.state == BatchState.RUNNING and b.attempts == attempt]
        return started[0] if started else None

    doomed = None
    for attempt in (1, 2):  # killed in each delivery, the way out of memory kills it
        doomed = wait_for(lambda a=attempt: first_batch_running(a), f"delivery {attempt} of the first batch to run")
        [pool_process] = psutil.Process(worker.pid).children()
        pool_process.send_signal(signal.SIGKILL)
        pool_process.wait(10)

    def failed() -> object | None:
        row = next(b for b in batches(db, job_id) if b.id == doomed)
        return row if row.state == BatchState.FAILED else None

    row = wait_for(failed, "the batch to fail after its second lost delivery")
    assert (row.attempts, row.lost_attempts) == (3, 2)  # the third delivery failed it without copying
    assert "the worker copying this batch died 2 times" in (row.last_error or ""), row.last_error
    [failure] = failures_of(flower, TaskName.COPY_BATCH)
    assert failure["kwargs"]["batch_id"] == doomed and "died 2 times" in failure["exception"], failure
    wait_for(lambda: [b.state for b in batches(db, job_id)] == ["failed", "done"], "the other batch to be copied")
    fault_landed(stack)
    # Its log (NSMIGRATE_LOG_FORMAT=json) is JSON lines, the batch's failure among them with its job and namespace.
    lines = [json.loads(line) for line in (stack.workdir / "worker-oom.log").read_text().splitlines() if line]
    [why] = [line for line in lines if "died 2 times" in line["message"]]
    assert (why["level"], why["job_id"], why["namespace"], why["batch_id"]) == ("ERROR", job_id, "ns0", doomed)

    retried = subprocess.run(
        [sys.executable, "-m", "nsmigrate", "retry", str(job_id)], env=stack.env(), capture_output=True, text=True
    )
    assert retried.returncode == 0, retried.stderr
    assert_nothing_lost(stack, db, job_id, loaded)
    flower.close()
    db.dispose()


def test_a_cleanup_whose_worker_is_killed_mid_delete_is_taken_up_by_its_redelivery(stack: Stack) -> None:
    """SIGKILL of the worker while its cleanup (``cleanup.mode: auto``) deletes the source chunk by chunk: the run
    is left ``cleaning``, part of its source gone, the cleanup's lock no longer refreshed. The task is redelivered
    (``acks_late``, 5 s here) to the successor, which waits out the dead cleanup's locks (3 s here), takes the run
    up as a cleanup stopped part-way (``cleanup_taken_up``), proves every id left against its copy and deletes it:
    the source is emptied, the target holds every vector, and the job finishes, with no `resume` nor `cancel`."""
    loaded = load_source(stack, namespaces=1, per_namespace=PROOF_CHUNK_IDS + 200)  # two chunks of deletes
    # the dead cleanup's locks, its run's and the namespaces' of the chunk it was deleting, expire within 3 s
    locks = {"NSMIGRATE_CLEANUP_LOCK_TTL_S": "3", "NSMIGRATE_NAMESPACE_LOCK_TTL_S": "3"}
    recovery_env = {**FAST_RECOVERY, **locks, **QUICK_RETRIES}
    # copies and verifies, and is the cleanup's successor; the cleanup waits on its queue for the doomed worker
    successor = start_standby(stack, "successor", consuming=QUEUES, **recovery_env)
    db, _, job_id = start_job(stack, chaos_spec(stack, batch_size=200, cleanup={"mode": "auto"}))
    [run] = jobs_and_runs.runs_of(db, job_id)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    wait_for(lambda: broker.llen("cleanup") == 1, "the namespace verified, its cleanup queued", timeout_s=60)
    slow_data_plane(stack, latency_ms=300, indexes=(DST,))  # each chunk's proof waits on the target: caught between
    doomed = stack.start_worker("cleanup", 2, name="doomed", **recovery_env)

    def deleting() -> bool:
        left = stack.pinecone.count(SRC, "ns0")
        return jobs_and_runs.get_run(db, run.id).state == "cleaning" and 0 < left < len(loaded["ns0"])

    wait_for(deleting, "the cleanup to have deleted part of the source", timeout_s=60, poll_s=0.02)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    left_by_the_kill = stack.pinecone.count(SRC, "ns0")
    assert jobs_and_runs.get_run(db, run.id).state == "cleaning"
    fault_landed(stack)
    take_over(stack, successor, "cleanup")

    cleaned = wait_for(
        lambda: (r := jobs_and_runs.get_run(db, run.id)).state == "cleaned" and r,
        "the successor to take the cleanup up and end it",
        timeout_s=90,
        explain=lambda: (stack.workdir / "worker-successor.log").read_text()[-3000:],
    )
    assert 0 < left_by_the_kill < len(loaded["ns0"]) and stack.pinecone.count(SRC, "ns0") == 0
    assert_target_holds_source(stack, loaded)
    assert cleaned.cleanup[CLEANUP_WORKER_LOST] and cleaned.cleanup["deleted_count"] >= left_by_the_kill
    actions = [e["action"] for e in status.events_of(db, job_id)]
    assert actions.count("cleanup_taken_up") == 1 and actions.count("source_deleted") == 1, actions
    assert jobs_and_runs.find_job(db, job_id).state == "finished"
    db.dispose()

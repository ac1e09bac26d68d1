"""Nothing is lost when messages are: one taken off its queue by a worker that died before Redis recorded it as
unacknowledged (the fleet's sweep for stalled runs sends its work again), and every message gone with a broker
failover (`nsmigrate resume` sends again what the job table says is left).

The shared setup and checks are in ``tests/chaos.py``; the other kinds of fault are in the other
``test_chaos_*.py`` files.
"""

from __future__ import annotations

import pytest
import redis as redis_lib

from nsmigrate.orchestrator import recovery
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate_sandbox.stack import Stack
from tests.chaos import (
    FAST_RECOVERY,
    QUEUES,
    QUICK_RETRIES,
    SRC,
    assert_nothing_lost,
    assert_target_holds_source,
    chaos_spec,
    freeze_mid_batch,
    kill_and_lose_its_messages,
    load_source,
    slow_data_plane,
    start_standby,
    take_over,
    wait_for,
)
from tests.chaos import sandbox_indexes as sandbox_indexes
from tests.fleet_jobs import start_job

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("lost", ["lister", "copy", "small-namespaces"])
def test_a_message_lost_on_its_way_to_a_killed_worker_is_sent_again_without_resume(stack: Stack, lost: str) -> None:
    """kombu's Redis transport takes a message off its queue (BRPOP) before it records it as unacknowledged, so a
    worker killed in between takes the message along and Redis has nothing to redeliver. (Seen with a real worker:
    SIGSTOP it while its BRPOP is blocked, publish a task, SIGKILL it: the task is in no queue and not unacked. Under
    load a kill -9 mid-job lands there now and then, and left a run ``listing`` or a batch ``queued`` for ever.)
    Played here by taking the message off its queue as that BRPOP does. The job table still says what is left, and
    the fleet sends it again once the run saw no change for the visibility timeout (5 s here): no `resume`. The
    surviving worker consumes none of the lost message's queue (only ``list`` when a lister must make copy tasks)
    until the message is taken; then it takes every queue."""
    # "small-namespaces": namespaces of one page and one batch, listed and copied by one task each (a group).
    loaded = load_source(stack, namespaces=2, per_namespace=10 if lost == "small-namespaces" else 100)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    recovery_env = {**FAST_RECOVERY, **QUICK_RETRIES}
    if lost in ("lister", "small-namespaces"):
        survivor = start_standby(stack, "survivor", 4, **recovery_env)
        db, _, job_id = start_job(stack, chaos_spec(stack))  # no worker on their queue: the tasks wait there
    else:
        survivor = start_standby(stack, "survivor", 4, consuming="list", **recovery_env)
        db, _, job_id = start_job(stack, chaos_spec(stack))
        wait_for(lambda: broker.llen("copy") >= 3, "copy tasks waiting in their queue (no copy worker yet)")
    if lost == "small-namespaces":
        assert (broker.llen("list"), broker.llen("copy")) == (0, 2)  # no lister: a task each on the copy queue
    queue = {"lister": "list", "copy": "copy", "small-namespaces": "copy"}[lost]
    assert broker.rpop(queue) is not None  # the oldest: taken by a worker that died
    take_over(stack, survivor, QUEUES)

    assert_nothing_lost(stack, db, job_id, loaded)
    assert "stalled_runs_resent" in [e["action"] for e in jobs_status.events_of(db, job_id)]


def test_resume_recovers_batches_left_running_whose_messages_are_gone(stack: Stack) -> None:
    """SIGKILL of the worker, and this time its messages are gone too (the ``unacked`` set and the queues are
    emptied, as after a broker failover), and the new worker runs with the production visibility timeout (an hour):
    nothing would ever come back by itself. Recovered by **`nsmigrate resume`** (``recovery.resume``): it re-enqueues
    every batch still ``queued`` or ``running`` in the job table and every unfinished lister."""
    loaded = load_source(stack, namespaces=3, per_namespace=400)
    slow_data_plane(stack, latency_ms=120)
    lock_ttl = {"NSMIGRATE_LISTER_LOCK_TTL_S": "3", **QUICK_RETRIES}
    first = stack.start_worker(QUEUES, 6, pool="threads", name="doomed", **lock_ttl)
    successor = start_standby(stack, "successor", **lock_ttl)
    db, dispatcher, job_id = start_job(stack, chaos_spec(stack))

    freeze_mid_batch(first, db, job_id, total_batches=60)
    stuck = kill_and_lose_its_messages(stack, first, db, job_id, successor)

    counts = recovery.resume(db, dispatcher, job_id)

    assert counts["batches"] >= len(stuck)
    assert_nothing_lost(stack, db, job_id, loaded)


def test_a_lost_automatic_cleanup_is_sent_again_without_resume(stack: Stack) -> None:
    """``cleanup.mode: auto``: each verdict that passes sends its namespace's cleanup, and nothing else would. Its
    message lost (taken off its queue by a worker that died), the run stayed ``verified`` and its source in place for
    ever, the job called finished. The sweep sends it again once the run saw no change for the visibility timeout (5 s
    here), a finished job's too (a verified run is final): every source namespace is deleted, each proved against its
    copy."""
    loaded = load_source(stack, namespaces=2, per_namespace=100)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    # copies and verifies; nothing takes a cleanup until one is lost
    survivor = start_standby(stack, "survivor", 4, consuming=QUEUES, **FAST_RECOVERY, **QUICK_RETRIES)
    db, _, job_id = start_job(stack, chaos_spec(stack, cleanup={"mode": "auto"}))
    wait_for(lambda: broker.llen("cleanup") == 2, "both namespaces verified, their cleanups queued")
    assert broker.rpop("cleanup") is not None  # the oldest: taken by a worker that died
    take_over(stack, survivor, "cleanup")

    def both_cleaned() -> bool:
        return [r.state for r in jobs_and_runs.runs_of(db, job_id)] == ["cleaned", "cleaned"]

    wait_for(both_cleaned, "both namespaces cleaned up", timeout_s=90)
    assert jobs_and_runs.find_job(db, job_id).state == "finished"
    assert all(stack.pinecone.count(SRC, ns) == 0 for ns in loaded)
    assert_target_holds_source(stack, loaded)
    resent = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "stalled_runs_resent"]
    assert len(resent) == 1 and resent[0]["detail"]["cleanups"] == 1, resent
    db.dispose()

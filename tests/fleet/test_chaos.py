"""Nothing is lost under faults: kill -9 of a worker or of a lister, a Redis restart, a Postgres restart, a cancel.

Real `nsmigrate worker` processes, real Redis and Postgres, the real Pinecone SDK against the local data plane. The
data plane answers slowly (``Faults(latency_ms=…)``) so that every fault lands mid-job; when to strike is decided by
polling the job table (some batches done, not all), never by a fixed sleep. After each fault the tests check the
data itself: every source id is in the target with equal values and metadata (read back with the SDK), every id was
put in exactly one batch, every batch row is ``done`` and nothing failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import redis as redis_lib
import sqlalchemy as sa
from pinecone import Pinecone

from orchestrator import jobs, recovery
from orchestrator.errors import StateError
from orchestrator.messaging.task_names import lock_key
from orchestrator.models import BatchState, NamespaceRun, RunState
from orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from orchestrator.spec.jobspec import parse_spec
from sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from sandbox.services import PostgresServer, RedisServer
from sandbox.stack import SANDBOX_API_KEY, Stack, wait_for_workers
from tests.fleet_jobs import batches, start_job
from tests.polling import wait_until
from tests.sent_tasks import SentTasks, sent
from workers import copying, listing
from workers.context import WorkerContext
from workers.next_steps import lister_wake_key

pytestmark = pytest.mark.chaos

SRC, DST = "chaos-src", "chaos-dst"
DIM = 16
#: Worker settings that make a dead worker's work come back within seconds instead of the production hour:
#: Redis redelivers an unacknowledged task after 5 s, and a dead lister's lock expires after 3 s.
FAST_RECOVERY = {"NSMIGRATE_VISIBILITY_TIMEOUT_S": "5", "NSMIGRATE_LISTER_LOCK_TTL_S": "3"}
#: Short store retries: an outage of the job table or of Redis must not be hidden behind minutes of backoff.
QUICK_RETRIES = {"NSMIGRATE_RETRY_ATTEMPTS": "8", "NSMIGRATE_RETRY_MAX_WAIT_S": "1"}

Loaded = dict[str, dict[str, tuple[list[float], dict[str, Any]]]]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------- helpers


def make_stack(
    redis_url: str, database_url: str, workdir: Path, servers: list[RedisServer | PostgresServer] | None = None
) -> Stack:
    sandbox = PineconeSandbox(indexes=[IndexSpec(SRC, dimension=DIM), IndexSpec(DST, dimension=DIM)]).start()
    return Stack(
        redis_url=redis_url, database_url=database_url, pinecone=sandbox, workdir=workdir, servers=list(servers or [])
    )


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SRC, dimension=DIM), IndexSpec(DST, dimension=DIM)]


def load_source(stack: Stack, namespaces: int, per_namespace: int) -> Loaded:
    """``namespaces`` × ``per_namespace`` random vectors with metadata in the source index; returns what was loaded."""
    rng = np.random.default_rng(42)
    loaded: Loaded = {}
    for n in range(namespaces):
        ns = f"ns{n}"
        records = {
            f"{ns}-{i:05d}": (rng.random(DIM).astype(np.float32).tolist(), {"n": n, "i": i, "tag": f"t{i % 7}"})
            for i in range(per_namespace)
        }
        stack.pinecone.load(SRC, ns, [(vid, values, meta) for vid, (values, meta) in records.items()])
        loaded[ns] = records
    return loaded


def chaos_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "chaos",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(SRC)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(DST)},
        "batch_size": 20,
        "max_batches_in_flight": 8,
        "rate": {"read_rps": 1000, "list_rps": 1000, "write_rps": 1000},
    }
    spec.update(overrides)
    return spec


def slow_data_plane(stack: Stack, latency_ms: float) -> None:
    for index in (SRC, DST):
        stack.pinecone.set_faults(index, Faults(latency_ms=latency_ms))


#: What a probe raises while Redis or Postgres is down or restarting.
SERVICE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, redis_lib.ConnectionError)


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout_s: float = 60,
    poll_s: float = 0.05,
    explain: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout_s`` saying what we waited for
    (and ``explain()``). A probe that hits a service mid-restart (connection refused) is simply asked again."""
    result = wait_until(
        probe, what=what, timeout_s=timeout_s, interval_s=poll_s, retry_on=SERVICE_DOWN, explain=explain
    )
    assert result is not None
    return result


def batch_states(db: jobs.Database, job_id: int) -> Counter[str]:
    return Counter(b.state for b in batches(db, job_id))


def mid_copy(db: jobs.Database, job_id: int, total_batches: int, *, min_done: int = 10) -> Callable[[], bool]:
    """True while the copy is in full swing: some batches done, some running, most still to do."""

    def probe() -> bool:
        states = batch_states(db, job_id)
        return min_done <= states[BatchState.DONE] <= total_batches // 2 and states[BatchState.RUNNING] > 0

    return probe


def freeze_mid_batch(worker: subprocess.Popen[bytes], db: jobs.Database, job_id: int, total_batches: int) -> set[int]:
    """Stop (SIGSTOP) the worker and everything it forked while batches run: the ids of its running batches. They are
    read once it is stopped, so none can finish between the look and a kill (on a loaded machine all of them once
    did); when none runs at that moment, it goes on (SIGCONT) and is stopped again later."""
    while True:
        wait_for(mid_copy(db, job_id, total_batches), "batches to be running mid-copy")
        os.killpg(worker.pid, signal.SIGSTOP)
        running = {b.id for b in batches(db, job_id) if b.state == BatchState.RUNNING}
        if running:
            return running
        os.killpg(worker.pid, signal.SIGCONT)


def all_verified(db: jobs.Database, job_id: int) -> Callable[[], jobs.JobStatus | None]:
    def probe() -> jobs.JobStatus | None:
        status = jobs.job_status(db, job_id)
        return status if all(r.state == RunState.VERIFIED for r in status.runs) else None

    return probe


def target_index(stack: Stack) -> Any:
    return Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(DST))


def fetch_all(index: Any, namespace: str, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 200):  # ids travel in the query string: keep the URL short
        out.update(index.fetch(ids=ids[start : start + 200], namespace=namespace).vectors)
    return out


def assert_target_holds_source(stack: Stack, loaded: Loaded) -> None:
    """Read the target back with the SDK: every source id present, values equal (float32), source metadata kept."""
    index = target_index(stack)
    for ns, records in loaded.items():
        fetched = fetch_all(index, ns, sorted(records))
        missing = set(records) - set(fetched)
        assert not missing, f"{len(missing)} ids of {ns} are not in the target, e.g. {sorted(missing)[:5]}"
        for vid, (values, meta) in records.items():
            got = fetched[vid]
            np.testing.assert_allclose(
                np.asarray(got.values, dtype=np.float32),
                np.asarray(values, dtype=np.float32),
                rtol=0,
                atol=1e-6,
                err_msg=vid,
            )
            assert {k: got.metadata.get(k) for k in meta} == meta, vid
        assert stack.pinecone.count(DST, ns) == len(records), ns  # and nothing else was written there


def assert_each_id_batched_once(db: jobs.Database, job_id: int, loaded: Loaded) -> None:
    with db.transaction() as s:
        run_ns = dict(
            s.execute(
                sa.select(NamespaceRun.id, NamespaceRun.source_namespace).where(NamespaceRun.job_id == job_id)
            ).all()
        )
    seen: dict[str, Counter[str]] = {ns: Counter() for ns in loaded}
    for b in batches(db, job_id):
        seen[run_ns[b.run_id]].update(b.ids)
    for ns, records in loaded.items():
        twice = [vid for vid, n in seen[ns].items() if n > 1]
        assert not twice, f"{len(twice)} ids of {ns} were put in more than one batch, e.g. {twice[:5]}"
        assert set(seen[ns]) == set(records), ns


def assert_nothing_lost(stack: Stack, db: jobs.Database, job_id: int, loaded: Loaded) -> jobs.JobStatus:
    """The job finished well and the data says so too."""

    def explain() -> object:
        return [
            {k: r.as_dict()[k] for k in ("source_namespace", "state", "listed", "copied", "batches", "last_error")}
            for r in jobs.job_status(db, job_id).runs
        ]

    status = wait_for(all_verified(db, job_id), "every namespace verified", timeout_s=90, explain=explain)
    states = batch_states(db, job_id)
    assert set(states) == {BatchState.DONE}, states
    assert status.totals.failed == 0
    assert status.totals.copied == sum(len(r) for r in loaded.values())
    assert_each_id_batched_once(db, job_id, loaded)
    assert_target_holds_source(stack, loaded)
    for ns, records in loaded.items():  # the copy never deletes from the source
        assert stack.pinecone.count(SRC, ns) == len(records)
    return status


def kill_and_lose_its_messages(
    stack: Stack, worker: subprocess.Popen[bytes], db: jobs.Database, job_id: int
) -> set[int]:
    """SIGKILL ``worker``, empty the queues and Redis' ``unacked`` set (as after a broker failover), and start a
    successor with the production visibility timeout: nothing comes back by itself. Returns the batches left
    ``running``."""
    stack.kill(worker, signal.SIGKILL)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    broker.delete("unacked", "unacked_index", "list", "copy", "verify")
    stuck = {b.id for b in batches(db, job_id) if b.state == BatchState.RUNNING}
    assert stuck
    stack.start_worker("list,copy,verify", 6, name="successor", NSMIGRATE_LISTER_LOCK_TTL_S="3", **QUICK_RETRIES)
    return stuck


# ---------------------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_kill_9_of_a_worker_mid_batch_is_recovered_by_redelivery(stack: Stack, pool: str) -> None:
    """SIGKILL of the whole worker (pool and all) while batches run. Recovered **without** `resume`: the tasks are
    ``acks_late``, so the killed worker's messages (the batches it was running and the ones it had prefetched) stay
    in Redis' ``unacked`` set; once they are older than the visibility timeout (5 s here), the new worker's restore
    sweep puts them back on their queues and they run again. ``start_batch`` accepts a batch left ``running``, and
    the upsert is idempotent, so the second run completes it. A lister killed with the worker left its lock behind;
    the lock expires (3 s here, before the redelivery) and the redelivered lister continues from the saved token.
    A redelivered task also re-sends what its killed run may have recorded but not yet sent (the lister's queued
    batches, a copied run's verification): see the two exact-moment tests below. A message Redis had just handed the
    killed worker is in no queue and not unacked; the workers' stalled-run sweep sends its work again (see
    ``test_a_message_lost_on_its_way_to_a_killed_worker_is_sent_again_without_resume``)."""
    loaded = load_source(stack, namespaces=4, per_namespace=400)
    slow_data_plane(stack, latency_ms=120)
    first = stack.start_worker("list,copy,verify", 6, pool=pool, name="doomed", **FAST_RECOVERY, **QUICK_RETRIES)
    db, _, job_id = start_job(stack, chaos_spec(stack))

    orphaned = freeze_mid_batch(first, db, job_id, total_batches=80)
    stack.kill(first, signal.SIGKILL)
    stack.start_worker("list,copy,verify", 6, pool=pool, name="successor", **FAST_RECOVERY, **QUICK_RETRIES)

    assert_nothing_lost(stack, db, job_id, loaded)
    rerun = {b.id: b.attempts for b in batches(db, job_id) if b.id in orphaned}
    assert all(n >= 2 for n in rerun.values()), rerun  # the orphans were started again, by redelivery


def test_kill_9_of_a_worker_mid_group_of_small_namespaces_is_recovered_by_redelivery(stack: Stack) -> None:
    """Small namespaces (one list page and one batch each) go several to a task that lists and copies them one after
    the other (``workers.small_group``). SIGKILL of the worker mid-group: each group's message is redelivered
    (``acks_late``) and first sends what its killed run left between two steps of a run (a batch recorded or
    running with no copy task of its own, a copied run's verification), then goes on with the runs it never
    reached. Every id is still batched once, and every namespace copied whole."""
    loaded = load_source(stack, namespaces=48, per_namespace=5)
    slow_data_plane(stack, latency_ms=120)
    pool = {"pool": "threads", **FAST_RECOVERY, **QUICK_RETRIES}
    first = stack.start_worker("list,copy,verify", 6, name="doomed", **pool)
    # one task a group of 16 (a job this small is otherwise cut into a task per namespace)
    db, _, job_id = start_job(stack, chaos_spec(stack), small_group_min_tasks=1)

    orphaned = freeze_mid_batch(first, db, job_id, total_batches=48)
    stack.kill(first, signal.SIGKILL)
    stack.start_worker("list,copy,verify", 6, name="successor", **pool)

    assert_nothing_lost(stack, db, job_id, loaded)
    rerun = {b.id: b.attempts for b in batches(db, job_id) if b.id in orphaned}
    assert all(n >= 2 for n in rerun.values()), rerun  # the batches the kill left running were copied again
    assert len(batches(db, job_id)) == 48


@pytest.mark.parametrize("lost", ["lister", "copy", "small-namespaces"])
def test_a_message_lost_on_its_way_to_a_killed_worker_is_sent_again_without_resume(stack: Stack, lost: str) -> None:
    """kombu's Redis transport takes a message off its queue (BRPOP) before it records it as unacknowledged, so a
    worker killed in between takes the message along and Redis has nothing to redeliver. (Seen with a real worker:
    SIGSTOP it while its BRPOP is blocked, publish a task, SIGKILL it: the task is in no queue and not unacked. Under
    load a kill -9 mid-job lands there now and then, and left a run ``listing`` or a batch ``queued`` for ever.)
    Played here by taking the message off its queue as that BRPOP does. The job table still says what is left, and
    the fleet sends it again once the run saw no change for the visibility timeout (5 s here): no `resume`."""
    # "small-namespaces": namespaces of one page and one batch, listed and copied by one task each (a group).
    loaded = load_source(stack, namespaces=2, per_namespace=10 if lost == "small-namespaces" else 100)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    if lost in ("lister", "small-namespaces"):
        db, _, job_id = start_job(stack, chaos_spec(stack))  # no worker yet: the tasks wait in their queue
    else:
        stack.start_worker("list", 2, name="lister", **FAST_RECOVERY)
        db, _, job_id = start_job(stack, chaos_spec(stack))
        wait_for(lambda: broker.llen("copy") >= 3, "copy tasks waiting in their queue (no copy worker yet)")
    if lost == "small-namespaces":
        assert (broker.llen("list"), broker.llen("copy")) == (0, 2)  # no lister: a task each on the copy queue
    queue = {"lister": "list", "copy": "copy", "small-namespaces": "copy"}[lost]
    assert broker.rpop(queue) is not None  # the oldest: taken by a worker that died
    stack.start_worker("list,copy,verify", 4, name="survivor", **FAST_RECOVERY, **QUICK_RETRIES)

    assert_nothing_lost(stack, db, job_id, loaded)
    assert "stalled_runs_resent" in [e["action"] for e in jobs.events_of(db, job_id)]


def test_resume_recovers_batches_left_running_whose_messages_are_gone(stack: Stack) -> None:
    """SIGKILL of the worker, and this time its messages are gone too (the ``unacked`` set and the queues are
    emptied, as after a broker failover), and the new worker runs with the production visibility timeout (an hour):
    nothing would ever come back by itself. Recovered by **`nsmigrate resume`** (``recovery.resume``): it re-enqueues
    every batch still ``queued`` or ``running`` in the job table and every unfinished lister."""
    loaded = load_source(stack, namespaces=3, per_namespace=400)
    slow_data_plane(stack, latency_ms=120)
    first = stack.start_worker("list,copy,verify", 6, name="doomed", NSMIGRATE_LISTER_LOCK_TTL_S="3", **QUICK_RETRIES)
    db, dispatcher, job_id = start_job(stack, chaos_spec(stack))

    wait_for(mid_copy(db, job_id, total_batches=60), "batches to be running mid-copy")
    stuck = kill_and_lose_its_messages(stack, first, db, job_id)

    counts = recovery.resume(db, dispatcher, job_id)

    assert counts["batches"] >= len(stuck)
    assert_nothing_lost(stack, db, job_id, loaded)


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
    stack.start_worker("copy,verify", 4, name="copier", **FAST_RECOVERY)
    db, dispatcher, job_id = start_job(stack, chaos_spec(stack, max_batches_in_flight=3))
    run_id = jobs.runs_of(db, job_id)[0].id
    broker = redis_lib.Redis.from_url(stack.redis_url)

    def listing_in_progress() -> bool:
        run = jobs.get_run(db, run_id)
        return 8 <= run.batches_total <= 40 and bool(broker.exists(lock_key(f"list:{run_id}")))

    wait_for(listing_in_progress, "the lister to be listing (lock held) after a few batches", poll_s=0.01)
    stack.kill(lister, signal.SIGKILL)
    assert broker.exists(lock_key(f"list:{run_id}"))  # the dead lister's lock is still there
    at_kill = jobs.get_run(db, run_id)
    assert not at_kill.listing_done and at_kill.list_token
    stack.start_worker("list", 2, name="lister2", **FAST_RECOVERY)
    recovery.resume(db, dispatcher, job_id)

    assert_nothing_lost(stack, db, job_id, loaded)
    assert jobs.get_run(db, run_id).batches_total == 60


@pytest.mark.parametrize(
    ("pool", "crash"),
    [("prefork", False), ("threads", False), ("threads", True), ("prefork", True)],  # threads: events on a timer
    ids=["prefork-stop", "threads-stop", "threads-kill9", "prefork-kill9"],
)
def test_redis_restart_mid_job_loses_the_queues_and_resume_brings_them_back(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str, crash: bool
) -> None:
    """Redis (which keeps nothing on disk) is stopped (SIGTERM) or killed (SIGKILL) and started again on the same
    port mid-job: every queued message, every unacknowledged one, the lister locks and the rate buckets are gone.
    The workers reconnect by themselves (Celery's broker reconnect) and stay up, and the tasks that were running
    finish; **`resume`** re-enqueues the batches the job table still has as ``queued``/``running`` (their messages
    died with Redis) and the listers."""
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    redis_server = RedisServer().start()
    stack = make_stack(redis_server.url, database_url, tmp_path, servers=[redis_server])
    try:
        loaded = load_source(stack, namespaces=4, per_namespace=400)
        slow_data_plane(stack, latency_ms=120)
        stack.start_worker("list,copy,verify", 6, pool=pool, name="survivor", **FAST_RECOVERY, **QUICK_RETRIES)
        db, dispatcher, job_id = start_job(stack, chaos_spec(stack))

        wait_for(mid_copy(db, job_id, total_batches=80), "batches to be running mid-copy")
        broker = redis_lib.Redis.from_url(redis_server.url)
        in_redis = broker.hlen("unacked") + sum(broker.llen(q) for q in ("list", "copy", "verify"))
        assert in_redis > 0  # messages that the restart is about to lose
        if crash:
            redis_server.crash()
        else:
            redis_server.stop()
        redis_server.start()

        counts = recovery.resume(db, dispatcher, job_id)

        assert counts["batches"] > 0  # batches whose messages died with Redis
        assert_nothing_lost(stack, db, job_id, loaded)
        assert all(p.poll() is None for p in stack.processes)  # the same worker did it all: it reconnected
    finally:
        stack.stop()


#: A threads worker (the app `nsmigrate worker` runs) with one extra consumer step that fails the way kombu does when it
#: tears down a dead Redis connection's channels: on the first start after the broker was lost.
KOMBU_TEARDOWN_FAULT = """
import os
from celery import bootsteps
from orchestrator.settings import load_settings
from workers.app import configure

class KombuTeardownFault(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)
    fired = False

    def start(self, c):
        if c.restart_count > 0 and not KombuTeardownFault.fired:  # -1 before the first start
            KombuTeardownFault.fired = True
            os.write(1, b"injecting the kombu teardown fault\\n")  # Celery redirects sys.stdout to its logger
            raise AttributeError("'NoneType' object has no attribute 'hostname'")

app = configure(load_settings())
app.steps["consumer"].add(KombuTeardownFault)
app.worker_main(["worker", "-Q", "copy", "-P", "threads", "-c", "2", "-n", "faulty@%h",
                 "--without-mingle", "--without-gossip", "-l", "WARNING"])
"""


def test_a_worker_reconnects_when_kombu_fails_tearing_down_a_killed_redis_connection(
    tmp_path: Path, database_url: str
) -> None:
    """After Redis is SIGKILLed and restarted, an error other than a connection error escaping the consumer while it
    reconnects (kombu's ``'NoneType' object has no attribute 'hostname'``) made Celery exit the worker
    ("Unrecoverable error"). The worker now reconnects instead, and answers on the restarted Redis."""
    redis_server = RedisServer().start()
    stack = Stack(
        redis_url=redis_server.url,
        database_url=database_url,
        pinecone=PineconeSandbox(indexes=[]),
        workdir=tmp_path,
        servers=[redis_server],
    )
    log_path = tmp_path / "faulty-worker.log"
    try:
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", KOMBU_TEARDOWN_FAULT],
                env=stack.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.processes.append(worker)
        wait_for_workers(redis_server.url, 1)

        redis_server.crash()
        redis_server.start()

        def answers_after_the_fault() -> bool:
            output = log_path.read_text(errors="replace")
            assert worker.poll() is None, output[-3000:]  # it exited
            if "injecting the kombu teardown fault" not in output:
                return False  # still to reconnect
            try:
                return bool(wait_for_workers(redis_server.url, 1, timeout_s=1))
            except TimeoutError:
                return False

        wait_for(
            answers_after_the_fault,
            "the worker to answer on the restarted Redis",
            timeout_s=60,
            explain=lambda: log_path.read_text(errors="replace")[-3000:],
        )
        assert "Unrecoverable error" not in log_path.read_text(errors="replace")
        assert worker.poll() is None
    finally:
        stack.stop()


@pytest.mark.parametrize("crashes", [0, 2], ids=["fast-stop", "kill9-twice"])
def test_postgres_restart_mid_job_leaves_no_half_written_state(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashes: int
) -> None:
    """The job table's Postgres is stopped (fast shutdown: open transactions abort), or killed with SIGKILL twice
    (a crash: no shutdown at all), and started again on the same port and data directory mid-job. A task that hits
    the outage changes nothing (every state change is one transaction) and raises; its batch stays ``queued`` or
    ``running``, never ``failed`` and never half-done. Recovered by **Celery retrying those tasks**
    (``autoretry_for`` the job table's connection errors, with backoff): the job completes with no operator action,
    no `resume` and no `retry`. `resume` afterwards finds nothing left to do (it is the fallback when an outage
    outlasts the task retries)."""
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    pg = PostgresServer().start()
    stack = make_stack(redis_url, pg.url, tmp_path, servers=[pg])
    try:
        loaded = load_source(stack, namespaces=4, per_namespace=400)
        slow_data_plane(stack, latency_ms=120)
        stack.start_worker("list,copy,verify", 6, name="survivor", **FAST_RECOVERY, **QUICK_RETRIES)
        db, dispatcher, job_id = start_job(stack, chaos_spec(stack))

        wait_for(mid_copy(db, job_id, total_batches=80), "batches to be running mid-copy")
        assert redis_lib.Redis.from_url(redis_url).llen("copy") > 0  # tasks that will run into the outage
        if crashes:
            for crash in range(crashes):
                if crash:  # strike again once the fleet made progress on the restarted server
                    done = batch_states(db, job_id)[BatchState.DONE]
                    wait_for(
                        lambda d=done: batch_states(db, job_id)[BatchState.DONE] >= d + 5, "progress after a crash"
                    )
                pg.crash()
                pg.start()
        else:
            pg.stop(fast=True)
            pg.start()

        assert_nothing_lost(stack, db, job_id, loaded)
        assert all(p.poll() is None for p in stack.processes)
        assert recovery.resume(db, dispatcher, job_id) == {"listers": 0, "batches": 0, "verifications": 0}
    finally:
        stack.stop()


def test_a_commit_acknowledged_before_a_postgres_crash_survives_it() -> None:
    """The job table is the truth: a task acknowledges its message once its state change committed. A commit the
    server acknowledged must survive the server's crash, or a batch whose message is gone goes back to ``running``
    and waits for `resume` (the embedded server once ran with ``synchronous_commit=off``, which loses the last
    ~200 ms of acknowledged commits in a crash)."""
    pg = PostgresServer().start()
    try:
        engine = sa.create_engine(pg.url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE acknowledged (i int)"))
        for i in range(200):  # one commit each, as the job table makes them
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO acknowledged VALUES (:i)"), {"i": i})
        engine.dispose()

        pg.crash()
        pg.start()

        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM acknowledged")).scalar() == 200
        engine.dispose()
    finally:
        pg.destroy()


def one_run_job(db: jobs.Database, source_host: str = "http://127.0.0.1:9", **spec_fields: Any) -> tuple[int, int]:
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
    job_id = jobs.create_job(db, spec, plan, source_label="src", target_label="dst")
    return job_id, jobs.runs_of(db, job_id)[0].id


@pytest.fixture
def worker_ctx(redis_url: str, job_table_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=SentTasks())


def test_two_listers_listing_from_the_same_token_cannot_both_record_the_page(worker_ctx: WorkerContext) -> None:
    """What makes "no id in two batches" hold even when two listers run at once (a lock lost with a Redis restart,
    a lister redelivered while the one it replaces was still alive): a page is recorded only if the run's saved
    token is still the one it was listed from."""
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)

    jobs.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    with pytest.raises(StateError):
        jobs.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    jobs.add_batches(db, run_id, [["c"]], None, listing_done=True, listed_from="t1")
    with pytest.raises(StateError):
        jobs.add_batches(db, run_id, [["c"]], None, listing_done=True, listed_from="t1")

    assert [b.ids for b in batches(db, job_id)] == [["a", "b"], ["c"]]
    run = jobs.get_run(db, run_id)
    assert (run.listed, run.batches_total, run.listing_done) == (3, 2, True)


def test_recording_a_page_reports_what_the_lister_checks_next(worker_ctx: WorkerContext) -> None:
    """``add_batches`` answers, in its own transaction, the questions the lister used to ask in three more: how many
    batches are in flight, whether the run was cancelled, and whether a last page that added nothing found every
    batch done (then it, and only it, moves the run to ``copied``)."""
    db = worker_ctx.db
    _, run_id = one_run_job(db)

    first = jobs.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False, listed_from=None)
    second = jobs.add_batches(db, run_id, [["c"]], "t2", listing_done=False, listed_from="t1")
    assert (second.in_flight, second.cancelled, second.copied) == (2, False, False)

    for batch_id in (*first.batch_ids, *second.batch_ids):
        assert jobs.start_batch(db, batch_id, "test") is not None
        jobs.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64)
    assert jobs.after_batch(db, run_id, 64) == (False, True)  # listing unfinished: the lister is woken, not copied

    last = jobs.add_batches(db, run_id, [], None, listing_done=True, listed_from="t2")
    assert (last.batch_ids, last.in_flight, last.copied) == ([], 0, True)
    assert jobs.get_run(db, run_id).state == RunState.COPIED


def test_the_last_batch_to_finish_moves_its_run_on_in_the_same_transaction(worker_ctx: WorkerContext) -> None:
    db = worker_ctx.db
    _, run_id = one_run_job(db)
    first, last = jobs.add_batches(db, run_id, [["a"], ["b"]], None, listing_done=True).batch_ids
    for batch_id in (first, last):
        assert jobs.start_batch(db, batch_id, "test") is not None

    assert jobs.finish_batch(db, first, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64) == (
        False,
        False,  # listing is done: nobody to wake
    )
    assert jobs.finish_batch(db, last, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64) == (
        True,
        False,
    )
    # A duplicate delivery of the last batch changes nothing and does not win the run a second time.
    assert jobs.finish_batch(db, last, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=64) == (
        False,
        False,
    )
    run = jobs.get_run(db, run_id)
    assert (run.state, run.copied) == (RunState.COPIED, 2)


def test_a_cancelled_run_tells_its_lister_to_stop(worker_ctx: WorkerContext) -> None:
    db = worker_ctx.db
    job_id, run_id = one_run_job(db)
    jobs.cancel_job(db, job_id, actor="test")
    recorded = jobs.add_batches(db, run_id, [["a"]], "t1", listing_done=False, listed_from=None)
    assert recorded.cancelled and recorded.in_flight == 1


class ListCalls:
    """Wraps the lister's source store: records the token of every list request as it starts."""

    def __init__(self, ctx: WorkerContext, job_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
        store = ctx.store(jobs.job_spec(ctx.db, job_id).source)  # the lister's own (per-process) store
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
    add_batches = jobs.add_batches

    def add_batches_once_the_next_is_listing(*args: Any, **kwargs: Any) -> jobs.Recorded:
        next_token = args[3]
        if not kwargs["listing_done"]:
            overlapped.append(calls.wait_for(next_token))
        return add_batches(*args, **kwargs)

    monkeypatch.setattr(jobs, "add_batches", add_batches_once_the_next_is_listing)
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
    run = jobs.get_run(db, run_id)
    assert run.list_token is not None and not run.listing_done  # where the woken lister goes on


def test_a_lister_killed_between_recording_a_batch_and_sending_it_is_made_good_by_its_redelivery(
    worker_ctx: WorkerContext,
) -> None:
    """The kill lands exactly after ``add_batches`` committed the last batch and before its copy task was sent.
    Nothing else would ever send it; the lister's redelivered task (``again``) sends the run's queued batches."""
    _, run_id = one_run_job(worker_ctx.db)
    [batch_id] = jobs.add_batches(worker_ctx.db, run_id, [["a", "b", "c"]], None, listing_done=True).batch_ids

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
    [orphan] = jobs.add_batches(db, run_id, [["a", "b"]], "t1", listing_done=False).batch_ids
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
    [batch_id] = jobs.add_batches(db, run_id, [["a", "b", "c"]], "t1", listing_done=False).batch_ids
    assert jobs.start_batch(db, batch_id, "test") is not None
    jobs.finish_batch(db, batch_id, vectors=3, missing=0, nbytes=0, targets=["ns0"], max_in_flight=64)
    assert jobs.add_batches(db, run_id, [], None, listing_done=True, listed_from="t1").copied

    listing.list_run(worker_ctx, run_id)
    assert sent(worker_ctx) == []
    listing.list_run(worker_ctx, run_id, again=True)
    assert sent(worker_ctx) == [("verify", run_id)]


def test_a_copy_killed_after_marking_its_run_copied_is_made_good_by_its_redelivery(worker_ctx: WorkerContext) -> None:
    """The kill lands after the run's last batch marked it ``copied`` and before verification was sent (and after
    a wake-up flag was set without its message). The redelivered copy task finds its batch done and sends what
    should have followed."""
    _, run_id = one_run_job(worker_ctx.db)
    [batch_id] = jobs.add_batches(worker_ctx.db, run_id, [["a", "b", "c"]], None, listing_done=True).batch_ids
    assert jobs.start_batch(worker_ctx.db, batch_id, "doomed") is not None
    copied, _ = jobs.finish_batch(
        worker_ctx.db, batch_id, vectors=3, missing=0, nbytes=0, targets=["ns0"], max_in_flight=64
    )
    assert copied
    worker_ctx.redis.set(lister_wake_key(run_id), 1)

    copying.copy_batch(worker_ctx, batch_id)  # a duplicate delivery does nothing …
    assert sent(worker_ctx) == []
    copying.copy_batch(worker_ctx, batch_id, again=True)  # … the redelivery of the killed one sends verification
    assert sent(worker_ctx) == [("verify", run_id)]
    assert not worker_ctx.redis.exists(lister_wake_key(run_id))


def test_cancel_mid_job_stops_new_batches_and_deletes_nothing(stack: Stack) -> None:
    """`cancel` mid-job: batches already running finish, queued ones are skipped by the workers (their messages
    are consumed and dropped), the lister stops, and nothing is deleted anywhere."""
    loaded = load_source(stack, namespaces=4, per_namespace=400)
    total = sum(len(r) for r in loaded.values())
    slow_data_plane(stack, latency_ms=120)
    stack.start_worker("list,copy,verify", 6, name="w", **QUICK_RETRIES)
    db, _, job_id = start_job(stack, chaos_spec(stack))
    wait_for(mid_copy(db, job_id, total_batches=80), "batches to be running mid-copy")

    jobs.cancel_job(db, job_id)
    cancelled_at = datetime.now(UTC)
    broker = redis_lib.Redis.from_url(stack.redis_url)

    def drained() -> bool:
        # Every message handed out before the cancel has been consumed, and nothing runs any more.
        idle = not any(broker.llen(q) for q in ("list", "copy", "verify")) and not broker.hlen("unacked")
        return idle and batch_states(db, job_id)[BatchState.RUNNING] == 0

    wait_for(drained, "the queues to drain and the running batches to finish")

    rows = batches(db, job_id)
    started_after = [b.id for b in rows if b.started_at is not None and b.started_at > cancelled_at]
    assert not started_after, f"batches {started_after} started after the cancel"
    done = [b for b in rows if b.state == BatchState.DONE]
    assert 0 < len(done) < 80
    assert {r.state for r in jobs.runs_of(db, job_id)} == {RunState.CANCELLED}
    # The target holds exactly what the done batches copied, and less than everything; the source is whole.
    copied_ids = {vid for b in done for vid in b.ids}
    assert sum(stack.pinecone.count(DST, ns) for ns in loaded) == len(copied_ids) < total
    for ns, records in loaded.items():
        assert stack.pinecone.count(SRC, ns) == len(records)
    assert jobs.find_job(db, job_id).state == "cancelled"

"""Nothing is lost when Redis, the broker, is restarted mid-job (stopped or killed): the workers reconnect by
themselves and `nsmigrate resume` sends again what the queues lost. The shared setup and checks are in
``tests/chaos.py``; the other kinds of fault are in the other ``test_chaos_*.py`` files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

from nsmigrate.orchestrator import recovery
from nsmigrate_sandbox.pinecone_server import PineconeSandbox
from nsmigrate_sandbox.services import RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack, wait_for_workers
from tests.chaos import (
    FAST_RECOVERY,
    QUEUES,
    QUICK_RETRIES,
    assert_nothing_lost,
    chaos_spec,
    fault_landed,
    load_source,
    make_stack,
    mid_copy,
    slow_data_plane,
    wait_for,
)
from tests.fleet_jobs import start_job

pytestmark = pytest.mark.chaos


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
        stack.start_worker(QUEUES, 6, pool=pool, name="survivor", **FAST_RECOVERY, **QUICK_RETRIES)
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
        fault_landed(stack)

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
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.workers.fleet.app import configure

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

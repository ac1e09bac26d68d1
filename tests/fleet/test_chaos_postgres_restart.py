"""Nothing is lost when Postgres, the job table, is restarted mid-job (a fast shutdown, or killed twice): a task that
meets the outage changes nothing and is retried by Celery. The shared setup and checks are in ``tests/chaos.py``;
the other kinds of fault are in the other ``test_chaos_*.py`` files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from nsmigrate.orchestrator import recovery
from nsmigrate.orchestrator.models import BatchState
from nsmigrate_sandbox.services import PostgresServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY
from tests.chaos import (
    FAST_RECOVERY,
    QUEUES,
    QUICK_RETRIES,
    assert_nothing_lost,
    batch_states,
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


@pytest.mark.parametrize(("crashes", "pool"), [(0, "prefork"), (2, "threads")], ids=["fast-stop", "kill9-twice"])
def test_postgres_restart_mid_job_leaves_no_half_written_state(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashes: int, pool: str
) -> None:
    """The job table's Postgres is stopped (fast shutdown: open transactions abort), or killed with SIGKILL twice
    (a crash: no shutdown at all), and started again on the same port and data directory mid-job. A task that hits
    the outage changes nothing (every state change is one transaction) and raises; its batch stays ``queued`` or
    ``running``, never ``failed`` and never half-done. Recovered by **Celery retrying those tasks**
    (``autoretry_for`` the job table's connection errors, with backoff): the job completes with no operator action,
    no `resume` and no `retry`. `resume` afterwards finds nothing left to do (it is the fallback when an outage
    outlasts the task retries). Each pool meets one of the two outages."""
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    pg = PostgresServer().start()
    stack = make_stack(redis_url, pg.url, tmp_path, servers=[pg])
    try:
        loaded = load_source(stack, namespaces=4, per_namespace=400)
        slow_data_plane(stack, latency_ms=120)
        stack.start_worker(QUEUES, 6, pool=pool, name="survivor", **FAST_RECOVERY, **QUICK_RETRIES)
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
        fault_landed(stack)

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

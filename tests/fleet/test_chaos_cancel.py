"""`nsmigrate cancel` mid-job, a fault of the operator's making: what runs finishes, what is queued is dropped, and
nothing is deleted. The shared setup is in ``tests/chaos.py``; the other kinds of fault are in the other
``test_chaos_*.py`` files.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import BatchState, RunState
from nsmigrate_sandbox.stack import Stack
from tests.chaos import (
    DST,
    QUEUES,
    QUICK_RETRIES,
    SRC,
    batch_states,
    chaos_spec,
    load_source,
    mid_copy,
    slow_data_plane,
    wait_for,
)
from tests.chaos import sandbox_indexes as sandbox_indexes
from tests.fleet_jobs import batches, start_job

pytestmark = pytest.mark.chaos


def test_cancel_mid_job_stops_new_batches_and_deletes_nothing(stack: Stack) -> None:
    """`cancel` mid-job: batches already running finish, queued ones are skipped by the workers (their messages
    are consumed and dropped), the lister stops, and nothing is deleted anywhere."""
    loaded = load_source(stack, namespaces=4, per_namespace=400)
    total = sum(len(r) for r in loaded.values())
    slow_data_plane(stack, latency_ms=120)
    stack.start_worker(QUEUES, 6, pool="threads", name="w", **QUICK_RETRIES)
    db, _, job_id = start_job(stack, chaos_spec(stack))
    wait_for(mid_copy(db, job_id, total_batches=80), "batches to be running mid-copy")

    jobs_and_runs.cancel_job(db, job_id)
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
    assert {r.state for r in jobs_and_runs.runs_of(db, job_id)} == {RunState.CANCELLED}
    # The target holds exactly what the done batches copied, and less than everything; the source is whole.
    copied_ids = {vid for b in done for vid in b.ids}
    assert sum(stack.pinecone.count(DST, ns) for ns in loaded) == len(copied_ids) < total
    for ns, records in loaded.items():
        assert stack.pinecone.count(SRC, ns) == len(records)
    assert jobs_and_runs.find_job(db, job_id).state == "cancelled"

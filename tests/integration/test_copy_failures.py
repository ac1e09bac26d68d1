"""A copy batch never stays `running` after its task ended: whatever went wrong, it ends `done` or `failed`."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import BatchFailed
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.store import StoreDefaults
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying


class _BrokenStore(StoreDefaults):
    """A store that fails in a way no adapter maps (a bug, an unforeseen transport error)."""

    name = "broken"

    def identity(self) -> str:  # the rate budget is keyed by it
        return "broken"

    def fetch(self, namespace: str, ids: list[str]) -> list[object]:
        raise RuntimeError("connection object vanished")


def test_an_unexpected_error_fails_the_batch_with_its_message(
    job_table_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = WorkerContext(Settings(database_url=job_table_url, redis_url=redis_url))
    store = {"kind": "pinecone", "host": "http://127.0.0.1:9"}
    spec = parse_spec({"name": "broken", "source": store, "target": {**store, "host": "http://127.0.0.1:10"}})
    plan = Plan(runs=[NamespacePlan("ns", "ns", 2, 1)], estimate=Estimate(1, 1, 1, 1, 5, 0.1))
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label="a", target_label="b")
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    [batch_id] = jobs_pages.add_batches(ctx.db, run.id, [["x", "y"]], None, listing_done=True).batch_ids
    monkeypatch.setattr(ctx, "store", lambda _spec: _BrokenStore())

    with pytest.raises(BatchFailed) as failed:
        copying.copy_batch(ctx, batch_id)

    assert str(failed.value) == (
        f"unexpected RuntimeError: connection object vanished (job {job_id}, namespace ns, batch {batch_id})"
    )

    [status] = jobs_status.job_status(ctx.db, job_id).runs
    assert status.batches.failed == 1 and status.batches.running == 0
    assert status.last_error == "unexpected RuntimeError: connection object vanished"
    assert status.failed == 2
    ctx.db.dispose()

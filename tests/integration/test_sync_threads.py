"""`nsmigrate sync` scans a job's namespaces side by side (``NSMIGRATE_SYNC_THREADS`` at once), not one after the
other, and still prints them in the job's order: the command runs in-process (``CliRunner``) against real Postgres,
Redis and the local data plane, whose source index answers each request late (a latency fault), so the scans that
overlap show as requests in flight at once (the data plane's ``max_requests_in_flight``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.workers.context import WorkerContext
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import KEY_ENV, RecordingDispatcher, copied_job, make_records, make_spec

NAMESPACES = [f"ns{i}" for i in range(6)]
THREADS = 3


class Dispatcher(RecordingDispatcher):
    def copy_batch(self, batch_id: int, **kw: object) -> None:
        self.sent.append(("copy", batch_id, dict(kw)))


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", 8), IndexSpec("dst", 8)]


def test_sync_scans_namespaces_side_by_side_within_its_threads_and_prints_them_in_order(
    sandbox: PineconeSandbox,
    job_table_url: str,
    redis_url: str,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-sync-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    ctx = worker_context(job_table_url, redis_url, dispatcher=Dispatcher())
    job = copied_job(ctx, make_spec(stores), {ns: make_records(5, prefix=ns) for ns in NAMESPACES})
    for n, ns in enumerate(NAMESPACES):  # written after the copy: each sync finds n + 1 new ids
        sandbox.load("src", ns, [(f"{ns}-new-{i}", [0.5] * 8, {"n": i}) for i in range(n + 1)])
    sandbox.set_faults("src", Faults(latency_ms=300))
    assert sandbox.stats("src")["max_requests_in_flight"] == 1  # so far one request at a time

    result = CliRunner().invoke(
        app,
        ["sync", str(job.job_id)],
        env={
            "NSMIGRATE_DATABASE_URL": job_table_url,
            "NSMIGRATE_REDIS_URL": redis_url,
            "NSMIGRATE_SYNC_THREADS": str(THREADS),
        },
    )

    assert result.exit_code == 0, result.output
    counts = [line.split(" → ")[0] for line in result.output.splitlines() if line.startswith("ns")]
    # The job's order, whichever scan ended first.
    assert counts == [f"{ns}: {n + 1} new, 0 changed" for n, ns in enumerate(NAMESPACES)]
    # Each scan sends one request at a time: more than one in flight means scans overlapped, at most THREADS of them.
    assert 2 <= sandbox.stats("src")["max_requests_in_flight"] <= THREADS
    assert {
        e["detail"]["namespace"] for e in jobs_status.events_of(ctx.db, job.job_id) if e["action"] == "sync"
    } == set(NAMESPACES)

"""Query latency in verification, on real services (a ``WorkerContext`` over real Postgres and Redis, the Pinecone
store over HTTP, a real copy batch): without ``verify.latency_p95_ms`` the run times its queries beside its other
checks and the figures only inform; with one, they are timed alone and judge the run: a target slower than the limit
fails it, naming the P95 and the limit, and a faster one passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import verifying
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.fleet_jobs import copied_by_one_batch
from tests.integration.test_verify_cleanup import RecordingDispatcher, make_records

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_LATENCY_PINECONE_KEY"
SLOW_MS = 120  # added to each request of the target: its queries' P95 is at least this


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("timed-src", DIM), IndexSpec("timed-dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


def copied_run(ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, **verify: Any) -> int:
    """Namespace ``alpha`` of 20 vectors copied by a real copy batch of a one-run job; returns the run's id."""
    monkeypatch.setenv(KEY_ENV, "pcsk-latency-test")
    store = {"kind": "pinecone", "api_key_env": KEY_ENV}
    spec = parse_spec(
        {
            "name": "timed",
            "source": {**store, "host": sandbox.host("timed-src")},
            "target": {**store, "host": sandbox.host("timed-dst")},
            "verify": {"latency_samples": 5, **verify},
        }
    )
    return copied_by_one_batch(ctx, spec, sandbox, "timed-src", "alpha", make_records(20))


def test_without_a_limit_the_latency_is_reported_and_judges_nothing(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = copied_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("timed-dst", Faults(latency_ms=SLOW_MS))

    report = verifying.verify_run(ctx, run_id)

    assert report["passed"], report["reasons"]
    latency = report["latency"]
    assert latency["samples"] == 5 and latency["p50_ms"] >= SLOW_MS and latency["limit_ms"] is None
    assert latency["through"] == "query of 'alpha'"


@pytest.mark.parametrize(("limit_ms", "passes"), [(SLOW_MS / 4, False), (SLOW_MS * 20, True)])
def test_a_limit_judges_the_run_by_its_queries_p95(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, limit_ms: float, passes: bool
) -> None:
    run_id = copied_run(ctx, sandbox, monkeypatch, latency_p95_ms=limit_ms)
    sandbox.set_faults("timed-dst", Faults(latency_ms=SLOW_MS))

    report = verifying.verify_run(ctx, run_id)

    latency = report["latency"]
    assert latency["samples"] == 5 and latency["p95_ms"] >= SLOW_MS and latency["limit_ms"] == limit_ms
    assert report["passed"] is passes
    above = f"query latency p95 {latency['p95_ms']} ms is above the limit of {limit_ms} ms"
    assert (above in report["reasons"]) is not passes
    assert jobs_and_runs.get_run(ctx.db, run_id).state == (RunState.VERIFIED if passes else RunState.VERIFY_FAILED)

"""Many small namespaces verified at once in one worker process, as a threads worker does: real Postgres (job table),
Redis (rate budget) and two Pinecone indexes of the local data plane through the real SDK, one ``WorkerContext``
shared by the verifying threads (so they share its count readings, ``workers.stores.shared_counts``).

Each namespace is copied the way a copy batch does (``route_records``, one batch recorded and finished), then some
copies are spoiled; every verification must still find what it always found, whichever count reading it was given.
Each case runs against a serverless index that describes one namespace (``describe_namespace``) and one that counts
only with ``describe_index_stats`` (as Pinecone Local), whose readings the threads share.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import verifying
from nsmigrate.workers.steps.latency import LATENCY_RUNS
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.settling import settle

DIM = 4
KEY_ENV = "NSMIGRATE_TEST_MANY_PINECONE_KEY"
THREADS = 8


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("many-src", DIM), IndexSpec("many-dst", DIM)]


class NoDispatch:
    def cleanup_namespace(self, run_id: int, **kw: Any) -> None:
        raise AssertionError("cleanup is never automatic here")


@pytest.fixture(params=["describe_namespace", "shared_stats"])
def target_faults(request: pytest.FixtureRequest, sandbox: PineconeSandbox) -> Callable[..., None]:
    """``target_faults(**faults)`` sets the target's faults, with or without its ``/namespaces`` endpoints."""

    def set_faults(**faults: Any) -> None:
        endpoint = request.param == "describe_namespace"
        sandbox.set_faults("many-dst", Faults(namespaces_endpoint=endpoint, **faults))

    set_faults()
    return set_faults


@pytest.fixture
def ctx(
    job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext], monkeypatch: pytest.MonkeyPatch
) -> WorkerContext:
    monkeypatch.setenv(KEY_ENV, "pcsk-many-test")
    return worker_context(job_table_url, redis_url, dispatcher=NoDispatch())


def make_spec(sandbox: PineconeSandbox, **verify: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "many-small",
            "source": {"kind": "pinecone", "host": sandbox.host("many-src"), "api_key_env": KEY_ENV},
            "target": {"kind": "pinecone", "host": sandbox.host("many-dst"), "api_key_env": KEY_ENV},
            "verify": {"count_timeout_s": 1, **verify},
        }
    )


def records(k: int) -> list[Record]:
    return [Record(f"r{k}-{j}", [float(k + 1), float(j + 1), 0.5, 0.25], {"k": k}) for j in range(3)]


def copied_namespaces(ctx: WorkerContext, spec: JobSpec, n: int) -> dict[str, int]:
    """``n`` three-vector namespaces in the source, copied to the target and their runs marked copied; returns
    namespace → run id."""
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    data = {f"ns{k:03d}": records(k) for k in range(n)}
    plan = Plan(
        runs=[NamespacePlan(ns, ns, 3, 1, None, None) for ns in data],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
        twins={},
    )
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label=source.name, target_label=target.name)
    runs = {}
    for run in jobs_and_runs.runs_of(ctx.db, job_id):
        ns = run.source_namespace
        source.upsert(ns, data[ns])
        route = route_context(spec, source.name, ns, ns)
        for target_ns, routed in route_records(data[ns], route).items():
            target.upsert(target_ns, routed)
        recorded = jobs_pages.add_batches(ctx.db, run.id, [[r.id for r in data[ns]]], None, listing_done=True)
        (batch_id,) = recorded.batch_ids
        jobs_batches.finish_batch(ctx.db, batch_id, vectors=3, missing=0, nbytes=0, targets=[ns], max_in_flight=8)
        runs[ns] = run.id
    assert {jobs_and_runs.get_run(ctx.db, r).state for r in runs.values()} == {RunState.COPIED}
    return runs


def verify_all(ctx: WorkerContext, runs: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Every run verified by ``THREADS`` threads of one process at once; namespace → report."""
    with ThreadPoolExecutor(THREADS) as pool:
        reports = dict(zip(runs, pool.map(lambda r: verifying.verify_run(ctx, r), runs.values()), strict=True))
    return reports


def test_many_small_namespaces_are_all_verified_and_spoiled_copies_fail(
    ctx: WorkerContext, sandbox: PineconeSandbox, target_faults: Callable[..., None]
) -> None:
    # Every count here settles, so the timeout never ends a poll: it must not cut ns004's three readings short on
    # a slow machine (each reading waits for the data plane, which 8 threads share).
    spec = make_spec(sandbox, count_timeout_s=60)
    runs = copied_namespaces(ctx, spec, 48)
    target = ctx.store(spec.target)
    target.delete("ns001", ["r1-2"])  # a missing id
    target.upsert("ns002", [Record("stray", [1.0, 1.0, 1.0, 1.0], {"k": 2})])  # an extra id in an unshared target
    route = route_context(spec, ctx.store(spec.source).name, "ns003", "ns003")
    target.upsert("ns003", route_records([Record("r3-0", [9.0, 9.0, 9.0, 9.0], {"k": 3})], route)["ns003"])
    target.delete("ns004", ["r4-0"])
    target.upsert("ns004", [Record("r4-stray", [1.0, 2.0, 3.0, 4.0], {"k": 4})])  # count right, ids wrong
    settle(spec.target)  # spoiled long before the verification

    reports = verify_all(ctx, runs)

    failed = {ns for ns, r in reports.items() if not r["passed"]}
    assert failed == {"ns001", "ns002", "ns003", "ns004"}
    reasons = {ns: " | ".join(reports[ns]["reasons"]) for ns in failed}
    assert "1 source ids missing in target (e.g. 'r1-2')" in reasons["ns001"]
    assert "target count 2 ≠ source count 3" in reasons["ns001"]
    assert "1 ids in target not in source (e.g. 'stray')" in reasons["ns002"]
    assert "target count 4 ≠ source count 3" in reasons["ns002"]
    assert "1 contents differ (e.g. 'r3-0'" in reasons["ns003"]
    assert "missing in target (e.g. 'r4-0')" in reasons["ns004"] and "'r4-stray'" in reasons["ns004"]
    # ns004's count equals the source's: the listing, not the count, is what catches it; its count was polled.
    assert reports["ns004"]["count_readings"][:3] == [3, 3, 3]
    for ns in set(runs) - failed:
        # Listing and count agree with the source at the first reading: accepted without polling.
        assert (reports[ns]["source_count"], reports[ns]["target_count"], reports[ns]["count_readings"]) == (3, 3, [3])
    assert {jobs_and_runs.get_run(ctx.db, r).state for ns, r in runs.items() if ns not in failed} == {RunState.VERIFIED}
    # The job has more runs than are timed: query latency is timed in a sample of them, not in each.
    timed = [ns for ns, r in reports.items() if (r.get("latency") or {}).get("samples")]
    assert 0 < len(timed) < len(runs)
    assert len(runs) > LATENCY_RUNS


def test_a_count_that_settled_on_a_wrong_number_fails_every_namespace(
    ctx: WorkerContext, sandbox: PineconeSandbox, target_faults: Callable[..., None]
) -> None:
    spec = make_spec(sandbox)
    runs = copied_namespaces(ctx, spec, 12)
    target_faults(stats_offset=1)  # the listing agrees with the source, the stats do not

    reports = verify_all(ctx, runs)

    for ns, report in reports.items():
        assert not report["passed"], ns
        assert report["reasons"] == ["target count 4 ≠ source count 3"], ns
        assert len(report["count_readings"]) >= 3 and set(report["count_readings"]) == {4}, ns


def test_counts_that_never_settle_fail_every_namespace(
    ctx: WorkerContext, sandbox: PineconeSandbox, target_faults: Callable[..., None]
) -> None:
    spec = make_spec(sandbox)
    runs = copied_namespaces(ctx, spec, 12)
    # 5, 4, 5, 4 … reading after reading. Each verification sees only the readings it was given of those the
    # threads share, so it finds either counts that never settle or a settled count that differs: both fail.
    target_faults(stats_offset=1, stats_flicker=True)

    reports = verify_all(ctx, runs)

    for ns, report in reports.items():
        assert not report["passed"], ns
        assert all(reason.startswith("target count") for reason in report["reasons"]), (ns, report["reasons"])
        assert set(report["count_readings"]) <= {4, 5}, ns


def test_a_count_that_never_settles_fails_even_when_it_passes_by_the_right_number(
    ctx: WorkerContext, sandbox: PineconeSandbox, target_faults: Callable[..., None]
) -> None:
    spec = make_spec(sandbox)
    (run_id,) = copied_namespaces(ctx, spec, 1).values()
    target_faults(stats_flicker=True)  # 4, 3, 4, 3 … : the first reading is off

    report = verifying.verify_run(ctx, run_id)

    assert not report["passed"]
    assert report["count_readings"][:4] == [4, 3, 4, 3]
    assert any(reason.startswith("target count did not settle") for reason in report["reasons"])

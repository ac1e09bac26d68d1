"""The fleet end to end: real `nsmigrate worker` processes, real Redis and Postgres, the real Pinecone SDK against
the local data plane. Each test waits for the job with a deadline and then checks the data itself, not the job
table's word for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.records.namespaces import twin_namespace
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.rate_budget import DEFAULT_RATE_SHARE
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset, write_twins_csv
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack, wait_for_workers
from tests.fleet_jobs import start_job
from tests.polling import wait_for_job, wait_until

INDEX = "seeds"
#: The seeds' shape (namespaces, twins, creators, the default namespace's routing) in 32 dimensions instead of 3,072,
#: for a test whose subject is not the data: a hundredth of the bytes to encode, serve and compare.
LITE_INDEX, LITE_DIMENSION = "seeds-lite", 32


@pytest.fixture(scope="module")
def seed() -> SeedData:
    return seed_dataset()


@pytest.fixture(scope="module")
def lite_seed() -> SeedData:
    return seed_dataset(dimension=LITE_DIMENSION)


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec(INDEX, dimension=3072, metric="cosine", kind="pod"),
        IndexSpec(LITE_INDEX, dimension=LITE_DIMENSION, metric="cosine", kind="pod"),
        IndexSpec("small-src", dimension=8),
        IndexSpec("small-dst", dimension=8),
    ]


def creator_spec(stack: Stack, twins_csv: Path, index: str = INDEX, **overrides: Any) -> dict[str, Any]:
    # The seeds' index is a pod: it cannot list, so its ids are found by a sweep (in place: source and target).
    pod = {
        "kind": "pinecone",
        "index": index,
        "control_host": stack.pinecone.control_host,
        "enumerate": {"mode": "sweep"},
    }
    spec: dict[str, Any] = {
        "name": "creator-namespaces",
        "source": pod,
        "target": pod,
        "routing": {"mode": "creator", "creators": {"source": "file", "path": str(twins_csv)}},
        "batch_size": 50,
        "max_batches_in_flight": 8,
    }
    spec.update(overrides)
    return spec


def all_verified(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def settled_with_failures(status: JobStatus) -> bool:
    runs = status.runs
    return (
        all(r.batches.queued == 0 and r.batches.running == 0 for r in runs)
        and any(r.batches.failed for r in runs)
        and all(r.state != RunState.LISTING for r in runs)
    )


def expected_placement(seed: SeedData) -> dict[str, set[str]]:
    """Where every seed vector must land: target namespace → ids (computed from the seed, not from the code)."""
    out: dict[str, set[str]] = {}
    for ns, records in seed.namespaces.items():
        for vid, _values, meta in records:
            twin = ns if ns else meta["twin_id"]
            out.setdefault(twin_namespace(seed.twins[twin], twin), set()).add(vid)
    return out


#: The seeds as they are (3,072 dimensions) on the prefork pool, as `nsmigrate demo` runs them; their shape in 32
#: dimensions on the threads pool, whose subject is the pool (routing and enrichment are the same at any dimension).
@pytest.mark.parametrize(("pool", "index"), [("prefork", INDEX), ("threads", LITE_INDEX)])
def test_seed_data_set_migrates_into_creator_namespaces_with_enriched_metadata(
    stack: Stack, request: pytest.FixtureRequest, pool: str, index: str
) -> None:
    seed: SeedData = request.getfixturevalue("seed" if index == INDEX else "lite_seed")
    seed.load_into(stack.pinecone, index)
    twins_csv = write_twins_csv(seed.twins, stack.workdir / "twins.csv")
    stack.start_worker("list,copy,verify,cleanup", 8, pool=pool)
    db, _, job_id = start_job(stack, creator_spec(stack, twins_csv, index))

    status = wait_for_job(db, job_id, all_verified)

    assert [r.state for r in status.runs] == [RunState.VERIFIED] * len(seed.namespaces)
    target = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(index))
    for namespace, ids in expected_placement(seed).items():
        fetched = target.fetch(ids=sorted(ids)[:1000], namespace=namespace).vectors
        assert set(fetched) == ids, namespace
        creator, twin = namespace.removeprefix("creator_").split("_twin_")
        for vector in fetched.values():
            assert vector.metadata["creator_id"] == creator
            assert vector.metadata["twin_id"] == twin
            assert vector.metadata["migrated_from"].startswith(f"{index}/")
    # The source is untouched: cleanup mode defaults to never.
    stats = target.describe_index_stats()
    assert stats.namespaces["__default__"].vector_count == len(seed.namespaces[""])


def test_a_threads_worker_opens_its_connections_before_its_first_task(stack: Stack) -> None:
    """One job-table connection, one Redis connection and one task producer (a broker connection) per thread: a
    fresh worker's first tasks neither wait for connections nor open them mid-batch. 12 threads: more than Celery's
    default producer pool (10), which a threads worker raises to its thread count."""
    threads = producers = 12
    db = jobs_database.Database(stack.database_url, create=False)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    others = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )

    def opened() -> tuple[int, int]:
        with db.engine.connect() as conn:
            return (conn.scalar(others) or 0), len(broker.client_list())

    try:
        db_before, redis_before = opened()
        stack.start_worker("list,copy", threads, pool="threads")
        wait_for_workers(stack.redis_url, 1)

        def opened_since_start() -> tuple[int, int]:
            db_now, redis_now = opened()
            return db_now - db_before, redis_now - redis_before

        db_opened, redis_opened = wait_until(
            opened_since_start,
            what=f"{threads} job-table and {threads + producers} Redis connections opened by the warm-up",
            done=lambda counts: counts[0] >= threads and counts[1] >= threads + producers,
            timeout_s=30,
        )
    finally:
        db.dispose()
        broker.close()

    assert db_opened >= threads
    assert redis_opened >= threads + producers


def test_job_finishes_despite_injected_429s_and_5xx(stack: Stack, lite_seed: SeedData) -> None:
    seed = lite_seed
    seed.load_into(stack.pinecone, LITE_INDEX)
    twins_csv = write_twins_csv(seed.twins, stack.workdir / "twins.csv")
    # Fractional Retry-After keeps the test fast; the SDK and the retry policy honour it as they would 1 s.
    stack.pinecone.set_faults(LITE_INDEX, Faults(error_rate_429=0.2, error_rate_5xx=0.05, retry_after_s=0.05, seed=7))
    retries = {"NSMIGRATE_RETRY_MAX_WAIT_S": "0.5", "NSMIGRATE_RETRY_ATTEMPTS": "12"}
    stack.start_worker("list,copy,verify,cleanup", 8, pool="threads", **retries)
    # The command plans (and reads the ids its checks need) through the same faults: as patient as the worker.
    patient = {"one_off_attempts": 12, "one_off_max_wait_s": 0.5}
    db, _, job_id = start_job(stack, creator_spec(stack, twins_csv, LITE_INDEX), **patient)

    # Within pytest-timeout's 180 s, so that a stuck job is shown.
    status = wait_for_job(db, job_id, lambda s: all_verified(s) or settled_with_failures(s), timeout_s=150)

    faults_seen = stack.pinecone.stats(LITE_INDEX)
    assert faults_seen["injected_429"] > 0 and faults_seen["injected_5xx"] > 0
    assert status.totals.copied == seed.total
    assert status.totals.failed == 0
    assert all(r.state == RunState.VERIFIED for r in status.runs)


def small_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "small-copy",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("small-src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("small-dst")},
        "batch_size": 20,
    }
    spec.update(overrides)
    return spec


def load_small(stack: Stack, namespaces: int = 3, per_namespace: int = 100) -> dict[str, list[str]]:
    import numpy as np

    rng = np.random.default_rng(1)
    out = {}
    for n in range(namespaces):
        ids = [f"v{n}-{i:04d}" for i in range(per_namespace)]
        stack.pinecone.load("small-src", f"ns{n}", [(i, rng.random(8).tolist(), {"n": n}) for i in ids])
        out[f"ns{n}"] = ids
    return out


def test_a_batch_that_keeps_failing_ends_failed_and_retry_completes_it(stack: Stack) -> None:
    loaded = load_small(stack)
    retries = {"NSMIGRATE_RETRY_ATTEMPTS": "2", "NSMIGRATE_RETRY_MAX_WAIT_S": "0.05"}
    stack.start_worker("list,copy,verify,cleanup", 4, pool="threads", **retries)
    db, dispatcher, job_id = start_job(
        stack, small_spec(stack), after_plan=lambda: stack.pinecone.set_faults("small-dst", Faults(error_rate_5xx=1.0))
    )

    status = wait_for_job(db, job_id, settled_with_failures)
    failed = sum(r.batches.failed for r in status.runs)
    assert failed == 15  # 3 namespaces × 100 ids / 20 per batch: every batch failed …
    assert all("503" in (r.last_error or "") or "Retryable" in (r.last_error or "") for r in status.runs)
    assert stack.pinecone.stats("small-dst")["requests"].get("upsert", 0) > 0

    stack.pinecone.set_faults("small-dst", Faults())  # … until the fault is gone
    requeued = launch.retry_failed(db, dispatcher, job_id)
    assert sorted(requeued) == sorted(loaded) and sum(len(ids) for ids in requeued.values()) == failed
    status = wait_for_job(db, job_id, all_verified)

    assert all(r.state == RunState.VERIFIED for r in status.runs)
    target = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("small-dst"))
    for ns, ids in loaded.items():
        assert set(target.fetch(ids=ids, namespace=ns).vectors) == set(ids)

    # The stored reports, as `nsmigrate report` prints them: every namespace passed, with its counts.
    printed = CliRunner().invoke(app, ["report", str(job_id), "--database-url", stack.database_url])
    assert printed.exit_code == 0, printed.output
    reports = {r["source_namespace"]: r["verification"] for r in json.loads(printed.output)}
    assert set(reports) == set(loaded)
    assert all(r["passed"] and r["missing_count"] == 0 and r["source_count"] == 100 for r in reports.values())


def test_two_workers_together_stay_under_the_rate_budget(stack: Stack) -> None:
    load_small(stack, namespaces=2, per_namespace=400)
    # The server enforces its limits and counts what it admitted per sliding second; the fleet's budget is the
    # default share of them, as a spec's defaults are (`rate`: DEFAULT_RATE_SHARE of Pinecone's limits). The server
    # counts arrivals, the fleet admissions: that headroom is what absorbs a request that reaches the server late
    # (a loaded machine, a network), which a budget equal to the limit turned into 429s now and then.
    limit = 10
    budget = int(DEFAULT_RATE_SHARE * limit)
    stack.pinecone.set_faults("small-src", Faults(fetch_rps_per_index=limit, list_rps_per_index=limit))
    stack.pinecone.set_faults("small-dst", Faults(write_rps_per_namespace=limit))
    # Two worker processes (threads pools: the pool is not the subject; processes of one pool sharing the budget:
    # test_ratelimit_processes.py).
    stack.start_worker("list,copy,verify", 6, pool="threads", name="a")
    stack.start_worker("list,copy,verify", 6, pool="threads", name="b")
    spec = small_spec(stack, batch_size=10, rate={"read_rps": budget, "list_rps": budget, "write_rps": budget})
    db, _, job_id = start_job(stack, spec)

    status = wait_for_job(db, job_id, all_verified, timeout_s=240)

    assert status.totals.copied == 800
    src, dst = stack.pinecone.stats("small-src"), stack.pinecone.stats("small-dst")
    # Two workers each spending the whole budget would send twice the limit: 429s, and peaks above it.
    assert (src["responses_429"], dst["responses_429"]) == (0, 0), (src["rate_limited"], dst["rate_limited"])
    src_peaks, dst_peaks = src["max_admitted_per_second"], dst["max_admitted_per_second"]
    peaks = [src_peaks["fetch_per_index"], src_peaks["list_per_index"], *dst_peaks["write_per_namespace"].values()]
    assert len(peaks) == 4 and max(peaks) <= limit
    assert max(peaks) >= budget // 2  # the budget was actually used, not trivially undershot

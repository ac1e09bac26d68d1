"""A lister that fails for good ends its run `list_failed` with the error: `watch` (how `run --wait` follows a job)
returns, `status` shows the error, and `retry` lists the namespace again once the fault is gone. Real worker, real
Redis and Postgres, the real Pinecone SDK against the local data plane."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.service_fixtures import TEST_LAG_S


@pytest.fixture
def stack(redis_url: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    indexes = [IndexSpec("src", dimension=8), IndexSpec("dst", dimension=8)]
    sandbox = PineconeSandbox(indexes=indexes, freshness_lag_s=TEST_LAG_S)
    sandbox.start()
    stack = Stack(redis_url=redis_url, database_url=database_url, pinecone=sandbox, workdir=tmp_path)
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    yield stack
    stack.stop()


def _wait_until(
    db: jobs_database.Database, job_id: int, done: Callable[[JobStatus], bool], timeout_s: float = 90
) -> JobStatus:
    """Poll the job table until ``done(status)`` or fail with the last status (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = jobs_status.job_status(db, job_id)
        if done(status):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not get there in {timeout_s} s: {status}")
        time.sleep(0.2)


def _load(stack: Stack) -> dict[str, list[str]]:
    out = {}
    for n in range(2):
        ids = [f"v{n}-{i:03d}" for i in range(60)]
        stack.pinecone.load("src", f"ns{n}", [(i, [float(n), 1.0, *([0.5] * 6)], {"n": n}) for i in ids])
        out[f"ns{n}"] = ids
    return out


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_a_lister_that_keeps_failing_ends_list_failed_and_retry_lists_again(stack: Stack) -> None:
    loaded = _load(stack)
    retries = {"NSMIGRATE_RETRY_ATTEMPTS": "2", "NSMIGRATE_RETRY_MAX_WAIT_S": "0.05"}
    stack.start_worker("list,copy,verify", 4, pool="threads", **retries)
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    spec = {
        "name": "list-fails",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "batch_size": 20,
    }
    prepared = launch.prepare(parse_spec(spec), open_retrying_store, stack.workdir)
    # Every list request fails from here on: the lister's retries run out.
    stack.pinecone.set_faults("src", Faults(error_rate_5xx=1.0, error_ops=("list",)))
    job_id = launch.launch(db, Dispatcher(settings), prepared)

    status = _wait_until(db, job_id, lambda s: all(r.state == "list_failed" for r in s.runs), timeout_s=60)
    assert all("503" in (r.last_error or "") for r in status.runs), status
    assert stack.pinecone.stats("src")["requests"].get("list", 0) > 0

    # `watch` follows the job the way `run --wait` does: it returns, with a failure.
    watched = _cli("watch", str(job_id), "--database-url", stack.database_url)
    assert watched.exit_code == 1, watched.output
    assert "list_failed" in watched.output and f"nsmigrate retry {job_id}" in watched.output
    shown = _cli("status", str(job_id), "--json", "--database-url", stack.database_url)
    assert shown.exit_code == 0, shown.output
    runs = json.loads(shown.output)["runs"]
    assert [r["state"] for r in runs] == ["list_failed", "list_failed"]
    assert all("list" in r["last_error"] and "503" in r["last_error"] for r in runs)

    stack.pinecone.set_faults("src", Faults())  # the fault is gone: retry lists again, from where it stopped
    retried = _cli("retry", str(job_id), "--wait", "--database-url", stack.database_url, "--redis-url", stack.redis_url)
    assert retried.exit_code == 0, retried.output
    assert "2 failed listers" in retried.output

    status = jobs_status.job_status(db, job_id)
    assert all(r.state == RunState.VERIFIED and r.last_error is None for r in status.runs), status
    target = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("dst"))
    for ns, ids in loaded.items():
        assert set(target.fetch(ids=ids, namespace=ns).vectors) == set(ids)
    actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
    assert actions.count("listing_failed") == 2 and "listers_requeued" in actions
    db.dispose()


def test_a_job_table_made_before_list_failed_gets_its_error_column(job_table_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(job_table_url)
    with engine.begin() as conn:  # the schema as version 1 made it, and its version recorded
        conn.execute(sa.text("ALTER TABLE namespace_runs DROP COLUMN last_error"))
        conn.execute(sa.text("DELETE FROM nsmigrate_schema"))
        conn.execute(sa.text("INSERT INTO nsmigrate_schema (version, applied_at) VALUES (1, now())"))
    db = jobs_database.Database(job_table_url)  # what every process opening the job table does
    spec = parse_spec(
        {
            "name": "old",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:10"},
        }
    )
    from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan

    plan = Plan(runs=[NamespacePlan("ns", "ns", 2, 1)], estimate=Estimate(1, 1, 1, 1, 5, 0.1))
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="a", target_label="b")
    [run] = jobs_and_runs.runs_of(db, job_id)

    assert jobs_pages.fail_listing(db, run.id, "StoreError: Pinecone refused list (403)")

    [status] = jobs_status.job_status(db, job_id).runs
    assert (status.state, status.last_error) == (RunState.LIST_FAILED, "StoreError: Pinecone refused list (403)")
    db.dispose()
    engine.dispose()

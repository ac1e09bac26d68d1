"""Issue 47, case 2, in process: a job table re-created (or restored) under a running process starts its job ids over,
and nothing the process read from the old one by job id is used for the new job of that id; a run whose plan counted
vectors but that found none to copy or verify is never ``verified`` ("0/0 ids present")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.models import Base, NamespaceRun, RunState, ensure_schema
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import listing, verifying
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.sent_tasks import SentTasks


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", 4), IndexSpec("dst", 4)]


def spec_of(name: str, source: str = "http://127.0.0.1:9", target: str = "http://127.0.0.1:9") -> JobSpec:
    return parse_spec(
        {"name": name, "source": {"kind": "pinecone", "host": source}, "target": {"kind": "pinecone", "host": target}}
    )


def a_job(db: jobs_database.Database, spec: JobSpec, namespaces: int = 1, count: int = 3) -> int:
    plan = Plan(
        runs=[NamespacePlan(f"ns{n}", f"ns{n}", count, 1) for n in range(namespaces)],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
    )
    return jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")


def recreate(url: str) -> None:
    """The job table made again, empty (a restore of an older dump, a fail-over to a new server): ids start over."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    Base.metadata.drop_all(engine)
    ensure_schema(engine)
    engine.dispose()


@pytest.fixture
def db(job_table_url: str) -> Iterator[jobs_database.Database]:
    database = jobs_database.Database(job_table_url)
    yield database
    database.dispose()


def test_a_spec_read_from_a_replaced_job_table_is_not_the_new_jobs(
    db: jobs_database.Database, job_table_url: str
) -> None:
    old = a_job(db, spec_of("old"))
    assert jobs_and_runs.job_spec(db, old).name == "old"  # read, and kept by this process

    recreate(job_table_url)
    new = a_job(db, spec_of("new"))

    assert new == old
    assert jobs_and_runs.job_spec(db, new).name == "new"


def copied(db: jobs_database.Database, job_id: int) -> list[int]:
    """The job's runs, moved to ``copied`` as their last batch would (what verification starts from)."""
    with db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.job_id == job_id).values(state=RunState.COPIED))
    return [run.id for run in jobs_and_runs.runs_of(db, job_id)]


def test_a_jobs_run_count_read_from_a_replaced_job_table_is_not_the_new_jobs(
    db: jobs_database.Database, job_table_url: str
) -> None:
    [run] = copied(db, a_job(db, spec_of("old"), namespaces=1))
    started = jobs_verdicts.start_verify(db, run)
    assert started is not None and started[1].runs == 1  # read, and kept by this process

    recreate(job_table_url)
    first, *_ = copied(db, a_job(db, spec_of("new"), namespaces=3))
    started = jobs_verdicts.start_verify(db, first)

    assert started is not None and started[1].runs == 3


def test_a_run_whose_plan_counted_vectors_but_that_found_none_fails_verification(
    sandbox: PineconeSandbox,
    job_table_url: str,
    redis_url: str,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
    pinecone_api_key: str,
) -> None:
    """The plan counted 60 vectors in ``ns0``; the lister found none there (the spec reached another store, or the
    source was emptied since): copied 0, and verification sees 0 in the source and 0 in the target."""
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_api_key)
    ctx = worker_context(job_table_url, redis_url, dispatcher=SentTasks())
    job_id = a_job(ctx.db, spec_of("empty", sandbox.host("src"), sandbox.host("dst")), count=60)
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    listing.list_run(ctx, run.id)
    assert jobs_and_runs.get_run(ctx.db, run.id).state == RunState.COPIED

    report: dict[str, Any] = verifying.verify_run(ctx, run.id)

    assert report["passed"] is False
    after = jobs_and_runs.get_run(ctx.db, run.id)
    assert after.state == RunState.VERIFY_FAILED
    assert any("the plan counted 60 vectors" in reason for reason in report["reasons"]), report["reasons"]

"""Issue 47, case 2, on a running fleet: the job-table database dropped and made again (a restore, a fail-over) under
real `nsmigrate worker` processes that already ran job 1 of the old table. The next `run` is planned by the fleet
as a user runs it (`python -m nsmigrate …`), its job is job 1 again, and it copies what its own spec says: one
clear outcome, no raw database error, and nothing of the old job 1 used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import cli, start_planner


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", 8), IndexSpec("other", 8), IndexSpec("dst", 8)]


def write_spec(stack: Stack, name: str, source: str, target: str) -> Path:
    spec = {
        "name": name,
        "source": {"kind": "pinecone", "host": stack.pinecone.host(source)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(target)},
        "batch_size": 20,
        "verify": {"count_timeout_s": 2},
    }
    path = stack.workdir / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    return path


def load(stack: Stack, index: str, namespace: str, count: int) -> None:
    stack.pinecone.load(index, namespace, [(f"{namespace}-{i:03d}", [0.1] * 8, {"i": i}) for i in range(count)])


def recreate(admin: sa.Engine, url: str) -> None:
    """The job table's database dropped, sessions and all, and made again empty."""
    name = sa.engine.make_url(url).database
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))


def the_one_job(stack: Stack) -> tuple[int, JobStatus]:
    db = jobs_database.Database(stack.database_url)
    try:
        [job] = jobs_status.list_jobs(db)
        return job["job_id"], jobs_status.job_status(db, job["job_id"])
    finally:
        db.dispose()


@pytest.fixture
def fleet_ran_job_1(stack: Stack) -> Stack:
    """A fleet that ran job 1 (40 vectors of `src:old` → `dst`), its workers still up."""
    load(stack, "src", "old", 40)
    start_planner(stack, "list,copy,verify")
    done = cli(stack, "run", str(write_spec(stack, "first", "src", "dst")), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert the_one_job(stack)[0] == 1
    load(stack, "other", "new", 80)
    return stack


def assert_new_job_1_copied_its_own_source(stack: Stack) -> None:
    job_id, status = the_one_job(stack)
    assert job_id == 1
    [run] = status.runs
    assert (run.source_namespace, run.state, run.listed) == ("new", RunState.VERIFIED, 80)
    assert stack.pinecone.count("dst", "new") == 80  # the data, not the job table's word


def test_the_first_run_after_the_job_table_was_dropped_and_made_again(
    fleet_ran_job_1: Stack, postgres_admin: sa.Engine
) -> None:
    stack = fleet_ran_job_1
    recreate(postgres_admin, stack.database_url)  # empty: not even the job table's tables

    done = cli(stack, "run", str(write_spec(stack, "second", "other", "dst")), "--wait")

    said = " ".join((done.stdout + done.stderr).split())
    assert not any(raw in said for raw in ("Traceback", "sqlalche.me", "ProgrammingError", "UndefinedTable")), said
    assert done.returncode == 0, said
    assert "planned by the fleet" in said
    assert said.count("had lost its tables") == 1 and "they were made again" in said  # one message says what happened
    assert_new_job_1_copied_its_own_source(stack)


def test_a_job_table_restored_under_the_fleet_gives_job_1_its_own_spec(
    fleet_ran_job_1: Stack, postgres_admin: sa.Engine
) -> None:
    """The tables are there again before the fleet plans (a restore of an empty dump): the workers' memory of the old
    job 1 would list `new` in `src`, find nothing and call it verified ("0/0 ids present")."""
    stack = fleet_ran_job_1
    recreate(postgres_admin, stack.database_url)
    jobs_database.Database(stack.database_url).dispose()  # its schema made, as any command makes it

    done = cli(stack, "run", str(write_spec(stack, "second", "other", "dst")), "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    assert_new_job_1_copied_its_own_source(stack)

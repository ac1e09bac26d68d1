"""Every column carried, every column verified (issue 28, item 2), on real Postgres + pgvector, Redis, Celery workers
and the Pinecone SDK against the local data plane: a table made with the application's own DDL, 200 rows filling
every column and NULLs where the DDL allows them (some ``metadata`` too), goes through ``legacy``, ``copy``,
``move``, a job inside Postgres and a job to Pinecone and back, and every column of every row comes back equal; a
job's verification fails when a column nsmigrate does not know differs. The helpers are
``tests/integration/test_pgvector_columns.py``'s."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import RunState
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import start_job
from tests.integration.test_pgvector_columns import (
    DIM,
    DOCUMENTED,
    app_rows,
    assert_every_column_equal,
    job,
    make_app_table,
    move,
    nsmigrate,
    table_rows,
)
from tests.polling import wait_until

INDEX = "app-chunks"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(INDEX, dimension=DIM)]


def wait_runs(db: jobs_database.Database, job_id: int, state: RunState = RunState.VERIFIED) -> list[dict[str, Any]]:
    """Wait until every run of the job is in ``state``; their verification reports (shown on a timeout)."""

    def reports() -> list[dict[str, Any]] | None:
        runs = jobs_and_runs.runs_of(db, job_id)
        return [r.verification or {} for r in runs] if runs and all(r.state == state for r in runs) else None

    def explain() -> str:
        return json.dumps([(r.state, r.verification) for r in jobs_and_runs.runs_of(db, job_id)])[:3000]

    found = wait_until(reports, what=f"job {job_id}'s runs {state}", timeout_s=180, explain=explain)
    assert found is not None
    return found


def test_the_documented_table_goes_everywhere_and_back_with_every_column_of_every_row(
    pg: sa.Engine, stack: Stack, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_app_table(pg, "embeddings", app_rows(200))
    original = table_rows(pg, "embeddings")
    assert sum(r["metadata"] is None for r in original.values()) == 50  # NULL metadata the copies must keep

    legacy = nsmigrate("legacy", "--yes", "--json")
    assert legacy.exit_code == 0, legacy.output
    assert json.loads(legacy.output)["verified"]
    assert_every_column_equal(original, table_rows(pg, "embeddings_default"))  # the row numbers too

    copied = nsmigrate("copy", "default", "docs", "--json")
    assert copied.exit_code == 0 and json.loads(copied.output)["verified"], copied.output
    assert_every_column_equal(original, table_rows(pg, "embeddings_docs"))

    moved = nsmigrate("move", "docs", "moved", "--yes", "--json")
    assert moved.exit_code == 0 and json.loads(moved.output)["backup_table"], moved.output
    assert_every_column_equal(original, table_rows(pg, "embeddings_moved"))

    # The same database under another URL: a job between the two is one between two databases.
    elsewhere_url = f"{database_url}?application_name=elsewhere"
    monkeypatch.setenv("ELSEWHERE_URL", elsewhere_url)
    stack.start_worker("list,copy,verify", 4, pool="threads", name="fleet", ELSEWHERE_URL=elsewhere_url)
    db, _, in_postgres = start_job(stack, move("moved", "fleet"))
    wait_runs(db, in_postgres)
    # A fleet target may gather several sources, so it numbers its own rows: every other column is the same.
    assert_every_column_equal(original, table_rows(pg, "embeddings_fleet"), but=("id",))
    db, _, between = start_job(stack, move("fleet", "apart", {**DOCUMENTED, "database_url_env": "ELSEWHERE_URL"}))
    wait_runs(db, between)  # its rows passed as they are, then verified record by record
    assert_every_column_equal(original, table_rows(pg, "embeddings_apart"), but=("id",))

    index = {"kind": "pinecone", "host": stack.pinecone.host(INDEX)}
    db, _, out_job = start_job(stack, job("out", DOCUMENTED, index, namespaces={"include": ["fleet"]}))
    wait_runs(db, out_job)
    db, _, back_job = start_job(stack, job("back", index, {**DOCUMENTED, "table": "back"}))
    wait_runs(db, back_job)
    assert_every_column_equal(original, table_rows(pg, "back_fleet"), but=("id",))


def test_a_fleet_verification_fails_when_a_column_nsmigrate_does_not_know_differs(pg: sa.Engine, stack: Stack) -> None:
    rows = app_rows(40)
    make_app_table(pg, "embeddings_alpha", rows)
    stack.start_worker("list,copy,verify", 2, pool="threads", name="fleet")
    db, dispatcher, job_id = start_job(stack, move("alpha", "beta"))
    wait_runs(db, job_id)
    one, other = rows[17]["chunk_id"], rows[23]["chunk_id"]
    with pg.begin() as conn:
        conn.execute(sa.text("UPDATE embeddings_beta SET confidence = 0.125 WHERE chunk_id = :i"), {"i": one})
        conn.execute(sa.text("UPDATE embeddings_beta SET created_at = now() WHERE chunk_id = :i"), {"i": other})

    launch.request_verification(db, dispatcher, job_id)

    [report] = wait_runs(db, job_id, RunState.VERIFY_FAILED)
    reasons = {m["id"]: m["reason"] for m in report["content_mismatches"]}
    assert reasons == {one: "confidence differs", other: "created_at differs"}

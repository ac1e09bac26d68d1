"""`status` reads a job's runs from the real job table as columns, each verification report reduced to its summary
and verdict in the database, and a job's namespace runs are written in one multi-row insert: both must give exactly
what the full rows said."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.main import app
from cli.render import SUMMARY_ROWS
from orchestrator import jobs
from orchestrator.models import Batch, NamespaceRun, RunState
from orchestrator.plan_types import Inventory
from orchestrator.planner import make_plan
from orchestrator.spec import parse_spec

pytestmark = pytest.mark.integration


def test_status_shows_each_runs_summary_and_verdict_and_every_planned_run(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "status-view",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    source = Inventory("src", 4, {"a": 3, "b": 5, "c": 7, "": 2}, "cosine")
    plan = make_plan(spec, source, Inventory("dst", 4, {}, "cosine"), {})
    db = jobs.Database(database_url)
    job_id = jobs.create_job(db, spec, plan, source_label="src", target_label="dst")
    reports = {
        "a": {"passed": True, "summary": "3/3 ids, contents equal", "missing": [], "checked_at": "t"},
        "b": {"passed": False, "summary": "2 missing", "missing": ["x", "y"]},
    }
    with db.transaction() as s:
        for ns, report in reports.items():
            s.execute(
                sa.update(NamespaceRun)
                .where(NamespaceRun.job_id == job_id, NamespaceRun.source_namespace == ns)
                .values(verification=report, state=RunState.VERIFIED if report["passed"] else RunState.VERIFY_FAILED)
            )

    status = jobs.job_status(db, job_id)

    by_ns = {r.source_namespace: r for r in status.runs}
    assert {ns: r.source_count for ns, r in by_ns.items()} == {"a": 3, "b": 5, "c": 7, "": 2}
    assert (by_ns["a"].verification, by_ns["a"].verified_ok) == ("3/3 ids, contents equal", True)
    assert (by_ns["b"].verification, by_ns["b"].verified_ok) == ("2 missing", False)
    assert (by_ns["c"].verification, by_ns["c"].verified_ok) == (None, None)
    assert by_ns["b"].state == RunState.VERIFY_FAILED and by_ns["c"].state == RunState.PENDING
    assert [r.run_id for r in status.runs] == sorted(r.run_id for r in status.runs)
    assert status.totals.source == 17
    db.dispose()


def test_status_of_many_namespaces_shows_those_to_look_at_and_the_count_of_each_state(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "many",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    names = {f"n{k:02d}": 3 for k in range(60)}
    plan = make_plan(spec, Inventory("src", 4, names, "cosine"), Inventory("dst", 4, {}, "cosine"), {})
    db = jobs.Database(database_url)
    job_id = jobs.create_job(db, spec, plan, source_label="src", target_label="dst")
    states = {"n59": RunState.LIST_FAILED, "n58": RunState.VERIFY_FAILED, "n57": RunState.COPYING}
    with db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.job_id == job_id).values(state=RunState.VERIFIED))
        for ns, state in states.items():
            s.execute(
                sa.update(NamespaceRun)
                .where(NamespaceRun.job_id == job_id, NamespaceRun.source_namespace == ns)
                .values(state=state)
            )
    db.dispose()
    runner = CliRunner()

    summary = runner.invoke(app, ["status", str(job_id), "--database-url", database_url])
    every = runner.invoke(app, ["status", str(job_id), "--all", "--database-url", database_url])

    assert summary.exit_code == 0 and every.exit_code == 0, summary.output + every.output
    rows = [line for line in summary.stdout.splitlines() if line.startswith("│ n")]
    assert len(rows) == SUMMARY_ROWS
    assert [row.split()[1] for row in rows[:3]] == ["n59", "n58", "n57"]  # failed first, then unfinished
    assert "20 more namespaces" in summary.stdout
    assert "1 copying, 1 list_failed, 57 verified, 1 verify_failed" in " ".join(summary.stdout.split())
    assert len([line for line in every.stdout.splitlines() if line.startswith("│ n")]) == 60
    assert "more namespaces" not in every.stdout


def test_status_counts_each_runs_batches_by_state_as_the_batch_rows_say(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "batch-counts",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    plan = make_plan(
        spec, Inventory("src", 4, {"a": 9, "b": 3, "c": 1}, "cosine"), Inventory("dst", 4, {}, "cosine"), {}
    )
    db = jobs.Database(database_url)
    job_id = jobs.create_job(db, spec, plan, source_label="src", target_label="dst")
    run_a, run_b, _ = (r.id for r in jobs.runs_of(db, job_id))
    a = jobs.add_batches(db, run_a, [["1"], ["2"], ["3"], ["4"], ["5"]], "t", listing_done=False).batch_ids
    b = jobs.add_batches(db, run_b, [["x", "y"], ["z"]], None, listing_done=True).batch_ids
    for batch in (a[0], a[1], a[2], a[3], b[0], b[1]):
        jobs.start_batch(db, batch, "w")
    for batch in (a[0], b[0], b[1]):
        jobs.finish_batch(db, batch, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs.fail_batch(db, a[1], "boom: the target refused")
    jobs.fail_batch(db, a[2], "boom: again")

    status = {r.run_id: r for r in jobs.job_status(db, job_id).runs}

    with db.transaction() as s:
        rows = s.execute(sa.select(Batch.run_id, Batch.state, sa.func.count()).group_by(Batch.run_id, Batch.state))
        expected = {(run_id, state): n for run_id, state, n in rows}
    for run_id, run in status.items():
        assert run.batches.as_dict() == {
            st: expected.get((run_id, st), 0) for st in ("queued", "running", "done", "failed")
        }
    assert status[run_a].batches.as_dict() == {"queued": 1, "running": 1, "done": 1, "failed": 2}
    assert status[run_a].last_error == "boom: the target refused"
    assert status[run_b].state == RunState.COPIED and status[run_b].batches.done == 2
    db.dispose()

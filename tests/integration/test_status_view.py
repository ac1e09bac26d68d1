"""`status` reads a job's runs from the real job table as columns, each verification report reduced to its summary
and verdict in the database, and a job's namespace runs are written in one multi-row insert: both must give exactly
what the full rows said."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator import jobs
from orchestrator.models import NamespaceRun, RunState
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

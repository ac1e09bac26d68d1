"""A job table whose reports quoted metadata values (schema 8 and before) is brought to schema 9 on a real Postgres:
every value quoted in a run's verification and cleanup reports, its error, an event and an erasure's receipt is
described by its size instead, everything else in those rows is kept, and a table already upgraded is not touched
again."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import (
    SCHEMA_VERSION,
    ErasureEntry,
    Event,
    NamespaceRun,
    SchemaInfo,
    ensure_schema,
)
from tests.fleet_jobs import planned_job

#: A mismatch as reports wrote it before schema 9: the person's words quoted.
OLD_REASON = "metadata key 'text': expected 'my home address is 12 Elm St', got 'my home'"
NOW_REASON = "metadata key 'text': expected a text of 28 characters, got a text of 7 characters"
OLD_LINE = f"1 contents differ (e.g. 'doc-1': {OLD_REASON})"
NOW_LINE = f"1 contents differ (e.g. 'doc-1': {NOW_REASON})"


def old_report() -> dict[str, Any]:
    return {
        "passed": False,
        "summary": "FAILED: 3/4 ids present, 1/3 contents differ",
        "reasons": [OLD_LINE, "1 source ids missing in target (e.g. 'doc-9')"],
        "content_mismatches": [{"id": "doc-1", "reason": OLD_REASON}],
        "content_mismatch_count": 1,
        "missing_ids": ["doc-9"],
    }


def a_job_of_schema_8(database_url: str) -> tuple[sa.Engine, int, int]:
    db = jobs_database.Database(database_url)
    job_id = planned_job(db, "quotes", vectors=4)
    [run] = jobs_and_runs.runs_of(db, job_id)
    with db.transaction() as s:  # what a verification, a cleanup refusal and an erasure of schema 8 left
        stored = s.get(NamespaceRun, run.id)
        assert stored is not None
        stored.verification = old_report()
        stored.cleanup = {"refused": OLD_LINE}
        stored.last_error = f"verification failed: {OLD_LINE}"
        jobs_database.add_event(s, "verification_failed", "worker", job_id, run.id, reasons=[OLD_LINE], count=1)
        jobs_database.add_event(s, "verified", "worker", job_id, run.id, summary="4/4 ids present")
        s.add(ErasureEntry(job_id=job_id, creator_id="a.1", subject={}, receipt={"places": [{"note": OLD_LINE}]}))
        s.execute(sa.delete(SchemaInfo))
        s.add(SchemaInfo(version=8))
    db.dispose()
    return sa.create_engine(database_url), job_id, run.id


def stored(engine: sa.Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        run = conn.execute(
            sa.select(NamespaceRun.verification, NamespaceRun.cleanup, NamespaceRun.last_error).where(
                NamespaceRun.id == run_id
            )
        ).one()
        events = list(conn.scalars(sa.select(Event.detail).where(Event.run_id == run_id).order_by(Event.id)))
        return {
            "verification": run.verification,
            "cleanup": run.cleanup,
            "last_error": run.last_error,
            "events": events,
            "receipt": conn.scalar(sa.select(ErasureEntry.receipt)),
            "version": conn.scalar(sa.select(sa.func.max(SchemaInfo.version))),
        }


def test_quoted_values_are_described_and_the_rest_is_kept(database_url: str) -> None:
    engine, _, run_id = a_job_of_schema_8(database_url)
    before = stored(engine, run_id)
    assert before["version"] == 8 and "Elm St" in str(before)

    ensure_schema(engine)  # what any command or worker does on start

    after = stored(engine, run_id)
    assert "Elm St" not in str(after) and "my home" not in str(after)
    assert after["verification"] == {
        **old_report(),
        "reasons": [NOW_LINE, "1 source ids missing in target (e.g. 'doc-9')"],
        "content_mismatches": [{"id": "doc-1", "reason": NOW_REASON}],
    }
    assert after["cleanup"] == {"refused": NOW_LINE}
    assert after["last_error"] == f"verification failed: {NOW_LINE}"
    assert [e for e in after["events"] if "reasons" in e] == [{"reasons": [NOW_LINE], "count": 1}]
    assert after["events"][1] == before["events"][1]  # nothing quoted: left as it was
    assert after["receipt"] == {"places": [{"note": NOW_LINE}]}
    assert after["version"] == SCHEMA_VERSION
    engine.dispose()


def test_an_upgraded_table_is_not_rewritten_again(database_url: str) -> None:
    engine, _, run_id = a_job_of_schema_8(database_url)
    ensure_schema(engine)
    with engine.begin() as conn:  # a quote that reached the table after the upgrade would be a new defect, not data
        conn.execute(sa.update(NamespaceRun).where(NamespaceRun.id == run_id).values(last_error=f"later: {OLD_LINE}"))

    ensure_schema(engine)

    assert stored(engine, run_id)["last_error"] == f"later: {OLD_LINE}"
    engine.dispose()

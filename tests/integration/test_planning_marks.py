"""Planning's marks (``Prepared.marks``, ``orchestrator.planning.prepared``), the first steps of a job's timeline:
each is taken where its step happened, in order, around the requests the data plane really received, and kept in the
job's ``job_created`` event; the data plane's request times (``/_sandbox/stats``) are when its requests arrived."""

from __future__ import annotations

import time

import pytest

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.planning.prepared import PLANNING_MARKS
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import PineconeSandbox


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch, pinecone_api_key: str) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_api_key)


def test_planning_marks_bracket_the_stores_requests_and_are_kept_with_the_job(
    sandbox: PineconeSandbox, job_table_url: str, redis_url: str
) -> None:
    sandbox.load("src", "a", [(f"a{k}", [1.0] * 8, {}) for k in range(5)])
    sandbox.load("src", "b", [(f"b{k}", [2.0] * 8, {}) for k in range(3)])
    spec = parse_spec(
        {
            "name": "marks",
            "source": {"kind": "pinecone", "host": sandbox.host("src")},
            "target": {"kind": "pinecone", "host": sandbox.host("dst")},
        }
    )
    parsed_at = time.time()

    prepared = launch.prepare(spec, open_retrying_store, marks={"spec_parsed": parsed_at})

    marks = prepared.marks
    assert set(marks) == set(PLANNING_MARKS) - {"spec_submitted"}  # planned here: no command handed it over
    assert marks["spec_parsed"] == parsed_at
    source_times = sandbox.stats("src")["request_times"]
    first_request = min(t["first"] for t in source_times.values())
    last_request = max(t["last"] for t in source_times.values())
    assert marks["spec_parsed"] <= marks["first_store_request"] <= first_request
    assert last_request <= marks["plan_done"]

    db = jobs_database.Database(job_table_url, create=False)
    try:
        job_id = launch.launch(db, Dispatcher(Settings(redis_url=redis_url)), prepared)
        [created] = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "job_created"]
        job_row = jobs_and_runs.find_job(db, job_id).created_at.timestamp()
    finally:
        db.dispose()
    assert created["detail"]["planning"] == {mark: round(at, 3) for mark, at in marks.items()}
    assert marks["plan_done"] <= job_row

"""Runs written ``checking`` (their own checks still to be made while the job copies, ``launch.start_or_resume``) on a
real Postgres: nothing sends them until their checks pass, a refusal ends them ``cancelled`` with its reason, and a
`resume` after the planning process stopped refuses them rather than copy them unchecked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nsmigrate.orchestrator import recovery
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec

SPEC = parse_spec(
    {
        "name": "checking",
        "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
    }
)


@pytest.fixture
def db(job_table_url: str) -> Iterator[jobs_database.Database]:
    database = jobs_database.Database(job_table_url, create=False)
    yield database
    database.dispose()


def a_job(db: jobs_database.Database, checking: set[str]) -> int:
    plan = Plan([NamespacePlan(ns, ns, 3, 1) for ns in ("a", "b", "c")], Estimate(0, 0, 0, 0, 0, 0.0))
    return jobs_and_runs.create_job(db, SPEC, plan, source_label="src", target_label="dst", checking=checking)


def states(db: jobs_database.Database, job_id: int) -> dict[str, str]:
    return {run.source_namespace: run.state for run in jobs_and_runs.runs_of(db, job_id)}


def test_checking_runs_are_not_listed_until_their_checks_pass_and_a_refusal_says_why(
    db: jobs_database.Database,
) -> None:
    job_id = a_job(db, {"a", "b"})
    assert states(db, job_id) == {"a": "checking", "b": "checking", "c": "pending"}
    assert [ns for _, ns, _ in jobs_and_runs.runs_to_list(db, job_id)] == ["c"]  # what launch sends at once

    jobs_and_runs.finish_namespace_checks(db, job_id, ["a"], {"b": "ids collide in 'shared'"}, actor="tester")

    assert states(db, job_id) == {"a": "pending", "b": "cancelled", "c": "pending"}
    assert [ns for _, ns, _ in jobs_and_runs.runs_to_list(db, job_id, ["a"])] == ["a"]
    [refusal] = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "namespace_refused"]
    assert refusal["detail"] == {"namespace": "b", "reason": "ids collide in 'shared'"}
    assert (
        next(r for r in jobs_and_runs.runs_of(db, job_id) if r.source_namespace == "b").last_error
        == "ids collide in 'shared'"
    )
    # A second word on a run no longer checking changes nothing.
    jobs_and_runs.finish_namespace_checks(db, job_id, ["b"], {"a": "late"}, actor="tester")
    assert states(db, job_id) == {"a": "pending", "b": "cancelled", "c": "pending"}


def test_a_resume_refuses_runs_whose_checks_never_ended(db: jobs_database.Database, redis_url: str) -> None:
    job_id = a_job(db, {"a"})  # the planning process stopped before checking "a"

    sent = recovery.resume(db, Dispatcher(Settings(redis_url=redis_url)), job_id, actor="tester")

    assert states(db, job_id) == {"a": "cancelled", "b": "pending", "c": "pending"}
    assert sent["listers"] == 2  # b and c, never a
    [refusal] = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "namespace_refused"]
    assert "--new" in refusal["detail"]["reason"]

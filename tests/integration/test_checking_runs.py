"""Runs written ``checking`` (their own checks still to be made while the job copies, ``launch.start_or_resume``) on a
real Postgres and Redis: nothing sends them until their checks pass, a refusal ends them ``cancelled`` with its
reason, a `resume` while the process planning the job still checks them leaves them to it, and a `resume` after that
process stopped refuses them rather than copy them unchecked."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis as redis_lib

from nsmigrate.orchestrator import launch, recovery
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.store import Store
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.polling import wait_until

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


def job_state(db: jobs_database.Database, job_id: int) -> str:
    return str(jobs_and_runs.find_job(db, job_id).state)


@pytest.fixture
def dispatcher(redis_url: str) -> Iterator[Dispatcher]:
    sender = Dispatcher(Settings(redis_url=redis_url))
    yield sender
    sender.close()


def sent_for(redis_url: str, db: jobs_database.Database, job_id: int) -> list[str]:
    """The source namespaces of the job whose runs a task waiting in Redis lists (a lister, or a small namespaces'
    task, which lists and copies), sorted."""
    broker, names = (
        redis_lib.Redis.from_url(redis_url),
        {r.id: r.source_namespace for r in jobs_and_runs.runs_of(db, job_id)},
    )
    run_ids: list[int] = []
    for queue in (Queue.LIST, Queue.COPY):
        for raw in broker.lrange(queue.value, 0, -1):
            kwargs = json.loads(base64.b64decode(json.loads(raw)["body"]))[1]  # Celery's body: [args, kwargs, embed]
            run_ids += kwargs.get("run_ids", [kwargs.get("run_id")])
    return sorted(names[run_id] for run_id in run_ids if run_id in names)


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


def test_a_resume_refuses_runs_whose_checks_never_ended(db: jobs_database.Database, dispatcher: Dispatcher) -> None:
    job_id = a_job(db, {"a"})  # the planning process stopped before checking "a": nothing holds its lock

    sent = recovery.resume(db, dispatcher, job_id, actor="tester")

    assert states(db, job_id) == {"a": "cancelled", "b": "pending", "c": "pending"}
    assert sent == {"listers": 2, "batches": 0, "verifications": 0, "refused": 1}  # b and c, never a; a said
    [refusal] = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "namespace_refused"]
    assert "--new" in refusal["detail"]["reason"]


def test_a_resume_leaves_the_runs_a_live_planner_is_checking_to_it(
    db: jobs_database.Database, dispatcher: Dispatcher, redis_url: str
) -> None:
    # `nsmigrate run SPEC` checks "a" (minutes to hours) when an operator runs `nsmigrate resume` (or `run SPEC`
    # again, as a command that stopped waiting for the fleet's planner says to): "a" is the planner's to send.
    starting = launch.Starting(db, dispatcher, "planner", None, Settings(redis_url=redis_url))
    with recovery.planning(db, SPEC.name):  # as `launch.start_or_resume` holds it while it plans and checks
        starting.job_id = a_job(db, {"a"})
        sent = recovery.resume(db, dispatcher, starting.job_id, actor="operator")
        assert states(db, starting.job_id) == {"a": "checking", "b": "pending", "c": "pending"}
        starting.checked(SPEC, ["a"], {})

    assert sent == {"listers": 2, "batches": 0, "verifications": 0, "checking": 1}
    assert states(db, starting.job_id) == {"a": "pending", "b": "pending", "c": "pending"}
    assert sent_for(redis_url, db, starting.job_id) == ["a", "b", "c"]  # a by the planner, b and c by the resume
    assert starting.refused == {}
    assert not [e for e in jobs_status.events_of(db, starting.job_id) if e["action"] == "namespace_refused"]


def test_a_planner_cut_off_from_the_job_table_says_which_namespaces_a_resume_refused_meanwhile(
    db: jobs_database.Database, dispatcher: Dispatcher, redis_url: str
) -> None:
    # Its session (and lock) lost, say in a Postgres restart: a resume takes it for stopped and refuses "a". Its
    # check of "a" passing later cannot send it any more; it says so, as a refusal of its own, with the way out.
    starting = launch.Starting(db, dispatcher, "planner", None, Settings(redis_url=redis_url))
    starting.job_id = a_job(db, {"a", "b"})
    sent = recovery.resume(db, dispatcher, starting.job_id, actor="operator")
    assert states(db, starting.job_id) == {"a": "cancelled", "b": "cancelled", "c": "pending"}
    assert sent.get("refused") == 2

    starting.checked(SPEC, ["a"], {"b": "ids collide in 'shared'"})

    assert states(db, starting.job_id) == {"a": "cancelled", "b": "cancelled", "c": "pending"}
    assert sorted(starting.refused) == ["a", "b"]
    assert "refused it meanwhile" in starting.refused["a"] and "--new" in starting.refused["a"]
    assert starting.refused["b"] == "ids collide in 'shared'"
    assert sent_for(redis_url, db, starting.job_id) == ["c"]


def test_a_resume_that_refuses_the_last_open_runs_of_a_job_finishes_it(
    db: jobs_database.Database, dispatcher: Dispatcher
) -> None:
    job_id = a_job(db, {"a", "b", "c"})  # every namespace checking when the planning process stopped

    recovery.resume(db, dispatcher, job_id, actor="tester")

    assert states(db, job_id) == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    assert job_state(db, job_id) == "finished"  # not `running` for ever, with nothing left to run


# ------------------------------------------------------------------ the same, through `nsmigrate run`'s own path

DIM = 4


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


class SlowToList:
    """The source store, whose listing of namespace "a" (its check reads every id) waits until the test lets it go
    on: a check that takes hours, held at a known point."""

    def __init__(self, store: Store, reading: threading.Event, go_on: threading.Event) -> None:
        self.store, self.reading, self.go_on = store, reading, go_on

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def list_ids(self, namespace: str, **kwargs: Any) -> Any:
        if namespace == "a":
            self.reading.set()
            assert self.go_on.wait(60), "the test never let the check go on"
        return self.store.list_ids(namespace, **kwargs)


def test_a_resume_while_run_checks_namespaces_leaves_them_to_it(
    sandbox: PineconeSandbox,
    db: jobs_database.Database,
    job_table_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")  # the local data plane takes any key
    for n, ns in enumerate(("a", "b", "c")):
        sandbox.load("src", ns, [(f"{ns}-{i}", [float(n + 1)] * DIM, {}) for i in range(3)])
    spec = parse_spec(
        {
            "name": "checked-while-resumed",
            "source": {"kind": "pinecone", "host": sandbox.host("src")},
            "target": {"kind": "pinecone", "host": sandbox.host("dst")},
            # a and b share a target namespace: each is checked for ids the other holds too before it is sent
            "routing": {"mode": "explicit", "map": {"a": "merged", "b": "merged", "c": "c"}},
        }
    )
    reading, go_on = threading.Event(), threading.Event()

    def open_store(store_spec: Any) -> Any:
        store = open_retrying_store(store_spec)
        return SlowToList(store, reading, go_on) if store_spec.host == sandbox.host("src") else store

    settings = Settings(database_url=job_table_url, redis_url=redis_url)
    dispatcher = Dispatcher(settings)
    with ThreadPoolExecutor(1) as planner:
        try:
            started = planner.submit(launch.start_or_resume, db, dispatcher, spec, open_store, settings=settings)
            wait_until(lambda: reading.is_set() or started.done(), what="the check of a begun", timeout_s=60)
            assert not started.done(), started.exception()  # planning failed
            job = wait_until(lambda: jobs_and_runs.latest_unfinished_job(db, spec.name), what="the job", timeout_s=30)
            job_id = job.id

            again = launch.start_or_resume(db, dispatcher, spec, open_store, settings=settings)  # `run SPEC` again
            assert states(db, job_id) == {"a": "checking", "b": "checking", "c": "pending"}
            assert again.job_id == job_id and again.resumed is not None and again.resumed.get("checking") == 2
        finally:
            go_on.set()
        assert started.result(timeout=60).refused == {}

    assert states(db, job_id) == {"a": "pending", "b": "pending", "c": "pending"}
    assert sent_for(redis_url, db, job_id) == ["a", "b", "c", "c"]  # c by the run and by the resume, a and b once
    dispatcher.close()

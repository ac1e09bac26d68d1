"""`nsmigrate run` and `plan` handing the spec to the fleet's planner (``workers.fleet.plan_server``), as a user runs
them: `python -m nsmigrate …` in its own process, a real `nsmigrate worker`, real Redis and Postgres, the real
Pinecone SDK on the local data plane. Whatever path a spec takes, the command's answer, the job table and the data are
the same; when the fleet cannot plan it, the command plans it itself and nothing is started twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.submissions import Heartbeat, database_fingerprint
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY, SUBMISSIONS_KEY
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import Stack
from tests.polling import wait_until

NAMESPACES = {"alpha": 30, "beta": 12, "": 7}
#: What the command that handed its spec to the fleet must not import: the fleet has them loaded.
HEAVY = ("sqlalchemy", "celery", "kombu", "pinecone", "pyarrow")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", dimension=8), IndexSpec("dst", dimension=8)]


@pytest.fixture
def loaded(stack: Stack) -> Stack:
    for n, (ns, count) in enumerate(NAMESPACES.items()):
        stack.pinecone.load("src", ns, [(f"{ns or 'd'}-{i}", [0.1 * (n + 1)] * 8, {"i": i}) for i in range(count)])
    return stack


def write_spec(stack: Stack, name: str = "fleet-planned", **extra: Any) -> Path:
    spec = {
        "name": name,
        "source": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "batch_size": 10,
        **extra,
    }
    path = stack.workdir / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    return path


def cli(stack: Stack, *args: str, importtime: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "nsmigrate", *args],
        env=stack.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def start_planner(stack: Stack, queues: str = "list,copy,verify,cleanup", *args: str) -> None:
    """A worker with its planner (on by default for one consuming ``list``), once its heartbeat is there."""
    stack.start_worker(queues, 4, pool="threads", args=args)
    client = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: client.get(PLANNER_KEY), what="the planner's heartbeat", timeout_s=60)


def imported(stderr: str) -> set[str]:
    """Top-level packages named by ``-X importtime``'s lines."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if "import time:" in line}


def job_ids(stack: Stack) -> list[int]:
    db = jobs_database.Database(stack.database_url)
    try:
        return sorted(j["job_id"] for j in jobs_status.list_jobs(db))
    finally:
        db.dispose()


def target_counts(pinecone: PineconeSandbox) -> dict[str, int]:
    return {ns: n for ns, n in pinecone.service("dst").store.counts().items() if n}


def test_run_is_planned_by_the_fleet_and_the_command_loads_none_of_it(loaded: Stack) -> None:
    start_planner(loaded)

    done = cli(loaded, "run", str(write_spec(loaded)), "--wait", importtime=True)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "planned by the fleet" in done.stdout
    assert "3 namespaces, 49 vectors" in done.stdout  # the plan is shown as a command planning it shows it
    heavy = imported(done.stderr) & set(HEAVY)
    assert not heavy, f"the command imported {sorted(heavy)}"
    assert target_counts(loaded.pinecone) == NAMESPACES  # the data, not the job table's word
    (job_id,) = job_ids(loaded)
    # It waited, as `run --wait` planned here waits, for every namespace copied and verified (exit code 0).
    assert "total: 49/49 vectors copied, 0 in failed batches" in done.stdout
    db = jobs_database.Database(loaded.database_url)
    states = {r.state for r in jobs_status.job_status(db, job_id).runs}
    created = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "job_created"]
    db.dispose()
    assert states == {"verified"}
    assert [e["actor"] for e in created] == [default_actor()]  # who asked, not the worker
    # Planning's marks, kept with the job: handed over by the command, then validated, read and planned here.
    marks = created[0]["detail"]["planning"]
    in_order = [marks[mark] for mark in ("spec_submitted", "spec_parsed", "first_store_request", "plan_done")]
    assert in_order == sorted(in_order)


def test_a_plan_from_the_fleet_reads_as_the_plan_made_here(loaded: Stack) -> None:
    start_planner(loaded)
    spec = str(write_spec(loaded))

    fleet, here = cli(loaded, "plan", spec), cli(loaded, "plan", spec, "--plan-here")

    assert fleet.returncode == here.returncode == 0, fleet.stderr + here.stderr
    assert fleet.stdout == here.stdout
    assert job_ids(loaded) == []  # a dry run writes nothing, wherever it ran


def test_a_bad_spec_is_refused_by_the_fleet_and_nothing_is_written(loaded: Stack) -> None:
    start_planner(loaded)

    done = cli(loaded, "run", str(write_spec(loaded, batch_sise=10)), importtime=True)

    assert done.returncode == 2
    assert not imported(done.stderr) & set(HEAVY)  # refused by the fleet: the command loaded no planner
    assert "batch_sise" in done.stderr and "unknown field" in done.stderr
    assert "Traceback" not in done.stderr
    assert job_ids(loaded) == []
    assert redis_lib.Redis.from_url(loaded.redis_url).llen(SUBMISSIONS_KEY) == 0


def test_a_key_only_the_command_has_makes_the_command_plan(loaded: Stack) -> None:
    start_planner(loaded)
    spec = write_spec(
        loaded, source={"kind": "pinecone", "host": loaded.pinecone.host("src"), "api_key_env": "PINECONE_API_KEY_MINE"}
    )

    done = cli(loaded, "run", str(spec), PINECONE_API_KEY_MINE="sandbox-key")  # the worker's environment has none

    assert done.returncode == 0, done.stderr
    assert "planning in this command: this worker's environment has no PINECONE_API_KEY_MINE" in done.stderr
    assert "planned by the fleet" not in done.stdout
    assert len(job_ids(loaded)) == 1


def test_a_planner_that_does_not_answer_is_not_waited_for(loaded: Stack) -> None:
    # A heartbeat left by a planner that died: the spec waits in the list, nobody takes it.
    client = redis_lib.Redis.from_url(loaded.redis_url)
    client.set(PLANNER_KEY, Heartbeat("gone@nowhere", database_fingerprint(loaded.database_url)).encode(), ex=60)

    done = cli(loaded, "run", str(write_spec(loaded)))

    assert done.returncode == 0, done.stderr
    assert "planned by the fleet" not in done.stdout and "job 1 started" in done.stdout
    assert client.llen(SUBMISSIONS_KEY) == 0  # taken back: no planner can start it a second time later
    assert job_ids(loaded) == [1]


def test_a_planner_of_another_job_table_is_not_asked(loaded: Stack) -> None:
    client = redis_lib.Redis.from_url(loaded.redis_url)
    client.set(PLANNER_KEY, Heartbeat("other@fleet", database_fingerprint("postgresql://elsewhere/x")).encode())

    done = cli(loaded, "run", str(write_spec(loaded)))

    assert done.returncode == 0, done.stderr
    assert "job 1 started" in done.stdout
    assert client.llen(SUBMISSIONS_KEY) == 0


def test_an_unfinished_job_is_resumed_by_the_fleet(loaded: Stack) -> None:
    spec = str(write_spec(loaded))
    first = cli(loaded, "run", spec)  # no worker yet: planned here, its listers wait in Redis
    assert first.returncode == 0 and "job 1 started" in first.stdout, first.stderr
    start_planner(loaded, "verify", "--planner")  # a planner on a worker that lists nothing: job 1 stays unfinished

    again = cli(loaded, "run", spec)

    assert again.returncode == 0, again.stderr
    assert "job 1 was unfinished: resumed (3 listers, 0 batches re-queued)" in again.stdout
    assert job_ids(loaded) == [1]
    db = jobs_database.Database(loaded.database_url)
    resumed = [e for e in jobs_status.events_of(db, 1) if e["action"] == "job_resumed"]
    db.dispose()
    assert [e["actor"] for e in resumed] == [default_actor()]

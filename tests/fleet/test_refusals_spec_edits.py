"""Issue 47, case 3: a spec file edited while its job is unfinished is not silently ignored.

Played as the issue tells it, with `python -m cli …` in its own process against real Redis and Postgres, a real
`nsmigrate worker` whose planner takes the spec (``workers.fleet.plan_server``), and the command planning by itself
(``--plan-here``): `run` of the edited file (``cleanup.mode`` auto → never, another target) refuses, the same way
both ways, names each difference and changes nothing, until told which spec to use: `--resume` goes on with the
stored one, `--new` starts another job with the file's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import HEAVY, cli, imported, job_ids, start_planner


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", dimension=8), IndexSpec("dst", dimension=8), IndexSpec("other", dimension=8)]


def write_spec(stack: Stack, cleanup: str, target: str) -> Path:
    """The spec file `edited.yaml`, written again in place as an operator edits it."""
    spec: dict[str, Any] = {
        "name": "edited",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(target)},
        "batch_size": 10,
        "cleanup": {"mode": cleanup},
    }
    path = stack.workdir / "edited.yaml"
    path.write_text(json.dumps(spec))
    return path


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def stored_spec(stack: Stack, job_id: int) -> dict[str, Any]:
    db = jobs_database.Database(stack.database_url)
    try:
        return dict(jobs_and_runs.find_job(db, job_id).spec)
    finally:
        db.dispose()


def actions(stack: Stack, job_id: int) -> list[str]:
    db = jobs_database.Database(stack.database_url)
    try:
        return [e["action"] for e in jobs_status.events_of(db, job_id)]
    finally:
        db.dispose()


def test_an_edited_spec_is_refused_alike_by_the_fleet_and_the_command_until_told_which_to_use(stack: Stack) -> None:
    stack.pinecone.load("src", "ns0", [(f"v-{i}", [0.1] * 8, {"i": i}) for i in range(30)])
    spec = write_spec(stack, cleanup="auto", target="dst")
    nothing = cli(stack, "run", str(spec), "--resume")  # no job to go on with: none is started
    assert nothing.returncode == 2 and "no unfinished job named 'edited' to resume" in nothing.stderr
    assert job_ids(stack) == []
    first = cli(stack, "run", str(spec))  # no worker yet: planned here, its listers wait in Redis
    assert first.returncode == 0 and "job 1 started" in first.stdout, first.stderr
    start_planner(stack, "verify", "--planner")  # a planner on a worker that lists nothing: job 1 stays unfinished
    write_spec(stack, cleanup="never", target="other")  # the operator edits the file

    by_fleet = cli(stack, "run", str(spec), importtime=True)
    here = cli(stack, "run", str(spec), "--plan-here")

    assert not imported(by_fleet.stderr) & set(HEAVY)  # refused by the fleet's planner, not planned here
    for done in (by_fleet, here):
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "resumed" not in done.stdout
        [error] = errors(done.stderr)
        assert "job 1 (edited) is unfinished and was started with another spec" in error
        assert 'cleanup.mode: "auto" → "never"' in error
        assert f'target.host: "{stack.pinecone.host("dst")}" → "{stack.pinecone.host("other")}"' in error
        assert "--resume" in error and "--new" in error
    assert errors(by_fleet.stderr) == errors(here.stderr)  # the same refusal, whoever planned
    assert job_ids(stack) == [1]
    assert "job_resumed" not in actions(stack, 1)
    assert stored_spec(stack, 1)["cleanup"]["mode"] == "auto"

    # --resume: job 1 goes on as it was started, the file notwithstanding (planned by the fleet, then here).
    for extra in ((), ("--plan-here",)):
        resumed = cli(stack, "run", str(spec), "--resume", *extra)
        assert resumed.returncode == 0, resumed.stderr
        assert "job 1" in resumed.stdout and "was unfinished: resumed" in resumed.stdout
    assert job_ids(stack) == [1] and stored_spec(stack, 1)["target"]["host"] == stack.pinecone.host("dst")

    # --new: another job, with the file's spec; --new and --resume together are refused.
    both = cli(stack, "run", str(spec), "--new", "--resume")
    assert both.returncode == 2 and "exclude each other" in both.stderr
    started = cli(stack, "run", str(spec), "--new")
    assert started.returncode == 0 and "job 2 started" in started.stdout, started.stderr
    assert stored_spec(stack, 2)["cleanup"]["mode"] == "never"
    assert stored_spec(stack, 2)["target"]["host"] == stack.pinecone.host("other")

    # The file as job 2 was started with it: resumed without a flag, by the fleet and here.
    for extra in ((), ("--plan-here",)):
        again = cli(stack, "run", str(spec), *extra)
        assert again.returncode == 0, again.stderr
        assert "job 2" in again.stdout and "was unfinished: resumed" in again.stdout
    assert job_ids(stack) == [1, 2]

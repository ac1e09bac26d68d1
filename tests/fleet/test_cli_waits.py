"""Commands that follow a job (`run --wait`, `verify`) return when what they wait for is done, on a real worker.

`run --wait` waits for the copy, for verification only when the spec verifies by itself, and for the cleanups when
it cleans up by itself (`cleanup.mode: auto`); `verify` waits for the new verdicts it asked for, also on a job that
finished long ago. Each command runs as `python -m nsmigrate` in a child
process with a deadline, so a wait that never ends fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import redis as redis_lib
import yaml

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY
from nsmigrate.orchestrator.models import JobState, RunState
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.polling import wait_until

NAMESPACES = {"ns0": 30, "ns1": 50}
COMMAND_DEADLINE_S = 90  # far above the seconds these jobs take; reached only by a wait that never ends


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", dimension=8), IndexSpec("small-dst", dimension=8)]


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared stack with its source loaded and one worker for every queue."""
    for n, (ns, count) in enumerate(NAMESPACES.items()):
        stack.pinecone.load("small-src", ns, [(f"{ns}-{i:03d}", [0.1 * (n + 1)] * 8, {"n": n}) for i in range(count)])
    stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    return stack


def spec_file(stack: Stack, **overrides: Any) -> str:
    data: dict[str, Any] = {
        "name": "waits",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("small-src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("small-dst")},
        "batch_size": 20,
        **overrides,
    }
    path = stack.workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def nsmigrate(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "nsmigrate", *args],
            env=stack.env(PINECONE_API_KEY=SANDBOX_API_KEY),
            capture_output=True,
            text=True,
            timeout=COMMAND_DEADLINE_S,
        )
    except subprocess.TimeoutExpired as e:
        printed = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else str(e.stdout)
        pytest.fail(f"`nsmigrate {' '.join(args)}` still waiting after {COMMAND_DEADLINE_S} s; it printed:\n{printed}")


def runs(stack: Stack, job_id: int) -> list[Any]:
    db = jobs_database.Database(stack.database_url)
    try:
        return jobs_and_runs.runs_of(db, job_id)
    finally:
        db.dispose()


def test_run_wait_returns_once_copied_when_the_spec_does_not_verify(stack: Stack) -> None:
    result = nsmigrate(stack, "run", spec_file(stack, auto_verify=False), "--wait")

    assert result.returncode == 0, (result.stdout, result.stderr)
    job_id = int(result.stdout.split("started\n", 1)[1].split()[0])
    after = runs(stack, job_id)
    assert {r.state for r in after} == {RunState.COPIED}
    assert {r.source_namespace: r.copied for r in after} == NAMESPACES
    assert all(r.verification is None for r in after)  # nothing verified that the spec did not ask for


def test_run_wait_returns_once_the_sources_are_cleaned_up_when_the_spec_cleans_up_by_itself(stack: Stack) -> None:
    # Each source request slowed: a cleanup's listings, proofs, deletes and LSN probe take seconds after its verdict.
    stack.pinecone.set_faults("small-src", Faults(latency_ms=150))
    try:
        result = nsmigrate(stack, "run", spec_file(stack, cleanup={"mode": "auto"}), "--wait")
    finally:
        stack.pinecone.set_faults("small-src", Faults())

    assert result.returncode == 0, (result.stdout, result.stderr)
    job_id = int(result.stdout.split("started\n", 1)[1].split()[0])
    assert {r.state for r in runs(stack, job_id)} == {RunState.CLEANED}
    assert stack.pinecone.count("small-src") == 0
    assert "cleaned" in result.stdout
    assert f"job {job_id}: waiting for the cleanup of its verified sources" in result.stdout


def test_verify_of_a_finished_job_waits_for_the_new_verdicts(stack: Stack) -> None:
    # `run --json --wait`: stdout is one JSON document (the progress goes to stderr), planned by the fleet, with the
    # job's status once settled as `status --json` prints it.
    broker = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: broker.get(PLANNER_KEY), what="the fleet's planner's heartbeat", timeout_s=60)
    first = nsmigrate(stack, "run", spec_file(stack), "--wait", "--json")
    assert first.returncode == 0, (first.stdout, first.stderr)
    started = json.loads(first.stdout)
    assert (started["outcome"], started["planned_by"], started["refused"]) == ("started", "fleet", {})
    assert [n["source_namespace"] for n in started["plan"]["namespaces"]] == list(NAMESPACES)
    job_id = started["job_id"]
    result_status = started["result"]["status"]
    assert started["result"]["exit_code"] == 0 and result_status["job_id"] == job_id
    assert {r["state"] for r in result_status["runs"]} == {RunState.VERIFIED}
    before = {r.id: r.verification["checked_at"] for r in runs(stack, job_id) if r.verification}
    assert len(before) == len(NAMESPACES)
    db = jobs_database.Database(stack.database_url)
    try:
        assert jobs_status.job_status(db, job_id).state == JobState.FINISHED
    finally:
        db.dispose()

    result = nsmigrate(stack, "verify", str(job_id))

    assert result.returncode == 0, (result.stdout, result.stderr)
    after = runs(stack, job_id)
    assert {r.state for r in after} == {RunState.VERIFIED}
    # New verdicts, not the ones the job already had when verify was asked.
    assert all(r.verification["checked_at"] != before[r.id] for r in after), (before, result.stdout)


#: Runs the entry point as `nsmigrate` does and, as it exits, prints which of the modules it could do without it loaded.
MODULES_PROBE = (
    "import atexit, sys\n"
    "heavy = ('psycopg', 'sqlalchemy', 'celery')\n"
    "atexit.register(lambda: print('loaded:', *[m for m in heavy if m in sys.modules], file=sys.stderr))\n"
    "from nsmigrate.cli.entry import main\n"
    "sys.argv = ['nsmigrate', *sys.argv[1:]]\n"
    "main()\n"
)


def test_run_wait_planned_by_the_fleet_reads_its_job_without_importing_psycopg(stack: Stack) -> None:
    """The command's job reads go over libpq (``cli.libpq``): importing psycopg was a tenth of a CPU-second, taken
    from the cores the job's first tasks need."""
    broker = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: broker.get(PLANNER_KEY), what="the fleet's planner's heartbeat", timeout_s=60)
    result = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE, "run", spec_file(stack, auto_verify=False), "--wait"],
        env=stack.env(PINECONE_API_KEY=SANDBOX_API_KEY),
        capture_output=True,
        text=True,
        timeout=COMMAND_DEADLINE_S,
    )

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "(planned by the fleet)" in result.stdout
    job_id = int(result.stdout.split("started (planned by the fleet)\n", 1)[1].split()[0])
    assert {r.source_namespace: r.copied for r in runs(stack, job_id)} == NAMESPACES
    assert result.stderr.splitlines()[-1] == "loaded:", result.stderr

"""Ctrl-C (SIGINT) on a command that waits stops the waiting only: one `interrupted:` line saying what goes on and
how to follow it again, exit code 130 (what a shell reports for a process SIGINT ended), and the job's work still
queued for the workers. No worker runs here, so each command waits until it is interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet.test_cli_waits import spec_file
from tests.polling import wait_until

#: A guard against a command that ignores Ctrl-C (it fails the test), not a bound the test measures.
EXIT_GUARD_S = 60


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", dimension=8), IndexSpec("small-dst", dimension=8)]


def interrupted(stack: Stack, args: list[str], waiting: str) -> tuple[int, str, str]:
    """`nsmigrate ARGS` in a child process, sent SIGINT once it printed ``waiting``: (exit code, stdout, stderr)."""
    out, err = stack.workdir / "stdout", stack.workdir / "stderr"
    env = stack.env(PINECONE_API_KEY=SANDBOX_API_KEY, PYTHONUNBUFFERED="1")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nsmigrate", *args],
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            # As from a terminal: an ignored SIGINT is inherited through exec (a test runner's process may have one),
            # and Python then leaves Ctrl-C ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_until(
                lambda: waiting in out.read_text() or proc.poll() is not None,
                what=f"`nsmigrate {' '.join(args)}` to print {waiting!r}",
                timeout_s=EXIT_GUARD_S,
            )
            proc.send_signal(signal.SIGINT)
            code = proc.wait(EXIT_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, out.read_text(), err.read_text()


def queued(stack: Stack, queue: Queue) -> int:
    return int(redis_lib.Redis.from_url(stack.redis_url).llen(queue.value))


def only_job(stack: Stack) -> dict[str, object]:
    db = jobs_database.Database(stack.database_url)
    try:
        [job] = jobs_status.list_jobs(db)
        return job
    finally:
        db.dispose()


def load_source(stack: Stack, namespaces: dict[str, int]) -> None:
    for ns, count in namespaces.items():
        records = [(f"{ns}-{i:03d}", [0.5] * 8, {"creator_id": "a.1"}) for i in range(count)]
        stack.pinecone.load("small-src", ns, records)


def test_ctrl_c_on_run_wait_stops_the_watching_not_the_job(stack: Stack) -> None:
    load_source(stack, {"ns0": 30, "ns1": 50})

    code, stdout, stderr = interrupted(stack, ["run", spec_file(stack), "--wait"], "0/80 copied")

    job = only_job(stack)
    assert code == 130, (stdout, stderr)
    assert stderr.strip() == (
        f"interrupted: stopped watching job {job['job_id']}; its work goes on in the workers — `nsmigrate watch "
        f"{job['job_id']}` follows it again, `nsmigrate cancel {job['job_id']}` stops it"
    )
    assert job["state"] != "cancelled" and queued(stack, Queue.LIST) == 2  # both listers still wait for a worker


def test_ctrl_c_on_watch_says_so_and_exits_130(stack: Stack) -> None:
    load_source(stack, {"ns0": 30})
    started = subprocess.run(
        [sys.executable, "-m", "nsmigrate", "run", spec_file(stack)],
        env=stack.env(PINECONE_API_KEY=SANDBOX_API_KEY),
        capture_output=True,
        text=True,
        timeout=EXIT_GUARD_S,
    )
    assert started.returncode == 0, started.stderr
    job_id = only_job(stack)["job_id"]

    code, stdout, stderr = interrupted(stack, ["watch", str(job_id)], "0/30 copied")

    assert code == 130, (stdout, stderr)
    assert stderr.startswith(f"interrupted: stopped watching job {job_id}; its work goes on in the workers")
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert queued(stack, Queue.LIST) == 1


def test_ctrl_c_on_erase_stops_the_waiting_not_the_erasure(stack: Stack, tmp_path: Path) -> None:
    load_source(stack, {"creator_a.1_twin_t1": 5})

    code, stdout, stderr = interrupted(
        stack, ["erase", "--creator", "a.1", "--yes", "--spec", spec_file(stack)], "waiting for erasure job"
    )

    job = only_job(stack)
    assert code == 130, (stdout, stderr)
    assert stderr.strip() == (
        f"interrupted: stopped waiting for erasure job {job['job_id']}; the cleanup workers go on erasing — "
        f"`nsmigrate events {job['job_id']}` shows where it is, `nsmigrate erase --resume {job['job_id']}` sends "
        "its unfinished places again, waits and writes the receipt"
    )
    assert job["kind"] == "erase" and queued(stack, Queue.CLEANUP) >= 1  # its places still wait for a worker
    assert stack.pinecone.count("small-src") == 5  # nothing deleted by this command

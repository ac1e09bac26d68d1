"""Every way a process running the local stack ends stops what it started: a `kill` (SIGTERM), a closed terminal
(SIGHUP), and SIGKILL, which no handler sees. Checked on the real processes (Redis, the postmaster and its
backends, a Celery worker) through /proc, the way `ps` would show an orphan."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: How long an orderly stop may take at most: a worker's 15 s to stop before it is SIGKILLed (`Stack.kill`), Redis's
#: 5 s and Postgres's 20 s (`services.*.stop`), plus a margin for a loaded machine.
STOP_BOUND_S = 15 + 5 + 20 + 20

#: The demo's shape: start the stack, work (here: wait), and stop it in `finally`.
DRIVER = """
import json, sys, time
from nsmigrate_sandbox.stack import start_stack
stack = start_stack([])
try:
    worker = stack.start_worker("copy", 1, pool="threads", name="orphan-check")
    postgres = stack.servers[1]
    print(json.dumps({"pg_data": str(postgres.data_dir), "workdir": str(stack.workdir)}), flush=True)
    while True:
        time.sleep(3600)
finally:
    stack.stop()
"""


def alive(pid: int) -> bool:
    """Running (a zombie has ended; only its exit status waits to be collected)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(root: int) -> dict[int, str]:
    """Every process under ``root`` with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue
                frontier.append(pid)
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_the_stack_leaves_no_process_behind_when_its_process_is_signalled(sig: signal.Signals) -> None:
    repo = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The driver answers SIGHUP as a terminal's child does, even when this suite runs under `nohup` (which
        # ignores SIGHUP for every child, and `stop_on_signals` rightly keeps an ignored signal ignored).
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    paths: dict[str, str] = {}
    started: dict[int, str] = {}
    try:
        line = driver.stdout.readline() if driver.stdout else ""
        assert line, driver.stderr.read() if driver.stderr else "the driver printed nothing"
        paths = json.loads(line)
        started = descendants(driver.pid)
        kinds = " ".join(started.values())
        assert "redis-server" in kinds or "valkey-server" in kinds
        assert "postgres" in kinds and "worker" in kinds, started

        driver.send_signal(sig)
        driver.wait(STOP_BOUND_S)

        deadline = time.monotonic() + 30
        while (left := {pid: cmd for pid, cmd in started.items() if alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"orphaned after {sig.name}: {left}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in started:  # a failed run must not leave its orphans to the next test
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        for path in paths.values():
            shutil.rmtree(path, ignore_errors=True)

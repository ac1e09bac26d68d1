"""Playing ``nsmigrate demo SCENARIO`` as a user would, for the demo tests (one file per scenario in tests/fleet, so
``--dist loadfile`` spreads them over the xdist workers): a child process, nothing started by the test, whose exit
code is 0 only when the scenario's verification passed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

#: Copy worker processes a played demo starts (the user's default is 8): enough for the seed data set.
DEMO_WORKERS = 2


def nsmigrate(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``nsmigrate ARGS`` as a child process, its output captured."""
    # COLUMNS: rich wraps at 80 columns in a pipe; keep names whole.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nsmigrate", *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )


def play(scenario: str, *, verify_failed_expected: bool = False) -> str:
    """Play ``scenario`` end to end; its output, once it exited 0 and said its jobs verified (and, unless
    ``verify_failed_expected``, none failed a verification on the way)."""
    result = nsmigrate("demo", scenario, "--workers", str(DEMO_WORKERS), timeout_s=580)
    assert result.returncode == 0, _failures(result.stdout) + result.stdout[-4000:] + result.stderr[-4000:]
    assert "verified" in result.stdout
    if not verify_failed_expected:
        assert "verify_failed" not in result.stdout, result.stdout[-4000:]
    return result.stdout


def _failures(stdout: str) -> str:
    """The lines of a failed play that name what failed (a status table's failed runs with their errors), which
    its last lines may have scrolled past."""
    marks = ("failed", "error", "refused")
    quiet = re.compile(r"\b0 (in )?failed|\b0 errors|errors 0|skipped")  # progress lines and the steps never taken
    lines = [line for line in stdout.splitlines() if any(m in line for m in marks) and not quiet.search(line)]
    return "\n".join(lines[:40]) + "\n---\n" if lines else ""

"""Every seed scenario is playable: ``nsmigrate demo SCENARIO`` runs it end to end on embedded services, as a user
would (a child process, nothing started by the test), and exits 0 only when its verification passed. The default
scenario is played once, with ``--keep``, by ``test_demo_addresses.py``, which checks the same and what it holds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli.demo import DEFAULT_SCENARIO, SCENARIOS


def nsmigrate(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    # COLUMNS: rich wraps at 80 columns in a pipe; keep names whole.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", [name for name in SCENARIOS if name != DEFAULT_SCENARIO])
def test_demo_scenario_runs_end_to_end_and_verifies(scenario: str) -> None:
    result = nsmigrate("demo", scenario, "--workers", "2", timeout_s=580)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verified" in result.stdout
    if scenario == "cutover":  # writes during the copy fail its first verification, by design: sync repairs them
        assert "no write was lost" in result.stdout
    else:
        assert "verify_failed" not in result.stdout
    if scenario == "pgvector":  # the seed-shaped 3072-d rows get an ANN index, which answers the search
        assert "similarity search served by hnsw over halfvec(3072)" in result.stdout
        assert "Index Scan using embeddings_default_vector_idx" in result.stdout


def test_demo_help_lists_every_scenario() -> None:
    result = nsmigrate("demo", "--help")

    assert result.returncode == 0, result.stderr
    for name, scenario in SCENARIOS.items():
        assert name in result.stdout
        assert scenario.summary.split(":")[0] in result.stdout


def test_an_unknown_scenario_is_refused_naming_the_known_ones() -> None:
    result = nsmigrate("demo", "no-such-scenario")

    assert result.returncode == 2
    assert "no-such-scenario" in result.stderr
    assert all(name in result.stderr for name in SCENARIOS)

"""Every seed scenario is playable: ``nsmigrate demo SCENARIO`` runs it end to end on embedded services, as a user
would, and exits 0 only when its verification passed. Each scenario is played by a file of its own,
``test_demo_<module>.py`` (so the xdist workers play them side by side); the default scenario by
``test_demo_addresses.py``, which checks what it holds with ``--keep`` too. This file checks the command itself."""

from __future__ import annotations

from pathlib import Path

from nsmigrate.cli.demo import DEFAULT_SCENARIO, SCENARIOS
from tests.demos import nsmigrate


def test_every_scenario_is_played_by_a_test_file_of_its_own() -> None:
    here = Path(__file__).parent
    unplayed = [
        name
        for name, scenario in SCENARIOS.items()
        if name != DEFAULT_SCENARIO and not (here / f"test_demo_{scenario.module}.py").is_file()
    ]

    assert not unplayed, f"add tests/fleet/test_demo_<module>.py playing {unplayed} (see tests/demos.py)"


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

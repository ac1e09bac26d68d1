"""The suite's tiers hold (tests/tiers.py): every test file sits in a tier's folder, a unit test cannot use a service
fixture, and a test outside tests/fleet cannot start a process."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import (
    LONGEST_FLEET_FILES,
    LONGEST_SERVICE_FILES,
    TESTS,
    TIERS,
    ProcessStarted,
    misplaced_service_fixtures,
    processes_refused,
    run_rank,
    tier_of,
)


def test_every_test_file_is_in_the_folder_of_a_tier() -> None:
    outside = [
        str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if p.relative_to(TESTS).parts[0] not in TIERS
    ]

    assert not outside, f"move {outside} into tests/unit, tests/integration or tests/fleet"


def test_no_two_test_files_share_a_name() -> None:
    # The test folders are not packages: pytest imports a test file by its name, so a second file of the same name
    # in another tier's folder fails to import ("import file mismatch").
    by_name: dict[str, list[str]] = {}
    for path in TESTS.rglob("test_*.py"):
        by_name.setdefault(path.name, []).append(str(path.relative_to(TESTS)))

    assert not {name: paths for name, paths in by_name.items() if len(paths) > 1}


@pytest.mark.parametrize(("folder", "tier"), [("unit", "unit"), ("integration", "service"), ("fleet", "fleet")])
def test_a_test_files_tier_is_its_folder(folder: str, tier: str) -> None:
    assert tier_of(TESTS / folder / "test_x.py") == tier


def test_make_test_hands_out_the_slowest_tier_first_in_collection_order() -> None:
    files = [TESTS / "unit" / "test_a.py", TESTS / "integration" / "test_b.py", TESTS / "fleet" / "test_c.py"]

    assert sorted(files, key=run_rank) == files[::-1]
    test_line = (TESTS.parent / "Makefile").read_text().split("\ntest:")[1]
    assert "--dist loadfile --no-loadscope-reorder" in test_line  # else xdist reorders files by their test count


def test_the_longest_fleet_files_are_handed_out_first_longest_first() -> None:
    fleet = TESTS / "fleet"
    longest, second = (fleet / name for name in LONGEST_FLEET_FILES[:2])
    files = [fleet / "test_a_short_one.py", second, TESTS / "integration" / "test_b.py", longest]

    assert sorted(files, key=run_rank) == [longest, second, fleet / "test_a_short_one.py", files[2]]
    # A renamed or removed file would silently fall back to collection order.
    assert [name for name in LONGEST_FLEET_FILES if not (fleet / name).is_file()] == []


def test_the_longest_service_files_are_handed_out_first_after_the_fleet_tier() -> None:
    service = TESTS / "integration"
    longest = service / LONGEST_SERVICE_FILES[0]
    files = [service / "test_a_short_one.py", TESTS / "unit" / "test_u.py", longest, TESTS / "fleet" / "test_f.py"]

    assert sorted(files, key=run_rank) == [files[3], longest, files[0], files[1]]
    assert [name for name in LONGEST_SERVICE_FILES if not (service / name).is_file()] == []


def test_a_test_file_outside_the_tier_folders_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match="belongs in one of tests/"):
        tier_of(TESTS / "test_x.py")


def test_only_a_unit_test_is_refused_the_service_fixtures() -> None:
    used = ["tmp_path", "redis_url", "database_url", "monkeypatch"]

    assert misplaced_service_fixtures("unit", used) == ["database_url", "redis_url"]
    assert misplaced_service_fixtures("unit", ["tmp_path"]) == []
    assert misplaced_service_fixtures("service", used) == misplaced_service_fixtures("fleet", used) == []


def test_starting_a_process_outside_the_fleet_is_refused_naming_the_test() -> None:
    with processes_refused("tests/integration/test_x.py::test_y"):
        with pytest.raises(ProcessStarted, match=r"test_x.py::test_y starts a process: move it to tests/fleet"):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        with pytest.raises(ProcessStarted):
            multiprocessing.get_context("spawn").Process(target=print).start()
        with pytest.raises(ProcessStarted):
            os.fork()
        with processes_refused("a fixture"), pytest.raises(ProcessStarted, match=r"^a fixture starts a process"):
            subprocess.run(["true"])
        with pytest.raises(ProcessStarted, match=r"test_x\.py::test_y"):  # the outer one again
            subprocess.run(["true"])


def test_this_unit_test_runs_under_the_guard(tmp_path: Path) -> None:
    with pytest.raises(ProcessStarted, match="test_this_unit_test_runs_under_the_guard"):
        subprocess.run(["true"], cwd=tmp_path)

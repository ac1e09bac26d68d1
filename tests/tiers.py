"""The suite's three tiers, one per folder, and the rules that keep each test in the right one.

- ``unit`` (``tests/unit``): pure and in-process; no service fixture, no child process. ``make test-fast`` runs it.
- ``service`` (``tests/integration``): real Redis, Postgres, the local Pinecone data plane and the PostgREST stand-in,
  all driven from the test's own process (services started by session fixtures are shared).
- ``fleet`` (``tests/fleet``): starts processes of its own: worker stacks, chaos, demos, command lines.

The marker is given by the folder (``pytest -m unit``); a unit test asking for a service fixture fails, and so does a
test outside ``tests/fleet`` that starts a process while it runs (``subprocess``, ``multiprocessing``, ``os.fork``).
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
#: Folder under tests/ → tier marker.
TIERS = {"unit": "unit", "integration": "service", "fleet": "fleet"}
#: The fixtures that start or reach a service (tests/conftest.py, tests/service_fixtures.py).
SERVICE_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_url",
        "password_redis_server",
        "postgres_server",
        "database_url",
        "job_table_url",
        "module_sandbox",
        "sandbox",
        "stack",
        "start_standin",
        "worker_context",
        "object_storage_server",
        "object_storage",
    }
)


class ProcessStarted(Exception):
    """A test outside tests/fleet started a process."""


#: The test (or fixture) that may not start a process right now; None: any may.
_refusing: str | None = None


def _refused(start: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _refusing is not None:
            raise ProcessStarted(f"{_refusing} starts a process: move it to tests/fleet (tests/tiers.py)")
        return start(*args, **kwargs)

    return guarded


# Every way a process starts: subprocess, multiprocessing's spawn and forkserver, a fork.
subprocess.Popen._execute_child = _refused(subprocess.Popen._execute_child)  # type: ignore[attr-defined]
_posixsubprocess.fork_exec = _refused(_posixsubprocess.fork_exec)
os.fork = _refused(os.fork)
os.posix_spawn = _refused(os.posix_spawn)
os.posix_spawnp = _refused(os.posix_spawnp)


@contextlib.contextmanager
def processes_refused(who: str | None) -> Iterator[None]:
    """While inside, starting a process raises ``ProcessStarted`` naming ``who`` (``None``: allowed again, as for the
    session's services started in the middle of a test's set-up)."""
    global _refusing
    outer, _refusing = _refusing, who
    try:
        yield
    finally:
        _refusing = outer


def tier_of(path: Path) -> str:
    """The tier of a test file, from its folder under tests/."""
    folder = path.resolve().relative_to(TESTS).parts[0]
    if folder not in TIERS:
        raise pytest.UsageError(f"{path}: a test file belongs in one of tests/{{{','.join(TIERS)}}}")
    return TIERS[folder]


def misplaced_service_fixtures(tier: str, fixturenames: list[str]) -> list[str]:
    """The service fixtures a test of ``tier`` may not use."""
    return sorted(SERVICE_FIXTURES & set(fixturenames)) if tier == "unit" else []


#: The order tests run in: the slowest tier first. `make test` hands whole files to its xdist workers in this order
#: (``--no-loadscope-reorder``; by default xdist hands out the files with the most tests first, which leaves the long
#: fleet files of a few tests for the end, one worker running them while the other waits): the files handed out
#: last are short, and the workers finish together.
RUN_ORDER = ("fleet", "service", "unit")

#: The longest fleet files, longest first (30-200 s each with 4 xdist workers on 2 cores, by ``--durations``),
#: handed out before the other fleet files: in collection order a long file such as test_text_jobs.py came among the
#: last fleet files and could still be running after every other file had finished. The files not named here follow
#: them in collection order.
LONGEST_FLEET_FILES = (
    "test_flower_failures.py",
    "test_hosts.py",
    "test_demo_cutover.py",
    "test_metrics_scrape.py",
    "test_demo_erase.py",
    "test_demo_addresses.py",
    "test_demo_pgvector.py",
    "test_text_jobs.py",
    "test_refusals_at_deletion.py",
    "test_fleet.py",
    "test_sync_rollback.py",
    "test_pgvector_fleet.py",
    "test_erase.py",
    "test_worker_failures.py",
    "test_demo_integrated.py",
    "test_cutover.py",
    "test_demo_pod_to_serverless.py",
    "test_chaos_postgres_restart.py",
    "test_refusals_pgvector.py",
    "test_image.py",
    "test_fleet_planner.py",
    "test_refusals_secrets.py",
    "test_cli_waits.py",
)

#: The longest service files, longest first (by ``--durations`` and CPU per file), handed out before the other
#: service files: test_verify_cleanup.py (~120 s of a worker on a loaded machine) comes last in collection order, and
#: its worker would run on alone after the others had finished.
LONGEST_SERVICE_FILES = (
    "test_verify_cleanup.py",
    "test_supabase_standin.py",
    "test_cli.py",
    "test_erasure_and_copies.py",
    "test_store_contract.py",
)

#: Per tier, its files handed out first (longest first).
LONGEST_FILES = {"fleet": LONGEST_FLEET_FILES, "service": LONGEST_SERVICE_FILES}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item.path))
    items.sort(key=lambda item: run_rank(item.path))  # stable: each file's tests keep their order


def run_rank(path: Path) -> tuple[int, int]:
    """Where a test file comes: its tier's place in ``RUN_ORDER`` (0: first), then its place in its tier's
    ``LONGEST_FILES`` (a file not named there: after them)."""
    tier = tier_of(path)
    longest = LONGEST_FILES.get(tier, ())
    return RUN_ORDER.index(tier), longest.index(path.name) if path.name in longest else len(longest)


def pytest_runtest_setup(item: pytest.Item) -> None:
    misplaced = misplaced_service_fixtures(tier_of(item.path), list(getattr(item, "fixturenames", [])))
    if misplaced:
        pytest.fail(f"{item.nodeid} is a unit test but uses {', '.join(misplaced)}: move it to tests/integration")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if tier_of(item.path) == "fleet":
        yield
        return
    with processes_refused(item.nodeid):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    # Session fixtures start the shared services (Redis, Postgres) as processes, for every tier, also when a test's
    # own fixture is the first to need them.
    if fixturedef.scope == "session" or tier_of(request.node.path) == "fleet":
        who = None
    else:
        who = f"{request.node.nodeid} (fixture {fixturedef.argname})"
    with processes_refused(who):
        yield

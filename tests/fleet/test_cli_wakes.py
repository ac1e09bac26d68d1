"""A command waiting on a job reads its progress as soon as its last runs settle, woken by the worker that settled
them (``cli.wakes``), not at its next poll; and a wake-up that never reaches it still ends the wait, by polling.

The job is planned with no worker up, the command starts waiting (a first reading: nothing copied), and only then a
real worker starts and copies it. The waiting runs in a thread of this process, so the test sees each of its readings
and pauses in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from nsmigrate.cli import waits
from nsmigrate.cli.render import job_reader, watch_job
from nsmigrate.cli.wakes import Wakes
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.messaging.task_names import job_wake_key
from nsmigrate.orchestrator.progress import JobProgress
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import start_job
from tests.polling import wait_until

NAMESPACES = {"ns0": 30, "ns1": 50}
#: Far longer than the job takes: a pause that is not woken outlasts the test's deadline.
LONG_POLL_S = 600.0
DEADLINE_S = 120.0


@pytest.fixture
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("wake-src", dimension=8), IndexSpec("wake-dst", dimension=8)]


@pytest.fixture
def job(stack: Stack) -> Iterator[tuple[jobs_database.Database, int]]:
    """A job of two namespaces planned with no worker up: nothing of it moves until the test starts one."""
    for n, (ns, count) in enumerate(NAMESPACES.items()):
        stack.pinecone.load("wake-src", ns, [(f"{ns}-{i:03d}", [0.1 * (n + 1)] * 8, {"n": n}) for i in range(count)])
    spec: dict[str, Any] = {
        "name": "wakes",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("wake-src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("wake-dst")},
        "batch_size": 20,
        "auto_verify": False,
    }
    db, _, job_id = start_job(stack, spec)
    yield db, job_id
    db.dispose()


class SpiedWakes(Wakes):
    """Records each pause and whether a wake-up ended it, in the order of the readings (``events``)."""

    def __init__(self, redis_url: str, job_id: int, events: list[tuple[str, Any]]) -> None:
        super().__init__(redis_url, job_id)
        self.events = events
        self.paused = threading.Event()

    def pause(self, pause_s: float, enough: int) -> bool:
        self.paused.set()
        woken = super().pause(pause_s, enough)
        self.events.append(("pause", woken))
        return woken


def follow(
    db: jobs_database.Database, job_id: int, wakes: SpiedWakes, poll_s: float
) -> tuple[threading.Thread, dict[str, int]]:
    """``watch_job`` on the job in a thread, each reading recorded in ``wakes.events`` as ("read", settled)."""
    until = waits.Settled(auto_verify=False)
    read = job_reader(db, job_id)
    outcome: dict[str, int] = {}

    def reading(rows: int) -> JobProgress:
        progress = read(rows)
        wakes.events.append(("read", until.done(progress)))
        return progress

    def run() -> None:
        outcome["code"] = watch_job(reading, job_id, until, poll_s=poll_s, wakes=wakes)

    thread = threading.Thread(target=run, name="waiting-command", daemon=True)
    thread.start()
    return thread, outcome


def test_the_command_reads_the_job_when_its_last_run_settles(
    stack: Stack, job: tuple[jobs_database.Database, int]
) -> None:
    db, job_id = job
    events: list[tuple[str, Any]] = []
    wakes = SpiedWakes(stack.redis_url, job_id, events)
    thread, outcome = follow(db, job_id, wakes, poll_s=LONG_POLL_S)
    assert wakes.paused.wait(DEADLINE_S), "the command never paused"

    stack.start_worker("list,copy,verify", 4, pool="threads")
    thread.join(DEADLINE_S)

    assert not thread.is_alive(), f"still waiting after the job settled: {events}"
    wakes.close()
    assert outcome["code"] == 0
    # Every reading but the last found the job unsettled; the last came right after a pause the wake-ups ended,
    # and no pause ran out (each would have lasted LONG_POLL_S).
    readings = [settled for kind, settled in events if kind == "read"]
    assert readings[-1] is True and not any(readings[:-1]), events
    assert events[-2:] == [("pause", True), ("read", True)], events
    assert ("pause", False) not in events, events
    assert wakes.taken == len(NAMESPACES)  # one per run, each pushed by the worker that moved it to `copied`
    assert redis_lib.Redis.from_url(stack.redis_url).llen(job_wake_key(job_id)) == 0


def test_a_missing_wake_up_still_ends_the_wait_by_polling(
    stack: Stack, job: tuple[jobs_database.Database, int]
) -> None:
    db, job_id = job
    events: list[tuple[str, Any]] = []
    # The command's wake-ups come from a Redis that is not there: it never hears the worker's.
    wakes = SpiedWakes("redis://127.0.0.1:1/0", job_id, events)
    thread, outcome = follow(db, job_id, wakes, poll_s=0.5)
    assert wakes.paused.wait(DEADLINE_S), "the command never paused"

    stack.start_worker("list,copy,verify", 4, pool="threads")
    thread.join(DEADLINE_S)

    assert not thread.is_alive(), f"still waiting after the job settled: {events}"
    assert outcome["code"] == 0
    assert events[-1] == ("read", True), events
    assert ("pause", True) not in events and wakes.taken == 0, events  # every pause ran its course
    # The worker did push a wake-up per run, onto the fleet's Redis: none of them reached the command.
    broker = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: broker.llen(job_wake_key(job_id)) == len(NAMESPACES), what="a wake-up per run", timeout_s=30)
    runs_settled = sorted(int(item) for item in broker.lrange(job_wake_key(job_id), 0, -1))
    assert len(set(runs_settled)) == len(NAMESPACES)

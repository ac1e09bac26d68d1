"""``WriteFence``'s reads of the job table, with a stand-in for it: none while the erasure mark is the one read before
the delivery's start; otherwise a write never relies on a read that began before it was asked (its namespace held
since), and a batch's parallel writes share one that began after."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from nsmigrate.orchestrator.errors import Superseded
from nsmigrate.workers.transfer import write_fence
from nsmigrate.workers.transfer.write_fence import WriteFence
from tests.polling import wait_until


class JobTable:
    """Answers the batch's attempts; ``hold`` keeps each read waiting until released."""

    def __init__(self, attempts: int, state: str = "running") -> None:
        self.attempts, self.state, self.reads = attempts, state, 0
        self.hold = threading.Event()
        self.hold.set()

    @contextmanager
    def single_statement(self) -> Iterator[Any]:
        yield self

    def execute(self, _statement: Any, _params: Any) -> Any:
        self.reads += 1
        self.hold.wait(10)
        return self

    def one(self) -> tuple[int, str]:
        return self.attempts, self.state


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock that ticks once each time it is read; the readings, in order."""
    ticks = itertools.count(1)
    readings: list[float] = []

    def monotonic() -> float:
        readings.append(float(next(ticks)))
        return readings[-1]

    monkeypatch.setattr(write_fence.time, "monotonic", monotonic)
    return readings


def fence(table: JobTable, attempt: int = 1, started: float = 0.0, lifetime_s: float = 3600) -> WriteFence:
    return WriteFence(table, 7, attempt, started, lifetime_s, "mark-1")  # type: ignore[arg-type]


def test_no_read_while_the_erasure_mark_is_the_one_read_before_the_start(clock: list[float]) -> None:
    table = JobTable(attempts=2)  # started again: only a read would tell
    own = fence(table)
    own.check("mark-1")
    assert table.reads == 0
    for mark in ("mark-2", None):  # an erasure place about to delete; a mark not read, or Redis's gone
        with pytest.raises(Superseded, match="started again since"):
            own.check(mark)
    assert table.reads == 2


def test_a_batch_an_earlier_delivery_ended_is_no_longer_this_ones(clock: list[float]) -> None:
    """It wrote the batch with the ledger it read; an erasure recorded after that end waited for no delivery."""
    for state in ("done", "failed"):
        with pytest.raises(Superseded, match=f"or ended \\(it is {state}\\)"):
            fence(JobTable(attempts=1, state=state)).check("mark-2")


def test_each_write_asked_after_a_read_began_reads_again(clock: list[float]) -> None:
    table = JobTable(attempts=1)
    own = fence(table)
    own.check("mark-2")
    own.check("mark-2")
    assert table.reads == 2
    table.attempts = 2  # another delivery started the batch between two writes
    with pytest.raises(Superseded, match="started again since"):
        own.check("mark-2")


def test_writes_asked_while_a_read_is_under_way_share_the_next_one(clock: list[float]) -> None:
    table = JobTable(attempts=1)
    own = fence(table)
    table.hold.clear()
    first = threading.Thread(target=own.check, args=("mark-2",))
    first.start()
    wait_until(lambda: table.reads, what="the first write's read under way", timeout_s=10)
    others = [threading.Thread(target=own.check, args=("mark-2",)) for _ in range(3)]
    for thread in others:
        thread.start()
    # Each write reads the clock as it is asked: the first twice (asked, its read began), the three others once.
    wait_until(lambda: len(clock), what="every write asked", timeout_s=10, done=lambda n: n >= 5)
    table.hold.set()
    for thread in [first, *others]:
        thread.join(10)
    assert table.reads == 2  # the first's, begun before the others were asked; then one for all three


def test_a_delivery_past_its_share_of_the_timeout_reads_nothing_and_stops(clock: list[float]) -> None:
    table = JobTable(attempts=1)
    with pytest.raises(Superseded, match="over 90 s ago"):
        fence(table, started=-100.0, lifetime_s=100).check("mark-1")
    assert table.reads == 0

"""``workers.stores.shared_counts.SharedCounts``: a count comes from a reading that started after it was asked for,
and callers who
ask while a reading is on its way share the next one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from nsmigrate.workers.stores.shared_counts import SharedCounts
from tests.polling import wait_until


class Index:
    """Readings on demand: each ``read`` takes the counts as they are when it starts, then blocks until the test lets
    it answer."""

    def __init__(self) -> None:
        self.counts = {"a": 1, "b": 2}
        self.reads = 0
        self.waiting = threading.Semaphore(0)
        self.started = 0

    def read(self) -> dict[str, int]:
        counts = dict(self.counts)
        self.started += 1
        self.waiting.acquire()
        self.reads += 1
        return counts


class Clock:
    """A clock that counts how often it was read: ``SharedCounts`` reads it once per call and once per reading."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += 1
        return self.now


def test_callers_who_ask_during_a_reading_share_the_next_one_and_see_every_earlier_write() -> None:
    clock, index, key = Clock(), Index(), object()
    shared = SharedCounts(clock)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(shared.count, key, index.read, "a")
        wait_until(lambda: index.started == 1, what="the first reading", timeout_s=5)
        index.counts["a"] = 5  # written after the first reading started: it may not show in that one
        later = [pool.submit(shared.count, key, index.read, ns) for ns in ("a", "b", "a")]
        wait_until(lambda: clock.reads == 5, what="three more callers asking", timeout_s=5)
        index.waiting.release()  # the first reading answers (a: 1)
        assert first.result(timeout=5) == 1
        wait_until(lambda: index.started == 2, what="the second reading", timeout_s=5)
        index.waiting.release()
        assert [f.result(timeout=5) for f in later] == [5, 2, 5]
    assert index.reads == 2  # three callers, one reading


def test_a_failed_reading_fails_its_caller_and_the_next_caller_reads_again() -> None:
    shared, key = SharedCounts(), object()

    def broken() -> dict[str, int]:
        raise RuntimeError("stats unavailable")

    with pytest.raises(RuntimeError, match="stats unavailable"):
        shared.count(key, broken, "a")
    assert shared.count(key, lambda: {"a": 7}, "a") == 7
    assert shared.count(key, lambda: {}, "a") == 0  # a namespace the stats do not list holds nothing


def test_readings_of_different_stores_are_not_shared() -> None:
    shared = SharedCounts()
    assert shared.count("one", lambda: {"a": 1}, "a") == 1
    assert shared.count("two", lambda: {"a": 2}, "a") == 2

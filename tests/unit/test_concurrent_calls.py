"""run_parallel: every call runs, at most N at once, and the first error surfaces only after all calls ended."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from nsmigrate.workers.transfer.concurrent_calls import run_parallel


class Recorder:
    """Each call waits at a barrier for ``together`` calls: they overlap however slowly threads start on a loaded
    machine, and a run_parallel that runs fewer at once breaks the barrier (its timeout) instead of passing."""

    def __init__(self, together: int) -> None:
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together, timeout=30)
        self.running = 0
        self.peak = 0
        self.done: list[int] = []

    def __call__(self, item: int) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.barrier.wait()
        with self.lock:
            self.running -= 1
            self.done.append(item)


@pytest.mark.parametrize("max_parallel", [1, 3, 8])
def test_every_item_runs_and_at_most_max_parallel_at_once(max_parallel: int) -> None:
    calls = Recorder(together=min(max_parallel, 6))
    run_parallel(calls, list(range(6)), max_parallel)
    assert sorted(calls.done) == list(range(6))
    assert calls.peak == min(max_parallel, 6)


def test_sequential_when_max_parallel_is_one_stops_at_the_first_error() -> None:
    seen: list[int] = []

    def fn(item: int) -> None:
        seen.append(item)
        if item == 1:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_parallel(fn, [0, 1, 2], 1)
    assert seen == [0, 1]


def test_the_first_error_in_item_order_is_raised_after_every_call_ended() -> None:
    finished: list[int] = []

    def fn(item: int) -> None:
        if item == 2:
            time.sleep(0.05)  # ends after item 3 failed: its error must still be the one raised
            finished.append(item)
            raise KeyError("second item's error")
        if item == 3:
            finished.append(item)
            raise ValueError("later item's error")
        time.sleep(0.1)  # still running when the errors happen: must have ended before run_parallel returns
        finished.append(item)

    with pytest.raises(KeyError):
        run_parallel(fn, [0, 1, 2, 3], 4)
    assert sorted(finished) == [0, 1, 2, 3]


def test_nothing_to_do() -> None:
    run_parallel(lambda _: pytest.fail("called"), [], 4)


def test_the_calls_see_the_callers_context_and_run_in_threads_kept_between_calls() -> None:
    # The task's tally of requests is a context variable: each call must count into its caller's. A pool made for
    # each call would start (and join) a thread for every upsert of every batch.
    task = contextvars.ContextVar("task", default="none")
    seen: list[tuple[str, threading.Thread]] = []
    lock = threading.Lock()

    def fn(item: int) -> None:
        time.sleep(0.01)  # the lanes overlap: each takes items
        with lock:
            seen.append((task.get(), threading.current_thread()))

    for n in range(20):
        task.set(f"task {n}")
        run_parallel(fn, list(range(4)), 4)
        assert {name for name, _ in seen[-4:]} == {f"task {n}"}

    assert len(seen) == 80
    assert len({thread for _, thread in seen}) <= 10  # 60 with a pool of 3 new threads per call

"""run_parallel: every call runs, at most N at once, and the first error surfaces only after all calls ended; a call
nobody has taken up runs in the thread that waits for it."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from nsmigrate.workers.transfer import concurrent_calls
from nsmigrate.workers.transfer.concurrent_calls import beside, run_parallel


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


@pytest.fixture
def busy_kept_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every kept thread is taken (here: the pool's one thread, held until the test ends)."""
    pool = ThreadPoolExecutor(1)
    release = threading.Event()
    pool.submit(release.wait)
    monkeypatch.setattr(concurrent_calls, "_calls", lambda: pool)
    yield
    release.set()
    pool.shutdown()


@pytest.mark.usefixtures("busy_kept_threads")
def test_a_call_no_kept_thread_took_up_runs_in_the_thread_that_waits_for_it() -> None:
    # A small namespace's run waits for its fetch: were every kept thread such a run, a fetch queued behind them
    # would never start. The waiting thread runs it instead.
    ran_in: list[int] = []
    assert within_seconds(lambda: ran_in.append(beside(threading.get_ident).result() - threading.get_ident()))
    assert ran_in == [0]


@pytest.mark.usefixtures("busy_kept_threads")
def test_run_parallel_ends_in_its_own_lane_when_no_kept_thread_is_free() -> None:
    seen: list[int] = []
    assert within_seconds(lambda: run_parallel(seen.append, list(range(5)), 4))
    assert seen == list(range(5))


def within_seconds(fn: Callable[[], object], seconds: float = 30) -> bool:
    """Whether ``fn()`` returned within ``seconds`` (run in a thread of its own: waiting for ever fails the test)."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_a_call_taken_up_gives_its_outcome_and_its_error() -> None:
    started = threading.Event()

    def slow() -> int:
        started.set()
        time.sleep(0.05)
        return threading.get_ident()

    call = beside(slow)
    assert started.wait(30)
    assert call.result() != threading.get_ident()  # ran in a kept thread, which the caller waited for

    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        beside(fails).result()

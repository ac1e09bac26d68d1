"""Run a few blocking calls at once: the upsert requests of one copy batch, which spend their time waiting on the
network (a batch routed to many target namespaces would otherwise wait out one round trip per namespace), or one
call beside the caller's own (``beside``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from nsmigrate.workers import tally

T = TypeVar("T")


def run_parallel(fn: Callable[[T], object], items: Sequence[T], max_parallel: int) -> None:
    """``fn(item)`` for every item, up to ``max_parallel`` at once, in threads.

    Returns only once every call has ended, so nothing is still running when the caller records the outcome; then
    raises the first error in ``items`` order, if any. ``max_parallel`` ≤ 1 runs the calls in order in this thread
    and stops at the first error.
    """
    if max_parallel <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    threads = min(max_parallel, len(items))
    # The task's tally counts the requests of these threads too.
    with ThreadPoolExecutor(threads, "nsmigrate-call", initializer=tally.adopt, initargs=(tally.current(),)) as pool:
        futures = [pool.submit(fn, item) for item in items]
    for future in futures:
        future.result()


def beside(fn: Callable[[], T]) -> Future[T]:
    """``fn()`` started in a thread of its own, its requests in the task's tally; the caller takes its outcome with
    ``result()`` (which raises what ``fn`` raised)."""
    pool = ThreadPoolExecutor(1, "nsmigrate-beside", initializer=tally.adopt, initargs=(tally.current(),))
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)  # the thread ends with ``fn``

"""Run a few blocking calls at once: the upsert requests of one copy batch, which spend their time waiting on the
network (a batch routed to many target namespaces would otherwise wait out one round trip per namespace), or one
call beside the caller's own (``beside``).

The calls run in threads a worker process keeps (``CALL_THREADS``), each in a copy of its caller's context (the
task's tally of requests counts them, a group's verifications go with the group): a pool made for each call started
and joined a thread for every upsert of every batch, and the thread that starts another waits for it to run, on a busy
interpreter a switch interval or more. No caller ever waits on a call no kept thread has taken up: it runs the call
itself, so calls that wait on others (a small namespace's run on its fetch) never hold every kept thread waiting.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

#: At most this many threads a process keeps for these calls, started as calls need them: far above what its task
#: slots ask at once (16 tasks × 3 upserts beside their own), so a call does not queue behind another. One that does
#: still ends: its caller runs a lane of it, and no call waits on another.
CALL_THREADS = 256

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child (a prefork pool's process) has none of its parent's threads: it starts its own pool.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _calls() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(CALL_THREADS, "nsmigrate-call")
    return _pool


def _submit(fn: Callable[[], T]) -> Future[T]:
    """``fn()`` in a kept thread, in a copy of the caller's context."""
    return _calls().submit(contextvars.copy_context().run, fn)


def run_parallel(fn: Callable[[T], object], items: Sequence[T], max_parallel: int) -> None:
    """``fn(item)`` for every item, up to ``max_parallel`` at once: in this thread and in kept ones.

    Returns only once every call has ended, so nothing is still running when the caller records the outcome; then
    raises the first error in ``items`` order, if any. ``max_parallel`` ≤ 1 runs the calls in order in this thread
    and stops at the first error.
    """
    if max_parallel <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    left = deque(enumerate(items))
    errors: dict[int, BaseException] = {}

    def lane() -> None:
        while True:
            try:
                index, item = left.popleft()  # atomic: each item is taken by one lane
            except IndexError:
                return
            try:
                fn(item)
            except BaseException as e:  # raised below, in items order, once every call ended
                errors[index] = e

    others = [_submit(lane) for _ in range(min(max_parallel, len(items)) - 1)]
    lane()  # this thread is one of the lanes, instead of only waiting for them
    for other in others:
        if not other.cancel():  # a lane no kept thread took up has nothing left to take
            other.result()
    if errors:
        raise errors[min(errors)]


class Beside(Generic[T]):
    """``fn()`` started in a kept thread; ``result()`` gives its outcome (or raises what it raised), and runs it in
    the caller's thread instead when no kept thread has taken it up yet."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._future = _submit(fn)

    def result(self) -> T:
        if self._future.cancel():
            return self._fn()
        return self._future.result()


def beside(fn: Callable[[], T]) -> Beside[T]:
    """``fn()`` started beside the caller's own work, its requests in the task's tally (``Beside``)."""
    return Beside(fn)

"""What one task cost, for the result Flower shows: store requests, the 429 and 5xx answers among them, the retries
they caused and the seconds spent waiting (rate budget and backoff), so rate limiting is visible task by task.

A task counts inside ``counting()``; every store request goes through ``workers.stores.guarded``, which adds to
``current()``. Calls a task runs in the worker's kept threads (``workers.transfer.concurrent_calls``) add to its
tally (they run in copies of its context), and so do the threads of a pool it starts made with
``ThreadPoolExecutor(initializer=tally.adopt, initargs=(tally.current(),))``; outside a task the counts go to a
tally nobody reads.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any


class Tally:
    """Counts of one task; safe to add to from several threads."""

    def __init__(self) -> None:
        self.requests = 0
        self.throttled = 0  # 429 answers
        self.server_errors = 0  # 5xx answers
        self.retries = 0
        self.waited_s = 0.0  # in the fleet's rate budget and in backoff before a retry
        self.slots_missed = 0  # slots reserved ahead that went by before their request could go
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            self.requests += 1

    def waited(self, wait_s: float) -> None:
        """Seconds spent waiting for the fleet's rate budget (requests, bytes, embedding tokens)."""
        with self._lock:
            self.waited_s += wait_s

    def missed_slot(self) -> None:
        with self._lock:
            self.slots_missed += 1

    def refused(self, status: int | None) -> None:
        with self._lock:
            if status == 429:
                self.throttled += 1
            elif status is not None and status >= 500:
                self.server_errors += 1

    def backoff(self, wait_s: float) -> None:
        with self._lock:
            self.retries += 1
            self.waited_s += wait_s

    def result(self, **done: Any) -> dict[str, Any]:
        """The task's result: what it did (``done``, e.g. ``vectors``) and what it cost."""
        return {
            **done,
            "requests": self.requests,
            "429": self.throttled,
            "5xx": self.server_errors,
            "retries": self.retries,
            "waited_s": round(self.waited_s, 2),
            "slots_missed": self.slots_missed,
            "seconds": round(time.monotonic() - self.started, 2),
        }


_current: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("nsmigrate_tally", default=None)


@contextlib.contextmanager
def counting() -> Iterator[Tally]:
    """Count the store requests made inside the block (and in threads run in a copy of its context)."""
    tally = Tally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def current() -> Tally:
    """The tally of the task running here; a throwaway one outside a task."""
    return _current.get() or Tally()


def adopt(counts: Tally) -> None:
    """Count this thread's requests in ``counts``: a pool's initializer, for the threads of a task's pool."""
    _current.set(counts)

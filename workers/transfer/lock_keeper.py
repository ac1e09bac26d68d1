"""Keeping a process's Redis locks fresh from one thread: each lock held is refreshed every third of its time to live
for as long as it is held, so a holder that dies loses it within that time, and a live one never does.

Why one thread for the process, not one per lock: a small namespace is listed in a fraction of a second, and a
thread started and joined around each listing cost more than the listing's own work. Starting a thread waits for
it to run, joining it waits for it to wake, and each of those waits for the interpreter lock behind every other
thread of a busy worker: milliseconds on the way to each of the first fetches of a job of many small namespaces.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis
from redis.exceptions import LockError
from redis.lock import Lock

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Kept:
    due: float
    number: int
    lock: Lock = field(compare=False)
    every_s: float = field(compare=False)
    what: str = field(compare=False)


class LockKeeper:
    """Refreshes the locks it is given (``keep``) until they are let go (``drop``), from one daemon thread started
    when the first lock comes (again in a forked child: threads do not survive a fork)."""

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self._start_over()
        # A forked child has none of the parent's threads, and may have copied the guard while it was held.
        os.register_at_fork(after_in_child=self._start_over)

    def _start_over(self) -> None:
        self._guard = threading.Lock()
        self._changed = threading.Condition(self._guard)
        self._queue: list[_Kept] = []  # a heap by when each lock is next refreshed
        self._held: dict[int, _Kept] = {}
        self._running = False

    def keep(self, lock: Lock, every_s: float, what: str) -> int:
        """Refresh ``lock`` every ``every_s`` seconds from now on; returns the number ``drop`` takes. ``what``: the
        lock in words, for the log when a refresh fails."""
        with self._guard:
            if not self._running:
                self._running = True
                threading.Thread(target=self._refresh, name="nsmigrate-lock-keeper", daemon=True).start()
            kept = _Kept(time.monotonic() + every_s, next(self._numbers), lock, every_s, what)
            self._held[kept.number] = kept
            heapq.heappush(self._queue, kept)
            self._changed.notify()
            return kept.number

    def drop(self, number: int) -> None:
        """No more refreshes of the lock ``keep`` numbered so (a refresh under way may still end)."""
        with self._guard:
            self._held.pop(number, None)

    def held(self) -> int:
        """Locks kept fresh now."""
        with self._guard:
            return len(self._held)

    def _refresh(self) -> None:
        while True:
            with self._guard:
                while self._queue and self._queue[0].number not in self._held:
                    heapq.heappop(self._queue)  # dropped
                wait_s = self._queue[0].due - time.monotonic() if self._queue else None
                if wait_s is None or wait_s > 0:
                    self._changed.wait(wait_s)
                    continue
                kept = heapq.heappop(self._queue)
                kept.due += kept.every_s
                heapq.heappush(self._queue, kept)
            try:
                kept.lock.reacquire()
            except LockError:
                self.drop(kept.number)  # expired or let go meanwhile: nothing to keep
            except redis.RedisError as e:
                log.warning("could not refresh %s: %s", kept.what, e)


#: The keeper of this process's locks (a lister's, a cleanup's).
KEEPER = LockKeeper()


@contextlib.contextmanager
def held_while_alive(client: redis.Redis, key: str, ttl_s: float, what: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold the Redis lock ``key`` (True), or find it taken (False), for as long as this process lives.

    The lock expires ``ttl_s`` after it was last refreshed; ``KEEPER`` refreshes it every ``ttl_s / 3`` while it is
    held, however long the work takes. A holder killed with its worker stops refreshing, so its lock is gone within
    ``ttl_s``: ``wait`` (work taken up after its worker died) waits that long for it. ``what``: the lock in words.
    """
    lock = client.lock(key, timeout=ttl_s, thread_local=False)
    # As long as the lock can still live: the dead holder may have had a longer TTL than ours.
    wait_s = max(ttl_s, max(0, int(client.pttl(key))) / 1000) + 1 if wait else None
    if not lock.acquire(blocking=wait, blocking_timeout=wait_s):
        yield False
        return
    kept = KEEPER.keep(lock, ttl_s / 3, what)
    try:
        yield True
    finally:
        KEEPER.drop(kept)
        with contextlib.suppress(LockError, redis.RedisError):  # expired, or gone with a Redis restart
            lock.release()

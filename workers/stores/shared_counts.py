"""Namespace counts of an index read once for every verification that needs them at the same time.

A Pinecone count is a ``describe_index_stats`` reading: one request answers for every namespace of the index, and in
an index of 12,000 namespaces it is also the largest reply a verification reads. So the verifications running in one
worker process share readings: a count is taken from the first reading that *started after it was asked for*, never
from an older one, so it is as fresh as a reading of its own would have been (it sees every write that finished
before the verification asked). While a reading is on its way, verifications that asked after it started wait for
the next one, which one of them then takes for all. Per store, for the life of the process (``WorkerContext``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Readings:
    """The readings of one store: the latest one and the one in flight, each with when it started."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.latest: tuple[float, dict[str, int]] | None = None
        self.in_flight_since: float | None = None


class SharedCounts:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stores: dict[int, _Readings] = {}

    def count(self, store_key: object, read: Callable[[], dict[str, int]], namespace: str) -> int:
        """``namespace``'s count from a reading of ``read()`` (namespace → count) that started after this call.
        ``store_key``: the store the reading is of (one store object per process and spec). An error of the
        reading is raised to the caller that made it; the others try again."""
        asked = self._clock()
        with self._lock:
            readings = self._stores.setdefault(id(store_key), _Readings())
        with readings.changed:
            while True:
                if readings.latest is not None and readings.latest[0] >= asked:
                    return readings.latest[1].get(namespace, 0)
                if readings.in_flight_since is None:
                    break  # nobody is reading: this caller does, for everyone who asks meanwhile
                readings.changed.wait()
            started = readings.in_flight_since = self._clock()
        counts: dict[str, int] | None = None
        try:
            counts = read()
        finally:
            with readings.changed:
                readings.in_flight_since = None
                if counts is not None and (readings.latest is None or readings.latest[0] < started):
                    readings.latest = (started, counts)
                readings.changed.notify_all()
        return counts.get(namespace, 0)

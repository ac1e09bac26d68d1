"""The log sequence numbers of one process's writes to a Pinecone index, per namespace.

Pinecone answers each write to a serverless namespace with the LSN it committed at, and each lagging read (list,
query) with the LSN the read reflects (https://docs.pinecone.io/guides/index-data/check-data-freshness): a read
whose LSN is at least a write's sees that write and every one before it in the namespace. The copy records the
highest LSN of its writes per target namespace (``workers.steps.freshness``), so verification and cleanup know
what the target's reads must reflect before they are believed.

Only the writes made while a step watches count (``WrittenLsns.watch``), never the process's whole history: a
namespace deleted and made again starts a new log, and an LSN remembered from its old one would hold every later
wait until its timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WrittenLsns:
    """The highest LSN answered to this process's writes per namespace, for each step watching (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watching: dict[int, dict[str, int]] = {}  # by the watch's own id: two watches may hold equal dicts

    def note(self, namespace: str, lsn: int | None) -> None:
        if lsn is None:
            return
        with self._lock:
            for highest in self._watching.values():
                if lsn > highest.get(namespace, -1):
                    highest[namespace] = lsn

    @contextmanager
    def watch(self) -> Iterator[dict[str, int]]:
        """The highest LSN of the writes answered while open, per namespace, from every thread of the process:
        another step's concurrent write to the same namespace only makes a wait reflect a little more."""
        highest: dict[str, int] = {}
        with self._lock:
            self._watching[id(highest)] = highest
        try:
            yield highest
        finally:
            with self._lock:
                del self._watching[id(highest)]

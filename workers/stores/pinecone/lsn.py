"""The log sequence numbers of one process's writes to a Pinecone index, per namespace.

Pinecone answers each write to a serverless namespace with the LSN it committed at, and each lagging read (list,
query) with the LSN the read reflects (https://docs.pinecone.io/guides/index-data/check-data-freshness): a read
whose LSN is at least a write's sees that write and every one before it in the namespace. The copy records the
highest LSN of its writes per target namespace (``workers.steps.freshness``), so verification and cleanup know
what the target's reads must reflect before they are believed.
"""

from __future__ import annotations

import threading


class WrittenLsns:
    """The highest LSN answered to this process's writes, per namespace (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._highest: dict[str, int] = {}

    def note(self, namespace: str, lsn: int | None) -> None:
        if lsn is None:
            return
        with self._lock:
            if lsn > self._highest.get(namespace, -1):
                self._highest[namespace] = lsn

    def get(self, namespace: str) -> int | None:
        with self._lock:
            return self._highest.get(namespace)

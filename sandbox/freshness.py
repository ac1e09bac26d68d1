"""Reads that lag writes, as Pinecone's do, and the log sequence numbers (LSN) that tell a reader how far it sees.

Pinecone is eventually consistent: "there can be a slight delay before new or changed records are visible to
queries", and record counts lag too (https://docs.pinecone.io/guides/index-data/check-data-freshness; "Pinecone is
eventually consistent, so there can be a slight delay before upserted records are available to query":
https://docs.pinecone.io/reference/api/known-limitations). Documents "become searchable within approximately one
minute". Neither page says that ``fetch`` lags, and the SDK (``pinecone/models/response_info.py``) says fetch and
search see a write at different times: here a vector ``fetch`` (and fetch by metadata) reads the latest state, while
a document index's ``fetch`` (its writes are applied asynchronously, and the SDK reads a reconciled LSN on it),
``list``, ``query``, records search, ``describe_index_stats`` and the ``/namespaces`` counts read a replica that
applies each write ``lag_s`` after it was answered, in the order they were made, so a lagging read sees a consistent
older state.

LSNs (same page): each write to a namespace gets the namespace's next LSN (writes to one namespace do not move
another's), answered in ``x-pinecone-request-lsn`` (the page) and ``x-pinecone-lsn-committed`` (the SDK's vectors-API
name); a lagging read of a namespace answers the LSN of the last write it reflects in ``x-pinecone-max-indexed-lsn``
and ``x-pinecone-lsn-reconciled``. A vector fetch carries none (as the SDK says); a document fetch does. Only
serverless indexes send them (the page: "only available for serverless indexes"); a pod's reads lag all the same.

With ``lag_s == 0`` and nothing pending there is no replica: reads and writes share one state, as before.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

#: The headers of a write's LSN and of a read's reconciled LSN (both names of each: see the module docstring).
COMMITTED_HEADERS = ("x-pinecone-request-lsn", "x-pinecone-lsn-committed")
RECONCILED_HEADERS = ("x-pinecone-max-indexed-lsn", "x-pinecone-lsn-reconciled")

Apply = Callable[[Any], Any]


class Freshness:
    """The write log of one index store: what its lagging replica has not applied yet, and the LSNs.

    The store calls ``before_write`` and ``wrote`` around each write (under its lock), and ``view`` for each lagging
    read; ``replica`` makes an empty store of the same index (without a log of its own)."""

    def __init__(self, replica: Callable[[], Any]) -> None:
        self.lag_s = 0.0
        self.lsn_step = 1  # 2: LSNs that skip a number each write (``Faults.lsns``)
        self._replica = replica
        self._visible: Any = None
        self._log: deque[tuple[float, str, int, Apply]] = deque()
        self._committed: dict[str, int] = {}
        self._applied: dict[str, int] = {}
        self._request = threading.local()  # the LSN headers of the request this thread serves

    def clear(self) -> None:
        self._visible = None
        self._log.clear()
        self._committed.clear()
        self._applied.clear()

    def before_write(self, latest: Any) -> None:
        """Start the replica as a copy of ``latest`` when a lag begins (before the write changes it)."""
        if self._visible is None and self.lag_s > 0:
            replica = self._replica()
            for name, ns in latest.namespaces.items():
                if ns.records:
                    replica.put(name, list(ns.records.items()))
                else:
                    replica.create_namespace(name)
            self._visible = replica

    def wrote(self, namespace: str, apply: Apply, *, at_once: bool = False) -> None:
        """A write to ``namespace`` was applied to the latest state; ``apply`` makes it on the replica. ``at_once``:
        not an API write (the sandbox's own loading): visible at once, no LSN."""
        if self._visible is None:
            if not at_once:
                self._applied[namespace] = self._commit(namespace)
            return
        if at_once:
            apply(self._visible)
            return
        lsn = self._commit(namespace)
        self._log.append((time.monotonic() + self.lag_s, namespace, lsn, apply))

    def _commit(self, namespace: str) -> int:
        lsn = self._committed[namespace] = self._committed.get(namespace, 0) + self.lsn_step
        self._request.headers = dict.fromkeys(COMMITTED_HEADERS, str(lsn))
        return lsn

    def view(self, latest: Any, namespace: str | None) -> Any:
        """The state a lagging read sees now (``latest`` when nothing lags); notes its reconciled LSN when it reads
        one namespace."""
        self._apply_due(time.monotonic())
        if namespace is not None:
            self._request.headers = dict.fromkeys(RECONCILED_HEADERS, str(self._applied.get(namespace, 0)))
        return latest if self._visible is None else self._visible

    def settle(self) -> None:
        """Apply every pending write now, as if the lag had passed (a test's setup, instead of sleeping it out)."""
        self._apply_due(math.inf)

    def _apply_due(self, now: float) -> None:
        if self._visible is None:
            return
        # In order: a write not due yet holds back the later ones (a lag shortened meanwhile included).
        while self._log and self._log[0][0] <= now:
            _, name, lsn, apply = self._log.popleft()
            apply(self._visible)
            self._applied[name] = lsn
        if not self._log and self.lag_s <= 0:
            self._visible = None  # caught up, and no lag any more: back to one state

    @contextlib.contextmanager
    def request(self) -> Iterator[dict[str, str]]:
        """The LSN headers of one request served in this thread, filled when it ends."""
        self._request.headers = {}
        answer: dict[str, str] = {}
        try:
            yield answer
        finally:
            answer.update(self._request.headers)
            self._request.headers = {}

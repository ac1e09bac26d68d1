"""The application's side of a published cut-over (``orchestrator.cutover.published``): what ``DualWriteIndex`` reads
instead of the job table, and how it sends back what the fleet must know.

Why Redis, and why read-only for the rollout: every application instance follows the rollout, so the thing it polls
must be cheap (one small hash field every ``max_age_s``, a sub-millisecond read on the fleet's own Redis, against a
job-table query and a Postgres connection per instance) and must not let an application change the cut-over. A
Redis user limited to reading ``nsmigrate:cutover:*:rollout``, ``…:layout`` and ``nsmigrate:erasure-ledger`` and to
appending to ``…:writes``, ``…:reads``, ``…:traffic`` and ``…:queries`` is all an application needs (the manual shows
the ACL). The job table stays the record: the commands publish from it and file what comes back into it.

What cannot be read fails closed: no rollout published yet is an error naming the command that publishes it; a
rollout that cannot be read now keeps the last one read (reads do not stop because Redis blinked; the cut-over's
commands cannot publish either then); an erasure ledger that cannot be read stops the write (nothing of an erased
creator may be written on a guess). What cannot be sent is kept (up to ``PENDING_KEPT`` entries) and sent with the
next one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from nsmigrate.orchestrator.cutover.published import HELD_BACK, QUERIES_KEPT, READS_KEPT, WRITE_FAILED
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.messaging.task_names import ERASURE_LEDGER_KEY, cutover_key

log = logging.getLogger(__name__)

#: Entries (failed writes, held-back records, read reports) kept while Redis cannot take them, at most; the oldest
#: read reports go first, then the oldest writes (each one a write ``sync`` still finds by comparing).
PENDING_KEPT = 1000


class Follower:
    """Job ``job_id``'s published rollout, layout and erasure ledger, read from ``redis`` (a redis-py client), and
    the sending of what the application saw. Thread-safe."""

    def __init__(self, redis: Any, job_id: int, clock: Callable[[], float] = time.time) -> None:
        self.redis, self.job_id, self._clock = redis, job_id, clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._ledger_version: str | None = None
        self._ledger: list[tuple[int, Any]] = []
        self._pending: list[tuple[str, dict[str, Any]]] = []

    # ------------------------------------------------------------------------------------------------ what it reads

    def head(self) -> dict[str, Any]:
        """The rollout document now.

        Raises:
            StateError: the job's rollout was never published (nothing to follow yet).
            redis.RedisError: Redis cannot be read.
        """
        raw = self.redis.hget(cutover_key(self.job_id, "rollout"), "doc")
        if raw is None:
            raise StateError(
                f"job {self.job_id}'s cut-over is not published for its applications (no rollout in Redis at "
                f"{cutover_key(self.job_id, 'rollout')})",
                hint=f"run `nsmigrate cutover publish {self.job_id}` (a `cutover set` publishes it too)",
                job_id=self.job_id,
            )
        return dict(json.loads(raw))

    def layout(self, version: str) -> dict[str, Any]:
        """The layout document of ``version`` (the one the rollout names)."""
        raw = self.redis.get(cutover_key(self.job_id, "layout"))
        layout = json.loads(raw) if raw is not None else None
        if layout is None or layout.get("version") != version:
            raise StateError(
                f"job {self.job_id}'s published layout is not the version its rollout names ({version})",
                hint=f"run `nsmigrate cutover publish {self.job_id}` again",
                job_id=self.job_id,
            )
        return dict(layout)

    def ledger(self) -> list[tuple[int, Any]]:
        """(erasure job, ``Subject``) of every unlifted erasure, asked now (its version; the whole ledger only when
        that changed).

        Raises:
            StateError: no ledger is published, or Redis cannot be read: the write must not go ahead on a guess.
        """
        from nsmigrate.orchestrator.tenancy.erasure import Subject

        try:
            version = self.redis.hget(ERASURE_LEDGER_KEY, "version")
            if version is not None and version != self._ledger_version:
                doc = json.loads(self.redis.hget(ERASURE_LEDGER_KEY, "doc") or b"{}")
                subjects = [(int(job), Subject.from_json(subject)) for job, subject in doc.get("subjects", [])]
                with self._lock:
                    self._ledger_version, self._ledger = version, subjects
        except Exception as e:
            raise StateError(
                f"the erasure ledger cannot be read from Redis ({type(e).__name__}: {e}): nothing was written, since "
                "an erased creator's records must not be",
                hint="make Redis reachable and write again",
                job_id=self.job_id,
            ) from e
        if version is None:
            raise StateError(
                f"no erasure ledger is published in Redis ({ERASURE_LEDGER_KEY}): nothing was written, since an "
                "erased creator's records must not be",
                hint=f"run `nsmigrate cutover publish {self.job_id}`, which publishes it",
                job_id=self.job_id,
            )
        with self._lock:
            return list(self._ledger)

    # ------------------------------------------------------------------------------------------------ what it sends

    def write_failed(self, run_id: int | None, namespace: str, operation: str, ids: list[str], error: str) -> None:
        """A write the old store took and the new one did not: filed as a ``dual_write_failed`` event."""
        entry = {"run_id": run_id, "namespace": namespace, "operation": operation, "ids": ids, "error": error}
        self._send("writes", {"kind": WRITE_FAILED, **entry})

    def held_back(self, lines: list[tuple[int, Any, list[str]]], namespace: str) -> None:
        """Records the ledger held back: filed as ``write_held_back`` events of their erasures."""
        wire = [[job, subject.to_json(), ids] for job, subject, ids in lines]
        self._send("writes", {"kind": HELD_BACK, "lines": wire, "namespace": namespace})

    def reads(self, report: dict[str, Any], traffic: dict[str, int], queries: list[dict[str, Any]]) -> None:
        """A report of the reads measured since the last, the reads per namespace, and queries with filters."""
        self._send("reads", report, traffic=traffic, queries=queries)

    def _send(self, part: str, entry: dict[str, Any], **extra: Any) -> None:
        entry = {**entry, "instance": self.instance, "at": self._clock()}
        with self._lock:
            self._pending.append((part, {"entry": entry, **extra}))
            if len(self._pending) > PENDING_KEPT:  # the oldest read report first: a failed write is worth more
                drop = next((i for i, (p, _) in enumerate(self._pending) if p == "reads"), 0)
                del self._pending[drop]
            pending, self._pending = self._pending, []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for part_, item in pending:
                self._queue(pipe, part_, item)
            pipe.execute()
        except Exception as e:  # kept, sent with the next one
            log.warning("cannot send the cut-over's %s to Redis (%s); kept for the next send", part, e)
            with self._lock:
                self._pending[:0] = pending
                del self._pending[: max(0, len(self._pending) - PENDING_KEPT)]

    def _queue(self, pipe: Any, part: str, item: dict[str, Any]) -> None:
        key = cutover_key(self.job_id, part)
        if part == "writes":
            pipe.xadd(key, {"entry": json.dumps(item["entry"])})
            return
        pipe.xadd(key, {"report": json.dumps(item["entry"])}, maxlen=READS_KEPT, approximate=True)
        for namespace, count in (item.get("traffic") or {}).items():
            pipe.zincrby(cutover_key(self.job_id, "traffic"), count, namespace)
        queries = item.get("queries") or []
        if queries:
            pipe.lpush(cutover_key(self.job_id, "queries"), *[json.dumps(q) for q in queries])
            pipe.ltrim(cutover_key(self.job_id, "queries"), 0, QUERIES_KEPT - 1)

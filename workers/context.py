"""Per-process resources of a worker: settings, job table, dispatcher, Redis, rate limiter and open stores.

Built lazily on first use inside the worker process (after Celery forks), never at import time, because network
clients (Pinecone's HTTP pool, SQLAlchemy's connections) must not be shared across a fork.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from nsmigrate.orchestrator.connections.redis_pool import worker_redis
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.settings import Settings, load_settings, task_slots
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.stores import open_store
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.shared_counts import SharedCounts
from nsmigrate.workers.transfer.namespace_locks import NamespaceLocks
from nsmigrate.workers.transfer.ratelimit import RateLimiter

log = logging.getLogger(__name__)

#: Guarded stores a process keeps made (``WorkerContext.guarded``): those of the few jobs it works on at a time.
GUARDED_KEPT = 64


class WorkerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # No schema check per process: `nsmigrate worker` made sure of it once before forking, and a check in every
        # process would serialise their start on the schema lock.
        self.db = Database(settings.database_url, pool_size=max(10, task_slots()), create=False)
        self.dispatcher = Dispatcher(settings)
        self.redis = worker_redis(settings.redis_url)  # its task threads' commands wait on no pool lock
        self.limiter = RateLimiter(self.redis, guard_s=settings.rate_guard_s)
        self.locks = NamespaceLocks(
            self.redis, ttl_s=settings.namespace_lock_ttl_s, wait_s=settings.namespace_lock_wait_s
        )
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self._stores: dict[str, Store] = {}
        self._identities: dict[str, str] = {}
        #: (id of a store spec, id of a rate budget) → (those two, their guarded store): kept with them, so their ids
        #: stay theirs while the entry lives.
        self._guarded: dict[tuple[int, int], tuple[object, object, GuardedStore]] = {}
        self.shared_counts = SharedCounts()  # index stats readings shared by concurrent verifications
        self._lock = threading.Lock()

    def store(self, spec: PineconeStoreSpec | PgvectorStoreSpec) -> Store:
        """One open store per distinct spec per process (stores keep connection pools). Found without the lock, taken
        only to open one: every store call of every task thread asks, and a thread the interpreter switched away
        from while it held the lock kept the others waiting (a lock convoy: 18 % of a copy worker's samples on a
        job of many small namespaces)."""
        key = spec.model_dump_json()
        opened = self._stores.get(key)
        if opened is not None:
            return opened
        with self._lock:
            if key not in self._stores:
                store = open_store(spec, self.settings.allowed_key_vars)
                store.connect()  # client set-up outside any rate-budget admission
                self._stores[key] = store
            return self._stores[key]

    def guarded(self, spec: PineconeStoreSpec | PgvectorStoreSpec, rate: RateBudget) -> GuardedStore:
        """This process's store for ``spec`` under the fleet-wide budget of ``rate``, every request retried: how
        tasks call a store (see ``workers.stores.guarded``). Made once for the objects of a job's spec (kept per
        process: ``jobs_and_runs.job_spec``), found again by their ids: made for every call, a small namespace's
        run made four, each serialising the spec twice and building a retry policy (~6 % of a copy worker's CPU on a
        job of many small namespaces)."""
        key = (id(spec), id(rate))
        made = self._guarded.get(key)
        if made is not None and made[0] is spec and made[1] is rate:
            return made[2]
        if len(self._guarded) >= GUARDED_KEPT:
            self._guarded.clear()
        guarded = self._make_guarded(spec, rate)
        self._guarded[key] = (spec, rate, guarded)
        return guarded

    def _make_guarded(self, spec: PineconeStoreSpec | PgvectorStoreSpec, rate: RateBudget) -> GuardedStore:
        store = self.store(spec)
        return GuardedStore(
            store,
            limiter=self.limiter,
            rate=rate,
            attempts=self.settings.retry_attempts,
            max_wait_s=self.settings.retry_max_wait_s,
            retry_after_cap_s=self.settings.retry_after_cap_s,
            identify=lambda: self._identity(spec, store),
            locks=self.locks,
        )

    def _identity(self, spec: PineconeStoreSpec | PgvectorStoreSpec, store: Store) -> str:
        """``store.identity()``, the rate budget's key, asked once per process and spec (pgvector asks its server)."""
        key = spec.model_dump_json()
        known = self._identities.get(key)  # without the lock, as ``store`` finds a store
        if known is None:
            known = store.identity()
            with self._lock:
                self._identities[key] = known
        return known


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def get_context() -> WorkerContext:
    global _context
    with _context_lock:
        if _context is None or _context.worker_name.split(":")[-1] != str(os.getpid()):
            _context = WorkerContext(load_settings())
        return _context


def reset_context() -> None:
    """Forget the resources inherited from a parent process (called after fork)."""
    global _context
    _context = None

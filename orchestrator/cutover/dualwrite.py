"""For applications during a cut-over: ``DualWriteIndex`` writes to the old and the new Pinecone index and reads from
the one the job's rollout says (``nsmigrate cutover set``).

Importable on its own (no Celery, no store SDK): it wraps two objects shaped like the Pinecone SDK's ``Index``
(``upsert(vectors=, namespace=)``, ``delete(ids=, namespace=)``, ``query(vector=, top_k=, namespace=, …)``,
``fetch(ids=, namespace=)``) — a pgvector store through ``StoreIndex`` — and reads the job table for the job's
namespaces and rollout::

    from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex
    index = DualWriteIndex(old=pc.Index(host=OLD), new=pc.Index(host=NEW), job_id=7, database_url=JOB_TABLE_URL)
    index.upsert(vectors=[...], namespace=twin_uuid)   # old first, then the job's target namespace, enriched
    index.query(vector=v, top_k=10, namespace=twin_uuid, include_metadata=True)

Writes go to the old index first (its failure is the application's, as without the wrapper), then to where the job
copies that namespace, with the metadata the copy adds (the job's own routing, ``orchestrator.routing.route``), so the
new side holds what ``verify`` expects. A failed new-side write is never lost: it is recorded in the job table
(``dual_write_failed``), ``nsmigrate sync`` copies it, and ``cleanup`` waits for that sync. Reads go to the new
index for the namespaces the rollout's percentage selects (``cutover.reads_new``: by namespace, so a tenant sees
one store at a time), read from the job table at most every ``max_age_s`` seconds, so one ``cutover set`` switches
every instance. A namespace the job routes per record (a creator job's default namespace) is read from the old index
until the end of the rollout: one old namespace is many new ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.cutover.rollout import record_write_failure, rollout_of
from nsmigrate.orchestrator.cutover.rules import reads_new
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.jobs.erasure_ledger import HeldBack, record_held_back
from nsmigrate.orchestrator.jobs.jobs_and_runs import job_spec, runs_of
from nsmigrate.orchestrator.records.vectors import DEFAULT_NAMESPACE, Record
from nsmigrate.orchestrator.routing.route import RouteContext, route_context, route_records
from nsmigrate.orchestrator.tenancy.tenant_guard import Match

log = logging.getLogger(__name__)

#: How stale the rollout an application reads may be, at most (seconds).
ROLLOUT_MAX_AGE_S = 2.0


class RolloutReader:
    """The job's rollout percentage, read from the job table at most every ``max_age_s`` seconds."""

    def __init__(
        self,
        db: Database,
        job_id: int,
        max_age_s: float = ROLLOUT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db, self._job_id, self._max_age_s, self._clock = db, job_id, max_age_s, clock
        self._lock = threading.Lock()
        self._percent, self._read_at = 0, float("-inf")

    def percent(self) -> int:
        with self._lock:
            if self._clock() - self._read_at >= self._max_age_s:
                self._percent, self._read_at = rollout_of(self._db, self._job_id).percent, self._clock()
            return self._percent


class DualWriteIndex:
    """An old and a new index behind one Pinecone-shaped object, for the duration of job ``job_id``'s cut-over.

    Parameters:
        old, new: the application's indexes (SDK ``Index`` objects or anything shaped like them).
        job_id: the migration job whose namespaces, routing and rollout apply.
        database_url: the job table (``NSMIGRATE_DATABASE_URL``); or pass ``db``.
        max_age_s: how stale the rollout may be (default 2 s).
    """

    def __init__(
        self,
        old: Any,
        new: Any,
        job_id: int,
        *,
        database_url: str | None = None,
        db: Database | None = None,
        max_age_s: float = ROLLOUT_MAX_AGE_S,
    ) -> None:
        if db is None:
            if database_url is None:
                raise ValueError("DualWriteIndex needs the job table: pass database_url (or db)")
            db = Database(database_url, create=False)
        self.old, self.new, self.job_id, self._db = old, new, job_id, db
        self.held_back: list[str] = []  # what the erasure ledger held back of the last upsert
        self.rollout = RolloutReader(db, job_id, max_age_s)
        spec = job_spec(db, job_id)
        self._runs = {run.source_namespace: run for run in runs_of(db, job_id)}
        self._routes: dict[str, RouteContext] = {
            ns: route_context(
                spec,
                spec.source.label,
                ns,
                run.target_namespace,
                run.creator_id,
                run.twin_id,
                run.routing_table,
            )
            for ns, run in self._runs.items()
        }

    # ----------------------------------------------------------------------------------------------------- writes

    def upsert(self, vectors: Iterable[Any], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """Upsert to the old index, then the same records, routed and enriched as the job copies them, to the new.
        Records of a creator or twin in the erasure ledger are written to neither (``held_back`` names them, as
        does a ``write_held_back`` event of their erasure); None when nothing was left to write."""
        vectors = list(vectors)
        ns = _stored(namespace)
        given = [_record(v) for v in vectors]
        ledger = HeldBack(self._db)  # asked before each write: an erasure started meanwhile counts
        run = self._runs.get(ns)
        records = ledger.keep(ns, given, (run.creator_id, run.twin_id) if run else None)
        kept = {r.id for r in records}
        answer = None
        if records:
            old = [v for v, r in zip(vectors, given, strict=True) if r.id in kept]
            answer = self.old.upsert(vectors=old, namespace=namespace, **kwargs)
        ids = [r.id for r in records]
        try:
            for target, routed in route_records(records, self._route(ns)).items():
                routed = ledger.keep(target, routed)
                if routed:
                    self.new.upsert(vectors=[_wire(r) for r in routed], namespace=target)
        except Exception as e:  # any failure of the new side: recorded for sync, never raised to the application
            self._failed(ns, "upsert", ids, e)
        self.held_back = ledger.sentences()
        if self.held_back:
            log.warning("dual write to %r: %s", namespace, "; ".join(self.held_back))
            record_held_back(self._db, ledger.lines(), job=self.job_id, command="dual_write", namespace=ns)
        return answer

    def delete(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """Delete from the old index, then from every namespace the job writes this namespace's ids to."""
        ids = list(ids)
        answer = self.old.delete(ids=ids, namespace=namespace, **kwargs)
        ns = _stored(namespace)
        try:
            for target in self._targets(ns):
                self.new.delete(ids=ids, namespace=target)
        except Exception as e:
            self._failed(ns, "delete", ids, e)
        return answer

    # ------------------------------------------------------------------------------------------------------ reads

    def reads_new(self, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether a read of ``namespace`` goes to the new index now."""
        ns = _stored(namespace)
        run = self._runs.get(ns)
        return run is not None and run.target_namespace is not None and reads_new(ns, self.rollout.percent())

    def query(self, *, namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """``query`` of the index the rollout picks for ``namespace`` (in the new index: the job's target of it)."""
        index, ns = self._reader(namespace)
        return index.query(namespace=ns, **kwargs)

    def fetch(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """``fetch`` from the index the rollout picks for ``namespace``."""
        index, ns = self._reader(namespace)
        return index.fetch(ids=list(ids), namespace=ns, **kwargs)

    # -------------------------------------------------------------------------------------------------- internals

    def _reader(self, namespace: str) -> tuple[Any, str]:
        if self.reads_new(namespace):
            target = self._runs[_stored(namespace)].target_namespace
            assert target is not None  # reads_new is False for a routed run
            return self.new, target
        return self.old, namespace

    def _route(self, namespace: str) -> RouteContext:
        route = self._routes.get(namespace)
        if route is None:
            raise LookupError(f"namespace {namespace!r} is not one of job {self.job_id}'s: its writes are not copied")
        return route

    def _targets(self, namespace: str) -> list[str]:
        run = self._runs.get(namespace)
        if run is None:
            self._route(namespace)  # raises: the namespace is not the job's
            return []
        if run.target_namespace is not None:
            return [run.target_namespace]
        return list(run.target_namespaces or [])

    def _failed(self, namespace: str, operation: str, ids: list[str], error: Exception) -> None:
        run = self._runs.get(namespace)
        log.warning(
            "dual write (%s of %d ids to %r) failed on the new index: %s", operation, len(ids), namespace, error
        )
        record_write_failure(
            self._db,
            self.job_id,
            run.id if run else None,
            namespace,
            operation,
            ids,
            f"{type(error).__name__}: {error}",
        )


@dataclass(frozen=True)
class QueryAnswer:
    matches: list[Match]


class StoreIndex:
    """An nsmigrate store (``workers.stores.open_store``: a pgvector store, say) shaped like the SDK's ``Index`` for
    ``DualWriteIndex``: ``upsert``, ``delete``, ``fetch`` (id → Record) and ``query`` (its matches are
    ``tenant.Match``: id, score, namespace; neither metadata nor filters, which an nsmigrate store's query does not
    take)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def upsert(self, vectors: Iterable[Any], namespace: str = DEFAULT_NAMESPACE) -> int:
        return int(self.store.upsert(_stored(namespace), [_record(v) for v in vectors]))

    def delete(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE) -> None:
        self.store.delete(_stored(namespace), list(ids))

    def fetch(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE) -> dict[str, Record]:
        return {r.id: r for r in self.store.fetch(_stored(namespace), list(ids))}

    def query(self, *, vector: list[float], top_k: int, namespace: str = DEFAULT_NAMESPACE) -> QueryAnswer:
        ns = _stored(namespace)
        return QueryAnswer([Match(id_, score, ns) for id_, score in self.store.query_scored(ns, vector, top_k)])


def _stored(namespace: str) -> str:
    """The job table's name of a namespace (the SDK also calls the default one ``__default__``)."""
    return DEFAULT_NAMESPACE if namespace == "__default__" else namespace


def _record(vector: Any) -> Record:
    """A Record of one vector as the SDK's ``upsert`` takes it: a dict, a tuple ``(id, values[, metadata])`` or an
    object with ``id``, ``values`` and ``metadata``."""
    if isinstance(vector, Mapping):
        return Record(str(vector["id"]), list(vector.get("values") or []), dict(vector.get("metadata") or {}))
    if isinstance(vector, tuple):
        return Record(str(vector[0]), list(vector[1]), dict(vector[2]) if len(vector) > 2 and vector[2] else {})
    return Record(str(vector.id), list(vector.values or []), dict(getattr(vector, "metadata", None) or {}))


def _wire(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id, "values": list(record.values)}
    if record.metadata:
        out["metadata"] = record.metadata
    return out

"""For applications during a cut-over: ``DualWriteIndex`` writes to the old and the new index and reads from the one
the job's rollout says (``nsmigrate cutover set``), measuring what its reads see.

Importable on its own (no Celery, no store SDK, no job table): it wraps two objects shaped like the Pinecone SDK's
``Index`` (``upsert(vectors=, namespace=)``, ``delete(ids=, namespace=)``, ``query(vector=, top_k=, namespace=, …)``,
``fetch(ids=, namespace=)``) — a pgvector store through ``StoreIndex`` — and follows the job's cut-over as the fleet
publishes it in Redis (``orchestrator.cutover.following``; ``nsmigrate cutover publish JOB`` publishes it)::

    from nsmigrate import DualWriteIndex
    index = DualWriteIndex(old=pc.Index(host=OLD), new=pc.Index(host=NEW), job_id=7, redis_url=REDIS_URL)
    index.upsert(vectors=[...], namespace=twin_uuid)   # old first, then the job's target namespace, enriched
    index.query(vector=v, top_k=10, namespace=twin_uuid, include_metadata=True)

Writes go to the old index first (its failure is the application's, as without the wrapper), then to where the job
copies that namespace, with the metadata the copy adds (the job's own routing, ``orchestrator.routing.route``), so the
new side holds what ``verify`` expects. A failed new-side write is not raised: it is sent to the fleet, filed as a
``dual_write_failed`` event, ``nsmigrate sync`` copies it and ``cleanup`` waits for that sync. Once a cleanup of the
namespace has started, no sync can follow it, so a new-side failure is raised to the application, which retries the
write as it would without the wrapper; once the namespace is cleaned, only the new index is written (the old one would
only be filled again), but for a delete routed per record: it also reaches the records the routing drops, kept there.
Records of an erased creator or twin are written to neither side (the erasure ledger, asked before each write).

Reads go to the new index for the namespaces the rollout's percentage selects (``cutover.reads_new``: by namespace,
so a tenant sees one store at a time), read at most every ``max_age_s`` seconds, so one ``cutover set`` (or the
automatic roll back of ``cutover watch``) switches every instance. A namespace the job routes per record is read from
the old index until the end of the rollout: one old namespace is many new ones. Every read is measured
(``orchestrator.cutover.read_metrics``: P50/P95/P99, errors, and empty answers where the other side answered, per
side), and a share ``compare_share`` of them is also sent to the other side, in the background, to compare; the
measurements are Prometheus metrics of the application's process and go to the fleet every few seconds, where
``cutover watch`` judges them and ``status`` shows them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.cutover.following import Follower
from nsmigrate.orchestrator.cutover.published import CLEANED, ROLLOUT_MAX_AGE_S
from nsmigrate.orchestrator.cutover.read_metrics import ReadLog, set_limits
from nsmigrate.orchestrator.cutover.rules import reads_new
from nsmigrate.orchestrator.jobs.erasure_ledger import HeldBack
from nsmigrate.orchestrator.records.vectors import DEFAULT_NAMESPACE, Record
from nsmigrate.orchestrator.routing.route import RouteContext, route_context, route_records
from nsmigrate.orchestrator.tenancy.tenant_guard import Match

log = logging.getLogger(__name__)

#: The share of reads also sent to the other side to compare, by default.
COMPARE_SHARE = 0.1
#: Threads that send the comparing reads and the reports, and how many of those may wait at once (more are skipped:
#: measuring must never queue up behind a slow side).
COMPARE_THREADS = 4
COMPARE_IN_FLIGHT = 16
#: Reports sent per ``cutover.breach_window_s``, and the shortest time between two.
REPORTS_PER_WINDOW = 10
MIN_REPORT_S = 0.5
#: Queries with filters one report records at most (for `cutover check`'s replay).
QUERIES_PER_REPORT = 5


@dataclass(frozen=True)
class _Run:
    """A namespace run of the job, as its published layout has it."""

    id: int
    source_namespace: str
    target_namespace: str | None
    target_namespaces: tuple[str, ...]
    creator_id: str | None
    twin_id: str | None
    #: Its copy passed verification: reads may go to it (``published.readable``; a layout without it: yes).
    readable: bool = True
    #: How far a cleanup of its source went: None, ``cleaning`` or ``cleaned`` (``published.cleanup_stage``).
    cleanup: str | None = None


class RolloutReader:
    """The job's published rollout (``Follower.head``), read again at most every ``max_age_s`` seconds. A rollout
    that cannot be read now keeps the last one read (logged); one never read raises."""

    def __init__(
        self, follower: Follower, max_age_s: float = ROLLOUT_MAX_AGE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._follower, self._max_age_s, self._clock = follower, max_age_s, clock
        self._lock = threading.Lock()
        self._head: dict[str, Any] | None = None
        self._read_at = float("-inf")

    def head(self) -> dict[str, Any]:
        with self._lock:
            if self._clock() - self._read_at >= self._max_age_s:
                try:
                    self._head = self._follower.head()
                except Exception as e:
                    if self._head is None:
                        raise
                    log.warning("cannot read job %s's rollout (%s); reads keep the last one", self._follower.job_id, e)
                self._read_at = self._clock()
            assert self._head is not None
            return self._head

    def percent(self) -> int:
        return int(self.head()["percent"])

    def fresh(self) -> dict[str, Any]:
        """The rollout read now, whatever ``max_age_s`` allows."""
        with self._lock:
            self._read_at = float("-inf")
        return self.head()


class DualWriteIndex:
    """An old and a new index behind one Pinecone-shaped object, for the duration of job ``job_id``'s cut-over.

    Parameters:
        old, new: the application's indexes (SDK ``Index`` objects or anything shaped like them).
        job_id: the migration job whose namespaces, routing and rollout apply.
        redis_url: the fleet's Redis (``NSMIGRATE_REDIS_URL``; a user that may read the job's published cut-over
            and append to what it sends is enough: the manual's "Cut-over"); or pass ``redis`` (a redis-py client).
        max_age_s: how stale the rollout may be (at most and by default 2 s: a cleanup waits that long for every
            application to follow its start).
        compare_share: the share of reads also sent to the other side, to compare (0 to 1; default 0.1).

    Raises:
        StateError: the job's cut-over is not published (``nsmigrate cutover publish JOB``).
    """

    def __init__(
        self,
        old: Any,
        new: Any,
        job_id: int,
        *,
        redis_url: str | None = None,
        redis: Any = None,
        max_age_s: float = ROLLOUT_MAX_AGE_S,
        compare_share: float = COMPARE_SHARE,
    ) -> None:
        if redis is None:
            if redis_url is None:
                raise ValueError(
                    "DualWriteIndex follows the job's cut-over as the fleet publishes it: pass redis_url (the "
                    "fleet's NSMIGRATE_REDIS_URL) or redis"
                )
            redis = _redis_client(redis_url)
        if not 0 <= max_age_s <= ROLLOUT_MAX_AGE_S:
            raise ValueError(
                f"max_age_s {max_age_s}: give 0 to {ROLLOUT_MAX_AGE_S} s; a cleanup waits that long for every "
                "application to follow its start before it looks at the source for the last time"
            )
        if not 0 <= compare_share <= 1:
            raise ValueError(f"compare_share {compare_share}: give a share between 0 and 1")
        self.old, self.new, self.job_id = old, new, job_id
        self.held_back: list[str] = []  # what the erasure ledger held back of the last upsert
        self.follower = Follower(redis, job_id)
        self.rollout = RolloutReader(self.follower, max_age_s)
        self.reads = ReadLog(job_id, "app")
        self._compare_share, self._rng = compare_share, random.Random()
        self._pool = ThreadPoolExecutor(COMPARE_THREADS, thread_name_prefix="nsmigrate-compare")
        self._in_flight = threading.BoundedSemaphore(COMPARE_IN_FLIGHT)
        self._lock = threading.Lock()
        self._layout_version: str | None = None
        self._runs: dict[str, _Run] = {}
        self._routes: dict[str, RouteContext] = {}
        self._queries: list[dict[str, Any]] = []
        self._reported_at = time.monotonic()
        self._current()

    def _current(self) -> dict[str, Any]:
        """The rollout now, with the layout it names loaded (again, when it changed)."""
        head = self.rollout.head()
        if head["layout"] != self._layout_version:
            self._load(head)
        return head

    def _load(self, head: dict[str, Any]) -> None:
        from nsmigrate.orchestrator.spec.jobspec import JobSpec  # pydantic: once per layout

        layout = self.follower.layout(head["layout"])
        spec = JobSpec.model_validate(layout["spec"])
        runs = {
            r["source_namespace"]: _Run(
                r["id"],
                r["source_namespace"],
                r["target_namespace"],
                tuple(r.get("target_namespaces") or ()),
                r.get("creator_id"),
                r.get("twin_id"),
                r.get("readable", True),
                r.get("cleanup"),
            )
            for r in layout["runs"]
        }
        routes = {
            r["source_namespace"]: route_context(
                spec,
                spec.source.label,
                r["source_namespace"],
                r["target_namespace"],
                r.get("creator_id"),
                r.get("twin_id"),
                r.get("routing_table"),
            )
            for r in layout["runs"]
        }
        with self._lock:
            self._runs, self._routes, self._layout_version = runs, routes, head["layout"]
        set_limits(self.job_id, head["limits"])

    # ----------------------------------------------------------------------------------------------------- writes

    def upsert(self, vectors: Iterable[Any], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """Upsert to the old index, then the same records, routed and enriched as the job copies them, to the new.
        Records of a creator or twin in the erasure ledger are written to neither (``held_back`` names them, as
        does a ``write_held_back`` event of their erasure); None when nothing was left to write. A namespace whose
        source a cleanup deleted is written to the new index only, which then answers."""
        self._current()
        vectors = list(vectors)
        ns = _stored(namespace)
        given = [_record(v) for v in vectors]
        ledger = HeldBack(subjects=self.follower.ledger)  # asked before each write: an erasure started meanwhile
        run = self._runs.get(ns)
        records = ledger.keep(ns, given, (run.creator_id, run.twin_id) if run else None)
        kept = {r.id for r in records}
        answer = None
        if records and not _cleaned(run):
            old = [v for v, r in zip(vectors, given, strict=True) if r.id in kept]
            answer = self.old.upsert(vectors=old, namespace=namespace, **kwargs)
        ids = [r.id for r in records]
        try:
            for target, routed in route_records(records, self._route(ns)).items():
                routed = ledger.keep(target, routed)
                if routed:
                    written = self.new.upsert(vectors=[_wire(r) for r in routed], namespace=target)
                    answer = written if _cleaned(run) else answer
        except Exception as e:  # a failure of the new side: sent for sync, or the application's once none can follow
            self._failed(run, ns, "upsert", ids, e)
        finally:
            self.held_back = ledger.sentences()
            if self.held_back:
                log.warning("dual write to %r: %s", namespace, "; ".join(self.held_back))
                self.follower.held_back(ledger.lines(), ns)
        return answer

    def delete(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """Delete from the old index, then from the new where the job copies these ids: the namespace's target or,
        routed per record, where each one routes (its record read from the old index before its delete: the copy
        may not have written that namespace yet, and another namespace's record of the same id is not this one). A
        namespace whose source a cleanup deleted is deleted from the new index (records routed per record are then
        found there, in the run's target namespaces), which then answers; routed per record, also from the old index,
        which keeps the records the routing drops (``_delete_left_behind``)."""
        self._current()
        ids = list(ids)
        ns = _stored(namespace)
        run = self._runs.get(ns)
        homes: dict[str, list[str]] | Exception = {}
        if run is not None and run.target_namespace is None and ids:
            try:
                homes = (
                    self._homes_in_new(ns, ids, run)
                    if _cleaned(run)
                    else self._homes(ns, self.old.fetch(ids=ids, namespace=namespace))
                )
            except Exception as e:  # unread: the new side's copies stay, filed below
                homes = e
        answer = None
        if not _cleaned(run):
            answer = self.old.delete(ids=ids, namespace=namespace, **kwargs)
        elif run is not None and run.target_namespace is None and ids:
            self._delete_left_behind(ids, namespace, **kwargs)
        try:
            if isinstance(homes, Exception):
                raise homes
            fixed = run is None or run.target_namespace is not None
            for target, targeted in ({t: ids for t in self._targets(ns)} if fixed else homes).items():
                deleted = self.new.delete(ids=targeted, namespace=target)
                answer = deleted if _cleaned(run) else answer
        except Exception as e:
            self._failed(run, ns, "delete", ids, e)
        return answer

    def _delete_left_behind(self, ids: list[str], namespace: str, **kwargs: Any) -> None:
        """Delete ``ids`` from a cleaned namespace routed per record: its cleanup kept there the records the routing
        drops (never copied), and the application's delete must reach them. Not the application's failure when it
        fails: the namespace may be dropped, or the old index gone, once the cut-over is over."""
        try:
            self.old.delete(ids=ids, namespace=namespace, **kwargs)
        except Exception as e:
            log.warning(
                "dual write: delete of %d ids left in cleaned namespace %r failed: %s", len(ids), namespace, _error(e)
            )

    def _homes(self, namespace: str, fetched: Any) -> dict[str, list[str]]:
        """Target namespace → the ids of the records ``fetched`` (an answer of the old index's ``fetch``) that the
        job routes there."""
        vectors = getattr(fetched, "vectors", fetched)  # the SDK's FetchResponse, or a StoreIndex's mapping
        records = [Record(str(i), [], dict(_field(v, "metadata") or {})) for i, v in vectors.items()]
        return {
            target: [r.id for r in routed] for target, routed in route_records(records, self._route(namespace)).items()
        }

    def _homes_in_new(self, namespace: str, ids: list[str], run: _Run) -> dict[str, list[str]]:
        """Target namespace → the ids of a cleaned run's records that the new index holds there and the job routes
        there (its source, where they were read before, is gone)."""
        homes: dict[str, list[str]] = {}
        for target in run.target_namespaces:
            found = self._homes(namespace, self.new.fetch(ids=ids, namespace=target)).get(target)
            if found:
                homes[target] = found
        return homes

    # ------------------------------------------------------------------------------------------------------ reads

    def reads_new(self, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether a read of ``namespace`` goes to the new index now."""
        percent = int(self._current()["percent"])
        run = self._runs.get(_stored(namespace))
        return _reads_target(run) is not None and reads_new(_stored(namespace), percent)

    def query(self, *, namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """``query`` of the index the rollout picks for ``namespace`` (in the new index: the job's target of it)."""
        if "filter" in kwargs and self._rng.random() < self._compare_share:
            self._record_query(namespace, kwargs)
        return self._read(namespace, lambda index, ns: index.query(namespace=ns, **kwargs))

    def fetch(self, ids: Iterable[str], namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> Any:
        """``fetch`` from the index the rollout picks for ``namespace``."""
        ids = list(ids)
        return self._read(namespace, lambda index, ns: index.fetch(ids=ids, namespace=ns, **kwargs))

    def flush(self) -> None:
        """Send what was measured since the last report now (reports otherwise go every few seconds)."""
        self._report(self._current())

    def close(self) -> None:
        """Send the last report and stop the threads that compare and report."""
        self.flush()
        self._pool.shutdown(wait=True)

    # -------------------------------------------------------------------------------------------------- internals

    def _read(self, namespace: str, call: Callable[[Any, str], Any]) -> Any:
        """``call(index, namespace)`` on the side the rollout picks, measured; maybe compared with the other side."""
        head = self._current()
        self._maybe_report(head)
        ns = _stored(namespace)
        run = self._runs.get(ns)
        if run is not None and run.target_namespace is None and run.cleanup is not None:
            # No one namespace of the new index answers for it, and the old one is being emptied: said, not empty.
            raise LookupError(
                f"namespace {namespace!r} of job {self.job_id} is cleaned up: its records were routed per record to "
                f"{', '.join(run.target_namespaces) or 'the new index'}; read those namespaces in the new index"
            )
        target = _reads_target(run)
        on_new = target is not None and reads_new(ns, int(head["percent"]))
        side, index, read_ns = (
            ("new", self.new, target) if on_new and target is not None else ("old", self.old, namespace)
        )
        sent_at, began = time.time(), time.perf_counter()
        try:
            answer = call(index, read_ns)
        except Exception as e:
            self.reads.read(side, None, _error(e), namespace=ns, at=sent_at)
            raise
        ms = (time.perf_counter() - began) * 1000
        compare = target is not None and self._compare_share > 0 and self._rng.random() < self._compare_share
        if target is None or not (compare and self._in_flight.acquire(blocking=False)):
            self.reads.read(side, ms, namespace=ns, at=sent_at)
            return answer
        other = ("old", self.old, namespace) if on_new else ("new", self.new, target)
        self._pool.submit(self._compare, (side, ms, answer, sent_at), other, call, ns)
        return answer

    def _compare(
        self, read: tuple[str, float, Any, float], other: tuple[str, Any, str], call: Callable, ns: str
    ) -> None:
        """The same read of the other side, measured; each side's read is empty where the other one answered."""
        side, ms, answer, sent_at = read
        try:
            other_at, began = time.time(), time.perf_counter()
            try:
                other_answer = call(other[1], other[2])
            except Exception as e:
                self.reads.read(side, ms, namespace=ns, at=sent_at)
                self.reads.read(other[0], None, _error(e), at=other_at)
                return
            other_ms = (time.perf_counter() - began) * 1000
            mine, theirs = _answered(answer), _answered(other_answer)
            self.reads.read(side, ms, empty=not mine and theirs, namespace=ns, at=sent_at)
            self.reads.read(other[0], other_ms, empty=not theirs and mine, at=other_at)
        finally:
            self._in_flight.release()

    def _record_query(self, namespace: str, kwargs: Mapping[str, Any]) -> None:
        kept = {k: kwargs[k] for k in ("vector", "id", "top_k", "filter", "sparse_vector") if k in kwargs}
        with self._lock:
            if len(self._queries) < QUERIES_PER_REPORT:
                self._queries.append({"namespace": _stored(namespace), **_plain(kept)})

    def _maybe_report(self, head: dict[str, Any]) -> None:
        every_s = max(MIN_REPORT_S, float(head["limits"]["breach_window_s"]) / REPORTS_PER_WINDOW)
        with self._lock:
            due = time.monotonic() - self._reported_at >= every_s
            if due:
                self._reported_at = time.monotonic()
        if due:
            self._pool.submit(self._report, head)

    def _report(self, head: dict[str, Any]) -> None:
        self.reads.following(int(head["percent"]))
        samples, traffic = self.reads.take()
        with self._lock:
            queries, self._queries = self._queries, []
        if samples or queries:
            report = {"samples": samples, "percent": head["percent"], "seq": head["seq"], "dropped": self.reads.dropped}
            self.follower.reads(report, traffic, queries)

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
        return list(run.target_namespaces)

    def _failed(self, run: _Run | None, namespace: str, operation: str, ids: list[str], error: Exception) -> None:
        """A write the new index did not take: raised to the application once a cleanup of the namespace started
        (no sync can copy it after that cleanup's last look at the source), else sent to the fleet for ``sync``."""
        if run is not None and run.cleanup is None:
            # A cleanup may have started while this write was under way (its old side slow): asked again now, so a
            # failure no sync could follow is raised, not filed. A cleanup published later looks at the source later.
            head = self.rollout.fresh()
            if head["layout"] != self._layout_version:
                self._load(head)
            run = self._runs.get(namespace, run)
        if run is not None and run.cleanup is not None:
            raise error
        log.warning(
            "dual write (%s of %d ids to %r) failed on the new index: %s", operation, len(ids), namespace, error
        )
        self.follower.write_failed(
            run.id if run else None, namespace, operation, ids, f"{type(error).__name__}: {error}"
        )


def _redis_client(url: str) -> Any:
    import redis as redis_lib

    from nsmigrate.orchestrator.connections.redis_urls import credentials_in_userinfo

    return redis_lib.Redis.from_url(credentials_in_userinfo(url))


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def _answered(answer: Any) -> bool:
    """Whether a query's or fetch's answer holds anything: the SDK's ``matches``/``vectors``, ``StoreIndex``'s."""
    for name in ("matches", "vectors"):
        got = answer.get(name) if isinstance(answer, Mapping) else getattr(answer, name, None)
        if got is not None:
            return len(got) > 0
    if isinstance(answer, Mapping):
        return len(answer) > 0
    return answer is not None


def _plain(value: Any) -> Any:
    """``value`` as JSON takes it (numpy arrays and scalars, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


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


def _reads_target(run: _Run | None) -> str | None:
    """The namespace of the new index that reads of ``run``'s source namespace may go to: None when it is not the
    job's, is routed per record, or its copy has not passed verification (reads stay old)."""
    return run.target_namespace if run is not None and run.readable else None


def _cleaned(run: _Run | None) -> bool:
    """Whether a cleanup deleted ``run``'s source: the new index alone holds its namespace's records."""
    return run is not None and run.cleanup == CLEANED


def _stored(namespace: str) -> str:
    """The job table's name of a namespace (the SDK also calls the default one ``__default__``)."""
    return DEFAULT_NAMESPACE if namespace == "__default__" else namespace


def _field(vector: Any, name: str) -> Any:
    """A field of a fetched vector: the SDK's object or a mapping (a ``StoreIndex``'s ``Record`` has it too)."""
    return vector.get(name) if isinstance(vector, Mapping) else getattr(vector, name, None)


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

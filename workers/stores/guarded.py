"""The one way to call a store: ``GuardedStore`` wraps a ``Store`` with the fleet-wide rate budget, the byte
budget and the retry policy, for every method of the protocol.

Which layer retries what (the one place this is decided):

- **tenacity, here**, retries one store request — an HTTP call to Pinecone, a statement to pgvector — when it raised
  ``RetryableError`` (429, 5xx, 408, a timeout, a lost connection, a rate limiter that could not reach Redis), with
  ``orchestrator.retry_policy.retrying``: ``Retry-After`` as the floor, jittered exponential backoff otherwise.
  Every attempt takes its own token from the budget: a retry is a request too. A host that never answered
  (``status`` None) gets at most ``no_answer_attempts`` tries, so a wrong host in a spec fails `plan` in seconds.
- **Celery** never retries ``RetryableError`` (both layers on one exception would multiply attempts and hide the real
  failure rate). It *redelivers* a task whose worker died before acknowledging it (``acks_late``; tasks are
  idempotent), and it re-sends, after a backoff, a task that could not reach the job table or Redis
  (``workers.retry.INFRASTRUCTURE_ERRORS``, never a ``RetryableError``; ``workers.fleet.tasks``): such a task changed
  nothing, every job table change being one transaction. When the broker itself is gone the retry cannot be sent:
  `nsmigrate resume` re-enqueues what the job table says is unfinished.
- **Clients' own retries are off**: the Pinecone SDK's (``workers.stores.pinecone``; one 429 costs one budgeted
  request) and the supabase client's (``orchestrator.connections.supabase_queries``).
- ``PermanentError`` (``StoreError``, ``SpecError``…) is never retried: the batch fails with its message.

Scopes (``workers.transfer.ratelimit``), keyed by what the service limits (``GuardedStore.budget_key``: the store's
identity, not its label): ``fetch`` takes a token of the store's read scope at ``rate.read_rps``; a query one of the
namespace's query scope at ``rate.query_rps`` (a pod source's, of the read scope); the index's stats (``count``,
``namespaces``, ``dimension``, ``metric``: Pinecone's ``describe_index_stats`` and ``describe_namespace``, limited
apart from fetch) of its stats scope at ``rate.stats_rps``; ``list_ids`` of its list scope at ``rate.list_rps``;
writes (``upsert``, ``delete``, ``delete_namespace``) of the namespace's write scope at ``rate.write_rps``, and an
upsert first reserves its bytes of that namespace's byte budget at ``rate.write_mb_per_s``; a delete from a store
whose deletes are limited by record (Pinecone) first takes, at every attempt, as many of the index's
``delete_scope`` at ``rate.delete_records_per_s`` as it names ids; an upsert of text records
to an integrated index also reserves its (estimated) embedding tokens of the index's ``embed_scope`` at
``rate.embed_tokens_per_min``. A text search (``search_text``) is a read. Without a limiter (the CLI, planning:
one-off calls outside the fleet) a ``GuardedStore`` only retries.

With ``locks`` (``workers.transfer.namespace_locks``: every store a ``WorkerContext`` opens), each write request holds
its namespace beside other writers and each delete request holds it alone, keyed by the same identity as the budget:
deletions are serialised with every other deletion and write of that namespace, fleet-wide. ``exclusive_hold``
holds several namespaces across more than one request (a prove-and-delete chunk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar, cast

from nsmigrate.orchestrator.errors import RetryableError, Superseded
from nsmigrate.orchestrator.limits import DELETE_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.pgvector_rows import TableColumn
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import IdPage, Record
from nsmigrate.orchestrator.retry_policy import retrying
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.workers import metrics, tally
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.stores.enumeration import SweepReads
from nsmigrate.workers.transfer.chunking import estimate_bytes
from nsmigrate.workers.transfer.namespace_locks import NamespaceLocks, namespace_key
from nsmigrate.workers.transfer.ratelimit import (
    RateLimiter,
    Reservation,
    delete_scope,
    embed_scope,
    list_scope,
    query_scope,
    read_scope,
    stats_scope,
    window_for,
    write_scope,
)
from nsmigrate.workers.transfer.write_fence import ERASURE_MARK_KEY, WriteFence

T = TypeVar("T")


class GuardedStore:
    """A ``Store`` whose every request is budgeted (with a limiter) and retried (always).

    Parameters:
        store: the adapter to wrap (``workers.stores.open_store``).
        limiter, rate: the fleet-wide budget and the job's rates; both or neither.
        attempts: tries per request, the first included.
        max_wait_s: cap of the backoff between tries, in seconds (``Retry-After`` may ask for more).
        retry_after_cap_s: the longest ``Retry-After`` honoured, in seconds.
        no_answer_attempts: tries when the host did not answer at all (default: ``attempts``).
        sleep: how the retry waits; tests pass a recorder.
        identify: what the budget's scopes are keyed by (``budget_key``); default: asks the store's ``identity``.
        locks: the fleet's namespace locks, taken around every write and delete request; None: no lock.
    """

    def __init__(
        self,
        store: Store,
        *,
        limiter: RateLimiter | None = None,
        rate: RateBudget | None = None,
        attempts: int = DEFAULTS.one_off_attempts,
        max_wait_s: float = DEFAULTS.one_off_max_wait_s,
        retry_after_cap_s: float = DEFAULTS.retry_after_cap_s,
        no_answer_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        identify: Callable[[], str] | None = None,
        locks: NamespaceLocks | None = None,
    ) -> None:
        if (limiter is None) != (rate is None):
            raise ValueError("a GuardedStore takes a limiter and a rate budget together, or neither")
        self.inner = store
        self.name = store.name
        self.capabilities = store.capabilities
        self._limiter = limiter
        self._rate = rate
        self._identify = identify
        self._budget_key: str | None = None
        self.locks = locks

        def backoff(wait_s: float) -> None:
            tally.current().backoff(wait_s)
            metrics.STORE_RETRIES.labels(self.name).inc()
            sleep(wait_s)

        self._policy = retrying(
            attempts=attempts,
            max_wait_s=max_wait_s,
            retry_after_cap_s=retry_after_cap_s,
            no_answer_attempts=no_answer_attempts,
            sleep=backoff,
        )

    @property
    def budget_key(self) -> str:
        """What the budget's scopes are keyed by: what the service limits, the store's identity (an index by its
        data-plane host, an index name resolved; pgvector: its server, database and tables), not the label a spec
        gave it, so every label and spelling of one index shares that index's budget. Asked once, retried."""
        if self._budget_key is None:
            self._budget_key = self._policy.copy()(self._identify or self.inner.identity)
        return self._budget_key

    def _call(
        self,
        op: str,
        scope: Callable[[str], str] | None,
        rate_per_s: float,
        fn: Callable[..., T],
        *args: Any,
        nbytes: tuple[str, float, int] | None = None,
        reserved: Reservation | None = None,
        records: tuple[str, float, int] | None = None,
    ) -> T:
        """One request: with a limiter, first a token of ``scope(budget_key)`` at ``rate_per_s``; retried.
        ``nbytes``: (scope, MB/s, bytes) of the byte budget, reserved once per request, with its first token
        (``RateLimiter.acquire_write``). ``reserved``: the first attempt's token, taken before (``reserve_read``).
        ``records``: (scope, records/s, records) taken before every attempt, as each attempt is a request."""
        limiter = self._limiter
        counts = tally.current()
        unreserved = nbytes

        def attempt() -> T:
            nonlocal unreserved, reserved
            if limiter is not None and scope is not None:
                key = scope(self.budget_key)
                # The first attempt goes at the slot taken for it, unless that went by; a retry takes a token.
                waited = None if reserved is None else limiter.wait_for(reserved)
                if reserved is not None and waited is None:
                    # Its thread came too late for it (``RateLimiter.wait_for``): a sign of threads short of CPU.
                    counts.missed_slot()
                    metrics.RATE_SLOTS_MISSED.labels(self.name).inc()
                reserved = None
                if records is not None:
                    self._waited(counts, limiter.acquire_amount(*records))
                if waited is None and unreserved is not None:
                    waited = limiter.acquire_write(key, rate_per_s, *unreserved)
                    unreserved = None  # reserved: a retry takes a token only
                elif waited is None:
                    waited = limiter.acquire(key, rate_per_s)
                self._waited(counts, waited)
            counts.request()
            start = time.perf_counter()
            try:
                result = fn(*args)
            except Superseded:
                raise  # asked before the request, never sent (``workers.transfer.write_fence``)
            except RetryableError as e:
                counts.refused(e.status)
                metrics.request_done(self.name, op, metrics.outcome_of(e.status), time.perf_counter() - start)
                raise
            except Exception:
                metrics.request_done(self.name, op, "error", time.perf_counter() - start)
                raise
            metrics.request_done(self.name, op, "2xx", time.perf_counter() - start)
            return result

        attempt.__qualname__ = f"{type(self.inner).__name__}.{op}"  # names the operation in the retry's log line
        # copy(): tenacity keeps per-call state on the policy; a copy per call lets threads share this store.
        runner = self._policy.copy()
        try:
            return runner(attempt)
        except RetryableError as e:
            # The text a failed batch records and Flower shows says how hard it tried.
            e.ids.setdefault("attempts", runner.statistics.get("attempt_number"))
            raise

    def _waited(self, counts: tally.Tally, wait_s: float) -> None:
        """Seconds this request waited for the fleet's rate budget: in the task's tally and the metrics."""
        counts.waited(wait_s)
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(self.name).inc(wait_s)

    def _read(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        rate = self._rate
        return self._call(op, read_scope if rate else None, rate.read_rps if rate else 0.0, fn, *args)

    def _stats(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        rate = self._rate
        return self._call(op, stats_scope if rate else None, rate.stats_rps if rate else 0.0, fn, *args)

    def _write(
        self,
        op: str,
        namespace: str,
        fn: Callable[..., T],
        *args: Any,
        alone: bool = False,
        nbytes: tuple[str, float, int] | None = None,
        records: int | None = None,
        fence: WriteFence | None = None,
    ) -> T:
        """A write request (``alone``: a delete, which holds its namespace alone) under the namespace's write scope;
        ``nbytes``: its byte budget; ``records``: the ids a delete names, from the index's delete budget (``_call``);
        ``fence``: asked before each attempt, the namespace held, whether the caller may still write (it raises)."""
        rate = self._rate
        scope = (lambda key: write_scope(key, namespace)) if rate else None
        call, locks = fn, self.locks
        if locks is not None:
            key, what = self.lock_key(namespace), self.describe(namespace)
            mark_key = None if fence is None else ERASURE_MARK_KEY

            def held(*a: Any) -> T:
                if alone:
                    with locks.exclusive([key], what):
                        return fn(*a)
                with locks.shared(key, what, read=mark_key) as mark:
                    if fence is not None:
                        fence.check(mark)
                    return fn(*a)

            call = held
        elif fence is not None:

            def fenced(*a: Any) -> T:
                fence.check(None)
                return fn(*a)

            call = fenced
        deleted = None
        if rate is not None and records is not None:
            deleted = (delete_scope(self.budget_key), rate.delete_records_per_s, records)
        return self._call(op, scope, rate.write_rps if rate else 0.0, call, *args, nbytes=nbytes, records=deleted)

    def lock_key(self, namespace: str) -> str:
        """The key of ``namespace``'s lock in this store (``workers.transfer.namespace_locks``), by the store's
        identity."""
        return namespace_key(self.budget_key, namespace)

    def describe(self, namespace: str) -> str:
        return f"namespace {display_namespace(namespace)!r} of {self.name}"

    # -- reads: the store's read scope (stats: its stats scope; list: its list scope) ----------------------------------

    def dimension(self) -> int:
        return self._stats("dimension", self.inner.dimension)

    def metric(self) -> str | None:
        return self._stats("metric", self.inner.metric)

    def namespaces(self) -> dict[str, int]:
        return self._stats("namespaces", self.inner.namespaces)

    def count(self, namespace: str) -> int:
        return self._stats("count", self.inner.count, namespace)

    @property
    def counts_by_index(self) -> bool:
        return self.inner.counts_by_index

    def can_list(self) -> bool:
        """Whether the store serves ``list``: declared, or asked of the server (a Pinecone pod index does not)."""
        known = self.capabilities.lists
        return known if known is not None else bool(self._read("can_list", self.inner.can_list))

    def table_columns(self, namespace: str) -> tuple[str, list[TableColumn]] | None:
        """A pgvector namespace's table and its columns (``DocumentedPgvectorStore.table_columns``); None for a
        namespace without a table, or a store without tables."""
        if not self.capabilities.table_columns:
            return None
        return self._stats("table_columns", self.inner.table_columns, namespace)

    def aliases(self) -> dict[str, str]:
        """The inner store's namespace aliases → their targets, asked of its server, retried."""
        return self._stats("aliases", self.inner.aliases)

    def identity(self) -> str:
        """The inner store's identity (``orchestrator.spec.store_identity``), asked of its server, retried."""
        return self._stats("identity", self.inner.identity)

    def reserve_read(self) -> Reservation | None:
        """A slot in this store's fetch budget, taken now for a fetch to come (``fetch(reserved=…)``), so the caller
        can use the wait; None when the store has no budget."""
        if self._limiter is None or self._rate is None:
            return None
        return self._limiter.reserve(read_scope(self.budget_key), self._rate.read_rps)

    def wait_before(self, slot: Reservation, lead_s: float) -> None:
        """Sleep until ``lead_s`` before ``slot``, to do the caller's work in the time left before its request: time
        waited for the budget, counted as such (the task's tally, the rate-limit wait metric)."""
        wait_s = slot.ahead_s() - lead_s
        if wait_s > 0:
            time.sleep(wait_s)
            self._waited(tally.current(), wait_s)

    def fetch(self, namespace: str, ids: Sequence[str], *, reserved: Reservation | None = None) -> list[Record]:
        """``reserved``: the slot ``reserve_read`` gave this fetch; it goes then."""
        rate = self._rate
        scope = read_scope if rate else None
        return self._call(
            "fetch", scope, rate.read_rps if rate else 0.0, self.inner.fetch, namespace, ids, reserved=reserved
        )

    def _query(self, op: str, namespace: str, fn: Callable[..., T], *args: Any) -> T:
        """A query request: Pinecone limits a serverless index's queries per namespace, apart from its fetches, so
        each namespace has a query budget of its own at ``rate.query_rps``. A source read by catalogue or sweep (a
        pod: it lists nothing, has no per-namespace limit, and its sweeps are queries) keeps its queries under the
        index's read budget, as before."""
        rate = self._rate
        if rate is None:
            return self._call(op, None, 0.0, fn, *args)
        if self.capabilities.enumeration == "list":
            return self._call(op, lambda key: query_scope(key, namespace), rate.query_rps, fn, *args)
        return self._call(op, read_scope, rate.read_rps, fn, *args)

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        return self._query("query", namespace, self.inner.query, namespace, vector, top_k)

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """``(id, score)`` best first: the cross-twin search of ``orchestrator.tenancy.tenant_guard`` merges on them."""
        return self._query("query", namespace, self.inner.query_scored, namespace, vector, top_k)

    def query_records(self, namespace: str, top_k: int) -> list[Record]:
        return self._query("query", namespace, self.inner.query_records, namespace, top_k)

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        """Ids an integrated index finds for ``text`` (it embeds the query itself), best first."""
        if not self.capabilities.text_search:
            raise TypeError(f"{self.name} cannot search by text (not an integrated Pinecone index)")
        return self._read("search_text", self.inner.search_text, namespace, text, top_k)

    def timed_query(self, namespace: str, vector: Sequence[float], top_k: int) -> tuple[list[str], float]:
        """``query`` and how long its successful attempt took, in ms: budget waits and failed attempts are not the
        store's latency."""

        def timed() -> tuple[list[str], float]:
            start = time.perf_counter()
            result = self.inner.query(namespace, vector, top_k)
            return result, (time.perf_counter() - start) * 1000

        return self._query("query", namespace, timed)

    def list_ids(self, namespace: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None) -> IdPage:
        rate = self._rate
        if self.capabilities.enumeration == "sweep":
            # A sweep is many reads: each one budgeted and retried on its own, so a 429 repeats one query, not the
            # sweep (and this page takes no list token: nothing is listed).
            reads = SweepReads(self.query, self.namespaces, self.dimension, self.metric)
            return cast(IdPage, self.inner.list_ids(namespace, limit=limit, token=token, reads=reads))  # type: ignore[call-arg]

        def page() -> IdPage:
            return self.inner.list_ids(namespace, limit=limit, token=token)

        return self._call("list_ids", list_scope if rate else None, rate.list_rps if rate else 0.0, page)

    def list_ids_by_prefix(
        self, namespace: str, prefix: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None
    ) -> IdPage:
        rate = self._rate

        def page() -> IdPage:
            return self.inner.list_ids_by_prefix(namespace, prefix, limit=limit, token=token)

        return self._call("list_ids", list_scope if rate else None, rate.list_rps if rate else 0.0, page)

    def reconciled_lsn(self, namespace: str) -> int | None:
        """How far the store's lagging reads of ``namespace`` are (one ``list`` of one id: the list scope)."""
        rate = self._rate
        return self._call(
            "list_ids",
            list_scope if rate else None,
            rate.list_rps if rate else 0.0,
            self.inner.reconciled_lsn,
            namespace,
        )

    def written_lsns(self) -> AbstractContextManager[dict[str, int]]:
        return self.inner.written_lsns()  # no request: what this process's writes are answered

    # -- writes: the namespace's write scope ------------------------------------------------------------------------

    def upsert(
        self,
        namespace: str,
        records: Sequence[Record],
        *,
        nbytes: int | None = None,
        tokens: int | None = None,
        fence: WriteFence | None = None,
    ) -> int:
        """``nbytes``: the request's size when the caller measured it already
        (``workers.transfer.chunking.sized_chunks``); otherwise it is measured here for the byte budget. ``tokens``:
        the embedding tokens text records cost an integrated index (``orchestrator.routing.text.estimate_tokens``),
        reserved before the request. ``fence``: see ``_write`` (``workers.transfer.write_fence``)."""
        limiter, rate = self._limiter, self._rate
        reserve: tuple[str, float, int] | None = None
        if limiter is not None and rate is not None:
            size = nbytes if nbytes is not None else sum(estimate_bytes(r) for r in records)
            # Reserved once per request, with its first token (``_call``), not per attempt.
            scope = write_scope(self.budget_key, namespace) + ":bytes"  # the byte bucket's key since the first copy
            reserve = (scope, rate.write_mb_per_s, size)
            if tokens:
                counts = tally.current()
                embed = embed_scope(self.budget_key)
                waited = self._policy.copy()(limiter.acquire_tokens, embed, rate.embed_tokens_per_min, tokens)
                self._waited(counts, waited)
        return self._write("upsert", namespace, self.inner.upsert, namespace, records, nbytes=reserve, fence=fence)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        rate = self._rate
        if rate is None or not self.capabilities.deletes_counted_by_record:
            self._write("delete", namespace, self.inner.delete, namespace, ids, alone=True)
            return
        # One request per part, each no larger than the delete budget admits at once (Pinecone: 1,000 ids a request).
        part = min(DELETE_MAX_IDS, window_for(rate.delete_records_per_s)[0])
        for start in range(0, len(ids), part):
            chunk = ids[start : start + part]
            self._write("delete", namespace, self.inner.delete, namespace, chunk, alone=True, records=len(chunk))

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        if not self.capabilities.row_versions:
            return None  # no request: a store without them (Pinecone) is not asked, nor charged a read
        return self._read("row_versions", self.inner.row_versions, namespace, ids)

    def delete_unchanged(self, namespace: str, versions: Mapping[str, str]) -> list[str]:
        return self._write("delete", namespace, self.inner.delete_unchanged, namespace, versions, alone=True)

    def delete_namespace(self, namespace: str) -> None:
        self._write("delete_namespace", namespace, self.inner.delete_namespace, namespace, alone=True)

    def delete_namespace_if_empty(self, namespace: str) -> bool:
        return self._write("delete_namespace", namespace, self.inner.delete_namespace_if_empty, namespace, alone=True)

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        """Close the wrapped store's connections if it has any."""
        self.inner.close()

    def __repr__(self) -> str:
        return f"GuardedStore({self.inner!r})"


@contextmanager
def exclusive_hold(places: Sequence[tuple[Any, str]]) -> Iterator[None]:
    """Hold each ``(store, namespace)`` of ``places`` alone (``NamespaceLocks.exclusive``) until the block ends: no
    other deletion and no write of any of them meanwhile. A store that is not a ``GuardedStore`` with locks (a
    command's one-off store) takes none."""
    guarded = [(store, ns) for store, ns in places if isinstance(store, GuardedStore) and store.locks is not None]
    if not guarded:
        yield
        return
    locks = cast(NamespaceLocks, guarded[0][0].locks)
    keys = [store.lock_key(ns) for store, ns in guarded]
    what = ", ".join(sorted({store.describe(ns) for store, ns in guarded}))
    with locks.exclusive(keys, what):
        yield


@contextmanager
def shared_hold(store: GuardedStore, namespace: str) -> Iterator[None]:
    """Hold ``namespace`` of ``store`` beside other writers, as a write request does, for a write that goes past
    ``upsert`` (a pgvector batch copied inside Postgres or between two databases)."""
    if store.locks is None:
        yield
        return
    with store.locks.shared(store.lock_key(namespace), store.describe(namespace), kept=True):
        yield

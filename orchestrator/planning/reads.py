"""Planning's reads, done concurrently under the job's rate budget and in bounded memory.

A plan reads the source's and the target's inventories, and, when two sources may write into one target namespace,
the ids of those sources (and, for a routed source, where each record lands, which needs its metadata). One after
the other that is ~40 round trips for the seed set; here every request that does not need the answer of another
runs at once: the two inventories and their probes together, every namespace's id chain beside the others, and a
routed namespace's fetches beside its own list chain (each page fetched while the next is listed). Requests are
admitted by an in-process budget (the spec's ``rate.list_rps`` and ``rate.read_rps`` per store, over any one second),
so planning never asks more of an index than the fleet would.

A routed namespace is read a page at a time: only the id → target namespace of each record is kept, never the
records (their values), and at most ``PAGES_AHEAD`` fetched pages of one namespace are held at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records.vectors import IdPage
from nsmigrate.orchestrator.routing.route import RouteContext, route_counts, targets_by_id
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.rate_budget import RateBudget

if TYPE_CHECKING:
    from nsmigrate.orchestrator.store import Store

T = TypeVar("T")

#: Fetched pages of one routed namespace held at once (each ≤ 100 records) while its list chain goes on.
PAGES_AHEAD = 4


@dataclass
class RoutedIds:
    """What planning keeps of a routed namespace: id → the target namespace it lands in, and how many records take
    each route (``orchestrator.routing.route.route_counts``)."""

    targets: dict[str, str] = field(default_factory=dict)
    routes: Counter[str] = field(default_factory=Counter)

    def add(self, other: RoutedIds) -> None:
        self.targets.update(other.targets)
        self.routes.update(other.routes)


class Budget:
    """At most ``rate`` admissions per (store, kind) in any one second, in this process (a sliding-window log)."""

    def __init__(
        self,
        rates: Mapping[str, float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rates = dict(rates)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, str], deque[float]] = {}

    def acquire(self, store: str, kind: str) -> None:
        per_s = max(1, math.floor(self._rates[kind]))
        while True:
            with self._lock:
                now = self._clock()
                window = self._admitted.setdefault((store, kind), deque())
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) < per_s:
                    window.append(now)
                    return
                wait = window[0] + 1.0 - now
            self._sleep(max(wait, 0.001))


class PlanReads:
    """The thread pools and the budget of one plan; use as a context manager.

    Two pools, so nothing waits on a task queued behind itself: ``chain`` runs what waits on other requests (an
    inventory waiting on its probe, a namespace's list chain waiting on its fetches), ``request`` runs single
    requests, which never wait on anything.
    """

    def __init__(self, rate: RateBudget, threads: int = DEFAULTS.plan_read_threads) -> None:
        self.budget = Budget({"list": rate.list_rps, "read": rate.read_rps})
        self._chains = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nsmigrate-plan-chain")
        self._requests = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nsmigrate-plan-request")

    def __enter__(self) -> PlanReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._chains.shutdown(wait=True, cancel_futures=True)
        self._requests.shutdown(wait=True, cancel_futures=True)

    def chain(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._chains.submit(fn, *args)

    def request(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._requests.submit(fn, *args)

    def _list(self, store: Store, namespace: str, token: str | None) -> IdPage:
        self.budget.acquire(store.name, "list")
        return store.list_ids(namespace, limit=LIST_MAX_PAGE_IDS, token=token)

    def _routed_page(self, store: Store, namespace: str, ids: list[str], ctx: RouteContext) -> RoutedIds:
        self.budget.acquire(store.name, "read")  # a page (≤ 100 ids) is one fetch
        records = store.fetch(namespace, ids)
        return RoutedIds(targets_by_id(records, ctx), Counter(route_counts(records, ctx)))

    def namespace_ids(self, store: Store, namespace: str) -> list[str]:
        """Every id of ``namespace``, page by page (a chain: each page needs the token of the one before)."""
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._list(store, namespace, token)
            ids.extend(page.ids)
            token = page.next_token
            if not token:
                return ids

    def routed_ids(self, store: Store, namespace: str, ctx: RouteContext) -> RoutedIds:
        """Where every record of a routed ``namespace`` lands: each listed page is fetched (in the request pool)
        while the next is listed; only the ids' targets and the routes' counts are kept."""
        routed = RoutedIds()
        pending: deque[Future[RoutedIds]] = deque()
        token: str | None = None
        try:
            while True:
                page = self._list(store, namespace, token)
                if page.ids:
                    pending.append(self.request(self._routed_page, store, namespace, list(page.ids), ctx))
                while len(pending) >= PAGES_AHEAD or (pending and pending[0].done()):
                    routed.add(pending.popleft().result())
                token = page.next_token
                if not token:
                    break
            while pending:
                routed.add(pending.popleft().result())
        finally:
            for left in pending:  # an error above: do not leave fetches running for nobody
                left.cancel()
        return routed

    def ids_of(
        self, store: Store, namespaces: Iterable[str], routed: Mapping[str, RouteContext]
    ) -> dict[str, list[str] | RoutedIds]:
        """For each namespace, its ids, or (a namespace of ``routed``) where its records land; all namespaces at
        once."""
        return {ns: f.result() for ns, f in self.reading_ids(store, namespaces, routed).items()}

    def reading_ids(
        self, store: Store, namespaces: Iterable[str], routed: Mapping[str, RouteContext]
    ) -> dict[str, Future[list[str] | RoutedIds]]:
        """``ids_of``'s reads, started: each namespace's answer as it comes."""
        futures: dict[str, Future[Any]] = {}
        for ns in namespaces:
            if ns in routed:
                futures[ns] = self.chain(self.routed_ids, store, ns, routed[ns])
            else:
                futures[ns] = self.chain(self.namespace_ids, store, ns)
        return futures

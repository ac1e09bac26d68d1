"""Planning's reads (``orchestrator.planning.reads``) with an in-memory store: chains of different namespaces run at
once, a routed namespace is fetched a page at a time with a bounded number of pages held, and the budget admits no
more than its rate in any one second."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nsmigrate.orchestrator.planning.reads import PAGES_AHEAD, Budget, PlanReads
from nsmigrate.orchestrator.records.vectors import IdPage, Record
from nsmigrate.orchestrator.routing.route import RouteContext
from nsmigrate.orchestrator.spec.jobspec import Enrichment
from nsmigrate.orchestrator.spec.rate_budget import RateBudget


class PagedStore:
    """Ids listed in pages of ≤ 100 with a numeric token; every record names its target in ``twin_id``."""

    name = "mem"

    def __init__(self, namespaces: dict[str, list[str]], barrier: threading.Barrier | None = None) -> None:
        self.namespaces = namespaces
        self.barrier = barrier
        self.fetched: list[int] = []
        self._lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        if self.barrier is not None and token is None:
            self.barrier.wait(timeout=10)  # every namespace's first page at once, or BrokenBarrierError
        start = int(token or 0)
        ids = self.namespaces[namespace][start : start + min(limit, 100)]
        after = start + len(ids)
        return IdPage(ids=ids, next_token=str(after) if after < len(self.namespaces[namespace]) else None)

    def fetch(self, namespace: str, ids: Any) -> list[Record]:
        with self._lock:
            self.fetched.append(len(ids))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return [Record(i, [0.0], {"twin_id": f"t{int(i[1:]) % 3}"}) for i in ids]
        finally:
            with self._lock:
                self.in_flight -= 1


def context() -> RouteContext:
    return RouteContext("mem", "", None, Enrichment(), twins={"t0": "c", "t1": "c", "t2": "c"}, unknown_twin="fail")


def test_the_chains_of_different_namespaces_run_at_once() -> None:
    namespaces = {f"ns{k}": [f"i{k}-{n}" for n in range(150)] for k in range(5)}
    store = PagedStore(namespaces, barrier=threading.Barrier(5))

    with PlanReads(RateBudget()) as reads:
        ids = reads.ids_of(store, list(namespaces), {})

    assert ids == namespaces  # one after the other, the barrier would have broken


def test_a_routed_namespace_is_fetched_page_by_page_and_only_its_mapping_kept() -> None:
    store = PagedStore({"": [f"i{n}" for n in range(1234)]})

    with PlanReads(RateBudget()) as reads:
        routed = reads.routed_ids(store, "", context())

    assert sorted(store.fetched) == sorted([100] * 12 + [34])
    assert store.most_in_flight <= PAGES_AHEAD
    assert len(routed.targets) == 1234
    assert routed.targets["i4"] == "creator_c_twin_t1"
    assert sum(routed.routes.values()) == 1234


def test_the_budget_admits_at_most_its_rate_in_any_second() -> None:
    now = [0.0]
    admitted: list[float] = []

    def sleep(s: float) -> None:
        now[0] += s

    budget = Budget({"list": 3.0}, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        budget.acquire("src", "list")
        admitted.append(now[0])

    for i, at in enumerate(admitted):
        assert sum(1 for other in admitted[i:] if other < at + 1.0) <= 3
    assert admitted[-1] == pytest.approx(3.0)  # 10 admissions at 3/s: the last in the fourth second


def test_budgets_of_different_stores_do_not_share() -> None:
    now = [0.0]
    budget = Budget({"read": 1.0}, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))

    budget.acquire("a", "read")
    budget.acquire("b", "read")

    assert now[0] == 0.0

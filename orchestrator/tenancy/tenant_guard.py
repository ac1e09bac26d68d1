"""For applications: a creator's namespaces, a tenant guard, and a search across a creator's twins.

Importable on its own (no Celery, no store SDK): pass any object with ``namespaces()`` and
``query_scored(namespace, vector, top_k)`` — nsmigrate's ``GuardedStore`` over Pinecone or pgvector, or your own.

- ``TenantGuard(creator_id)`` allows a caller only the namespaces of its own creator: the name is read exactly
  (through the ``naming.Registry`` of built names when given, else ``naming.parse_namespace``), never compared by
  prefix, so ``a.1``'s guard refuses ``creator_a.10_twin_x``.
- ``search_twins`` queries the creator's twin namespaces concurrently and merges the matches by score.
- ``latency_percentiles`` measures P50/P95/P99 of any query through them (verification reports it after a migration).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsmigrate.orchestrator.errors import PermanentError
from nsmigrate.orchestrator.records.namespaces import ParsedNamespace, Registry, parse_namespace, validate_identifier
from nsmigrate.orchestrator.verification.query_timing import latency_figures, time_call

if TYPE_CHECKING:
    from nsmigrate.orchestrator.store import Store

#: Twin namespaces queried at once by one search.
SEARCH_THREADS = 8


class TenantError(PermanentError):
    """A caller asked for a namespace that is not its creator's."""


@dataclass(frozen=True)
class Match:
    id: str
    score: float
    namespace: str


class TenantGuard:
    """Lets one creator's caller use only that creator's namespaces (its twin namespaces and creator-wide one)."""

    def __init__(self, creator_id: str, registry: Registry | None = None) -> None:
        self.creator_id = validate_identifier("creator_id", creator_id)
        self._registry = registry

    def _meaning(self, namespace: str) -> ParsedNamespace:
        return self._registry.meaning(namespace) if self._registry is not None else parse_namespace(namespace)

    def allows(self, namespace: str) -> bool:
        return self._meaning(namespace).creator_id == self.creator_id

    def check(self, namespace: str) -> str:
        """``namespace`` when it is the creator's; TenantError naming both otherwise."""
        if not self.allows(namespace):
            raise TenantError(
                f"namespace {namespace!r} is not creator {self.creator_id!r}'s: this caller may only use its own "
                "creator's namespaces",
                hint="query creator_{creator}_twin_{twin} / creator_{creator} of the caller's own creator",
                namespace=namespace,
                creator_id=self.creator_id,
            )
        return namespace

    def twin_namespaces(self, namespaces: Iterable[str], twin_ids: Iterable[str] | None = None) -> list[str]:
        """The creator's twin namespaces among ``namespaces`` (only ``twin_ids`` when given), sorted."""
        wanted = set(twin_ids) if twin_ids is not None else None
        out = []
        for ns in namespaces:
            meaning = self._meaning(ns)
            mine = meaning.kind == "twin" and meaning.creator_id == self.creator_id
            if mine and (wanted is None or meaning.twin_id in wanted):
                out.append(ns)
        return sorted(out)


def search_twins(
    store: Store,
    guard: TenantGuard,
    vector: Sequence[float],
    top_k: int,
    *,
    twin_ids: Iterable[str] | None = None,
    namespaces: Iterable[str] | None = None,
    lower_is_better: bool = False,
) -> list[Match]:
    """The ``top_k`` best matches across the creator's twin namespaces (each queried for ``top_k``, concurrently),
    merged by score: highest first, or lowest for a euclidean index (``lower_is_better``). ``namespaces``: the
    store's namespace names when the caller knows them (saves a stats call per search).

    Raises:
        TenantError: a namespace given is not the guard's creator's.
    """
    names = list(namespaces) if namespaces is not None else list(store.namespaces())
    chosen = guard.twin_namespaces(names, twin_ids)
    for ns in chosen:
        guard.check(ns)

    def one(ns: str) -> list[Match]:
        return [Match(id_, score, ns) for id_, score in store.query_scored(ns, vector, top_k)]

    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=min(SEARCH_THREADS, len(chosen))) as pool:
        found = [m for part in pool.map(one, chosen) for m in part]
    found.sort(key=lambda m: (m.score if lower_is_better else -m.score, m.namespace, m.id))
    return found[:top_k]


def latency_percentiles(
    call: Callable[[], Any], samples: int, *, clock: Callable[[], float] = time.perf_counter
) -> dict[str, Any]:
    """Run ``call`` ``samples`` times; P50/P95/P99 of their durations in ms (``query_timing``: measured as the
    cut-over check measures), and how many."""
    return latency_figures([time_call(call, clock)[0] for _ in range(samples)])

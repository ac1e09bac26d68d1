"""Query latency after a migration, measured the way the application will query: for one run per creator (its
first twin run), the creator searched across all its twins through the tenant guard (``orchestrator.tenant``); for
every other run, a query of its own target namespace (one cross-twin search per run would time the same thing 30
times over for the seeds' test creator). Reported in the verification report (``latency``: P50/P95 ms), on by
default, shared targets included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.errors import NsmigrateError
from orchestrator.models import NamespaceRun
from orchestrator.tenant import TenantGuard, latency_percentiles, search_twins
from workers.stores.guarded import GuardedStore


def searches_for_creator(run: NamespaceRun, runs: Sequence[NamespaceRun]) -> bool:
    """Whether ``run`` is the one of its creator's runs in the job that times the cross-twin search."""
    if run.creator_id is None or run.twin_id is None:
        return False
    return run.id == min(r.id for r in runs if r.creator_id == run.creator_id and r.twin_id is not None)


def measure(
    target: GuardedStore, namespace: str, creator: str | None, vectors: Sequence[Sequence[float]], top_k: int
) -> dict[str, Any]:
    """P50/P95 of one query per vector (``latency_percentiles``) and what was queried: a cross-twin search of
    ``creator`` when given, else a query of ``namespace``. ``error`` instead when the store cannot be queried that
    way (the verdict does not depend on it unless ``verify.latency_p95_ms`` is set)."""
    queue = list(vectors)
    try:
        if creator is not None:
            guard = TenantGuard(creator)
            names = list(target.namespaces())

            def call() -> Any:
                return search_twins(target, guard, queue.pop(), top_k, namespaces=names)

            through = f"cross-twin search of creator {creator!r} over {len(guard.twin_namespaces(names))} twin(s)"
        else:

            def call() -> Any:
                return target.query_scored(namespace, queue.pop(), top_k)

            through = f"query of {namespace!r}"
        result = latency_percentiles(call, len(queue))
    except NsmigrateError as e:
        return {"error": str(e), "samples": 0}
    return {**result, "through": through, "top_k": top_k}

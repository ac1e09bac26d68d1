"""Query latency after a migration, measured the way the application will query: a twin run's (or a routed run's)
creator is searched across all its twins through the tenant guard (``orchestrator.tenant``); any other run queries
its target namespace. Reported in the verification report (``latency``: P50/P95 ms), on by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.errors import NsmigrateError
from orchestrator.models import NamespaceRun
from orchestrator.routing import RouteContext
from orchestrator.tenant import TenantGuard, latency_percentiles, search_twins
from workers.stores.guarded import GuardedStore


def measure(
    target: GuardedStore,
    run: NamespaceRun,
    route: RouteContext,
    target_namespaces: Sequence[str],
    vectors: Sequence[Sequence[float]],
    top_k: int,
) -> dict[str, Any]:
    """P50/P95 of one query per vector in ``vectors`` (``latency_percentiles``) and what was queried; ``error``
    instead when the store cannot be queried that way (the verdict does not depend on it unless a limit is set)."""
    creator = run.creator_id or next(
        (c for c in (route.pair_of(ns)[0] for ns in target_namespaces) if c is not None), None
    )
    queue = list(vectors)
    try:
        if creator is not None:
            guard = TenantGuard(creator)
            names = list(target.namespaces())
            twins = guard.twin_namespaces(names)

            def call() -> Any:
                return search_twins(target, guard, queue.pop(), top_k, namespaces=names)

            through = f"cross-twin search of creator {creator!r} over {len(twins)} twin namespace(s)"
        else:
            namespace = run.target_namespace or (target_namespaces[0] if target_namespaces else "")

            def call() -> Any:
                return target.query_scored(namespace, queue.pop(), top_k)

            through = f"query of {namespace!r}"
        result = latency_percentiles(call, len(queue))
    except NsmigrateError as e:
        return {"error": str(e), "samples": 0}
    return {**result, "through": through, "top_k": top_k}

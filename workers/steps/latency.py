"""Query latency after a migration, measured the way the application will query: for one run per creator (its
first twin run), the creator searched across all its twins through the tenant guard
(``orchestrator.tenancy.tenant_guard``); for every other run, a query of its own target namespace (one cross-twin search
per run would time the same thing 30 times over for the seeds' test creator). Reported in the verification report
(``latency``: P50/P95 ms), on by default, shared targets included.

Every run of a job of up to ``LATENCY_RUNS`` runs times its queries, and every run of a job with a latency limit
(``verify.latency_p95_ms``: each run is judged by it). In a larger job a deterministic sample of about
``LATENCY_RUNS`` runs does: one index answers them all, and a job of 12,000 three-vector namespaces would otherwise
spend as many queries timing it as verifying everything else (``bench/many_namespaces.py``).

Without a limit the figures only inform, and a run times its queries beside its other checks (``time_run``, called
in a thread of its own): one after the other, they were half of a small namespace's verification. With one, they
are timed alone, as the limit was set against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.jobs.verdicts import Neighbours
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.spec.jobspec import Verification
from nsmigrate.orchestrator.tenancy.tenant_guard import TenantGuard, latency_percentiles, search_twins
from nsmigrate.workers.stores.guarded import GuardedStore

#: Runs of a job that time queries when the job has no latency limit (see the module docstring).
LATENCY_RUNS = 32


def measures_latency(run: NamespaceRun, neighbours: Neighbours, checks: Verification) -> bool:
    """Whether ``run`` times queries. The sample is drawn by creator when the run has one (a sampled creator's
    first twin run times its cross-twin search), else by namespace; the same runs on every verification."""
    if not checks.latency_samples:
        return False
    if checks.latency_p95_ms is not None or neighbours.runs <= LATENCY_RUNS:
        return True
    by_creator = run.creator_id is not None and run.twin_id is not None
    key = f"{run.job_id}:" + (f"creator:{run.creator_id}" if by_creator else f"ns:{run.source_namespace}")
    draw = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return draw < LATENCY_RUNS / neighbours.runs


def time_run(
    target: GuardedStore,
    run: NamespaceRun,
    neighbours: Neighbours,
    copied_to: Mapping[str, set[str]],
    vectors: Sequence[Sequence[float]],
    checks: Verification,
) -> dict[str, Any]:
    """The latency report of ``run``: one run per creator (its first twin run) times the cross-twin search, the others
    a query of their target namespace (a routed run's: the one that received most of its vectors, ``copied_to``)."""
    creator = run.creator_id if run.id == neighbours.first_twin_run else None
    busiest = max(copied_to, key=lambda ns: len(copied_to[ns]), default="")
    namespace = run.target_namespace if run.target_namespace is not None else busiest
    return {**measure(target, namespace, creator, vectors, checks.top_k), "limit_ms": checks.latency_p95_ms}


def measure(
    target: GuardedStore, namespace: str, creator: str | None, vectors: Sequence[Sequence[float]], top_k: int
) -> dict[str, Any]:
    """P50/P95/P99 of one query per vector (``latency_percentiles``) and what was queried: a cross-twin search of
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

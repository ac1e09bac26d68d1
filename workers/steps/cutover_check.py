"""``nsmigrate cutover check``: a bounded load test of a job's target (and its source, for comparison) before reads
move to it.

Queries are the job's own vectors (the first ids of each source namespace, fetched from the source), each sent to
the namespace the job copied it to, so every query has a right answer: the source's. First one query per target
namespace (the cold query: the first of this check to that namespace), then ``qps × duration_s`` queries paced at
``qps`` (each sent at its time on its own thread, so a slow answer does not slow the pace), each also sent to the
source. Stores are queried as an application does, through the SDK with its own retries and no rate budget of
nsmigrate's: an error here is an error the application would see. The verdict is ``orchestrator.cutover.rules``'s.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nsmigrate.orchestrator.cutover.rules import check_problems, overlap
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import Cutover, JobSpec
from nsmigrate.orchestrator.verification.query_timing import latency_figures, time_call
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.stores.base import Store

#: Source vectors drawn per namespace as queries (one page of ids).
QUERIES_PER_NAMESPACE = 100
#: Target namespaces given a cold query at most (one each).
MAX_COLD_NAMESPACES = 50

#: source namespace, target namespace, vector, and whether the two answers are comparable (not when the job routes
#: the namespace's records to several namespaces)
Query = tuple[str, str, list[float], bool]


def check_job(
    ctx: WorkerContext,
    job_id: int,
    limits: Cutover,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the check of ``job_id`` under ``limits`` (the spec's ``cutover``, maybe overridden); returns its report
    with ``passed`` and ``problems``. Reads only: nothing is written to either store."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    runs = [r for r in jobs_and_runs.runs_of(ctx.db, job_id) if r.copied > 0]
    queries = [q for run in runs for q in _queries(ctx, spec, run)]
    report: dict[str, Any] = {
        "qps": limits.qps,
        "duration_s": limits.duration_s,
        "top_k": limits.top_k,
        "namespaces": len({q[1] for q in queries}),
    }
    if not queries:
        return {**report, "passed": False, "problems": ["the job's source has no vector to query with"]}
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    cold = [_timed(target, q[1], q[2], limits.top_k, clock) for q in _first_per_target(queries)]
    paced = _paced(source, target, queries, limits, ctx.settings.cutover_check_in_flight, clock, sleep)
    target_ms = [r["target_ms"] for r in paced if r["target_ms"] is not None]
    source_ms = [r["source_ms"] for r in paced if r["source_ms"] is not None]
    agreements = [r["agreement"] for r in paced if r["agreement"] is not None]
    errors = [r["error"] for r in paced if r["error"] is not None]
    cold_ms = [ms for ms, _, _ in cold if ms is not None]
    figures = {
        **report,
        "queries": len(paced),
        "target": latency_figures(target_ms),
        "source": latency_figures(source_ms),
        "cold_query_ms": round(max(cold_ms), 2) if cold_ms else None,
        "cold_queries": len(cold),
        "errors": len(errors),
        "error_rate": round(len(errors) / len(paced), 4),
        "error_examples": errors[:3] + [e for _, e, _ in cold if e is not None][:3],
        "agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
        "disagreeing": [r["namespace"] for r in paced if r["agreement"] is not None and r["agreement"] < 1][:5],
        "elapsed_s": round(max((r["ended_s"] for r in paced), default=0.0), 2),
    }
    problems = check_problems(figures, limits)
    return {**figures, "passed": not problems, "problems": problems}


def _queries(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun) -> list[Query]:
    """The run's first source vectors, each with the target namespace the job copied it to."""
    source = ctx.guarded(spec.source, spec.rate)
    page = source.list_ids(run.source_namespace, limit=QUERIES_PER_NAMESPACE)
    records: list[Record] = source.fetch(run.source_namespace, page.ids) if page.ids else []
    route = route_context(
        spec, source.name, run.source_namespace, run.target_namespace, run.creator_id, run.twin_id, run.routing_table
    )
    routed = route_records(records, route)
    fixed = run.target_namespace is not None
    return [(run.source_namespace, ns, list(r.values), fixed) for ns, recs in routed.items() for r in recs]


def _first_per_target(queries: list[Query]) -> list[Query]:
    first: dict[str, Query] = {}
    for q in queries:
        first.setdefault(q[1], q)
    return list(first.values())[:MAX_COLD_NAMESPACES]


def _timed(
    store: Store, namespace: str, vector: list[float], top_k: int, clock: Callable[[], float]
) -> tuple[float | None, str | None, list[str]]:
    """(ms, None, ids) of one query, or (None, error, [])."""
    try:
        ms, ids = time_call(lambda: store.query(namespace, vector, top_k), clock)
    except Exception as e:  # every failure counts: the application would see it
        return None, f"{type(e).__name__}: {e}"[:300], []
    return round(ms, 3), None, ids


def _paced(
    source: Store,
    target: Store,
    queries: list[Query],
    limits: Cutover,
    in_flight: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    total = max(1, math.ceil(limits.qps * limits.duration_s))
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = clock()

    def one(n: int) -> None:
        source_ns, target_ns, vector, comparable = queries[n % len(queries)]
        target_ms, error, target_ids = _timed(target, target_ns, vector, limits.top_k, clock)
        source_ms, _, source_ids = _timed(source, source_ns, vector, limits.top_k, clock)
        both = comparable and error is None and source_ms is not None
        result = {
            "namespace": display_namespace(target_ns),
            "target_ms": target_ms,
            "source_ms": source_ms,
            "error": error,
            "agreement": overlap(source_ids, target_ids) if both else None,
            "ended_s": clock() - start,
        }
        with lock:
            results.append(result)

    with ThreadPoolExecutor(max_workers=min(in_flight, total)) as pool:
        for n in range(total):
            wait_s = start + n / limits.qps - clock()
            if wait_s > 0:
                sleep(wait_s)  # the pace of a load test, not a wait for a condition
            pool.submit(one, n)
    return results

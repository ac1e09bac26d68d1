"""``nsmigrate cutover check``: a bounded load test of a job's target (and its source, for comparison) before reads
move to it.

Queries are the job's own vectors (the first ids of each source namespace, fetched from the source), each sent to
the namespace the job copied it to, so every query has a right answer: the source's. First one query to every
namespace the job wrote to (the cold query: the first of this check to that namespace; ``in_flight`` at once), then
``qps × duration_s`` queries paced at ``qps`` (each sent at its time on its own thread, so a slow answer does not
slow the pace), each also sent to the source; last, the application's filtered queries replayed on both sides
(``workers.steps.cutover_filters``). Stores are queried as an application does, through the SDK with its own
retries and no rate budget of nsmigrate's: an error here is an error the application would see. The verdict is
``orchestrator.cutover.rules``'s, and a source namespace the job's selection takes that it has no run for fails it
(``workers.steps.late_namespaces``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nsmigrate.orchestrator.cutover.filters import SampleQuery
from nsmigrate.orchestrator.cutover.rules import check_problems, overlap
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import Cutover, JobSpec
from nsmigrate.orchestrator.verification.query_timing import latency_figures, time_call
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.cutover_filters import replay
from nsmigrate.workers.steps.late_namespaces import late_namespaces, late_namespaces_problem
from nsmigrate.workers.stores.base import Store

#: Source vectors drawn per namespace as queries (one page of ids).
QUERIES_PER_NAMESPACE = 100
#: The slowest cold namespaces a report names.
COLD_SHOWN = 10

#: source namespace, target namespace, vector, and whether the two answers are comparable (not when the job routes
#: the namespace's records to several namespaces)
Query = tuple[str, str, list[float], bool]


def check_job(
    ctx: WorkerContext,
    job_id: int,
    limits: Cutover,
    *,
    queries: Sequence[SampleQuery] = (),
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the check of ``job_id`` under ``limits`` (the spec's ``cutover``, maybe overridden), with the
    application's filtered ``queries`` replayed on both sides; returns its report with ``passed`` and ``problems``.
    Reads only: nothing is written to either store."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    all_runs = jobs_and_runs.runs_of(ctx.db, job_id)
    runs = [r for r in all_runs if r.copied > 0]
    shared = _shared_targets(all_runs)
    job = [
        (source_ns, target_ns, vector, comparable and target_ns not in shared)
        for source_ns, target_ns, vector, comparable in _interleaved([job_queries(ctx, spec, run) for run in runs])
    ]
    report: dict[str, Any] = {
        "qps": limits.qps,
        "duration_s": limits.duration_s,
        "top_k": limits.top_k,
        "namespaces": len({q[1] for q in job}),
    }
    if not job:
        return {**report, "passed": False, "problems": ["the job's source has no vector to query with"]}
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    in_flight = ctx.settings.cutover_check_in_flight
    cold = cold_queries(target, _first_per_target(job, runs), limits.top_k, in_flight, clock)
    paced = _paced(source, target, job, limits, in_flight, clock, sleep)
    filters = replay(source, target, all_runs, queries, limits.top_k)
    target_ms = [r["target_ms"] for r in paced if r["target_ms"] is not None]
    source_ms = [r["source_ms"] for r in paced if r["source_ms"] is not None]
    agreements = [r["agreement"] for r in paced if r["agreement"] is not None]
    errors = [r["error"] for r in paced if r["error"] is not None]
    figures = {
        **report,
        "queries": len(paced),
        "target": latency_figures(target_ms),
        "source": latency_figures(source_ms),
        **cold,
        "errors": len(errors),
        "error_rate": round(len(errors) / len(paced), 4),
        "error_examples": errors[:3] + cold["cold_errors"][:3],
        "agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
        "comparable_queries": sum(q[3] for q in job),
        "disagreeing": [r["namespace"] for r in paced if r["agreement"] is not None and r["agreement"] < 1][:5],
        "filters": {k: v for k, v in filters.items() if k != "problems"},
        "elapsed_s": round(max((r["ended_s"] for r in paced), default=0.0), 2),
    }
    late = late_namespaces(ctx, job_id)
    figures["late_namespaces"] = late[:COLD_SHOWN]
    problems = check_problems(figures, limits) + filters["problems"]
    if late:
        problems.append(late_namespaces_problem(job_id, late))
    return {**figures, "passed": not problems, "problems": problems}


def cold_queries(
    target: Store, firsts: Sequence[Query], top_k: int, in_flight: int, clock: Callable[[], float]
) -> dict[str, Any]:
    """The first query of this check to every target namespace (``firsts``: one query each), ``in_flight`` at once:
    the slowest (``cold_query_ms``), the few slowest by name, and each that failed."""
    with ThreadPoolExecutor(max_workers=max(1, min(in_flight, len(firsts)))) as pool:
        timed = list(pool.map(lambda q: (q[1], timed_query(target, q[1], q[2], top_k, clock)), firsts))
    answered = sorted(((ms, ns) for ns, (ms, _, _) in timed if ms is not None), reverse=True)
    return {
        "cold_query_ms": round(answered[0][0], 2) if answered else None,
        "cold_queries": len(timed),
        "cold_figures": latency_figures([ms for ms, _ in answered]),
        "cold_slowest": [[display_namespace(ns), round(ms, 2)] for ms, ns in answered[:COLD_SHOWN]],
        "cold_errors": [f"{display_namespace(ns)}: {error}" for ns, (_, error, _) in timed if error is not None],
    }


def job_queries(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun) -> list[Query]:
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


def _shared_targets(runs: Sequence[NamespaceRun]) -> set[str]:
    """The target namespaces that hold more than one source's records (a routed run writes into them, or two runs
    copy into one): a query there rightly answers records the source namespace never had, so its top-k is not
    compared with the source's (verification compared every record)."""
    fixed = [r.target_namespace for r in runs if r.target_namespace is not None]
    routed = {ns for r in runs if r.target_namespace is None for ns in r.target_namespaces or []}
    return routed | {ns for ns in fixed if fixed.count(ns) > 1}


def _interleaved(per_run: Sequence[Sequence[Query]]) -> list[Query]:
    """The runs' queries taken in turn (a first of each run, then a second, …): a check shorter than the job's
    queries still reads every namespace, not only the first ones."""
    return [q for round_ in itertools.zip_longest(*per_run) for q in round_ if q is not None]


def _first_per_target(queries: list[Query], runs: Sequence[NamespaceRun]) -> list[Query]:
    """One query for every namespace the job wrote to: the first of its own vectors, or, for a namespace a routed run
    wrote to whose vectors are not among the queries drawn, one of that run's (a cold start needs no right answer)."""
    first: dict[str, Query] = {}
    for q in queries:
        first.setdefault(q[1], q)
    by_source = {q[0]: q for q in queries}
    for run in runs:
        drawn = by_source.get(run.source_namespace)
        for namespace in run.target_namespaces or []:
            if namespace not in first and drawn is not None:
                first[namespace] = (run.source_namespace, namespace, drawn[2], False)
    return list(first.values())


def timed_query(
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
        target_ms, error, target_ids = timed_query(target, target_ns, vector, limits.top_k, clock)
        source_ms, _, source_ids = timed_query(source, source_ns, vector, limits.top_k, clock)
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

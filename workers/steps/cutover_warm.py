"""``nsmigrate cutover set``'s warm-up: before a step toward the target, the namespaces the step moves that the
applications read most — by the reads their ``DualWriteIndex`` counted (``orchestrator.cutover.published``), else
the largest — are queried a few times on the target, so that the first reads the step sends there are not a cold
start (seed 003's plan: keep cold namespaces warm). ``cutover.warm_top_n`` of them; only reads.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover.aliases import moved_by
from nsmigrate.orchestrator.cutover.rules import reads_new
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.alias_cutover import job_routes, ready_routes
from nsmigrate.workers.steps.cutover_check import timed_query

#: Queries sent to each namespace warmed: the first is the cold one, the last what the step's first reads will see.
WARM_QUERIES = 3


def moving(ctx: WorkerContext, spec: JobSpec, job_id: int, before: int, after: int) -> list[NamespaceRun]:
    """The job's runs whose reads a step from ``before`` to ``after`` % new moves to the target."""
    every = jobs_and_runs.runs_of(ctx.db, job_id)
    runs = [r for r in every if r.target_namespace is not None and r.copied > 0 and published.readable(r)]
    if spec.cutover.aliases is not None:
        routes, added_late = ready_routes(ctx.db, job_id, job_routes(ctx, job_id)[0], every)
        moved = moved_by(routes, after, added_late) - moved_by(routes, before, added_late)
        sources = {r.old for r in routes if r.name in moved}
    else:
        sources = {r.source_namespace for r in runs if reads_new(r.source_namespace, after)}
        sources -= {r.source_namespace for r in runs if reads_new(r.source_namespace, before)}
    return [r for r in runs if r.source_namespace in sources]


def warm_step(ctx: WorkerContext, job_id: int, before: int, after: int) -> dict[str, Any]:
    """Warm the target namespaces of the ``cutover.warm_top_n`` runs a step from ``before`` to ``after`` % moves that
    are read most. Returns ``{"by": "traffic" | "size" | None, "warmed": [{namespace, target, first_ms, last_ms,
    error}]}``; a failed query is reported, never raised (the step's check passed; the watch judges what follows)."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    top_n = spec.cutover.warm_top_n
    if top_n == 0 or after <= before:
        return {"by": None, "warmed": []}
    candidates = moving(ctx, spec, job_id, before, after)
    reads = published.traffic_of(ctx.redis, job_id, [r.source_namespace for r in candidates])
    chosen = sorted(candidates, key=lambda r: (-reads.get(r.source_namespace, 0), -r.source_count, r.id))[:top_n]
    target = ctx.store(spec.target)
    source = ctx.guarded(spec.source, spec.rate)

    def one(run: NamespaceRun) -> dict[str, Any]:
        assert run.target_namespace is not None  # moving() keeps runs copied to one namespace
        shown = {
            "namespace": display_namespace(run.source_namespace),
            "target": display_namespace(run.target_namespace),
        }
        page = source.list_ids(run.source_namespace, limit=1)
        records = source.fetch(run.source_namespace, page.ids) if page.ids else []
        if not records:
            return {**shown, "first_ms": None, "last_ms": None, "error": "its source holds no vector to query with"}
        timed = [
            timed_query(target, run.target_namespace, list(records[0].values), spec.cutover.top_k, time.perf_counter)
            for _ in range(WARM_QUERIES)
        ]
        errors = [error for _, error, _ in timed if error is not None]
        return {**shown, "first_ms": timed[0][0], "last_ms": timed[-1][0], "error": errors[0] if errors else None}

    with ThreadPoolExecutor(max_workers=max(1, min(ctx.settings.cutover_check_in_flight, len(chosen)))) as pool:
        warmed = list(pool.map(one, chosen))
    by = "traffic" if any(reads.get(r.source_namespace) for r in chosen) else "size"
    return {"by": by if chosen else None, "warmed": warmed}

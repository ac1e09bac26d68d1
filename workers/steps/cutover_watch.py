"""``nsmigrate cutover watch``: read as the application does while a rollout step is live, and roll back on a breach.

The reads are the job's own vectors (``cutover_check.job_queries``), sent where the application's reads go now: through
each alias the step moved (a cut-over by alias: the very name the application reads), or to the target namespace of
each namespace the rollout reads new (``DualWriteIndex``); each also to the source, for comparison and to see an
empty answer where the other side answered. One read at a time, at most ``cutover.qps``: a watch measures, it is not
a load test. With its own reads it judges those the applications' ``DualWriteIndex`` measured and sent
(``orchestrator.cutover.published``). After every read the last ``cutover.breach_window_s`` is judged
(``orchestrator.cutover.breach``); a breach is recorded with its evidence (a ``cutover_breach`` event, which also
restarts the step's soak) and reads go back to the last good step at once — the aliases repointed, the rollout
recorded, then published for every ``DualWriteIndex`` — so the application's reads leave the breaching side within
seconds. Each window's figures are kept (a ``cutover_reads`` event: `status`, the job page) and its reads are
Prometheus metrics (``orchestrator.cutover.read_metrics``, reader ``watch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.aliases import moved_by
from nsmigrate.orchestrator.cutover.breach import (
    Sample,
    app_samples,
    breach_problems,
    fallback_percent,
    window_figures,
)
from nsmigrate.orchestrator.cutover.read_metrics import ROLLBACKS, ReadLog, set_limits
from nsmigrate.orchestrator.cutover.rules import reads_new
from nsmigrate.orchestrator.errors import NsmigrateError, StateError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.spec.jobspec import Cutover, JobSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.alias_cutover import job_routes, point_aliases, ready_routes
from nsmigrate.workers.steps.cutover_check import job_queries, timed_query


@dataclass(frozen=True)
class Probe:
    """One read: ``read_as`` is the name the application reads on the target (an alias, or the target namespace),
    ``old`` the source namespace the same vector is sent to."""

    read_as: str
    old: str
    vector: list[float]


def watch_job(
    ctx: WorkerContext,
    job_id: int,
    limits: Cutover,
    actor: str,
    *,
    duration_s: float | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Watch job ``job_id``'s live step for ``duration_s`` (None: until a breach); ``on_window`` gets the figures
    once per window, which are also kept (a ``cutover_reads`` event). Returns the report: ``breach`` (its problems),
    and after one where reads went (``rolled_back_to``).
    """
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    percent = rollout_rows.rollout_of(ctx.db, job_id).percent
    probes = _probes(ctx, spec, job_id, percent)
    report: dict[str, Any] = {"job_id": job_id, "percent": percent, "reads": 0, "breach": []}
    if not probes:
        return {**report, "watched": False, "reason": f"reads are {percent} % new: none of them reads the target"}
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    log = ReadLog(job_id, "watch")
    log.following(percent)
    set_limits(job_id, limits.model_dump())
    apps = _AppReports(ctx, job_id)
    samples: list[Sample] = []
    start = last_window = clock()
    figures = window_figures([], 0.0, limits.breach_window_s)
    fine_until_s = 0.0  # the newest new-side read within the limits: the breaching reads came after it
    while duration_s is None or clock() - start < duration_s:
        probe = probes[report["reads"] % len(probes)]
        report["reads"] += 1
        began = clock()
        new_ms, new_error, new_ids = timed_query(target, probe.read_as, probe.vector, limits.top_k, clock)
        old_ms, old_error, old_ids = timed_query(source, probe.old, probe.vector, limits.top_k, clock)
        at = clock() - start
        new_empty = new_error is None and not new_ids and bool(old_ids)
        old_empty = old_error is None and not old_ids and bool(new_ids)
        samples.append(Sample(at, "new", new_ms, new_error, empty=new_empty))
        samples.append(Sample(at, "old", old_ms, old_error, empty=old_empty))
        log.read("new", new_ms, new_error, empty=new_empty)
        log.read("old", old_ms, old_error, empty=old_empty)
        samples += apps.samples()
        fine_until_s = max([fine_until_s] + [s.at_s for s in samples if s.side == "new" and _fine(s, limits)])
        samples = [s for s in samples if s.at_s >= at - limits.breach_window_s]
        figures = window_figures(samples, at, limits.breach_window_s)
        problems = breach_problems(figures, limits)
        if problems:
            since = min((s.at_s for s in samples if s.side == "new" and s.at_s > fine_until_s), default=at)
            timing = {"breaching_since_s": round(since, 3), "decided_at_s": round(at, 3)}
            rolled = _roll_back(ctx, spec, job_id, percent, problems, {**figures, **timing}, actor)
            return {**report, **rolled, "figures": figures, **timing}
        if clock() - last_window >= limits.breach_window_s:
            last_window = clock()
            _window(ctx, job_id, percent, limits, figures, apps, actor)
            if on_window is not None:
                on_window(figures)
            # One watch is kept through every step: after a `cutover set`, it probes, records and rolls back from
            # the step live now, not the one it started on.
            now = rollout_rows.rollout_of(ctx.db, job_id).percent
            if now != percent:
                percent, report["percent"] = now, now
                probes = _probes(ctx, spec, job_id, percent)
                log.following(percent)
                if not probes:
                    return {**report, "watched": False, "reason": f"reads are {percent} % new: none reads the target"}
        pause_s = began + 1 / limits.qps - clock()
        if pause_s > 0:
            sleep(pause_s)  # the pace of the reads, not a wait for a condition
    _window(ctx, job_id, percent, limits, figures, apps, actor)
    return {**report, "watched": True, "figures": figures}


def _fine(sample: Sample, limits: Cutover) -> bool:
    """Whether one read of the new side is within the limits: answered, not empty, no slower than the P95 limit."""
    return sample.error is None and not sample.empty and sample.ms is not None and sample.ms <= limits.p95_ms


class _AppReports:
    """The reads the job's applications measured and sent (``DualWriteIndex``), from the watch's start on, as
    samples on the watch's clock (which started ``epoch0`` in epoch seconds)."""

    def __init__(self, ctx: WorkerContext, job_id: int) -> None:
        self.ctx, self.job_id = ctx, job_id
        self.after = published.newest_report_id(ctx.redis, job_id)
        self.epoch0 = time.time()
        self.instances: set[str] = set()

    def samples(self) -> list[Sample]:
        """The reads sent since the last call that were made while this watch runs (a report also carries reads
        from just before it began, of the step before or of a breach it follows: not this watch's to judge)."""
        reports, self.after = published.read_reports(self.ctx.redis, self.job_id, self.after)
        self.instances.update(str(r.get("instance")) for r in reports)
        return [s for report in reports for s in app_samples(report, self.epoch0) if s.at_s >= 0]


def _window(
    ctx: WorkerContext,
    job_id: int,
    percent: int,
    limits: Cutover,
    figures: dict[str, Any],
    apps: _AppReports,
    actor: str,
) -> None:
    """Keep one window's figures (a ``cutover_reads`` event, what `status` and the job page show) and file what the
    applications sent of their writes."""
    published.file_writes(ctx.db, ctx.redis, job_id)
    rollout_rows.record_reads(
        ctx.db,
        job_id,
        actor,
        percent=percent,
        window_s=limits.breach_window_s,
        figures=figures,
        instances=len(apps.instances),
    )
    apps.instances.clear()


def _probes(ctx: WorkerContext, spec: JobSpec, job_id: int, percent: int) -> list[Probe]:
    """The reads to make at ``percent``: each run the step reads new, its vectors, by the name the application reads."""
    every = jobs_and_runs.runs_of(ctx.db, job_id)
    runs = {r.source_namespace: r for r in every if r.copied > 0 and published.readable(r)}
    if spec.cutover.aliases is not None:
        routes, added_late = ready_routes(ctx.db, job_id, job_routes(ctx, job_id)[0], every)
        moved = moved_by(routes, percent, added_late)
        read_as = {r.old: r.name for r in routes if r.name in moved}
    else:
        read_as = {
            ns: run.target_namespace
            for ns, run in runs.items()
            if run.target_namespace is not None and reads_new(ns, percent)
        }
    return [
        Probe(read_as[source_ns], source_ns, vector)
        for source_ns in sorted(read_as)
        if source_ns in runs
        for _, _, vector, _ in job_queries(ctx, spec, runs[source_ns])
    ]


def _roll_back(
    ctx: WorkerContext,
    spec: JobSpec,
    job_id: int,
    percent: int,
    problems: list[str],
    figures: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    """Record the breach, then move reads back to the last good step: aliases first (what the application reads),
    then the rollout (what every ``DualWriteIndex`` follows and the rails read)."""
    rollout_rows.record_breach(ctx.db, job_id, actor, percent=percent, problems=problems, window=figures)
    with published.moving_reads(ctx.redis, job_id):  # an operator's `cutover set` moves reads under it too
        return _move_back(ctx, spec, job_id, problems, actor)


def _move_back(ctx: WorkerContext, spec: JobSpec, job_id: int, problems: list[str], actor: str) -> dict[str, Any]:
    """``_roll_back``'s move, under the job's move lock: from the step recorded now to the last good one before it."""
    percents = rollout_rows.percents_of(ctx.db, job_id)
    percent, fallback = (percents[-1] if percents else 0), fallback_percent(percents)
    detail: dict[str, Any] = {"reason": f"breach: {'; '.join(problems)}", "rolled_back_from": percent}
    moving = False
    try:
        # Asked before an alias moves: aliases sent back to a source a cleanup is deleting would serve it emptying.
        refused = rollout_rows.refusal(ctx.db, job_id, fallback, None)
        if refused is not None:
            raise StateError(refused, job_id=job_id)
        if spec.cutover.aliases is not None:
            moving = True
            detail["aliases"] = point_aliases(ctx, job_id, fallback).targets
            moving = False
        try:
            rollout_rows.set_rollout(ctx.db, job_id, fallback, actor, **detail)
        except StateError:  # a cleanup started in between: the aliases go back to the step the rollout is at
            if spec.cutover.aliases is not None:
                point_aliases(ctx, job_id, percent)
            raise
    except NsmigrateError as e:  # e.g. a source a cleanup deleted: reads cannot go back; said, not hidden
        error = str(e)
        if moving:  # a call failed part-way: the aliases before it point back already, the rollout has not moved
            back = "--reads old" if fallback == 0 else f"--reads new --percent {fallback}"
            error += (
                f"; some aliases may read the old namespaces already: `nsmigrate cutover set {job_id} {back}` moves "
                "the rest back (a repeat is safe)"
            )
        return {"breach": problems, "rolled_back_to": None, "roll_back_error": error}
    ROLLBACKS.labels(str(job_id)).inc()
    try:
        published.publish(ctx.db, ctx.redis, job_id)  # what every DualWriteIndex follows, within max_age_s
    except Exception as e:  # recorded, but the applications did not hear it: said, not hidden
        return {
            "breach": problems,
            "rolled_back_to": None,
            "roll_back_error": f"the rollout went back to {fallback} % new in the job table, but could not be "
            f"published for the applications ({type(e).__name__}: {e}); run `nsmigrate cutover publish {job_id}`",
        }
    return {"breach": problems, "rolled_back_to": fallback}

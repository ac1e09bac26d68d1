"""``nsmigrate cutover set|check``: switch a job's reads to the target step by step, and load-check the target first.

The rollout lives in the job table (``orchestrator.cutover.rollout``), where every application instance's
``DualWriteIndex`` reads it (``orchestrator.cutover.dualwrite``), so one command switches them all within seconds.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from nsmigrate.cli.console import console
from nsmigrate.cli.options import DatabaseOpt, JobArg, RedisOpt, check_redis_credentials, fail, job_context
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, rollout_problem
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import JobKind
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.states import PASSED_RUN_STATES
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.cutover_check import check_job

app = typer.Typer(add_completion=False)
group = typer.Typer(
    help="Cut over a migrated job's traffic: `check` load-tests the target, `set` moves the applications' reads to "
    "it step by step (5 → 25 → 50 → 100 %, and back). Applications read the setting through "
    "nsmigrate.orchestrator.cutover.dualwrite.DualWriteIndex.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(group, name="cutover")


def _migrate_job(job: str, database_url: str | None, redis_url: str | None) -> tuple[WorkerContext, int]:
    resolved, database, job_id, _ = job_context(job, None, database_url, redis_url)
    kind = jobs_and_runs.find_job(database, job_id).kind
    if kind != JobKind.MIGRATE:
        raise fail(f"job {job_id} is a {kind} job; only a migrate job is cut over: give the migration's id")
    return WorkerContext(resolved), job_id


@group.command("set")
def set_cmd(
    job: JobArg,
    reads: Annotated[
        str, typer.Option("--reads", help="`new`: --percent of namespaces read the target; `old`: all read the source.")
    ],
    percent: Annotated[
        int, typer.Option("--percent", help=f"With --reads new: one of {', '.join(map(str, ROLLOUT_STEPS[1:]))}.")
    ] = 100,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Set where JOB's applications read: `--reads new --percent N` sends the reads of N % of its namespaces to the
    target (chosen by namespace, each step adding to the last), `--reads old` sends them all back to the source.
    Recorded as a `cutover_set` event; applications follow within seconds. Reads move new only while every namespace
    is verified (exit code 1 otherwise: sync first), and back to old never once a cleanup deletes a source (exit code 1:
    its vectors are gone). Cleanup waits until reads have been 100 % new for the spec's
    cutover.decommission_after_s."""
    if reads not in ("new", "old"):
        raise fail(f"--reads {reads!r}: use `new` (with --percent) or `old`; nothing was changed")
    problem = rollout_problem(percent) if reads == "new" else None
    if problem is not None or (reads == "new" and percent == 0):
        raise fail(f"{problem or '--percent 0: use --reads old'}; nothing was changed")
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    if reads == "new":
        unverified = [r for r in jobs_and_runs.runs_of(ctx.db, job_id) if r.state not in PASSED_RUN_STATES]
        if unverified:
            first = unverified[0]
            raise fail(
                f"namespace {display_namespace(first.source_namespace)!r} of job {job_id} is {first.state}"
                + (f" (and {len(unverified) - 1} more)" if len(unverified) > 1 else "")
                + f": reads move only to a verified copy; `nsmigrate sync {job_id} --wait` first; nothing was changed",
                1,
            )
    try:
        rollout = rollout_rows.set_rollout(ctx.db, job_id, percent if reads == "new" else 0, default_actor())
    except StateError as e:  # a source a cleanup deleted: a refused check, not bad input
        raise fail(str(e), 1) from e
    console.print(f"job {job_id}: reads {rollout.percent} % new" + _full_since(rollout.full_since))


def _full_since(at: object) -> str:
    return f" (100 % since {at})" if at is not None else ""


@group.command()
def check(
    job: JobArg,
    qps: Annotated[float | None, typer.Option("--qps", help="Queries per second (default: cutover.qps, 20).")] = None,
    duration_s: Annotated[
        float | None, typer.Option("--duration", help="Seconds of load (default: cutover.duration_s, 60).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Load-test JOB's target before reads move to it: its own vectors as queries at --qps for --duration seconds,
    each sent to the target and the source. Reports P50/P95/P99, the cold query (first to each namespace), the
    error rate and the top-k agreement of target and source; exit code 0 only when all are within the spec's
    `cutover` limits (defaults: P95 100 ms, P99 200 ms, cold 500 ms, errors 1 %, agreement 0.9). Only reads; the
    report is kept in the job table (`cutover_check` event)."""
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    limits = jobs_and_runs.job_spec(ctx.db, job_id).cutover
    overrides = {k: v for k, v in {"qps": qps, "duration_s": duration_s}.items() if v is not None}
    for name, value in overrides.items():
        if not 0 < value <= (1000 if name == "qps" else 3600):
            raise fail(
                f"--{name.removesuffix('_s').replace('_', '-')} {value}: must be above 0 and at most "
                f"{1000 if name == 'qps' else 3600}; nothing was run"
            )
    limits = limits.model_copy(update=overrides)
    check_redis_credentials(ctx.settings.redis_url)  # the queries' rate budget is in Redis
    report = check_job(ctx, job_id, limits)
    rollout_rows.record_check(ctx.db, job_id, report, default_actor())
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(job_id, report)
    raise typer.Exit(0 if report["passed"] else 1)


def _print_report(job_id: int, report: dict[str, object]) -> None:
    target, source = report.get("target") or {}, report.get("source") or {}
    assert isinstance(target, dict) and isinstance(source, dict)
    console.print(
        f"job {job_id}: {report.get('queries', 0)} queries at {report['qps']} QPS over {report['namespaces']} "
        f"namespaces in {report.get('elapsed_s', 0)} s"
    )
    for name, figures in (("target", target), ("source", source)):
        console.print(
            f"  {name}: P50 {figures.get('p50_ms')} ms, P95 {figures.get('p95_ms')} ms, P99 {figures.get('p99_ms')} ms"
        )
    console.print(
        f"  cold query {report.get('cold_query_ms')} ms; errors {report.get('errors', 0)} "
        f"({report.get('error_rate', 0)}); top-k agreement {report.get('agreement')}"
    )
    problems = report.get("problems") or []
    assert isinstance(problems, list)
    for problem in problems:
        console.print(escape(f"  ✗ {problem}"), soft_wrap=True)
    console.print("passed: the target is within the spec's cutover limits" if not problems else "failed")

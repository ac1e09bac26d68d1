"""``nsmigrate cutover set|check|aliases|watch``: switch a job's reads to the target step by step, on the rails
(``orchestrator.cutover.rails``), and load-check the target first.

The rollout lives in the job table (``orchestrator.cutover.rollout``) and is published in the fleet's Redis
(``orchestrator.cutover.published``), where every application instance's ``DualWriteIndex`` reads it
(``orchestrator.cutover.dualwrite``), so one command switches them all within seconds.
Inside one index the applications read through namespace aliases instead, which each step repoints
(``workers.steps.alias_cutover``): no library and no job table on their side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server
from rich.markup import escape

from nsmigrate.cli.console import console
from nsmigrate.cli.options import DatabaseOpt, JobArg, RedisOpt, check_redis_credentials, fail, job_context
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.cutover import filters, published
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.breach import side_line
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, rollout_problem
from nsmigrate.orchestrator.errors import NsmigrateError, SpecError, StateError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import JobKind
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.states import PASSED_RUN_STATES
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.alias_cutover import AliasOutcome, point_aliases
from nsmigrate.workers.steps.cutover_check import check_job
from nsmigrate.workers.steps.cutover_warm import warm_step
from nsmigrate.workers.steps.cutover_watch import watch_job

_STEPS = " → ".join(map(str, ROLLOUT_STEPS[1:]))

app = typer.Typer(add_completion=False)
group = typer.Typer(
    help="Cut over a migrated job's traffic: `check` load-tests the target, `set` moves the applications' reads to "
    "it step by step (5 → 25 → 50 → 100 %, each after a passing check and a soak, and back at once). Applications "
    "read through nsmigrate.DualWriteIndex (following what `publish` puts in Redis), or, inside one index, "
    "through the namespace aliases `aliases` creates; `watch` measures a live step and rolls it back on a breach.",
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
        int | None,
        typer.Option("--percent", help=f"With --reads new (required): the next step of {_STEPS}."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip one step (with --reason; recorded in the job's events).")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why a step is skipped (required with --force).")
    ] = None,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Set where JOB's applications read: `--reads new --percent N` sends the reads of N % of its namespaces to the
    target (chosen by namespace, each step adding to the last), `--reads old` sends them all back to the source, at
    once. Steps toward the target keep to the rails: in order (5 → 25 → 50 → 100; `--force --reason TEXT` skips
    one), each after a passing `cutover check` taken within the spec's cutover.check_valid_s (1 h), and after the
    step before has run cutover.min_step_s (10 min) with no breach; exit code 1 says what to run or how long is
    left. Before a step moves reads, the cutover.warm_top_n (10) namespaces it moves that the applications read
    most are queried on the target, so their first reads are not cold. A repeat is done, not an error. Recorded as a
    `cutover_set` event; applications follow within seconds.
    Reads move new only while every namespace is verified (exit code 1 otherwise: sync first), and back to old
    never once a cleanup deletes a source (exit code 1: its vectors are gone). Cleanup waits until reads have been
    100 % new for the spec's cutover.decommission_after_s."""
    wanted = _wanted_percent(reads, percent)
    if force and not (reason or "").strip():
        raise fail("--force needs --reason TEXT: a skipped step is recorded with why; nothing was changed")
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    if wanted > 0:
        unverified = [r for r in jobs_and_runs.runs_of(ctx.db, job_id) if r.state not in PASSED_RUN_STATES]
        if unverified:
            first = unverified[0]
            raise fail(
                f"namespace {display_namespace(first.source_namespace)!r} of job {job_id} is {first.state}"
                + (f" (and {len(unverified) - 1} more)" if len(unverified) > 1 else "")
                + f": reads move only to a verified copy; `nsmigrate sync {job_id} --wait` first; nothing was changed",
                1,
            )
    limits = jobs_and_runs.job_spec(ctx.db, job_id).cutover
    by_alias = limits.aliases is not None
    before = rollout_rows.rollout_of(ctx.db, job_id)
    if before.percent == wanted and (before.under_way or wanted == 0):  # a repeat: done (aliases put right)
        with published.moving_reads(ctx.redis, job_id):  # a watch's roll back may be moving them: asked again
            if rollout_rows.rollout_of(ctx.db, job_id).percent == wanted:
                console.print(f"job {job_id}: reads are {wanted} % new already: done" + _full_since(before.full_since))
                if by_alias:
                    _print_aliases(_point(ctx, job_id, wanted), wanted)
                _publish(ctx, job_id)
                return
        before = rollout_rows.rollout_of(ctx.db, job_id)
    rails = limits if wanted > 0 else None
    refused = rollout_rows.refusal(ctx.db, job_id, wanted, rails, forced=force)
    if refused is not None:  # asked before an alias moves
        raise fail(refused, 1)
    detail: dict[str, object] = {"reason": reason.strip()} if reason and reason.strip() else {}
    warmed = warm_step(ctx, job_id, before.percent, wanted)  # before the step sends reads there
    if warmed["warmed"]:
        detail["warmed"] = warmed["warmed"]
        _print_warmed(warmed)
    with published.moving_reads(ctx.redis, job_id):  # a watch's roll back may have moved reads while this warmed
        before = rollout_rows.rollout_of(ctx.db, job_id)
        refused = rollout_rows.refusal(ctx.db, job_id, wanted, rails, forced=force)
        if refused is not None:
            raise fail(refused, 1)
        outcome = _point(ctx, job_id, wanted) if by_alias else None
        if outcome is not None:
            detail["aliases"] = outcome.targets
        try:
            rollout = rollout_rows.set_rollout(
                ctx.db, job_id, wanted, default_actor(), rails=rails, forced=force, **detail
            )
        except StateError as e:  # the rails, or a source a cleanup deleted: a refused check, not bad input
            if outcome is not None:  # a cleanup started while the aliases moved: they go back to the recorded step
                _point(ctx, job_id, before.percent)
            raise fail(str(e), 1) from e
        console.print(f"job {job_id}: reads {rollout.percent} % new" + _full_since(rollout.full_since))
        if outcome is not None:
            _print_aliases(outcome, wanted)
        _publish(ctx, job_id)


def _print_warmed(warmed: dict[str, Any]) -> None:
    by = "the applications' reads" if warmed["by"] == "traffic" else "size (no reads counted yet)"
    console.print(f"warmed {len(warmed['warmed'])} namespace(s) the step moves, the most read by {by}:")
    for w in warmed["warmed"]:
        console.print(
            f"  {w['target']}: first query {w['first_ms']} ms, last {w['last_ms']} ms"
            + (f" — {w['error']}" if w["error"] else ""),
            markup=False,
        )


def _publish(ctx: WorkerContext, job_id: int) -> dict[str, Any]:
    """Publish the job's cut-over for its applications (and file what they sent of their writes); a Redis that
    cannot take it exits 1, saying that they did not follow and how to publish again."""
    try:
        published.file_writes(ctx.db, ctx.redis, job_id)
        return published.publish(ctx.db, ctx.redis, job_id)
    except Exception as e:
        raise fail(
            f"job {job_id}'s rollout is recorded in the job table but could not be published for its applications "
            f"({type(e).__name__}: {e}): their DualWriteIndex still reads the one before; run `nsmigrate cutover "
            f"publish {job_id}` once Redis answers",
            1,
        ) from e


@group.command()
def publish(job: JobArg, database_url: DatabaseOpt = None, redis_url: RedisOpt = None) -> None:
    """Publish JOB's cut-over for its applications, as the job table has it now: the rollout, the job's namespaces
    and spec, and the erasure ledger, in the fleet's Redis, where every DualWriteIndex reads them (no job-table
    connection on their side). Run it once before the applications dual-write; `cutover set`, the roll back of
    `cutover watch` and `erase` publish again by themselves. Safe to repeat. Also files what the applications sent
    of their writes (failed new-side writes, records the erasure ledger held back) into the job's events."""
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    check_redis_credentials(ctx.settings.redis_url)
    # Kept first: from now on a cleanup keeps the source the applications read until reads are 100 % new.
    rollout_rows.record_published(ctx.db, job_id, default_actor())
    head = _publish(ctx, job_id)
    console.print(
        f"job {job_id}: published for its applications: reads {head['percent']} % new (step {head['seq']}, layout "
        f"{head['layout']}); DualWriteIndex(…, job_id={job_id}, redis_url=…) follows it within max_age_s"
    )


@group.command()
def aliases(job: JobArg, database_url: DatabaseOpt = None, redis_url: RedisOpt = None) -> None:
    """Create JOB's namespace aliases (spec cutover.aliases: a cut-over inside one index), each pointing where the
    rollout says (at first: the old namespace), and list them. Point the application's reads at these names once;
    `cutover set` then repoints them, and no application change follows. Safe to repeat: an alias in place is left
    alone (exit code 1 when an alias of the job's names is someone else's: nothing is changed)."""
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    with published.moving_reads(ctx.redis, job_id):  # where the rollout is, not where it was before a move
        percent = rollout_rows.rollout_of(ctx.db, job_id).percent
        outcome = _point(ctx, job_id, percent)
        if outcome.created or outcome.repointed:
            rollout_rows.record_aliases(
                ctx.db, job_id, default_actor(), outcome.targets, outcome.created, outcome.repointed
            )
    for route in outcome.routes:
        side = "new" if outcome.targets[route.name] == route.new else "old"
        console.print(
            f"  {escape(route.name)} → {escape(display_namespace(outcome.targets[route.name]))} ({side}; "
            f"{escape(display_namespace(route.old))} → {escape(display_namespace(route.new))})"
        )
    _print_aliases(outcome, percent)


@group.command()
def watch(
    job: JobArg,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration", help="Seconds to watch (default: until a breach, or Ctrl-C)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Also serve the watch's reads as Prometheus metrics on this port."
        ),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option("--metrics-address", help="Address the metrics are served on.")
    ] = "127.0.0.1",
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Watch JOB's live rollout step as its applications read: the job's vectors sent through each alias the step
    moved (or to the target namespaces the rollout reads new), and to the source for comparison, one at a time at
    most cutover.qps. Over every cutover.breach_window_s it prints the new side's and the old side's P50/P95/P99,
    errors and empty answers. A breach of cutover.p95_ms, p99_ms or max_error_rate on the new side moves reads back
    to the last good step at once (aliases repointed; the rollout recorded with the evidence, a `cutover_breach`
    event), publishes the rollout for every DualWriteIndex and exits 1; the end of --duration with no breach exits
    0. The applications' own measured reads (sent by their DualWriteIndex) are judged with the watch's, and each
    window's figures are kept for `status` and the job page (a `cutover_reads` event). Only reads, until a breach."""
    if duration_s is not None and not 0 < duration_s <= 86400:
        raise fail(f"--duration {duration_s}: must be above 0 and at most 86400; nothing was run")
    ctx, job_id = _migrate_job(job, database_url, redis_url)
    limits = jobs_and_runs.job_spec(ctx.db, job_id).cutover
    if metrics_port is not None:
        try:
            start_http_server(metrics_port, metrics_address)
        except OSError as e:
            raise fail(f"--metrics-port {metrics_port}: cannot serve on {metrics_address} ({e.strerror})") from e
    try:
        report = watch_job(
            ctx,
            job_id,
            limits,
            default_actor(),
            duration_s=duration_s,
            on_window=lambda f: _print_window(job_id, f),
        )
    except NsmigrateError as e:
        raise fail(str(e), 1) from e
    if not report.get("watched", True):
        console.print(f"job {job_id}: {report['reason']}: nothing to watch")
        return
    if not report["breach"]:
        _print_window(job_id, report["figures"])
        console.print(f"job {job_id}: {report['reads']} reads, no breach: reads stay {report['percent']} % new")
        return
    for problem in report["breach"]:
        console.print(escape(f"  ✗ {problem}"), soft_wrap=True)
    if report["rolled_back_to"] is None:
        raise fail(f"job {job_id}: breach, and reads could not go back: {report['roll_back_error']}", 1)
    raise fail(
        f"job {job_id}: breach at {report['percent']} % new: reads moved back to {report['rolled_back_to']} % new "
        f"(the evidence is the `cutover_breach` event: `nsmigrate events {job_id}`)",
        1,
    )


def _print_window(job_id: int, figures: dict[str, Any]) -> None:
    for side in ("new", "old"):
        console.print(f"job {job_id} {side_line(side, figures[side])}", markup=False, soft_wrap=True)


def _point(ctx: WorkerContext, job_id: int, percent: int) -> AliasOutcome:
    """Point the job's aliases for ``percent``; a refusal or a failed call exits 1, saying what to do."""
    try:
        return point_aliases(ctx, job_id, percent)
    except StateError as e:
        raise fail(str(e), 1) from e
    except NsmigrateError as e:
        raise fail(
            f"{e}; the aliases before it moved: run the same command again (a repeat finishes the rest), or "
            f"`nsmigrate cutover set {job_id} --reads old` to point them all back",
            1,
        ) from e


def _print_aliases(outcome: AliasOutcome, percent: int) -> None:
    moved = sum(outcome.targets[r.name] == r.new for r in outcome.routes)
    console.print(
        f"aliases: {moved} of {len(outcome.routes)} read the new namespaces ({percent} %: the first "
        f"⌈{len(outcome.routes)}·{percent}/100⌉ by a hash of their names); {len(outcome.created)} created, "
        f"{len(outcome.repointed)} repointed"
        + (f"; {len(outcome.unaliased)} namespace(s) routed per record have none" if outcome.unaliased else "")
        + (f"; {len(outcome.erased)} of an erased twin, removed by its erasure" if outcome.erased else "")
    )


def _wanted_percent(reads: str, percent: int | None) -> int:
    """The percentage ``--reads``/``--percent`` ask for; bad input exits 2, changing nothing."""
    if reads == "old":
        if percent is not None:
            raise fail("--reads old takes no --percent (every read goes back to the source); nothing was changed")
        return 0
    if reads != "new":
        raise fail(f"--reads {reads!r}: use `new` (with --percent) or `old`; nothing was changed")
    if percent is None:
        raise fail(f"--reads new needs --percent: the steps are {_STEPS} %, in order; nothing was changed")
    problem = rollout_problem(percent) if percent != 0 else "--percent 0: use --reads old"
    if problem is not None:
        raise fail(f"{problem}; nothing was changed")
    return percent


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
    queries_file: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help='A file of the application\'s queries with filters, one JSON object a line: {"namespace": …, '
            '"vector": […] or "id": …, "filter": {…}, "top_k": N}; replayed on both sides with those '
            "its DualWriteIndex recorded.",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Load-test JOB's target before reads move to it: first one query to every namespace the job wrote to (the cold
    start), then its own vectors as queries at --qps for --duration seconds, each sent to the target and the source;
    last, the application's filtered queries (--queries FILE, and the ones its DualWriteIndex recorded) replayed on
    both sides, naming every query whose filtered answers differ. Reports P50/P95/P99, the cold queries (the slowest
    by name), the error rate and the top-k agreement of target and source; exit code 0 only when all are within the
    spec's `cutover` limits (defaults: P95 100 ms, P99 200 ms, cold 500 ms, errors 1 %, agreement 0.9), no
    filtered query differs and the source has no namespace the job's selection takes that the job has no run for
    (made after its plan: reads moved to the target would find nothing of it). Only reads; the report is kept in the
    job table (`cutover_check` event)."""
    sample_queries = _file_queries(queries_file)  # bad input exits 2 before anything is read
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
    sample_queries += filters.recorded(published.recorded_queries(ctx.redis, job_id))
    report = check_job(ctx, job_id, limits, queries=sample_queries)
    rollout_rows.record_check(ctx.db, job_id, report, default_actor())
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(job_id, report)
    raise typer.Exit(0 if report["passed"] else 1)


def _file_queries(path: Path | None) -> list[filters.SampleQuery]:
    """The queries of ``--queries FILE``; a file that cannot be read or holds a bad query exits 2, naming the line."""
    if path is None:
        return []
    try:
        return filters.queries_of_file(path.read_text(), str(path))
    except OSError as e:
        raise fail(f"--queries {path}: cannot read it ({e.strerror}); nothing was run") from e
    except SpecError as e:
        raise fail(f"--queries {path}: {e}; nothing was run") from e


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
    cold, slowest = report.get("cold_figures") or {}, report.get("cold_slowest") or []
    assert isinstance(cold, dict) and isinstance(slowest, list)
    console.print(
        f"  cold: first queries to {report.get('cold_queries', 0)} namespaces: P50 {cold.get('p50_ms')} ms, P95 "
        f"{cold.get('p95_ms')} ms; slowest: " + (", ".join(f"{ns} {ms} ms" for ns, ms in slowest) or "none"),
        markup=False,
        soft_wrap=True,
    )
    replayed = report.get("filters") or {}
    assert isinstance(replayed, dict)
    if replayed.get("replayed") or replayed.get("not_replayed"):
        console.print(
            f"  filters: {replayed.get('replayed', 0)} of the application's filtered queries replayed on both sides, "
            f"{len(replayed.get('differing') or [])} differ, {len(replayed.get('not_replayed') or [])} not replayed"
        )
    problems = report.get("problems") or []
    assert isinstance(problems, list)
    for problem in problems:
        console.print(escape(f"  ✗ {problem}"), soft_wrap=True)
    console.print("passed: the target is within the spec's cutover limits" if not problems else "failed")

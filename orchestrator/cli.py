"""The ``nsmigrate`` command line: plan, run and watch jobs, re-run what failed, verify, clean up, run workers.

Every command reads its connection settings once from the environment (``NSMIGRATE_DATABASE_URL``,
``NSMIGRATE_REDIS_URL``; see ``orchestrator.settings``) or from ``--database-url`` / ``--redis-url``.
Errors are printed as one clear message with what to do, and exit with code 2 (bad input) or 1 (failed check).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from orchestrator import jobs, launch
from orchestrator.dispatch import Dispatcher
from orchestrator.errors import NsmigrateError
from orchestrator.models import JobState, RunState
from orchestrator.records import display_namespace, parse_namespace_arg
from orchestrator.settings import Settings, load_settings
from orchestrator.spec import load_spec


class _CleanErrors(TyperGroup):
    """Known errors (``NsmigrateError``) become one clear message and exit code 2 inside the app itself, so that
    ``nsmigrate``, ``python -m orchestrator.cli`` and ``typer.testing.CliRunner`` all behave the same."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NsmigrateError as e:
            raise _fail(str(e)) from e


app = typer.Typer(
    cls=_CleanErrors,
    name="nsmigrate",
    help="Migrate vector data between Pinecone namespaces/indexes and pgvector tables with a Celery fleet: "
    "plan a job from a YAML spec, run it on workers, watch it, re-run failed batches, verify, then clean up.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
#: The Celery pools `nsmigrate worker` runs: processes or threads (gevent/eventlet would need monkey-patching).
WORKER_POOLS = ("prefork", "threads")
# soft_wrap: an error stays one line (no wrapping at 80 columns in pipes and logs).
err_console = Console(stderr=True, soft_wrap=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="Job table (SQLAlchemy URL). Default: $NSMIGRATE_DATABASE_URL.", show_default=False
    ),
]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Broker/locks/rate buckets. Default: $NSMIGRATE_REDIS_URL.", show_default=False),
]
JobArg = Annotated[str, typer.Argument(help="Job id, or job name (its newest job).")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Only this source namespace (__default__ for the default).")
]


def _settings(database_url: str | None, redis_url: str | None) -> Settings:
    overrides = {k: v for k, v in {"database_url": database_url, "redis_url": redis_url}.items() if v}
    try:
        return load_settings(**overrides)
    except ValidationError as e:  # e.g. NSMIGRATE_RETRY_ATTEMPTS=0: name the variable, never echo values
        problems = "; ".join(
            f"NSMIGRATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors()
        )
        raise _fail(f"invalid setting(s): {problems} — fix the environment (or .env)") from e


def _fail(message: str, code: int = 2) -> typer.Exit:
    # escape(): messages hold "[job_id=3]"-style ids and lists, which rich would otherwise read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _open_store(spec: Any) -> Any:
    # The CLI is the composition root: it may open stores; the orchestrator core only receives this function.
    from workers.stores import open_retrying_store

    return open_retrying_store(spec)


def _db(settings: Settings) -> jobs.Database:
    try:
        return jobs.Database(settings.database_url)
    except Exception as e:  # connection refused, bad URL, auth: say where and what to set
        detail = (str(e).splitlines() or [""])[0][:200]
        password = _password(settings.database_url)
        if password:  # an unparsable URL is echoed whole by SQLAlchemy
            detail = detail.replace(password, "***")
        raise _fail(
            f"cannot open the job table at {_redact(settings.database_url)}: {type(e).__name__}: "
            f"{detail} — set NSMIGRATE_DATABASE_URL or --database-url to a reachable Postgres"
        ) from e


def _dispatcher(settings: Settings) -> Dispatcher:
    """A Dispatcher whose broker answered: checked before anything is written, so an unreachable Redis gives one
    clear error instead of a traceback and a job row whose tasks were never enqueued."""
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5).ping()
    except (redis.RedisError, ValueError, OSError) as e:
        detail = (str(e).splitlines() or [""])[0][:200]
        password = _password(settings.redis_url)
        if password:
            detail = detail.replace(password, "***")
        raise _fail(
            f"cannot reach Redis at {_redact(settings.redis_url)}: {type(e).__name__}: {detail} — set "
            "NSMIGRATE_REDIS_URL or --redis-url to a reachable Redis"
        ) from e
    return Dispatcher(settings)


def _password(url: str) -> str | None:
    if "@" in url and "://" in url:
        creds = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in creds:
            return creds.split(":", 1)[1] or None
    return None


def _redact(url: str) -> str:
    """A URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


def _job_id(db: jobs.Database, ref: str) -> int:
    return jobs.find_job(db, ref).id


def _job_context(
    job: str, namespace: str | None, database_url: str | None, redis_url: str | None
) -> tuple[Settings, jobs.Database, int, str | None]:
    """What every job command starts from: settings, the job table, the job's id and the namespace asked for."""
    settings = _settings(database_url, redis_url)
    db = _db(settings)
    ns = parse_namespace_arg(namespace) if namespace is not None else None
    return settings, db, _job_id(db, job), ns


def main() -> None:
    """Console-script entry point: known errors become one clear line instead of a traceback."""
    # The app reports NsmigrateError itself (see _CleanErrors); this catches one raised outside a command.
    try:
        app()
    except NsmigrateError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(2)


# ------------------------------------------------------------------------------------------------ plan / run


def _print_plan(prepared: launch.Prepared) -> None:
    plan = prepared.plan
    table = Table(title=f"plan for job {prepared.spec.name!r}: {prepared.source_label} → {prepared.target_label}")
    for col in ("source namespace", "target namespace", "vectors", "batches"):
        table.add_column(col, justify="right" if col in ("vectors", "batches") else "left")
    for run in plan.runs:
        target = run.target_namespace if run.target_namespace is not None else "(routed per vector by twin id)"
        table.add_row(display_namespace(run.source_namespace), target, str(run.vector_count), str(run.batches))
    console.print(table)
    est = plan.estimate
    console.print(
        f"{len(plan.runs)} namespaces, {plan.total_vectors} vectors, {plan.total_batches} batches; "
        f"requests: {est.list_requests} list, {est.fetch_requests} fetch, {est.upsert_requests} upsert; "
        f"≈{est.read_units} read units, ≈{est.write_units} write units; "
        f"≈{est.duration_s:.1f} s at the configured budgets"
    )
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


@app.command()
def plan(spec: Annotated[Path, typer.Argument(help="Job spec (YAML).")]) -> None:
    """Dry run: validate SPEC, read the source inventory and show what would be migrated. Writes nothing."""
    job_spec = load_spec(spec)
    _print_plan(launch.prepare(job_spec, _open_store, spec.parent))


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress per namespace until the job ends.")] = False,
    new: Annotated[
        bool,
        typer.Option(
            "--new", help="Start a new job even if an unfinished one of this name exists (default: resume it)."
        ),
    ] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Plan SPEC, write the job table and enqueue the work; prints the job id. An unfinished job of the same name is
    resumed instead (use --new to start over). With `backup.enabled` in the spec, the planned source namespaces are
    exported to Parquet first, and a failed backup starts nothing."""
    settings = _settings(database_url, redis_url)
    job_spec = load_spec(spec)
    db = _db(settings)
    dispatcher = _dispatcher(settings)
    existing = None if new else jobs.latest_unfinished_job(db, job_spec.name)
    if existing is not None:
        counts = launch.resume(db, dispatcher, existing.id)
        console.print(
            f"job {existing.id} ({job_spec.name}) was unfinished: resumed "
            f"({counts['listers']} listers, {counts['batches']} batches re-queued)"
        )
        job_id = existing.id
    else:
        prepared = launch.prepare(job_spec, _open_store, spec.parent)
        _print_plan(prepared)
        # The backup comes first: if it fails, no job is written and nothing is enqueued.
        backup = _backup_sources(prepared) if job_spec.backup.enabled else None
        job_id = launch.launch(db, dispatcher, prepared)
        if backup is not None:
            jobs.record_event(db, "backup_written", jobs.default_actor(), job_id, **backup)
        console.print(f"job {job_id} started")
    print(job_id)
    if wait:
        raise typer.Exit(watch_job(db, job_id))


def _run_done(run: jobs.RunStatus) -> bool:
    if run.state in jobs.FINAL_RUN_STATES:
        return True
    # Copy finished but some batches failed: nothing more will happen until `retry`.
    b = run.batches
    return run.state == RunState.COPYING and b.failed > 0 and b.queued == 0 and b.running == 0


def watch_job(db: jobs.Database, job_id: int, poll_s: float = 0.5, timeout_s: float | None = None) -> int:
    """Live progress bars per namespace until every run is final (or stuck on failed batches). Returns the exit code:
    0 when everything copied and passed verification, 1 otherwise."""
    status = jobs.job_status(db, job_id)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        bars = {
            r.run_id: progress.add_task(
                display_namespace(r.source_namespace)[:40], total=max(r.source_count, 1), state=r.state
            )
            for r in status.runs
        }
        last_line = 0.0
        while True:
            status = jobs.job_status(db, job_id)
            for r in status.runs:
                progress.update(
                    bars[r.run_id],
                    completed=r.copied,
                    state=r.state,
                    total=max(r.source_count, r.listed, 1),
                )
            if not console.is_terminal and time.monotonic() - last_line >= 2:
                # No live bars in logs and pipes: one summary line every 2 s instead.
                last_line = time.monotonic()
                states = sorted({r.state for r in status.runs})
                t = status.totals
                console.print(
                    f"job {job_id}: {t.copied}/{t.source} copied, {t.failed} failed; namespaces {', '.join(states)}"
                )
            if all(_run_done(r) for r in status.runs) or status.state != JobState.RUNNING:
                break
            if deadline is not None and time.monotonic() > deadline:
                err_console.print(f"[yellow]still running after {timeout_s:.0f} s; `nsmigrate status {job_id}`[/]")
                return 1
            time.sleep(poll_s)
    _print_summary(status)
    ok = all(
        r.state in (RunState.VERIFIED, RunState.CLEANED) or (r.state == RunState.COPIED and r.failed == 0)
        for r in status.runs
    )
    return 0 if ok else 1


def _print_summary(status: jobs.JobStatus) -> None:
    table = Table(title=f"job {status.job_id} ({status.name}): {status.state}")
    for col in ("source namespace", "state", "copied/source", "failed ids", "verification / last error"):
        table.add_column(col)
    for r in status.runs:
        note = r.verification or r.last_error or ""
        table.add_row(
            display_namespace(r.source_namespace),
            r.state,
            f"{r.copied}/{r.source_count}",
            str(r.failed),
            note[:120],
        )
    console.print(table)
    t = status.totals
    console.print(f"total: {t.copied}/{t.source} vectors copied, {t.failed} in failed batches")
    if t.failed:
        console.print(f"re-run the failed batches with `nsmigrate retry {status.job_id}`")


# ------------------------------------------------------------------------------------------------ watching


@app.command()
def status(
    job: JobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Show a job's state, per-namespace progress, failed batches and verification results."""
    db = _db(_settings(database_url, None))
    snapshot = jobs.job_status(db, _job_id(db, job))
    if as_json:
        print(json.dumps(snapshot.as_dict(), indent=2, default=str))
    else:
        _print_summary(snapshot)


@app.command()
def report(job: JobArg, namespace: NamespaceOpt = None, database_url: DatabaseOpt = None) -> None:
    """Print the full verification (and cleanup) reports of JOB's namespaces as JSON: counts, missing and extra ids,
    content mismatches, query equivalence and latency. Exit code 0 when every reported namespace passed."""
    db = _db(_settings(database_url, None))
    ns = parse_namespace_arg(namespace) if namespace is not None else None
    runs = jobs.runs_of(db, _job_id(db, job), ns)
    reports = [
        {
            "source_namespace": display_namespace(r.source_namespace),
            "state": r.state,
            "verification": r.verification,
            "cleanup": r.cleanup,
        }
        for r in runs
    ]
    print(json.dumps(reports, indent=2, default=str))
    passed = all((r.verification or {}).get("passed") for r in runs)
    raise typer.Exit(0 if reports and passed else 1)


@app.command("jobs")
def list_jobs(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20, database_url: DatabaseOpt = None
) -> None:
    """List the jobs in the job table."""
    db = _db(_settings(database_url, None))
    table = Table("id", "name", "kind", "state", "created")
    for j in jobs.list_jobs(db, limit):
        table.add_row(str(j["job_id"]), j["name"], j["kind"], j["state"], j["created_at"][:19])
    console.print(table)


@app.command()
def events(job: JobArg, database_url: DatabaseOpt = None) -> None:
    """Show a job's audit log (who did what, when)."""
    db = _db(_settings(database_url, None))
    for e in jobs.events_of(db, _job_id(db, job)):
        console.print(f"{e['at'][:19]}  {e['actor']:<28} {e['action']:<18} {json.dumps(e['detail'], default=str)}")


@app.command("watch")
def watch(job: JobArg, database_url: DatabaseOpt = None) -> None:
    """Live progress of a running job (like `run --wait`)."""
    db = _db(_settings(database_url, None))
    raise typer.Exit(watch_job(db, _job_id(db, job)))


# ------------------------------------------------------------------------------------------------ acting


@app.command()
def retry(
    job: JobArg,
    namespace: NamespaceOpt = None,
    wait: Annotated[bool, typer.Option("--wait")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Re-enqueue the failed batches of JOB (only those), e.g. once a fault is gone."""
    settings, db, job_id, ns = _job_context(job, namespace, database_url, redis_url)
    n = launch.retry_failed(db, _dispatcher(settings), job_id, ns)
    console.print(f"{n} failed batches re-queued for job {job_id}")
    if wait:
        raise typer.Exit(watch_job(db, job_id))


@app.command()
def resume(
    job: JobArg,
    wait: Annotated[bool, typer.Option("--wait")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Re-enqueue all unfinished work of JOB (after workers, Redis or the orchestrator died). Safe to repeat."""
    settings = _settings(database_url, redis_url)
    db = _db(settings)
    job_id = _job_id(db, job)
    counts = launch.resume(db, _dispatcher(settings), job_id)
    console.print(
        f"job {job_id}: re-queued {counts['listers']} listers, {counts['batches']} batches, "
        f"{counts['verifications']} verifications"
    )
    if wait:
        raise typer.Exit(watch_job(db, job_id))


@app.command()
def cancel(job: JobArg, database_url: DatabaseOpt = None) -> None:
    """Cancel JOB: queued batches are skipped by the workers; nothing is deleted."""
    db = _db(_settings(database_url, None))
    job_id = _job_id(db, job)
    n = jobs.cancel_job(db, job_id)
    console.print(f"job {job_id} cancelled ({n} namespace runs stopped)")


@app.command()
def verify(
    job: JobArg,
    namespace: NamespaceOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the reports.")] = True,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """(Re-)verify the copied namespaces of JOB: counts, id sets, contents. Exit code 0 = all passed."""
    settings, db, job_id, ns = _job_context(job, namespace, database_url, redis_url)
    run_ids = launch.request_verification(db, _dispatcher(settings), job_id, ns)
    if not run_ids:
        raise _fail(f"job {job_id} has no namespace that finished copying; see `nsmigrate status {job_id}`", 1)
    console.print(f"verification queued for {len(run_ids)} namespaces")
    if wait:
        raise typer.Exit(watch_job(db, job_id))


@app.command()
def cleanup(
    job: JobArg,
    namespace: NamespaceOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Delete the SOURCE namespaces of JOB that passed verification (and only those, only if the spec allows it and
    the source has not changed since). Every deletion and refusal is written to the audit log."""
    settings, db, job_id, ns = _job_context(job, namespace, database_url, redis_url)
    runs = jobs.runs_of(db, job_id, ns)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise _fail("cleanup deletes source data: pass --yes to confirm (or --dry-run to see what it would do)")
        typer.confirm(f"Delete up to {len(runs)} verified source namespaces of job {job_id}?", abort=True)
    from workers.cleaning import cleanup_run  # the CLI runs cleanup inline so the user sees each result
    from workers.context import WorkerContext

    ctx = WorkerContext(settings)
    refused = 0
    for r in runs:
        result = cleanup_run(ctx, r.id, dry_run=dry_run, actor=jobs.default_actor())
        refused += result["action"] == "refused"
        console.print(
            f"{display_namespace(r.source_namespace)}: {result['action']} "
            f"{result.get('count', '')} {result.get('reason', '')}"
        )
    raise typer.Exit(1 if refused else 0)


@app.command()
def sync(
    job: JobArg,
    namespace: NamespaceOpt = None,
    propagate_deletes: Annotated[
        bool,
        typer.Option(
            "--propagate-deletes",
            help="Also delete from the target the ids this job copied that the source no "
            "longer has (default: only report them).",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the copy and the verification after it.")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Copy what appeared or changed in the source since JOB copied it (writes during the migration), then verify
    again. Run it right before cutting over; ids deleted in the source are reported (see --propagate-deletes)."""
    settings, db, job_id, ns = _job_context(job, namespace, database_url, redis_url)
    runs = jobs.runs_of(db, job_id, ns)
    if not runs:
        raise _fail(f"job {job_id} has no namespace run {namespace!r}; see `nsmigrate status {job_id}`")
    from workers.context import WorkerContext  # the scan runs inline (like cleanup); the copies go to the fleet
    from workers.syncing import sync_run

    ctx = WorkerContext(settings)
    refused = 0
    for r in runs:
        result = sync_run(ctx, r.id, propagate_deletes=propagate_deletes, actor=jobs.default_actor())
        name = display_namespace(r.source_namespace)
        if result["action"] == "refused":
            refused += 1
            console.print(f"{escape(name)}: refused — {escape(result['reason'])}", soft_wrap=True)
            continue
        line = (
            f"{escape(name)}: {result['new']} new, {result['changed']} changed → {result['to_copy']} to copy in "
            f"{result['batches']} batches; {result['deleted_in_source']} deleted in source"
        )
        if propagate_deletes:
            line += f" ({result['deleted']} deleted from the target)"
        if result["unroutable"]:
            line += f"; {result['unroutable']} cannot be routed (e.g. {result['unroutable_examples'][0]['reason']})"
        console.print(line, soft_wrap=True)
    if wait and refused < len(runs):
        code = watch_job(db, job_id)
        raise typer.Exit(code or (1 if refused else 0))
    raise typer.Exit(1 if refused else 0)


@app.command()
def rollback(
    job: JobArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check the originals and say what would be restored and removed.")
    ] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Undo migrate JOB: restore its original namespaces from the targets where they are missing (after cleanup),
    verify every original against its migrated copy, and only then remove the namespaces JOB created. Refuses, with
    nothing deleted, when an original cannot be verified. Recorded as a job of kind `rollback`; safe to re-run."""
    settings = _settings(database_url, redis_url)
    db = _db(settings)
    job_id = _job_id(db, job)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise _fail(
                "rollback deletes the migrated namespaces: pass --yes to confirm (or --dry-run to see what it would do)"
            )
        typer.confirm(f"Roll back job {job_id} and delete the namespaces it created?", abort=True)
    from workers.context import WorkerContext  # runs inline, step by step, like cleanup
    from workers.rollback import rollback_job

    result = rollback_job(WorkerContext(settings), job_id, dry_run=dry_run, actor=jobs.default_actor())
    for r in result["runs"]:
        restored = f" ({r['restored']} restored)" if r["restored"] else ""
        console.print(f"{escape(display_namespace(r['namespace']))}: {escape(r['summary'])}{restored}", soft_wrap=True)
    for ns, d in result["namespaces"].items():
        kept = f", {d['kept']} ids of others kept" if d["kept"] else ""
        console.print(
            f"removed {escape(display_namespace(ns))}: {d['method']} ({d['deleted']} ids{kept})", soft_wrap=True
        )
    action = result["action"]
    if action in ("refused", "failed"):
        raise _fail(f"rollback of job {job_id} {action}: {result['reason']}", 1)
    where = f" (rollback job {result['rollback_job_id']})" if result["rollback_job_id"] else ""
    done = {
        "rolled_back": f"job {job_id} rolled back{where}",
        "already_rolled_back": f"job {job_id} was already rolled back{where}",
        "dry_run": f"dry run, nothing changed: a rollback of job {job_id} would restore the missing originals "
        "above, verify them all, then remove the namespaces the job created",
    }
    console.print(done[action], soft_wrap=True)


# ------------------------------------------------------------------------------------------------ backup / restore


def _backup_store(spec: Any) -> tuple[Any, Any]:
    """A store for export/import and the policy to pass with it: the store already retries (with the CLI's quick
    give-up on a host that does not answer), so the backup functions must not retry a second time around it."""
    from workers.retry import retrying

    return _open_store(spec), retrying(attempts=1)


def _backup_directory(base: str | Path, job_name: str) -> Path:
    """``<base>/<job name>-<UTC timestamp>``: a new directory per backup, sorted by time (relative to the cwd)."""
    from datetime import UTC, datetime

    return Path(base) / f"{job_name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _export_with_progress(store: Any, policy: Any, counts: dict[str, int], directory: Path) -> list[Any]:
    """Export the namespaces of ``counts`` (namespace → vectors expected) into ``directory``, a bar per namespace."""
    from workers.backup import export_namespaces

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        bars = {
            ns: progress.add_task(f"export {display_namespace(ns)[:40]}", total=max(n, 1)) for ns, n in counts.items()
        }

        def advance(ns: str, done: int) -> None:
            progress.update(bars[ns], completed=done, total=max(counts[ns], done, 1))

        results = export_namespaces(store, list(counts), directory, progress=advance, policy=policy)
    table = Table(title=f"exported {store.name} → {directory}")
    for col in ("namespace", "file", "vectors", "MB"):
        table.add_column(col, justify="right" if col in ("vectors", "MB") else "left")
    for r in results:
        table.add_row(display_namespace(r.namespace), r.path.name, str(r.count), f"{r.bytes / 1e6:.2f}")
    console.print(table)
    return results


def _backup_sources(prepared: launch.Prepared) -> dict[str, Any]:
    """The pre-migration backup of ``run`` (spec ``backup.enabled``): every planned source namespace exported to
    ``backup.directory/<job name>-<UTC timestamp>/``. Returns the audit event's detail. Exits 1 if it fails."""
    from workers.backup import MANIFEST_NAME, close_store

    spec = prepared.spec
    directory = _backup_directory(spec.backup.directory, spec.name)
    store, policy = _backup_store(spec.source)
    console.print(f"backup: exporting {len(prepared.plan.runs)} source namespaces to {directory}")
    try:
        results = _export_with_progress(
            store, policy, {r.source_namespace: r.vector_count for r in prepared.plan.runs}, directory
        )
    except (NsmigrateError, OSError) as e:
        raise _fail(
            f"the pre-migration backup failed, so the job was not started (nothing was enqueued): {e}", 1
        ) from e
    finally:
        close_store(store)
    manifest = (directory / MANIFEST_NAME).resolve()
    console.print(f"backup written: {manifest} (restore with `nsmigrate import {directory} SPEC --to-source`)")
    return {"manifest": str(manifest), "namespaces": len(results), "vectors": sum(r.count for r in results)}


@app.command("export")
def export_cmd(
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML): the store and the namespaces to export.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="A new (or empty) directory for the files. Default: <backup.directory>/<job name>-<UTC timestamp>.",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Only this namespace (repeatable; __default__ for the default). "
            "Default: the source namespaces the spec selects.",
            show_default=False,
        ),
    ] = None,
    from_target: Annotated[
        bool,
        typer.Option(
            "--from-target",
            help="Export the spec's target store (all its namespaces unless --namespace) instead of its source.",
        ),
    ] = False,
) -> None:
    """Export namespaces of SPEC's source store to Parquet (one file per namespace plus manifest.json): a backup to
    restore with `nsmigrate import`. Only reads from the store."""
    from orchestrator.planner import Inventory, select_namespaces
    from workers.backup import MANIFEST_NAME, close_store
    from workers.retry import call_with_retry

    job_spec = load_spec(spec)
    store, policy = _backup_store(job_spec.target if from_target else job_spec.source)
    try:
        available: dict[str, int] = call_with_retry(store.namespaces, policy=policy)
        if namespace:
            wanted = list(dict.fromkeys(parse_namespace_arg(n) for n in namespace))
            unknown = [display_namespace(n) for n in wanted if n not in available]
            if unknown:
                raise _fail(
                    f"{store.name} has no namespace(s) {unknown}; it has "
                    f"{[display_namespace(n) for n in sorted(available)]}"
                )
        elif from_target:
            wanted = sorted(available)
            if not wanted:
                raise _fail(f"{store.name} holds no namespace to export")
        else:
            wanted = select_namespaces(job_spec, Inventory(label=store.name, dimension=0, namespaces=available))
        directory = out if out is not None else _backup_directory(job_spec.backup.directory, job_spec.name)
        results = _export_with_progress(store, policy, {ns: available.get(ns, 0) for ns in wanted}, directory)
    except NsmigrateError as e:
        raise _fail(str(e)) from e
    finally:
        close_store(store)
    console.print(
        f"{sum(r.count for r in results)} vectors in {len(results)} files; manifest: {directory / MANIFEST_NAME}"
    )


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="An export directory (with manifest.json) or one exported file.")],
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML) naming the store to write to.")],
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Only the file of this exported namespace (repeatable; __default__ for the "
            "default). Default: every file.",
            show_default=False,
        ),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            help="Write into this namespace instead of the one recorded "
            "in the file (one file only; __default__ for the default).",
            show_default=False,
        ),
    ] = None,
    to_source: Annotated[
        bool,
        typer.Option(
            "--to-source/--to-target", help="Write into the spec's source store (restoring a backup) or its target."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Also write into namespaces that hold vectors: ids "
            "in the file replace stored ones, other vectors are kept.",
        ),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            max=100_000,
            help="Rows read from a file per step (upserts are split under 1,000 vectors and 2 MB).",
        ),
    ] = 500,
) -> None:
    """Upsert exported vectors into SPEC's target store (or its source, with --to-source). Every file is checked
    first (an intact nsmigrate export, the same dimension, an empty target namespace unless --overwrite): if any
    check fails, nothing is written."""
    from workers.backup import close_store, import_path

    job_spec = load_spec(spec)
    store, policy = _backup_store(job_spec.source if to_source else job_spec.target)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        bars: dict[str, Any] = {}

        def start(header: Any, target: str) -> None:
            bars[target] = progress.add_task(f"import {display_namespace(target)[:40]}", total=max(header.count, 1))

        def advance(target: str, done: int) -> None:
            progress.update(bars[target], completed=done)

        try:
            results = import_path(
                store,
                path,
                namespaces=[parse_namespace_arg(n) for n in namespace or []] or None,
                into=parse_namespace_arg(into) if into is not None else None,
                overwrite=overwrite,
                batch_size=batch_size,
                progress=advance,
                policy=policy,
                on_start=start,
            )
        except NsmigrateError as e:
            raise _fail(str(e)) from e
        finally:
            close_store(store)
    table = Table(title=f"imported into {store.name}")
    for col in ("file", "namespace", "vectors"):
        table.add_column(col, justify="right" if col == "vectors" else "left")
    for r in results:
        table.add_row(r.path.name, display_namespace(r.namespace), str(r.count))
    console.print(table)
    console.print(f"{sum(r.count for r in results)} vectors imported from {len(results)} files")


# ------------------------------------------------------------------------------------------------ processes


@app.command()
def erase(
    creator_id: Annotated[str, typer.Argument(help="The creator whose data goes, e.g. sainath.no.1.")],
    spec: Annotated[
        Path, typer.Option("--spec", help="A job spec naming the store (its target, or its source with --source).")
    ],
    source: Annotated[bool, typer.Option("--source", help="Erase in the spec's source store instead.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Erase every namespace of CREATOR_ID (its twin namespaces and creator-wide namespace, matched by parsing the
    names, so `a.1` never touches `a.10`). Each deletion is written to the audit log."""
    from workers.erasing import erase_creator, plan_erase

    job_spec = load_spec(spec)
    store_spec = job_spec.source if source else job_spec.target
    store = _open_store(store_spec)
    erase_plan = plan_erase(store, creator_id)
    if not erase_plan.namespaces:
        console.print(f"creator {creator_id!r} has no namespaces in {store.name}; nothing to erase")
        raise typer.Exit(0)
    table = Table("namespace", "vectors", title=f"creator {creator_id!r} in {store.name}")
    for ns, count in erase_plan.namespaces.items():
        table.add_row(ns, str(count))
    console.print(table)
    if dry_run:
        console.print("dry run: nothing deleted")
        raise typer.Exit(0)
    if not yes:
        if not sys.stdin.isatty():
            raise _fail("erase deletes data for good: pass --yes to confirm (or --dry-run to see what it would do)")
        typer.confirm(f"Delete these {len(erase_plan.namespaces)} namespaces for good?", abort=True)
    db = _db(_settings(database_url, None))
    result = erase_creator(db, store, erase_plan, job_spec.model_dump(mode="json"), actor=jobs.default_actor())
    console.print(
        f"erased {len(result['erased'])} namespaces ({result['vectors']} vectors) of creator "
        f"{creator_id!r}; audit log: `nsmigrate events {result['job_id']}`"
    )
    if result["not_empty"]:
        raise _fail(f"still not empty after the deletions: {result['not_empty']}; run erase again", 1)


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated: list,copy,verify,cleanup.")
    ] = "list,copy,verify,cleanup",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Tasks at once in this worker.")] = 8,
    pool: Annotated[
        str,
        typer.Option(
            help="prefork (default: one process per task slot, so a crash in a native library costs one task, which "
            "is redelivered at once) or threads (one process: far less CPU per task for the I/O-bound list and copy "
            "queues, measured in bench/; run one copy worker per core; a crash takes the whole worker down and its "
            "tasks wait out the visibility timeout)."
        ),
    ] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Worker node name (default nsmigrate-<queues>@host).")] = None,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Run a worker consuming the given queues (one pool per queue in production)."""
    from orchestrator.names import Queue
    from workers.app import configure
    from workers.context import TASK_SLOTS_ENV

    settings = _settings(database_url, redis_url)
    unknown = [q for q in queues.split(",") if q not in {x.value for x in Queue}]
    if unknown:
        raise _fail(f"unknown queue(s) {unknown}: choose from {[q.value for q in Queue]}")
    if pool not in WORKER_POOLS:
        raise _fail(f"unknown --pool {pool!r}: choose prefork or threads")
    # Workers read their settings from the environment in each process: hand the resolved ones down.
    os.environ["NSMIGRATE_DATABASE_URL"] = settings.database_url
    os.environ["NSMIGRATE_REDIS_URL"] = settings.redis_url
    os.environ[TASK_SLOTS_ENV] = str(concurrency if pool == "threads" else 1)
    _db(settings).dispose()  # create/upgrade the schema once, before any task runs (clear error if unreachable)
    celery_app = configure(settings)
    name = hostname or f"nsmigrate-{queues.replace(',', '-')}@%h"
    celery_app.worker_main(
        [
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-l",
            loglevel,
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
        ]
    )


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port to serve Flower on.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind (keep it local or behind a proxy).")] = "127.0.0.1",
    redis_url: RedisOpt = None,
) -> None:
    """Run Flower (task monitor) with basic auth: user $NSMIGRATE_FLOWER_USER (admin), password from the env var
    named by NSMIGRATE_FLOWER_PASSWORD_ENV (default NSMIGRATE_FLOWER_PASSWORD)."""
    from workers.app import configure

    settings = _settings(None, redis_url)
    password = os.environ.get(settings.flower_password_env)
    if not password:
        raise _fail(f"Flower needs a password: set {settings.flower_password_env} (basic auth is always on)")
    # Flower reads basic auth from its env var, which keeps the password off the command line (ps, /proc).
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower_user}:{password}"
    celery_app = configure(settings)
    celery_app.start(["flower", f"--port={port}", f"--address={address}", "--persistent=False"])


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the sandbox, workers and Flower running until Ctrl-C.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Copy worker concurrency (prefork processes).")] = 8,
) -> None:
    """Run the seeds' creator-namespace job end to end on embedded services (no accounts, no Docker): a local
    Pinecone data plane with the seed-shaped data set, Redis, Postgres, a worker pool and Flower."""
    from sandbox.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, copy_concurrency=workers, console=console))


if __name__ == "__main__":
    main()

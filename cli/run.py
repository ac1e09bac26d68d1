"""From a spec to a running job: ``plan`` (a dry run) and ``run``.

Both hand the spec to the fleet's planner when one is up (``cli.submit``): the job then exists a fraction of a second
after the command starts. Otherwise, or when the spec needs this command (a backup first, a target index to create,
files to read), they plan here, which first loads the planner, the job table and the store SDKs; those imports live
in the functions that need them, so the fleet's path never pays for them. Either way the same functions plan
(``launch.prepare``) and start or resume the job (``launch.start_or_resume``); this command only adds what the fleet
cannot do for it (``before_the_job``).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import orjson
import typer

from nsmigrate.cli import submit, waits
from nsmigrate.cli.console import console, human_output_on_stderr, print_error, print_json
from nsmigrate.cli.options import (
    DatabaseOpt,
    RedisOpt,
    db,
    fail,
    fleet_urls,
    read_job_json,
    settings,
    status_reader,
)
from nsmigrate.cli.render import print_plan, watch_job, watch_until_settled, woken_by
from nsmigrate.orchestrator.planning.summary import PlanSummary, summarize
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.redaction import redact_url

if TYPE_CHECKING:  # the spec's models (pydantic, every store's spec): loaded only where a command plans
    from nsmigrate.orchestrator.planning.prepared import Prepared

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (keys: the manual's JSON output); what is drawn for a person goes to "
        "stderr. Errors stay one line on stderr, with the same exit codes.",
    ),
]

app = typer.Typer(add_completion=False)


def before_the_job(prepared: Prepared, database_url: str) -> list[tuple[str, dict[str, Any]]]:
    """What only the command does between the plan and the job (``launch.BeforeWrite``): the backup the spec asks
    for first (if it fails, no job is written and nothing is enqueued), then the target index the plan creates,
    waited for until it is ready. Returns the audit events that record them."""
    events: list[tuple[str, dict[str, Any]]] = []
    backup = None
    if prepared.spec.backup.enabled:
        from nsmigrate.cli.backup import backup_sources  # pyarrow and the export machinery only for a backup

        backup = backup_sources(prepared, database_url)
    created = make_target_index(prepared)
    if created is not None:
        events.append(("target_index_created", created))
    if backup is not None:
        events.append(("backup_written", backup))
    return events


def make_target_index(prepared: Prepared) -> dict[str, Any] | None:
    """Create the target index the plan asks for and wait until it is ready, printing progress; returns what the
    audit log records, or None when no index was created (none asked, or one Pinecone makes in the job's steps:
    strategy collection or convert)."""
    from nsmigrate.cli.fleet import open_control
    from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, command_creates_target, ensure_target_index
    from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec

    target = prepared.target_index
    if target is None or not command_creates_target(prepared.spec):
        return None
    spec = prepared.spec.target
    assert isinstance(spec, PineconeStoreSpec) and spec.create is not None  # plan_target_index made sure
    verb = "creating" if target.action == "create" else "waiting for"
    console.print(f"{verb} target index {target.name}: {target.shape.describe()}")

    def progress(elapsed_s: float, info: IndexInfo) -> None:
        console.print(f"  target index {target.name}: {info.state or 'not ready'} after {elapsed_s:.0f} s")

    info, waited_s = ensure_target_index(
        open_control(spec), target, timeout_s=spec.create.ready_timeout_s, on_wait=progress
    )
    console.print(f"target index {target.name} is ready ({waited_s:.1f} s)")
    if target.action != "create":
        return None
    host = redact_url(info.host) if info.host else info.host  # the control plane's answer, kept in the audit log
    return {"index": target.name, "host": host, "shape": target.shape.as_json(), "waited_s": round(waited_s, 2)}


PlanHereOpt = Annotated[
    bool,
    typer.Option(
        "--plan-here",
        help="Plan in this command even when the fleet's planner is up (by default a running fleet plans the spec, "
        "with its own environment and settings, and the command starts in a fraction of the time).",
    ),
]


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    plan_here: PlanHereOpt = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Dry run: validate SPEC, read the source inventory and show what would be migrated. Writes nothing.

    Keys: a Pinecone store's api_key_env must be a variable NSMIGRATE_ALLOWED_KEY_VARS allows (default
    PINECONE_API_KEY, PINECONE_API_KEY_*, *_PINECONE_API_KEY, *_PINECONE_KEY), and a key is sent only over https or
    to a loopback host; anything else is refused before a key is read (exit 2)."""
    with human_output_on_stderr(as_json):
        summary = _plan(spec, plan_here, database_url, redis_url)
    if as_json:
        print_json(summary.document())
    else:
        print_plan(summary)


def _plan(spec: Path, plan_here: bool, database_url: str | None, redis_url: str | None) -> PlanSummary:
    """`plan`: the fleet's planner's answer, or the plan made here."""
    answer = None if plan_here else submit.to_fleet(fleet_urls(database_url, redis_url), spec, "plan")
    if answer is not None:
        _fail_on_error(answer)
        return PlanSummary.from_json(answer["plan"])
    from nsmigrate.cli.fleet import open_control, open_store
    from nsmigrate.orchestrator import launch
    from nsmigrate.orchestrator.spec.jobspec import load_spec

    job_spec = load_spec(spec)
    resolved = settings(database_url, redis_url)
    prepared = launch.prepare(job_spec, open_store, spec.parent, open_control, settings=resolved)
    prepared.plan.warnings.extend(_crossings(resolved.database_url, prepared))
    return summarize(prepared)


def _crossings(url: str, prepared: Any) -> list[str]:
    """``crossing_jobs.crossings_of`` for a dry run: a job table that cannot be read is a warning, and one not made yet
    holds no other job; a target namespace another unfinished job writes into is refused, as `run` refuses it."""
    import sqlalchemy as sa

    from nsmigrate.orchestrator.errors import PlanError
    from nsmigrate.orchestrator.jobs import crossing_jobs
    from nsmigrate.orchestrator.jobs import database as jobs_database
    from nsmigrate.orchestrator.redaction import redact_url

    try:
        database = jobs_database.Database(url, create=False)
        try:
            if not sa.inspect(database.engine).has_table("jobs"):
                return []
            return crossing_jobs.crossings_of(database, prepared.spec, prepared.plan, resumed_by_run=True)
        finally:
            database.dispose()
    except PlanError:
        raise  # a target namespace another unfinished job writes into: `run` would refuse the plan
    except Exception as e:  # unreachable, refused, a bad URL: the plan itself is still good
        return [
            f"namespaces shared with other jobs were not looked for: the job table at {redact_url(url)} could not "
            f"be read ({type(e).__name__})"
        ]


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Show live progress until the job settles: every namespace copied (and verified when the spec "
            "verifies by itself), cancelled, or left with failed batches; exit code 0 only when all passed. Ctrl-C "
            "stops the watching, not the job.",
        ),
    ] = False,
    new: Annotated[
        bool,
        typer.Option(
            "--new",
            help="Start a new job even if an unfinished one of this name exists (default: resume it). That job goes "
            "on unless you `nsmigrate cancel` it.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Resume the unfinished job of this name with the spec it was started with, even when SPEC differs "
            "from it (default: a different SPEC is refused, exit 2, with each difference shown). Starts nothing when "
            "there is no unfinished job of this name.",
        ),
    ] = False,
    plan_here: PlanHereOpt = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Plan SPEC, write the job table and enqueue the work; prints the job id. An unfinished job of the same name is
    resumed instead, with the spec it was started with (see --resume). With `backup.enabled` in the spec, the planned
    source namespaces are exported to Parquet first, and a failed backup starts nothing. A running fleet's planner
    does the planning when it can (see --plan-here).

    A SPEC that differs from the one its unfinished job was started with (an edited file) is refused: nothing is done
    and each difference is shown (exit 2). Run again with --resume to go on with the stored spec, or with --new to
    start another job with SPEC.

    Keys are checked as `plan` checks them (see `nsmigrate plan --help`), here and again by the fleet's planner and
    workers under their own NSMIGRATE_ALLOWED_KEY_VARS."""
    if new and resume:
        raise fail(
            "--new and --resume exclude each other: --new starts another job, --resume goes on with the "
            "unfinished one; nothing was changed"
        )
    with human_output_on_stderr(as_json):
        launched = _launch(spec, plan_here, database_url, redis_url, wait=wait, new=new, resume=resume)
        if not as_json:
            print(launched.job_id)
        code = launched.watch() if wait else 0
    if as_json:
        document = launched.document
        if wait:
            status = orjson.loads(read_job_json(launched.database_url, str(launched.job_id)))
            document["result"] = {"exit_code": code, "status": status}
        print_json(document)
    if code:
        raise typer.Exit(code)


class Launched(NamedTuple):
    """A job `run` started or resumed: its id, `run --json`'s document, and its wait (``--wait``: returns the exit
    code)."""

    job_id: int
    database_url: str
    document: dict[str, Any]
    watch: Callable[[], int]


def _launch(
    spec: Path, plan_here: bool, database_url: str | None, redis_url: str | None, *, wait: bool, new: bool, resume: bool
) -> Launched:
    """`run`'s job, planned by the fleet's planner when it can, else here."""
    if plan_here:
        return _run_here(settings(database_url, redis_url), spec, new=new, resume=resume)
    urls = fleet_urls(database_url, redis_url)
    if wait:
        _load_job_table_reader()  # while the fleet plans: after, it would take CPU from the job's first tasks
    answer = submit.to_fleet(urls, spec, "run", new=new, resume=resume)
    if answer is None:
        return _run_here(settings(database_url, redis_url), spec, new=new, resume=resume)
    _fail_on_error(answer)
    job_id = int(answer["job_id"])
    document: dict[str, Any] = {"job_id": job_id, "outcome": answer["outcome"], "planned_by": "fleet"}
    if answer["outcome"] == "resumed":
        counts = answer["counts"]
        console.print(
            f"job {job_id} was unfinished: resumed ({counts['listers']} listers, {counts['batches']} batches re-queued)"
        )
        document.update(plan=None, refused={}, requeued=dict(counts))
    else:
        summary = PlanSummary.from_json(answer["plan"])
        print_plan(summary, more_hint=f"`nsmigrate status {job_id} --all` lists every one")
        print_refused(answer.get("refused", {}))
        console.print(f"job {job_id} started (planned by the fleet)")
        document.update(plan=summary.document(), refused=dict(answer.get("refused", {})), requeued=None)

    def watch() -> int:
        until = waits.Settled(auto_verify=bool(answer["auto_verify"]))
        with status_reader(urls.database_url, job_id) as read, woken_by(urls.redis_url, job_id) as wakes:
            return watch_job(read, job_id, until, wakes=wakes)

    return Launched(job_id, urls.database_url, document, watch)


def _run_here(resolved: Any, spec: Path, *, new: bool, resume: bool) -> Launched:
    """`run`, planned in this command."""
    from nsmigrate.cli.fleet import dispatcher, open_control, open_store
    from nsmigrate.orchestrator import launch
    from nsmigrate.orchestrator.spec.jobspec import load_spec

    job_spec = load_spec(spec)
    marks = {"spec_parsed": time.time()}
    database = db(resolved)
    shown: list[PlanSummary] = []

    def show_plan_first(prepared: Prepared) -> list[tuple[str, dict[str, Any]]]:
        shown.append(summarize(prepared))
        print_plan(shown[-1], more_hint=f"`nsmigrate plan {spec}` lists every one")
        return before_the_job(prepared, resolved.database_url)

    started = launch.start_or_resume(
        database,
        dispatcher(resolved),
        job_spec,
        open_store,
        spec.parent,
        open_control,
        new=new,
        resume=resume,
        before_write=show_plan_first,
        marks=marks,
        settings=resolved,
    )
    job_id = started.job_id
    document: dict[str, Any] = {"job_id": job_id, "planned_by": "command"}
    if started.resumed is not None:
        counts = started.resumed
        console.print(
            f"job {job_id} ({job_spec.name}) was unfinished: resumed "
            f"({counts['listers']} listers, {counts['batches']} batches re-queued)"
        )
        document.update(outcome="resumed", plan=None, refused={}, requeued=dict(counts))
    else:
        print_refused(started.refused)
        console.print(f"job {job_id} started")
        plan_document = shown[-1].document() if shown else None
        document.update(outcome="started", plan=plan_document, refused=dict(started.refused), requeued=None)

    def watch() -> int:
        return watch_until_settled(database, job_id, resolved.redis_url)

    return Launched(job_id, resolved.database_url, document, watch)


def print_refused(refused: dict[str, str]) -> None:
    """The namespaces the job refused after their own checks: the others copy, nothing reaches these' targets."""
    for namespace, why in sorted(refused.items()):
        print_error(f"namespace {display_namespace(namespace)!r} refused, nothing of it is copied: {why}")


def _load_job_table_reader() -> None:
    """Load what the command reads its job with (``cli.options.status_reader``): libpq, else psycopg in a thread (a
    tenth of a CPU-second: the command only waits for the fleet's answer meanwhile)."""
    from nsmigrate.cli import libpq

    if libpq.library() is None:
        threading.Thread(target=importlib.import_module, args=("psycopg",), name="import-psycopg", daemon=True).start()


def _fail_on_error(answer: dict[str, Any]) -> None:
    """The planner refused the spec or failed: its message, and the exit code a command planning here would give."""
    if answer.get("outcome") == "error":
        print_error(str(answer.get("message", "the fleet's planner failed")))
        raise typer.Exit(int(answer.get("exit_code", 1)))

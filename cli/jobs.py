"""Reading the job table: ``status``, ``report``, ``jobs``, ``events``, ``watch``. Loads no broker and no store."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table

from nsmigrate.cli.console import console, print_json
from nsmigrate.cli.options import (
    DatabaseOpt,
    JobArg,
    NamespaceOpt,
    db,
    fail,
    find_job_id,
    job_table_url,
    read_cutover,
    read_job_json,
    read_job_status,
    read_job_summary,
    read_jobs,
    settings,
)
from nsmigrate.cli.render import SUMMARY_ROWS, print_summary
from nsmigrate.orchestrator.records.namespaces import display_namespace, parse_namespace_arg, shown_namespaces
from nsmigrate.orchestrator.states import PASSED_RUN_STATES

app = typer.Typer(add_completion=False)


@app.command()
def status(
    job: JobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (every namespace).")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"A row for every namespace, not only the first {SUMMARY_ROWS} to look at.")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Show a job's state, per-namespace progress, failed batches and verification results.

    A job of many namespaces shows how many are in each state and the namespaces to look at first (failed, then
    unfinished)."""
    url = job_table_url(database_url)
    if as_json:
        document, view = read_job_json(url, job), read_cutover(url, job)
        if view.rollout.under_way:  # only then: a large job's document is written as read, never parsed
            cutover = {
                **view.rollout.as_dict(),
                "reads": {**view.reads[0], "at": view.reads[1]} if view.reads else None,
                "breach": {**view.breach[0], "at": view.breach[1]} if view.breach else None,
            }
            document = orjson.dumps(
                {**orjson.loads(document), "cutover": cutover},
                option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
            )
        sys.stdout.buffer.write(document)
        return
    # A large job's summary is aggregated by the database (``SUMMARY_SQL``): only --all reads every run.
    summary = read_job_status(url, job).summary() if show_all else read_job_summary(url, job, SUMMARY_ROWS)
    print_summary(summary)
    for p in summary.places:
        where = p.path or f"{p.store}/{display_namespace(p.namespace or '')}"
        console.print(
            f"  {p.kind:9} {where}: {p.state}, {p.erased} erased of {p.planned} found"
            + (f" — {p.error}" if p.error else "")
        )
    view = read_cutover(url, summary.job_id)
    rollout = view.rollout
    if rollout.under_way:
        since = f", 100 % since {rollout.full_since:%Y-%m-%d %H:%M:%S %Z}" if rollout.full_since else ""
        console.print(f"cut-over: reads {rollout.percent} % new{since} (`nsmigrate cutover set`)")
        from nsmigrate.orchestrator.cutover.breach import breach_line, window_lines

        lines = window_lines(*view.reads) if view.reads else []
        lines += [breach_line(*view.breach)] if view.breach else []
        for line in lines:
            console.print(f"  {line}", markup=False, soft_wrap=True)


@app.command()
def report(job: JobArg, namespace: NamespaceOpt = None, database_url: DatabaseOpt = None) -> None:
    """Print the full verification (and cleanup) reports of JOB's namespaces as JSON: counts, missing and extra ids,
    content mismatches, query equivalence and latency. Exit code 0 when every reported namespace passed and is still
    verified (or cleaned): a report of a namespace copied or being verified again since is an earlier one."""
    from nsmigrate.orchestrator.jobs import jobs_and_runs

    database = db(settings(database_url, None))
    ns = parse_namespace_arg(namespace) if namespace is not None else None
    job_id = find_job_id(database, job)
    runs = jobs_and_runs.runs_of(database, job_id, ns)
    if ns is not None and not runs:
        have = [display_namespace(r.source_namespace) for r in jobs_and_runs.runs_of(database, job_id)]
        raise fail(
            f"job {job_id} has no namespace {namespace!r}; it has {len(have)}: {shown_namespaces(have) or '(none)'} "
            f"— give one of those (`nsmigrate status {job_id}` lists them)"
        )
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
    # A passed report of a run copied or verified again since is an earlier one: it passes nothing now.
    passed = all(r.state in PASSED_RUN_STATES and (r.verification or {}).get("passed") for r in runs)
    raise typer.Exit(0 if reports and passed else 1)


@app.command("jobs")
def list_jobs(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON array, newest first: job_id, name, kind, state, created_at.")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """List the jobs in the job table."""
    jobs = read_jobs(job_table_url(database_url), limit)
    if as_json:
        print_json(jobs)
        return
    table = Table("id", "name", "kind", "state", "created")
    for j in jobs:
        table.add_row(str(j["job_id"]), j["name"], j["kind"], j["state"], j["created_at"][:19])
    console.print(table)


@app.command()
def events(
    job: JobArg,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="A JSON document: job_id and its events, oldest first (at, actor, action, run_id, detail)."
        ),
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Show a job's audit log (who did what, when)."""
    from nsmigrate.orchestrator.jobs import status as jobs_status

    database = db(settings(database_url, None))
    job_id = find_job_id(database, job)
    logged = jobs_status.events_of(database, job_id)
    if as_json:
        print_json({"job_id": job_id, "events": logged})
        return
    for e in logged:
        console.print(f"{e['at'][:19]}  {e['actor']:<28} {e['action']:<18} {json.dumps(e['detail'], default=str)}")


@app.command("watch")
def watch(job: JobArg, database_url: DatabaseOpt = None) -> None:
    """Live progress of a running job (like `run --wait`)."""
    from nsmigrate.cli.render import watch_until_settled

    resolved = settings(database_url, None)
    database = db(resolved)
    job_id = find_job_id(database, job)
    raise typer.Exit(watch_until_settled(database, job_id, resolved.redis_url))

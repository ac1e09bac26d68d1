"""Acting on a job: ``retry``, ``resume``, ``cancel``, ``verify``, ``cleanup``, ``sync``, ``rollback``.

Cleanup, sync's scan and rollback run inline (the user sees each result); re-queued work goes to the fleet.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from nsmigrate.cli import waits
from nsmigrate.cli.console import EXIT_INTERRUPTED, console, ctrl_c_asks_to_stop, print_interrupted
from nsmigrate.cli.fleet import dispatcher, worker_context
from nsmigrate.cli.options import (
    DatabaseOpt,
    JobArg,
    NamespaceOpt,
    RedisOpt,
    db,
    fail,
    find_job_id,
    job_context,
    settings,
)
from nsmigrate.cli.render import job_reader, watch_job, watch_until_settled, woken_by
from nsmigrate.orchestrator import launch, recovery
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.errors import NsmigrateError, StateError
from nsmigrate.orchestrator.jobs import collection as jobs_collection
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.records.namespaces import display_namespace, shown_namespaces
from nsmigrate.orchestrator.states import ImportPhase, RunState, phase_name
from nsmigrate.workers.steps.bulk_import import cancel_import
from nsmigrate.workers.steps.cleaning import CLEANED_ALREADY, UNDER_WAY, cleanup_run
from nsmigrate.workers.steps.late_namespaces import late_namespaces, late_namespaces_problem
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.steps.syncing import sync_runs

if TYPE_CHECKING:
    from nsmigrate.orchestrator.planning.prepared import Prepared

app = typer.Typer(add_completion=False)

#: Namespaces named when several are refused for one reason (the rest are counted).
REFUSED_NAMES_SHOWN = 5


WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Then watch the job until it settles, as `watch` does: every namespace copied (and verified when the "
        "spec verifies by itself), cancelled, or left with failed batches. Ctrl-C stops the watching, not the job.",
    ),
]


@app.command()
def retry(
    job: JobArg,
    namespace: NamespaceOpt = None,
    wait: WaitOpt = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Re-enqueue the failed batches and failed listers of JOB (only those), e.g. once a fault is gone.

    Prints each namespace with the batches (ids) and the lister it re-queued, and records a `retry` event (see
    `events`). --wait: then watch the job until it settles. A job that was cancelled or rolled back is refused
    (exit 1): start a new job with `nsmigrate run SPEC`."""
    resolved, database, job_id, ns = job_context(job, namespace, database_url, redis_url)
    if ns is not None and not jobs_and_runs.runs_of(database, job_id, ns):
        have = [display_namespace(r.source_namespace) for r in jobs_and_runs.runs_of(database, job_id)]
        raise fail(
            f"job {job_id} has no namespace {namespace!r}; it has {len(have)}: {shown_namespaces(have) or '(none)'} "
            f"— give one of those (`nsmigrate status {job_id}` lists them); nothing was re-queued"
        )
    fleet = dispatcher(resolved)
    listers = launch.retry_failed_listers(database, fleet, job_id, ns)
    batches = launch.retry_failed(database, fleet, job_id, ns)
    n = sum(len(ids) for ids in batches.values())
    console.print(f"{n} failed batches and {len(listers)} failed listers re-queued for job {job_id}")
    for name in sorted(set(batches) | set(listers)):
        ids = batches.get(name, [])
        what = [f"{len(ids)} batches ({', '.join(map(str, ids))})"] if ids else []
        what += ["its lister"] if name in listers else []
        console.print(f"  {escape(name)}: {' and '.join(what)}")
    if wait:
        raise typer.Exit(watch_until_settled(database, job_id, resolved.redis_url))


@app.command()
def resume(
    job: JobArg,
    wait: WaitOpt = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Re-enqueue all unfinished work of JOB (after workers, Redis or the orchestrator died). Safe to repeat.

    Namespaces whose own checks are still under way are left to the process checking them (its `nsmigrate run`, or
    a worker's planner), which sends each as its check passes; once that process is gone they are refused (cancelled,
    with the reason): copy them with a new job (`nsmigrate run SPEC --new`).

    A job that was cancelled or rolled back is refused (exit 1): start a new job with `nsmigrate run SPEC`."""
    resolved = settings(database_url, redis_url)
    database = db(resolved)
    job_id = find_job_id(database, job)
    counts = recovery.resume(database, dispatcher(resolved), job_id)
    cleanups = f", {counts['cleanups']} cleanups (cleanup.mode: auto)" if counts.get("cleanups") else ""
    console.print(
        f"job {job_id}: re-queued {counts['listers']} listers, {counts['batches']} batches, "
        f"{counts['verifications']} verifications{cleanups}"
    )
    if counts.get("checking"):
        console.print(
            f"  {counts['checking']} namespaces are still being checked by the process planning the job: it sends "
            "each as its check passes (resume again once that process is gone; a process planning another job of "
            "the same name holds the same lock)"
        )
    if counts.get("refused"):
        console.print(
            f"  {counts['refused']} namespaces refused: the process planning the job stopped before their own checks "
            f"ended; copy them with a new job (`nsmigrate run SPEC --new`; `nsmigrate events {job_id}` names them)"
        )
    if wait:
        raise typer.Exit(watch_until_settled(database, job_id, resolved.redis_url))


@app.command()
def cancel(job: JobArg, database_url: DatabaseOpt = None, redis_url: RedisOpt = None) -> None:
    """Cancel JOB: queued batches are skipped by the workers, a cleanup under way stops before its next chunk;
    nothing is deleted.

    A `strategy: import` job's import at Pinecone is cancelled too, and the command waits until Pinecone says it
    ended. A `convert` job converting, or a `collection` job restoring its index, is refused (exit 1): nothing
    stops Pinecone there, and its copy would land after the job says cancelled; cancel once `status` shows it ended.

    For good: a cancelled job is never retried, resumed, synced or cleaned up (start a new one with `nsmigrate run
    SPEC`)."""
    resolved = settings(database_url, redis_url)
    database = db(resolved)
    job_id = find_job_id(database, job)
    try:
        n = jobs_and_runs.cancel_job(database, job_id)
    except StateError as e:
        raise fail(f"{e.message} — {e.hint}", 1) from e
    console.print(f"job {job_id} cancelled ({n} namespace runs stopped)")
    if phase_name(jobs_collection.job_phase(database, job_id)) != ImportPhase.IMPORTING:
        return
    try:
        ended = cancel_import(worker_context(resolved), job_id)
    except NsmigrateError as e:
        raise fail(f"job {job_id} is cancelled, but its import at Pinecone may still write: {e}", 1) from e
    if ended is not None:
        console.print(f"Pinecone's import of job {job_id} ended: {ended}")


@app.command()
def verify(
    job: JobArg,
    namespace: NamespaceOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the reports.")] = True,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """(Re-)verify the copied namespaces of JOB: counts, id sets, contents. Exit code 0 = all passed."""
    resolved, database, job_id, ns = job_context(job, namespace, database_url, redis_url)
    before = waits.Verdicts.snapshot(database, job_id, ns)  # before the request: a fast worker may answer at once
    run_ids = launch.request_verification(database, dispatcher(resolved), job_id, ns, settings=resolved)
    if not run_ids:
        raise fail(f"job {job_id} has no namespace that finished copying; see `nsmigrate status {job_id}`", 1)
    console.print(f"verification queued for {len(run_ids)} namespaces")
    if wait:
        with woken_by(resolved.redis_url, job_id) as wakes:
            code = watch_job(
                job_reader(database, job_id), job_id, waits.Verdicts(database, job_id, before, run_ids), wakes=wakes
            )
        raise typer.Exit(code)


@app.command()
def cleanup(
    job: JobArg,
    namespace: NamespaceOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be deleted (each namespace proved, nothing deleted).")
    ] = False,
    decommission_now: Annotated[
        bool,
        typer.Option(
            "--decommission-now",
            help="A job under cut-over: skip only the wait of cutover.decommission_after_s once reads are 100 % new. "
            "Reads must still be 100 % new (`cutover set --reads new --percent 100`), and each namespace synced "
            "after the cut-over began and after its last failed dual write.",
        ),
    ] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Delete the SOURCE namespaces of JOB that passed verification (and only those, only if the spec allows it and
    the source has not changed since). Every deletion and refusal is written to the audit log.

    Only ids whose copy in the target exists and equals them at the moment of deletion are deleted (both sides
    fetched again); ids without one are refused by name, nothing is deleted, and the namespace is left for
    `nsmigrate sync`.

    A job under cut-over (`nsmigrate cutover set`) keeps its sources until reads have been 100 % new for the spec's
    cutover.decommission_after_s (7 days), and each namespace until it was synced after the cut-over began and
    after its last failed dual write.

    A job that was cancelled or rolled back is refused (exit 1), whatever its namespaces' verdicts: nothing is
    deleted for it, by this command, by `cleanup.mode: auto` or by a cleanup task queued before the cancel."""
    resolved, database, job_id, ns = job_context(job, namespace, database_url, redis_url)
    jobs_and_runs.refuse_stopped(database, job_id, "cleanup")  # each namespace's cleanup asks again before it deletes
    runs = jobs_and_runs.runs_of(database, job_id, ns)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise fail("cleanup deletes source data: pass --yes to confirm (or --dry-run to see what it would do)")
        typer.confirm(f"Delete up to {len(runs)} verified source namespaces of job {job_id}?", abort=True)
    ctx = worker_context(resolved)
    not_done = 0  # refused, or failed part-way (a store error): either way the source is not all gone
    said: dict[str, list[str]] = {}  # a refusal's reason → the namespaces refused for it after the first
    with ctrl_c_asks_to_stop() as stop_asked:
        for r in runs:
            if stop_asked():
                break  # Ctrl-C: the namespace under way stopped between two chunks; the next ones do not start
            if r.state == RunState.CLEANING and not dry_run:
                wait_s = resolved.cleanup_lock_ttl_s
                console.print(
                    escape(
                        f"{display_namespace(r.source_namespace)}: a cleanup of it is under way, or its worker died: "
                        f"waiting up to {wait_s:g} s for its lock (NSMIGRATE_CLEANUP_LOCK_TTL_S) to take it up"
                    ),
                    soft_wrap=True,
                )
            result = cleanup_run(
                ctx,
                r.id,
                dry_run=dry_run,
                actor=default_actor(),
                decommission_now=decommission_now,
                stop=stop_asked,
            )
            not_done += result["action"] in ("refused", "failed", "stopped", UNDER_WAY)
            name = display_namespace(r.source_namespace)
            if result["action"] == "refused":
                if result["reason"] in said:  # a reason the whole job shares (the cut-over's): said once
                    said[result["reason"]].append(name)
                    continue
                said[result["reason"]] = []
            console.print(escape(f"{name}: {cleanup_outcome(result)}"), soft_wrap=True)
    for names in said.values():
        if names:
            shown = ", ".join(names[:REFUSED_NAMES_SHOWN]) + (", …" if len(names) > REFUSED_NAMES_SHOWN else "")
            console.print(escape(f"{len(names)} more refused for the same reason: {shown}"), soft_wrap=True)
    if stop_asked():
        print_interrupted(
            f"stopped the cleanup of job {job_id} between two chunks: every id it deleted is recorded and each "
            f"namespace is back to its verdict — `nsmigrate cleanup {job_id} --yes` takes it up again"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(1 if not_done else 0)


def cleanup_outcome(result: dict[str, Any]) -> str:
    """One namespace's cleanup in words (``workers.steps.cleaning.cleanup_run``'s result): what happened, and why
    not."""
    action, count, reason = result["action"], result["count"], result.get("reason")
    if action == "deleted":
        return f"deleted {count}"
    if action == CLEANED_ALREADY:
        return "cleaned already"
    if action == "would_delete":
        return f"would delete {count} (dry run)"
    if action in ("failed", "stopped") and count:
        return f"{action} after deleting {count} — {reason}"  # a refusal's reason says what it deleted itself
    return f"{action.replace('_', ' ')} — {reason}"


@app.command()
def sync(
    job: JobArg,
    namespace: NamespaceOpt = None,
    propagate_deletes: Annotated[
        bool,
        typer.Option(
            "--propagate-deletes",
            help="Also delete from the target the ids this job copied that the source no longer has, each checked "
            "absent from the source right before its delete (default: only report them). Needs --yes.",
        ),
    ] = False,
    allow_vanished_source: Annotated[
        bool,
        typer.Option(
            "--allow-vanished-source",
            help="With --propagate-deletes: also when a source namespace lists no ids at all (emptied on purpose); "
            "without it such a namespace is refused, its target kept.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --propagate-deletes without a prompt.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only scan: show what would be copied and deleted; change nothing.")
    ] = False,
    new_namespaces: Annotated[
        bool,
        typer.Option(
            "--new-namespaces",
            help="Also add to JOB the source namespaces its selection takes that it has no run for (made after its "
            "plan), planned and checked as `run` plans (and backed up first if the spec asks), then copied and "
            "verified; without it they are only named.",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the copy and the verification after it.")] = False,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Copy what appeared or changed in the source since JOB copied it (writes during the migration), then verify
    again. Run it right before cutting over; ids deleted in the source are reported (see --propagate-deletes), and
    so are source namespaces the job's selection takes that it has no run for (made after its plan;
    --new-namespaces adds them).

    A job that was cancelled or rolled back is refused (exit 1)."""
    if allow_vanished_source and not propagate_deletes:
        raise fail("--allow-vanished-source only applies with --propagate-deletes; nothing was changed")
    if new_namespaces and namespace is not None:
        raise fail("--new-namespaces works on the whole job: leave out --namespace; nothing was changed")
    resolved, database, job_id, ns = job_context(job, namespace, database_url, redis_url)
    jobs_and_runs.refuse_stopped(database, job_id, "sync")  # each namespace's sync asks again as it starts
    runs = jobs_and_runs.runs_of(database, job_id, ns)
    if not runs:
        what = f"no namespace run {namespace!r}" if namespace is not None else "no namespace run to sync"
        raise fail(f"job {job_id} has {what}; see `nsmigrate status {job_id}`")
    if propagate_deletes and not dry_run and not yes:
        if not sys.stdin.isatty():
            raise fail(
                "sync --propagate-deletes deletes from the target: pass --yes to confirm (or --dry-run to see what it "
                "would delete); nothing was changed"
            )
        typer.confirm(
            f"Delete from the target of job {job_id} the ids its source no longer has ({len(runs)} namespaces)?",
            abort=True,
        )
    ctx = worker_context(resolved)
    results = sync_runs(
        ctx,
        [r.id for r in runs],
        threads=resolved.sync_threads,
        propagate_deletes=propagate_deletes,
        allow_vanished_source=allow_vanished_source,
        dry_run=dry_run,
        actor=default_actor(),
    )
    refused = 0
    for r, result in zip(runs, results, strict=True):
        name = display_namespace(r.source_namespace)
        if result["action"] == "refused":
            refused += 1
            console.print(f"{escape(name)}: refused — {escape(result['reason'])}", soft_wrap=True)
            continue
        would = "would copy" if dry_run else "to copy"
        line = (
            f"{escape(name)}: {result['new']} new, {result['changed']} changed → {result['to_copy']} {would} in "
            f"{result['batches']} batches; {result['deleted_in_source']} deleted in source"
        )
        if propagate_deletes and dry_run:
            line += f" (at most {result['deleted_in_source']} would be deleted from the target)"
        elif propagate_deletes:
            line += f" ({result['deleted']} deleted from the target)"
        if result["unroutable"]:
            line += f"; {result['unroutable']} cannot be routed (e.g. {result['unroutable_examples'][0]['reason']})"
        console.print(line, soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing was copied or deleted")
    late = late_namespaces(ctx, job_id) if ns is None else []
    adding = bool(late and new_namespaces and not dry_run)
    if adding:
        _add_late(ctx, database, job_id, late)
    elif late:
        console.print(f"[yellow]warning[/]: {escape(late_namespaces_problem(job_id, late))}", soft_wrap=True)
    if wait and not dry_run and refused < len(runs):
        code = watch_until_settled(database, job_id, resolved.redis_url)
        if adding and not code:
            _publish_verified(ctx, database, job_id)
        raise typer.Exit(code or (1 if refused else 0))
    raise typer.Exit(1 if refused else 0)


def _add_late(ctx: Any, database: Any, job_id: int, late: list[str]) -> None:
    """`sync --new-namespaces`: ``late`` planned into job ``job_id``, exported first when the spec asks for a backup
    (as `run` exports the namespaces it plans; a failed backup adds nothing), their work sent
    (``orchestrator.late_runs``), and the cut-over published again if its applications follow it, so that they
    dual-write these too."""
    from nsmigrate.cli.fleet import dispatcher, open_store
    from nsmigrate.orchestrator.cutover import published
    from nsmigrate.orchestrator.late_runs import add_late_namespaces

    def backup_first(prepared: Prepared) -> list[tuple[str, dict[str, Any]]]:
        if not prepared.spec.backup.enabled:
            return []
        from nsmigrate.cli.backup import backup_sources  # pyarrow and the export machinery only for a backup

        return [
            (
                "backup_written",
                backup_sources(
                    prepared, ctx.settings.database_url, unless_done="the new namespaces were not added to the job"
                ),
            )
        ]

    prepared = add_late_namespaces(
        database,
        dispatcher(ctx.settings),
        job_id,
        late,
        open_store,
        actor=default_actor(),
        before_write=backup_first,
        settings=ctx.settings,
    )
    plan = prepared.plan
    console.print(
        f"added to job {job_id} {len(plan.runs)} namespace(s) made after its plan ({plan.total_vectors} vectors): "
        f"{escape(shown_namespaces(r.source_namespace for r in plan.runs))}",
        soft_wrap=True,
    )
    for warning in prepared.plan.warnings:
        console.print(f"[yellow]warning[/]: {escape(warning)}", soft_wrap=True)
    if published.publish_if_followed(database, ctx.redis, job_id):
        console.print(
            f"job {job_id}: published again: its applications' DualWriteIndex dual-writes these too (their reads "
            "stay old until their copies are verified)"
        )


def _publish_verified(ctx: Any, database: Any, job_id: int) -> None:
    """Once the namespaces `--new-namespaces` added are verified, publish the cut-over again (if its applications
    follow it): their reads were kept old until their copies passed, and follow the rollout from now on."""
    from nsmigrate.orchestrator.cutover import published

    if published.publish_if_followed(database, ctx.redis, job_id):
        console.print(f"job {job_id}: published again: reads of the added namespaces follow the rollout now")


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
    resolved = settings(database_url, redis_url)
    database = db(resolved)
    job_id = find_job_id(database, job)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise fail(
                "rollback deletes the migrated namespaces: pass --yes to confirm (or --dry-run to see what it would do)"
            )
        typer.confirm(f"Roll back job {job_id} and delete the namespaces it created?", abort=True)
    result = rollback_job(worker_context(resolved), job_id, dry_run=dry_run, actor=default_actor())
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
        raise fail(f"rollback of job {job_id} {action}: {result['reason']}", 1)
    if action == "dry_run" and result.get("stops_before_delete"):
        console.print(
            f"dry run, nothing changed: a rollback of job {job_id} would restore the missing originals above and "
            f"verify them all, then stop before removing anything — {escape(result['stops_before_delete'])}",
            soft_wrap=True,
        )
        return
    where = f" (rollback job {result['rollback_job_id']})" if result["rollback_job_id"] else ""
    done = {
        "rolled_back": f"job {job_id} rolled back{where}",
        "already_rolled_back": f"job {job_id} was already rolled back{where}",
        "dry_run": f"dry run, nothing changed: a rollback of job {job_id} would restore the missing originals "
        "above, verify them all, then remove the namespaces the job created",
    }
    console.print(done[action], soft_wrap=True)

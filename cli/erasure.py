"""Tenancy: ``erase`` a creator's (or one twin's) data from every place nsmigrate knows, as a job with a receipt."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.markup import escape
from rich.table import Table

from nsmigrate.cli.console import EXIT_INTERRUPTED, console, print_interrupted
from nsmigrate.cli.fleet import dispatcher, open_store
from nsmigrate.cli.options import DatabaseOpt, RedisOpt, db, fail, settings
from nsmigrate.cli.portability import export_creator
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.errors import ErasureFailed, NsmigrateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import PlaceKind
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import load_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.erasing import ErasurePlan, erase_place, plan_erasure

app = typer.Typer(add_completion=False)


@app.command()
def erase(
    creator_id: Annotated[str | None, typer.Argument(help="The creator whose data goes (or give --creator).")] = None,
    creator: Annotated[str | None, typer.Option("--creator", help="The creator whose data goes, e.g. a.1.")] = None,
    twin: Annotated[
        str | None, typer.Option("--twin", help="Erase only this twin of the creator (its namespace and vectors).")
    ] = None,
    spec: Annotated[
        list[Path] | None,
        typer.Option("--spec", help="Also look in this job spec's source and target stores (repeatable)."),
    ] = None,
    backup_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--backup-dir",
            help="Also erase from this export directory (repeatable); backups the job "
            "table recorded are always included.",
        ),
    ] = None,
    skip_store: Annotated[
        list[str] | None,
        typer.Option(
            "--skip-store",
            help="Leave out this store (its label, e.g. an index that is gone for good); "
            "the receipt names it as not searched (repeatable).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the places and counts; delete nothing.")
    ] = False,
    resume: Annotated[
        int | None, typer.Option("--resume", help="Run the unfinished or failed places of erasure JOB again.")
    ] = None,
    receipt_path: Annotated[
        Path | None,
        typer.Option("--receipt", help="Where to write the receipt (default: erasure-receipts/erase-JOB.json)."),
    ] = None,
    timeout_s: Annotated[
        float,
        typer.Option(
            "--timeout-s",
            help="How long to wait for the cleanup workers; then exit code 1 while the erasure goes on (`erase "
            "--resume JOB` waits again and writes the receipt).",
        ),
    ] = 600,
    lift: Annotated[
        bool,
        typer.Option(
            "--lift",
            help="Lift the erasure of --creator (and --twin) from the erasure ledger, with --reason: their data may "
            "be written again. Deletes nothing.",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why the erasure is lifted (kept in the ledger).")
    ] = None,
    show_ledger: Annotated[
        bool, typer.Option("--ledger", help="List the erasure ledger (of --creator, or all); changes nothing.")
    ] = False,
    export_first: Annotated[
        Path | None,
        typer.Option(
            "--export-first",
            help="Before deleting, export everything of theirs to this new directory (as `export --creator`); "
            "if the export fails, nothing is deleted.",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Erase a creator's (or one twin's, --twin) data from every place nsmigrate knows: namespaces in every store
    of the job table, their vectors in shared namespaces, backups. Matched exactly (`a.1` never touches `a.10`), run
    as a job of kind `erase`, checked afterwards, with a receipt in the audit log and a file.

    The places: their namespaces in every store of the job table's copy jobs (targets, and source namespaces not yet
    cleaned) and of any --spec, their vectors in shared namespaces (public, review, the default namespace), found by
    their creator_id / twin_id metadata, and backups (rewritten without their rows). Names are found through the
    names nsmigrate built; a name that could be theirs but has several readings is reported, not erased. The cleanup
    workers delete each place and check it (counts, listing, a fetch of the deleted ids); backups are rewritten by
    this command, on the host where it found them. Exit code 0 only when every place was checked empty of their
    data.

    Every erasure enters the erasure ledger: from then on no write path (copy, sync, rollback, import, restore, dual
    write, re-embedding) writes a record of theirs; each is held back and named, until `erase --lift --reason`."""
    if export_first is not None and (show_ledger or lift or resume is not None):
        raise fail(
            "--export-first exports before a new erasure deletes anything: not with --ledger, --lift or --resume"
        )
    conf = settings(database_url, redis_url)
    database = db(conf)
    if show_ledger or lift:
        _ledger_command(database, conf, creator or creator_id, twin, lift, reason)
        return
    if resume is not None:
        job_id = _resume(database, conf, resume)
    else:
        creator_id = creator or creator_id
        if creator_id is None:
            raise fail("give the creator: `nsmigrate erase --creator ID` (or `nsmigrate erase ID`)")
        extra = [s for path in spec or [] for s in (load_spec(path).source, load_spec(path).target)]
        plan = plan_erasure(
            database,
            creator_id,
            twin,
            open_store,
            extra,
            list(backup_dir or []),
            skip_store,
            batch_lifetime_s=conf.visibility_timeout_s,
            settle_timeout_s=conf.erasure_settle_timeout_s,
        )
        _print_plan(plan)
        if plan.unreadable:
            raise fail(
                "cannot read every store, so the erasure would leave copies: "
                + "; ".join(plan.unreadable)
                + " — fix it, or leave a store that is gone for good out with --skip-store LABEL",
                1,
            )
        _refuse_while_copying(plan)
        if not plan.places:
            console.print(f"nothing of {plan.subject.label} in any place nsmigrate knows; nothing to erase")
            raise typer.Exit(0)
        if dry_run:
            if export_first is not None:
                console.print(f"dry run: nothing exported to {export_first} and nothing deleted")
                raise typer.Exit(0)
            console.print("dry run: nothing deleted")
            raise typer.Exit(0)
        if not yes:
            if not sys.stdin.isatty():
                raise fail("erase deletes data for good: pass --yes to confirm (or --dry-run to see what it would do)")
            typer.confirm(f"Delete {plan.subject.label}'s data from these {len(plan.places)} places?", abort=True)
        if export_first is not None:
            exported = export_creator(
                plan, export_first, settle_timeout_s=conf.erasure_settle_timeout_s, after="; nothing was deleted"
            )
            plan.exported_first = {"directory": str(export_first.resolve()), "count": exported["count"]}
        job_id = _start(database, conf, plan)
    receipt = finish(database, job_id, timeout_s, receipt_path)
    if not receipt["verified"]:
        raise fail(f"some places still hold their data or failed; `nsmigrate erase --resume {job_id}`", 1)


def erase_everywhere(
    database: jobs_database.Database, conf: Any, creator_id: str, twin_id: str | None, receipt_path: Path | None = None
) -> dict[str, Any]:
    """What `erase --creator C [--twin T] --yes` does, for callers in the CLI (the demo): plan, print, run the
    erasure job to its end and return its receipt (also written to ``receipt_path``)."""
    plan = plan_erasure(
        database,
        creator_id,
        twin_id,
        open_store,
        batch_lifetime_s=conf.visibility_timeout_s,
        settle_timeout_s=conf.erasure_settle_timeout_s,
    )
    _print_plan(plan)
    if plan.unreadable:
        raise fail("cannot read every store: " + "; ".join(plan.unreadable), 1)
    _refuse_while_copying(plan)
    return finish(database, _start(database, conf, plan), 600, receipt_path)


def _ledger_command(
    database: jobs_database.Database,
    conf: Any,
    creator_id: str | None,
    twin_id: str | None,
    lift: bool,
    reason: str | None,
) -> None:
    """`erase --ledger` lists the ledger; `erase --lift --creator C [--twin T] --reason R` lifts C's (or T's) lines."""
    if lift:
        if creator_id is None or not (reason or "").strip():
            raise fail('lifting an erasure names whom and why: `nsmigrate erase --lift --creator ID --reason "…"`')
        lines = jobs_erasure_ledger.lift_erasure(database, creator_id, twin_id, reason or "")
        for line in lines:
            console.print(
                f"lifted erasure job {line['erasure_job']} of {_who(line)} (erased {line['erased_at']}): their data "
                f"may be written again; reason: {line['lift_reason']}"
            )
        try:
            published.publish_ledger(database, redis.Redis.from_url(conf.redis_url))
        except Exception as e:  # the published ledger still holds them back: stricter, not looser
            console.print(
                f"[yellow]the applications' dual writes still hold their records back[/]: the ledger could not be "
                f"published ({type(e).__name__}: {e}); `nsmigrate cutover publish JOB` publishes it"
            )
        return
    table = Table("erasure job", "creator", "twin", "erased at", "verified", "lifted", title="the erasure ledger")
    for line in jobs_erasure_ledger.ledger(database, creator_id):
        verified = "" if line["receipt"] is None else str(bool(line["receipt"].get("verified")))
        lifted = f"{line['lifted_at']} by {line['lifted_by']}: {line['lift_reason']}" if line["lifted_at"] else ""
        table.add_row(
            str(line["erasure_job"]), line["creator_id"], line["twin_id"] or "", line["erased_at"], verified, lifted
        )
    console.print(table)


def _who(line: dict[str, Any]) -> str:
    return f"creator {line['creator_id']!r}" + (f" twin {line['twin_id']!r}" if line["twin_id"] else "")


def _refuse_while_copying(plan: ErasurePlan) -> None:
    """Refuse while a copy job may still write the subject's data: its copies would come back after the places were
    checked empty, under a receipt saying they were erased."""
    if plan.writing:
        named = "; ".join(
            f"job {job_id} (namespaces {', '.join(repr(display_namespace(n)) for n in names)})"
            for job_id, names in plan.writing.items()
        )
        raise fail(
            f"copy jobs may still write {plan.subject.label}'s data after it is erased: {named} — wait for them to "
            f"finish, or {', '.join(f'`nsmigrate cancel {j}`' for j in plan.writing)}, then erase again; nothing was "
            "deleted",
            1,
        )


def finish(
    database: jobs_database.Database, job_id: int, timeout_s: float, receipt_path: Path | None
) -> dict[str, Any]:
    """Wait for erasure ``job_id``'s receipt, write it to a file and print it."""
    receipt = _wait(database, job_id, timeout_s)
    path = receipt_path or Path("erasure-receipts") / f"erase-{job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(receipt, indent=2, ensure_ascii=False) + "\n")
    _print_receipt(receipt, path)
    return receipt


def _print_plan(plan: ErasurePlan) -> None:
    table = Table("kind", "store", "namespace / path", "found", title=f"places of {plan.subject.label}")
    for p in plan.places:
        where = p.get("path") or display_namespace(p["namespace"] or "")
        # Import files are counted by the cleanup workers, which hold the storage keys this command may lack.
        found = "its files, whole" if p["kind"] == PlaceKind.IMPORT_FILES else str(p["planned"])
        table.add_row(p["kind"], p["store"], where, found)
    console.print(table)
    for label in plan.skipped:
        why = "" if label.startswith("backup ") else " (--skip-store)"  # a backup's entry says why itself
        console.print(f"[yellow]not searched{why}:[/] {escape(label)}")
    for name in plan.ambiguous:
        console.print(f"[yellow]ambiguous, not erased:[/] {name} (several readings; rename it or erase it by hand)")
    _print_cannot_erase(plan.cannot_erase)


def _start(database: jobs_database.Database, conf: Any, plan: ErasurePlan) -> int:
    name = f"erase-{plan.subject.creator_id}" + (f"-{plan.subject.twin_id}" if plan.subject.twin_id else "")
    sender = dispatcher(conf)  # Redis answered before anything is written
    job_id = jobs_erasure.create_erasure(database, name, plan.spec(default_actor()), plan.places)
    _send(database, sender, job_id, [p.id for p in jobs_erasure.places_of(database, job_id)], conf)
    console.print(f"erasure job {job_id} started on the cleanup workers; `nsmigrate events {job_id}` shows each step")
    return job_id


def _resume(database: jobs_database.Database, conf: Any, job_id: int) -> int:
    sender = dispatcher(conf)  # Redis answered before anything is written
    try:
        ids = jobs_erasure.retry_places(database, job_id)  # refuses a job that is not an erasure, changing nothing
    except NsmigrateError:
        sender.close()
        raise
    if not ids:
        sender.close()
        console.print(f"erasure job {job_id}: every place was checked already; nothing to send again")
        return job_id
    _send(database, sender, job_id, ids, conf)
    console.print(f"erasure job {job_id}: {len(ids)} place(s) sent again")
    return job_id


def _send(database: jobs_database.Database, sender: Dispatcher, job_id: int, place_ids: list[int], conf: Any) -> None:
    """The places of stores to the cleanup workers; backups erased here, by this command: a backup directory is on
    the host that wrote it, and a worker that cannot see it would find it gone and check it erased."""
    places = {p.id: p for p in jobs_erasure.places_of(database, job_id)}
    here = [i for i in place_ids if places[i].kind == PlaceKind.BACKUP]
    try:
        # Before any place is erased: every application's DualWriteIndex holds their records back from then on.
        published.publish_ledger(database, redis.Redis.from_url(conf.redis_url))
    except Exception as e:
        sender.close()
        raise fail(
            f"erasure job {job_id}: the erasure ledger could not be published for the applications' dual writes "
            f"({type(e).__name__}: {e}); nothing was erased yet: `nsmigrate erase --resume {job_id}` once Redis "
            "answers",
            1,
        ) from e
    try:
        with sender.together():
            for place_id in place_ids:
                p = places[place_id]
                if place_id not in here:
                    where = (
                        p.path
                        if p.kind == PlaceKind.IMPORT_FILES
                        else f"{p.store}/{display_namespace(p.namespace or '')}"
                    )
                    sender.erase_place(place_id, job_id=job_id, place=f"{p.kind} {where}")
    finally:
        sender.close()
    if here:
        ctx = WorkerContext(conf)
        for place_id in here:
            with contextlib.suppress(ErasureFailed):  # recorded on the place: the receipt and `events` say why
                erase_place(ctx, place_id)
        ctx.dispatcher.close()
        ctx.db.dispose()


def _wait(database: jobs_database.Database, job_id: int, timeout_s: float) -> dict[str, Any]:
    """The receipt of erasure ``job_id`` once it finished. Ctrl-C stops the waiting only (exit code 130): the workers
    go on erasing, and `erase --resume` waits again and writes the receipt."""
    try:
        console.print(f"waiting for erasure job {job_id} (Ctrl-C stops the waiting, not the erasure)")
        return _receipt_when_finished(database, job_id, timeout_s)
    except KeyboardInterrupt:
        print_interrupted(
            f"stopped waiting for erasure job {job_id}; the cleanup workers go on erasing — `nsmigrate events "
            f"{job_id}` shows where it is, `nsmigrate erase --resume {job_id}` sends its unfinished places again, "
            "waits and writes the receipt"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _receipt_when_finished(database: jobs_database.Database, job_id: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        # The job's state first, then its newest receipt: a resumed job still holds the receipt of the run before
        # (its failed places), and read first, that one was returned when the job finished between the two reads.
        # A finish writes its receipt in the same transaction, so once the job reads finished, its receipt is there.
        if jobs_and_runs.find_job(database, job_id).state == "finished":
            receipt = jobs_erasure.erasure_receipt(database, job_id)
            if receipt is not None:
                return receipt
        if time.monotonic() > deadline:
            raise fail(
                f"erasure job {job_id} has not finished after {timeout_s:.0f} s: are cleanup workers running? "
                f"`nsmigrate events {job_id}` shows where it is; `nsmigrate erase --resume {job_id}` sends it again",
                1,
            )
        time.sleep(0.5)


def _print_receipt(receipt: dict[str, Any], path: Path) -> None:
    table = Table("kind", "store", "namespace / path", "erased", "checked", title=f"erasure job {receipt['job_id']}")
    for p in receipt["places"]:
        table.add_row(p["kind"], p["store"], p["path"] or p["namespace"] or "", str(p["erased"]), p["state"])
    console.print(table)
    who = f"creator {receipt['creator_id']!r}" + (f" twin {receipt['twin_id']!r}" if receipt["twin_id"] else "")
    checked = "every place checked empty" if receipt["verified"] else "NOT every place checked empty"
    if receipt["not_searched"]:
        # Never "empty" for a store that was not searched.
        checked = f"{checked}; NOT searched: {', '.join(receipt['not_searched'])}"
    console.print(
        f"erased {receipt['vectors_erased']} vectors and {receipt['backup_rows_erased']} backup rows of {who}; "
        f"{checked}; receipt: {path} (and `nsmigrate events {receipt['job_id']}`)"
    )
    if receipt.get("import_files_removed"):
        console.print(f"import files removed (whole import jobs' copies): {receipt['import_files_removed']}")
    if receipt.get("aliases_removed"):
        console.print(f"namespace aliases removed with their namespaces: {', '.join(receipt['aliases_removed'])}")
    _print_cannot_erase(receipt.get("cannot_erase") or [])


def _print_cannot_erase(notes: list[dict[str, Any]]) -> None:
    """Copies nsmigrate made that it cannot erase inside (Pinecone collections), each with what to do."""
    for note in notes:
        console.print(
            f"[yellow]cannot erase inside {note['kind']} {note['name']!r}[/] (made by job {note['made_by_job']}): "
            f"{note['what_to_do']}",
            soft_wrap=True,
        )

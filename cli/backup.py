"""Backups: ``export`` namespaces to Parquet and ``import`` them back; ``backup_sources`` is ``run``'s pre-migration
backup (spec ``backup.enabled``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.fleet import open_store
from nsmigrate.cli.options import DatabaseOpt, db, fail, settings
from nsmigrate.cli.render import bars
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.planning.selection import select_namespaces
from nsmigrate.orchestrator.records.namespaces import display_namespace, parse_namespace_arg
from nsmigrate.orchestrator.spec.jobspec import load_spec
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.stores.backup.exporting import export_namespaces
from nsmigrate.workers.stores.backup.importing import close_store, import_targets, prepare_import
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME, ImportTarget

app = typer.Typer(add_completion=False)


def backup_store(spec: Any) -> Any:
    """A store for export/import: it retries (with the CLI's quick give-up on a host that does not answer); the
    backup functions do not retry around it."""
    return open_store(spec)


def backup_directory(base: str | Path, job_name: str) -> Path:
    """``<base>/<job name>-<UTC timestamp>``: a new directory per backup, sorted by time (relative to the cwd)."""
    return Path(base) / f"{job_name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def export_with_progress(
    store: Any, counts: dict[str, int], directory: Path, *, freshness_timeout_s: float, again: str
) -> list[Any]:
    """Export the namespaces of ``counts`` (namespace → vectors expected) into ``directory``, a bar per namespace;
    each listed once its reads show every write before it (at most ``freshness_timeout_s``; ``again``: the command
    to run again when they do not)."""
    with bars() as progress:
        tasks = {
            ns: progress.add_task(f"export {display_namespace(ns)[:40]}", total=max(n, 1)) for ns, n in counts.items()
        }

        def advance(ns: str, done: int) -> None:
            progress.update(tasks[ns], completed=done, total=max(counts[ns], done, 1))

        settle = freshness.awaiting_reads(store, freshness_timeout_s, again=again)
        results = export_namespaces(store, list(counts), directory, progress=advance, before_listing=settle)
    table = Table(title=f"exported {store.name} → {directory}")
    for col in ("namespace", "file", "vectors", "MB"):
        table.add_column(col, justify="right" if col in ("vectors", "MB") else "left")
    for r in results:
        table.add_row(display_namespace(r.namespace), r.path.name, str(r.count), f"{r.bytes / 1e6:.2f}")
    console.print(table)
    return results


def backup_sources(
    prepared: Prepared, database_url: str, *, unless_done: str = "the job was not started (nothing was enqueued)"
) -> dict[str, Any]:
    """The pre-migration backup of ``run`` (spec ``backup.enabled``), and of `sync --new-namespaces`: every planned
    source namespace exported to ``backup.directory/<job name>-<UTC timestamp>/``, recorded at once (a
    ``backup_written`` event of no job: the job's own may never be written, if its start fails or is killed, and an
    erasure must find this copy anyway). Returns the audit event's detail. Exits 1 if it fails, saying what was
    therefore not done (``unless_done``)."""
    spec = prepared.spec
    directory = backup_directory(spec.backup.directory, spec.name)
    store = backup_store(spec.source)
    console.print(f"backup: exporting {len(prepared.plan.runs)} source namespaces to {directory}")
    try:
        results = export_with_progress(
            store,
            {r.source_namespace: r.vector_count for r in prepared.plan.runs},
            directory,
            freshness_timeout_s=spec.verify.freshness_timeout_s,
            again="run",
        )
    except (NsmigrateError, OSError) as e:
        raise fail(f"the pre-migration backup failed, so {unless_done}: {e}", 1) from e
    finally:
        close_store(store)
    manifest = (directory / MANIFEST_NAME).resolve()
    record_export(database_url, manifest, results)
    console.print(f"backup written: {manifest} (restore with `nsmigrate import {directory} SPEC --to-source`)")
    return {"manifest": str(manifest), "namespaces": len(results), "vectors": sum(r.count for r in results)}


@app.command("export")
def export_cmd(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Job spec (YAML): the store and the namespaces to export (with --creator: also search its stores)."
        ),
    ] = None,
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
    creator: Annotated[
        str | None,
        typer.Option(
            "--creator",
            help="Data portability: everything this creator owns, in every store of the job table (their namespaces "
            "and their records in shared namespaces), with a manifest and counts (portability.json).",
        ),
    ] = None,
    twin: Annotated[str | None, typer.Option("--twin", help="With --creator: only this twin of theirs.")] = None,
    skip_store: Annotated[
        list[str] | None,
        typer.Option("--skip-store", help="With --creator: leave out this store (named in the manifest)."),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Export namespaces of SPEC's source store to Parquet (one file per namespace plus manifest.json): a backup to
    restore with `nsmigrate import`. Only reads from the store. The export is recorded in the job table (a
    `backup_written` event), so `nsmigrate erase` finds it and erases a creator's rows from it too.

    With --creator ID [--twin T]: everything the creator owns, found as `erase` finds it, into --out (default
    exports/creator-ID-…): one sub-directory per store, each an export `import` reads, and portability.json with
    the counts. It is the person's copy, not recorded as a backup."""
    from nsmigrate.workers.stores.backup.importing import close_store
    from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME

    if creator is not None:
        if namespace or from_target:
            raise fail(
                "--namespace and --from-target choose namespaces of one store; `export --creator` exports what the "
                "creator owns in every store: leave them out"
            )
        _export_creator(creator, twin, spec, out, skip_store, database_url)
        return
    if spec is None or twin is not None or skip_store:
        raise fail("give the spec to export from (`nsmigrate export SPEC`), or a creator (`export --creator ID`)")
    job_spec = load_spec(spec)
    directory = out if out is not None else backup_directory(job_spec.backup.directory, job_spec.name)
    store = backup_store(job_spec.target if from_target else job_spec.source)
    try:
        available: dict[str, int] = store.namespaces()
        if namespace:
            wanted = list(dict.fromkeys(parse_namespace_arg(n) for n in namespace))
            unknown = [display_namespace(n) for n in wanted if n not in available]
            if unknown:
                raise fail(
                    f"{store.name} has no namespace(s) {unknown}; it has "
                    f"{[display_namespace(n) for n in sorted(available)]}"
                )
        elif from_target:
            wanted = sorted(available)
            if not wanted:
                raise fail(f"{store.name} holds no namespace to export")
        else:
            wanted = select_namespaces(job_spec, Inventory(label=store.name, dimension=0, namespaces=available))
        results = export_with_progress(
            store,
            {ns: available.get(ns, 0) for ns in wanted},
            directory,
            freshness_timeout_s=job_spec.verify.freshness_timeout_s,
            again="export",
        )
    except NsmigrateError as e:
        raise fail(str(e)) from e
    except OSError as e:  # an --out that cannot be written, a full disk: the files written so far were removed
        raise fail(
            f"cannot write the export to {directory}: {e.strerror or e}"
            + (f" ({e.filename})" if e.filename else "")
            + "; nothing was exported — give --out a directory that can be written, with room for the files"
        ) from e
    finally:
        close_store(store)
    console.print(
        f"{sum(r.count for r in results)} vectors in {len(results)} files; manifest: {directory / MANIFEST_NAME}"
    )
    record_export(database_url, (directory / MANIFEST_NAME).resolve(), results)


def _export_creator(
    creator: str,
    twin: str | None,
    spec: Path | None,
    out: Path | None,
    skip_store: list[str] | None,
    database_url: str | None,
) -> None:
    from nsmigrate.cli.portability import default_directory, export_creator
    from nsmigrate.workers.steps.erasing import plan_erasure

    conf = settings(database_url, None)
    database = db(conf)
    try:
        loaded = load_spec(spec) if spec is not None else None
        extra = [loaded.source, loaded.target] if loaded is not None else []
        plan = plan_erasure(
            database,
            creator,
            twin,
            open_store,
            extra,
            [],
            skip_store,
            batch_lifetime_s=conf.visibility_timeout_s,
            settle_timeout_s=conf.erasure_settle_timeout_s,
        )
    except NsmigrateError as e:
        raise fail(str(e)) from e
    finally:
        database.dispose()
    if not any(p["kind"] in ("namespace", "records") for p in plan.places) and not plan.unreadable:
        raise fail(f"nothing of {plan.subject.label} in any store the job table knows; nothing exported", 1)
    export_creator(
        plan,
        out if out is not None else default_directory(creator, twin),
        settle_timeout_s=conf.erasure_settle_timeout_s,
    )


def record_export(database_url: str | None, manifest: Path, results: Sequence[Any]) -> None:
    """A ``backup_written`` event for an export, so that every later erasure searches it; when the job table cannot
    be reached, say so: the export is a copy `nsmigrate erase` will only search with --backup-dir."""
    try:
        database = jobs_database.Database(settings(database_url, None).database_url)
        try:
            jobs_and_runs.record_event(
                database,
                "backup_written",
                default_actor(),
                manifest=str(manifest),
                namespaces=len(results),
                vectors=sum(r.count for r in results),
            )
        finally:
            database.dispose()
    except Exception:  # refused, bad URL, auth, a newer schema: the export stands, unrecorded, and says so
        console.print(
            f"[yellow]the job table could not be reached, so this export is not recorded: `nsmigrate erase` searches "
            f"it only when given --backup-dir {manifest.parent}[/]",
            soft_wrap=True,
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
            help="Also write into namespaces that hold vectors: ids in the file replace stored ones (how many, per "
            "namespace, is shown first; needs --yes when any would be replaced), other vectors are kept.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Confirm --overwrite without a prompt: the stored vectors it replaces are lost."),
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
    database_url: DatabaseOpt = None,
) -> None:
    """Upsert exported vectors into SPEC's target store (or its source, with --to-source). Every file is checked
    first (an intact nsmigrate export, the same dimension, an empty target namespace unless --overwrite): if any
    check fails, nothing is written. --overwrite shows how many stored vectors each namespace would have replaced
    and asks before writing (--yes: does not ask).

    Records of a creator or twin in the erasure ledger (`nsmigrate erase`) are never written: they are held back and
    named, until an operator lifts the erasure (`erase --lift`); so the job table must be reachable."""
    job_spec = load_spec(spec)
    database: jobs_database.Database | None = None
    store = backup_store(job_spec.source if to_source else job_spec.target)
    try:
        try:
            targets = prepare_import(
                store,
                path,
                namespaces=[parse_namespace_arg(n) for n in namespace or []] or None,
                into=parse_namespace_arg(into) if into is not None else None,
                overwrite=overwrite,
            )
        except NsmigrateError as e:
            raise fail(str(e)) from e
        except OSError as e:  # a file that cannot be read here: refused before anything is written
            raise fail(f"cannot read {e.filename or path}: {e.strerror or e}; nothing was written") from e
        confirm_overwrite(store.name, targets, yes)
        database = db(settings(database_url, None))  # the erasure ledger answers before anything is written
        held = jobs_erasure_ledger.HeldBack(database)
        with bars() as progress:
            tasks: dict[str, Any] = {}

            def start(header: Any, target: str) -> None:
                tasks[target] = progress.add_task(
                    f"import {display_namespace(target)[:40]}", total=max(header.count, 1)
                )

            def advance(target: str, done: int) -> None:
                progress.update(tasks[target], completed=done)

            try:
                results = import_targets(
                    store, targets, batch_size=batch_size, progress=advance, on_start=start, hold_back=held.keep
                )
            except NsmigrateError as e:
                raise fail(str(e)) from e
            finally:
                jobs_erasure_ledger.record_held_back(
                    database, held.lines(), command="import", store=store.name, path=str(path)
                )
    finally:
        close_store(store)
        if database is not None:
            database.dispose()
    table = Table(title=f"imported into {store.name}")
    for col in ("file", "namespace", "vectors", "held back"):
        table.add_column(col, justify="left" if col in ("file", "namespace") else "right")
    for r in results:
        table.add_row(r.path.name, display_namespace(r.namespace), str(r.count), str(r.held_back))
    console.print(table)
    console.print(f"{sum(r.count for r in results)} vectors imported from {len(results)} files")
    for sentence in held.sentences():
        console.print(f"[yellow]{escape(sentence)}[/]", soft_wrap=True)


def confirm_overwrite(store_name: str, targets: Sequence[ImportTarget], yes: bool) -> None:
    """Show, per namespace that holds vectors, how many of them the import replaces; when any would be replaced,
    go on only with --yes or the user's answer at a terminal (no terminal: exit 2, nothing written)."""
    holding = [t for t in targets if t.stored]
    for t in holding:
        console.print(
            escape(
                f"{display_namespace(t.namespace)}: {t.replaces} of its {t.stored} stored vectors would be replaced "
                f"by {t.header.path.name} ({t.header.count} vectors)"
            ),
            soft_wrap=True,
        )
    replaced = sum(t.replaces for t in holding)
    if not replaced or yes:
        return
    namespaces = sum(1 for t in holding if t.replaces)
    what = f"import --overwrite replaces {replaced} stored vectors in {namespaces} namespaces of {store_name}"
    if not sys.stdin.isatty():
        raise fail(f"{what} (listed above): pass --yes to confirm; nothing was written")
    typer.confirm(f"{what}. Replace them?", abort=True)

"""Data portability for the commands: `export --creator ID [--twin T]` and `erase --export-first DIR` write everything
the creator owns, in every store of the job table, to Parquet with a manifest and counts
(``workers.steps.portability``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.fleet import open_store
from nsmigrate.cli.options import fail
from nsmigrate.cli.render import bars
from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers.steps.erasing import ErasurePlan
from nsmigrate.workers.steps.portability import PORTABILITY_MANIFEST, export_subject
from nsmigrate.workers.stores.backup.importing import close_store


def default_directory(creator_id: str, twin_id: str | None) -> Path:
    """``exports/creator-{id}[-twin-{t}]-{UTC timestamp}`` (relative to the cwd)."""
    who = f"creator-{creator_id}" + (f"-twin-{twin_id}" if twin_id else "")
    return Path("exports") / f"{who}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def export_creator(
    plan: ErasurePlan, directory: Path, *, settle_timeout_s: float, exit_code: int = 1, after: str = ""
) -> dict[str, Any]:
    """Export ``plan``'s subject's data into ``directory``, a bar per namespace, and print what went where; the
    manifest. A failure is one message (``after`` says what did not happen because of it) and exit ``exit_code``,
    with nothing left in ``directory``. ``settle_timeout_s``: the ``erasure_settle_timeout_s`` setting."""
    try:
        with bars() as progress:
            tasks: dict[str, Any] = {}

            def advance(ns: str, done: int) -> None:
                if ns not in tasks:
                    tasks[ns] = progress.add_task(f"export {display_namespace(ns)[:40]}", total=None)
                progress.update(tasks[ns], completed=done)

            manifest = export_subject(
                plan, open_store, directory, progress=advance, close=close_store, settle_timeout_s=settle_timeout_s
            )
    except (NsmigrateError, OSError) as e:
        raise fail(f"the export of {plan.subject.label}'s data failed: {e}{after}", exit_code) from e
    table = Table("store", "namespace", "scope", "records", "file", title=f"{plan.subject.label}'s data → {directory}")
    for store in manifest["stores"]:
        for ns in store["namespaces"]:
            table.add_row(store["store"], display_namespace(ns["namespace"]), ns["scope"], str(ns["count"]), ns["file"])
    console.print(table)
    for label in manifest["not_searched"]:
        console.print(f"[yellow]not searched (--skip-store):[/] {escape(label)}")
    console.print(
        f"exported {manifest['count']} records of {plan.subject.label} from {len(manifest['stores'])} store(s); "
        f"manifest: {directory / PORTABILITY_MANIFEST}",
        soft_wrap=True,
    )
    return manifest

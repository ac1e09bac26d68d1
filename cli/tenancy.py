"""Tenancy: ``erase`` every namespace of a creator, each deletion written to the audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import console
from cli.fleet import open_store
from cli.options import DatabaseOpt, db, fail, settings
from orchestrator import jobs
from orchestrator.spec import load_spec
from workers.erasing import erase_creator, plan_erase

app = typer.Typer(add_completion=False)


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
    job_spec = load_spec(spec)
    store_spec = job_spec.source if source else job_spec.target
    store = open_store(store_spec)
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
            raise fail("erase deletes data for good: pass --yes to confirm (or --dry-run to see what it would do)")
        typer.confirm(f"Delete these {len(erase_plan.namespaces)} namespaces for good?", abort=True)
    database = db(settings(database_url, None))
    result = erase_creator(database, store, erase_plan, job_spec.model_dump(mode="json"), actor=jobs.default_actor())
    console.print(
        f"erased {len(result['erased'])} namespaces ({result['vectors']} vectors) of creator "
        f"{creator_id!r}; audit log: `nsmigrate events {result['job_id']}`"
    )
    if result["not_empty"]:
        raise fail(f"still not empty after the deletions: {result['not_empty']}; run erase again", 1)

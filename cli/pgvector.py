"""``nsmigrate pgvector``: the namespaces of seed 004's pgvector layout (``embeddings_{namespace}`` tables), each
operation inside Postgres (``workers.pgnamespaces``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import sqlalchemy as sa
import typer
from pydantic import ValidationError
from rich.table import Table

from cli.console import console
from cli.options import fail
from orchestrator import pgschema
from orchestrator.spec import PgvectorStoreSpec
from workers import pgnamespaces
from workers.stores.pgdocumented import DocumentedPgvectorStore

app = typer.Typer(add_completion=False)
group = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Namespaces of seed 004's pgvector layout: one table embeddings_{namespace} per namespace (names: lowercase "
    "letters, digits and _, at most 50 characters, not backup/temp/tmp/system/admin; the default namespace is "
    "embeddings_default). Every copy runs inside Postgres; a move or the legacy migration renames its source to a "
    "backup table, never drops it.",
)
app.add_typer(group, name="pgvector")

UrlEnvOpt = Annotated[
    str,
    typer.Option("--url-env", help="NAME of the env var holding the database URL (never the URL itself)."),
]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="Table name prefix.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Check and show what would happen; change nothing.")]
ReadOnlyOpt = Annotated[
    bool, typer.Option("--dry-run", help="Accepted like every pgvector command's; this one only reads anyway.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
IndexOpt = Annotated[
    str,
    typer.Option(
        "--vector-index",
        help="ANN index built on the target after the copy: ivfflat (lists sized to the rows), hnsw or none.",
    ),
]
NamespaceArg = Annotated[str, typer.Argument(help="Namespace (default or __default__ for the default namespace).")]


def _namespace(name: str) -> str:
    return "" if name in ("default", "__default__") else name


def _checked(name: str) -> str:
    """The namespace ``name`` names, refused (exit 2, nothing changed) when it breaks the name rules."""
    namespace = _namespace(name)
    pgschema.check_namespace(namespace)
    return namespace


@contextmanager
def _store(url_env: str, prefix: str, op: str) -> Iterator[tuple[DocumentedPgvectorStore, sa.Engine]]:
    try:
        spec = PgvectorStoreSpec.model_validate({"schema": "documented", "table": prefix, "database_url_env": url_env})
    except ValidationError as e:
        option = {"table": "--prefix", "database_url_env": "--url-env"}
        problems = "; ".join(
            f"{option.get(str(err['loc'][0]), err['loc'][0])}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise fail(problems) from e
    store = DocumentedPgvectorStore(spec)
    try:
        with store._errors(op):
            yield store, store.engine()
    finally:
        store.close()


def _print_result(title: str, result: pgnamespaces.CopyResult, as_json: bool, dry_run: bool) -> None:
    if as_json:
        console.print_json(json.dumps({**result.to_json(), "dry_run": dry_run}))
        return
    table = Table(title=title)
    for column in ("source table", "rows", "target table", "rows", "copied now", "verified", "backup"):
        table.add_column(column)
    verdict = (
        "dry run"
        if dry_run
        else "yes"
        if result.verified
        else f"NO (missing {result.missing}, extra {result.extra}, {result.differing_count} rows differ: "
        f"{result.differing})"
    )
    table.add_row(
        result.source_table,
        str(result.source_rows),
        result.target_table,
        str(result.target_rows),
        str(result.copied),
        verdict,
        result.backup_table or "-",
    )
    console.print(table)
    if result.indexes:
        console.print(f"indexes built on {result.target_table}: {result.indexes['built'] or 'already there'}; analyzed")


def _check_index(method: str) -> None:
    if method not in ("ivfflat", "hnsw", "none"):
        raise fail(f"--vector-index: {method!r} is not one of ivfflat, hnsw, none; nothing was changed")


def _need_yes(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run:
        raise fail(f"{what}: pass --yes to confirm (or --dry-run to see what it would do); nothing was changed")


@group.command("list")
def list_cmd(
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
    prefix: PrefixOpt = "embeddings",
    as_json: JsonOpt = False,
    dry_run: ReadOnlyOpt = False,
) -> None:
    """List the namespaces, found from the tables themselves (the legacy table counts as the default namespace
    until it is migrated), with their rows."""
    with _store(url_env, prefix, "list") as (_, engine), engine.connect() as conn:
        tables = pgnamespaces.discover(conn, prefix)
        counts = pgnamespaces.count_rows(conn, tables)
    if as_json:
        console.print_json(
            json.dumps({ns or "__default__": {"table": t, "rows": counts[ns]} for ns, t in tables.items()})
        )
        return
    table = Table("namespace", "table", "rows", title=f"pgvector namespaces ({prefix}_*)")
    for ns, name in tables.items():
        table.add_row(ns or "__default__", name + (" (legacy)" if name == prefix else ""), str(counts[ns]))
    console.print(table if tables else f"no namespace tables {prefix}_* in this database")


@group.command()
def create(
    namespace: NamespaceArg,
    dimension: Annotated[int, typer.Option("--dimension", min=1, max=16000, help="Vector dimension.")],
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
    prefix: PrefixOpt = "embeddings",
    dry_run: DryRunOpt = False,
) -> None:
    """Create a namespace's table with seed 004's schema (its vector and b-tree indexes are built after a load, by
    copy, move, legacy or a job's verification)."""
    ns = _namespace(namespace)
    table = pgschema.table_of(prefix, ns)  # the name rules first: a refused name changes nothing
    with _store(url_env, prefix, "create") as (_, engine):
        if dry_run:
            with engine.connect() as conn:
                there = pgnamespaces.exists(conn, table)
            console.print(
                f"dry run: would {'keep the existing' if there else 'create'} table {table} (dimension {dimension})"
            )
            return
        with engine.begin() as conn:
            _, created = pgnamespaces.create_namespace(conn, prefix, ns, dimension)
    console.print(f"{'created' if created else 'already there:'} table {table} (dimension {dimension})")


@group.command()
def stats(
    namespace: NamespaceArg,
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
    prefix: PrefixOpt = "embeddings",
    as_json: JsonOpt = False,
    dry_run: ReadOnlyOpt = False,
) -> None:
    """A namespace's rows, collections (rows per collection_name), table size, dimension and which indexes it has."""
    ns = _checked(namespace)
    with _store(url_env, prefix, "stats") as (_, engine), engine.connect() as conn:
        found = pgnamespaces.stats(conn, prefix, ns)
    if as_json:
        console.print_json(json.dumps(found.to_json()))
        return
    console.print(
        f"namespace {namespace!r}: table {found.table}, {found.rows} rows, dimension {found.dimension}, "
        f"{found.size_bytes / 1e6:.2f} MB; vector index: {found.vector_index or 'none'}; b-tree indexes: "
        f"{', '.join(found.btree_columns) or 'none'}"
    )
    table = Table("collection", "rows", title="collections")
    for name, rows in found.collections.items():
        table.add_row(name, str(rows))
    console.print(table)


@group.command()
def drop(
    namespace: NamespaceArg,
    dry_run: DryRunOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the table is dropped for good.")] = False,
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
) -> None:
    """Drop a namespace's table for good (needs --yes). To keep a copy, `move` it instead.

    Only a namespace table is dropped: {prefix}_{namespace} without the layout's chunk_id, embedding, document_id,
    collection_name and text columns (an application's table, the job table's own) is refused, naming it."""
    ns = _checked(namespace)
    _need_yes(yes, dry_run, f"drop deletes namespace {namespace!r} for good")
    with _store(url_env, prefix, "drop") as (_, engine):
        if dry_run:
            with engine.connect() as conn:
                pgnamespaces.droppable_table(conn, prefix, ns)
                found = pgnamespaces.stats(conn, prefix, ns)
            console.print(f"dry run: would drop table {found.table} ({found.rows} rows)")
            return
        with engine.begin() as conn:
            table = pgnamespaces.drop_namespace(conn, prefix, ns)
    console.print(f"dropped table {table}")


def _transfer(
    op: str,
    url_env: str,
    prefix: str,
    run: Callable[[sa.Engine], pgnamespaces.CopyResult],
    dry_run: bool,
    as_json: bool,
) -> None:
    with _store(url_env, prefix, op) as (_, engine):
        result = run(engine)

    _print_result(f"pgvector {op}" + (" (dry run)" if dry_run else ""), result, as_json, dry_run)
    if not dry_run and not result.verified:
        raise fail(f"{op}: the target does not match the source; the source was left as it is", 1)


@group.command()
def copy(
    source: NamespaceArg,
    target: NamespaceArg,
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
    prefix: PrefixOpt = "embeddings",
    vector_index: IndexOpt = "ivfflat",
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy namespace SOURCE into TARGET inside Postgres with every column SOURCE's table has (its own extra
    columns and NULLs included; a TARGET table that cannot hold one is refused before anything is copied), INSERT …
    SELECT in chunk_id order, 5,000 rows a transaction (run it again to resume); build TARGET's indexes, ANALYZE,
    and verify row counts, id sets and every column of every row."""
    _between("copy", pgnamespaces.copy_namespace, source, target, url_env, prefix, vector_index, dry_run, as_json)


def _between(
    op: str,
    operation: Callable[..., pgnamespaces.CopyResult],
    source: str,
    target: str,
    url_env: str,
    prefix: str,
    vector_index: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """``copy`` or ``move`` (``operation``) from namespace ``source`` to ``target``."""
    _check_index(vector_index)

    def run(engine: sa.Engine) -> pgnamespaces.CopyResult:
        return operation(
            engine, prefix, _namespace(source), _namespace(target), vector_index=vector_index, dry_run=dry_run
        )

    _transfer(op, url_env, prefix, run, dry_run, as_json)


@group.command()
def move(
    source: NamespaceArg,
    target: NamespaceArg,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the source table is renamed to a backup.")] = False,
    dry_run: DryRunOpt = False,
    vector_index: IndexOpt = "ivfflat",
    as_json: JsonOpt = False,
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
) -> None:
    """Move namespace SOURCE to TARGET: copy as `copy` does, then, only when counts, id sets and every column of
    every row match, rename the source table to {prefix}_backup_{timestamp}_{SOURCE} (never dropped). Needs
    --yes."""
    _need_yes(yes, dry_run, f"move renames namespace {source!r}'s table to a backup")
    _between("move", pgnamespaces.move_namespace, source, target, url_env, prefix, vector_index, dry_run, as_json)


@group.command()
def legacy(
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    vector_index: IndexOpt = "ivfflat",
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = "NSMIGRATE_PGVECTOR_URL",
) -> None:
    """Migrate the legacy single table {prefix} to {prefix}_default (the default namespace) inside Postgres with
    every column it has (NULLs included), verify row counts, id sets and every column of every row, then rename the
    legacy table to {prefix}_backup_{timestamp}."""
    _check_index(vector_index)

    def run(engine: sa.Engine) -> pgnamespaces.CopyResult:
        return pgnamespaces.migrate_legacy(engine, prefix, vector_index=vector_index, dry_run=dry_run)

    _transfer("legacy", url_env, prefix, run, dry_run, as_json)

"""``nsmigrate pgvector``: the namespaces of the application's pgvector layout (``embeddings_{namespace}`` tables), each
operation inside Postgres (``workers.stores.pgvector.namespaces``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, cast

import sqlalchemy as sa
import typer
from pydantic import ValidationError
from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.handoff import PGVECTOR_URL_ENV
from nsmigrate.cli.options import DatabaseOpt, db, fail, settings
from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.orchestrator.states import JobKind
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore

app = typer.Typer(add_completion=False)
group = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Namespaces of the application's pgvector layout: one table embeddings_{namespace} per namespace "
    "(names: lowercase "
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
        help="The cosine ANN index {table}_vector_idx: ivfflat (--lists lists, the layout's 100 by default), hnsw "
        "or none. Above 2,000 dimensions it is always HNSW over embedding::halfvec(d) (up to 4,000).",
    ),
]
ListsOpt = Annotated[
    int,
    typer.Option("--lists", min=1, max=32768, help="ivfflat lists of the vector index (the layout says 100)."),
]
NamespaceArg = Annotated[str, typer.Argument(help="Namespace (default or __default__ for the default namespace).")]


def _namespace(name: str) -> str:
    return "" if name in ("default", "__default__") else name


def _checked(name: str) -> str:
    """The namespace ``name`` names, refused (exit 2, nothing changed) when it breaks the name rules."""
    namespace = _namespace(name)
    pgvector_layout.check_namespace(namespace)
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


@contextmanager
def _audited(database_url: str | None, command: str, **detail: Any) -> Iterator[dict[str, Any]]:
    """The audit record of a command that changes something, kept as a job's: a job of kind ``pgvector`` named
    ``pgvector COMMAND``, its ``pgvector_started`` event with ``detail`` and its ``pgvector_finished`` event with what
    the command put in the yielded dict (``outcome: failed`` and the error when it raised). The job table must be
    reachable before anything is changed (exit 2 otherwise)."""
    database = db(settings(database_url, None))
    try:
        job_id = jobs_and_runs.create_action_job(
            database, f"pgvector {command}", JobKind.PGVECTOR, {"command": command, **detail}, **detail
        )
        outcome: dict[str, Any] = {}
        try:
            yield outcome
        except BaseException as e:
            failure = str(getattr(e, "message", "") or e)[:300] or type(e).__name__
            jobs_and_runs.finish_action_job(database, job_id, **outcome, outcome="failed", error=failure)
            raise
        jobs_and_runs.finish_action_job(database, job_id, **outcome, outcome="done")
    finally:
        database.dispose()


def _print_result(title: str, result: table_copies.CopyResult, as_json: bool, dry_run: bool) -> None:
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
        else f"NO (missing {result.missing}, extra {result.extra}, {result.differ} rows differ: {result.differing})"
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
        built = ", ".join(result.indexes["built"]) or "already there"
        console.print(
            f"indexes of {result.target_table}: {built}; similarity search served by "
            f"{result.indexes['vector_index'] or 'no ANN index'}; analyzed"
        )


def _index(method: str, lists: int) -> pgvector_layout.VectorIndex:
    """The vector index the options ask for; a method that is not one is refused (exit 2, nothing changed)."""
    if method not in ("ivfflat", "hnsw", "none"):
        raise fail(f"--vector-index: {method!r} is not one of ivfflat, hnsw, none; nothing was changed")
    return pgvector_layout.VectorIndex(cast(pgvector_layout.VectorMethod, method), lists)


def _index_names(table: str, indexes: dict[str, str]) -> str:
    """A table's indexes, named short (``vector_idx`` for ``{table}_vector_idx``)."""
    return ", ".join(name.removeprefix(f"{table}_") for name in indexes) or "none"


def _need_yes(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run:
        raise fail(f"{what}: pass --yes to confirm (or --dry-run to see what it would do); nothing was changed")


@group.command("list")
def list_cmd(
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    as_json: JsonOpt = False,
    dry_run: ReadOnlyOpt = False,
) -> None:
    """List the namespaces, found from the tables themselves (the legacy table counts as the default namespace
    until it is migrated), with their rows and indexes."""
    with _store(url_env, prefix, "list") as (_, engine), engine.connect() as conn:
        tables = pgnamespaces.discover(conn, prefix)
        counts = pgnamespaces.count_rows(conn, tables)
        indexes = {ns: pgnamespaces.indexes_of(conn, t) for ns, t in tables.items()}
    if as_json:
        console.print_json(
            json.dumps(
                {
                    ns or "__default__": {"table": t, "rows": counts[ns], "indexes": sorted(indexes[ns])}
                    for ns, t in tables.items()
                }
            )
        )
        return
    table = Table("namespace", "table", "rows", "indexes", title=f"pgvector namespaces ({prefix}_*)")
    for ns, name in tables.items():
        table.add_row(
            ns or "__default__",
            name + (" (legacy)" if name == prefix else ""),
            str(counts[ns]),
            _index_names(name, indexes[ns]),
        )
    console.print(table if tables else f"no namespace tables {prefix}_* in this database")


@group.command()
def create(
    namespace: NamespaceArg,
    dimension: Annotated[int, typer.Option("--dimension", min=1, max=16000, help="Vector dimension.")],
    vector_index: IndexOpt = "ivfflat",
    lists: ListsOpt = pgvector_layout.DEFAULT_LISTS,
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    dry_run: DryRunOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a namespace's table exactly as the application's DDL does: its columns, defaults and constraints, and
    its four indexes {table}_vector_idx (ivfflat, lists = 100), _collection_idx, _document_idx and _strategy_idx.
    An ivfflat index made on an empty table clusters nothing: run `nsmigrate pgvector reindex` once it is loaded.
    The audit log (`nsmigrate jobs`, `nsmigrate events`) records it, as every pgvector command that changes
    something."""
    ns = _namespace(namespace)
    table = pgvector_layout.table_of(prefix, ns)  # the name rules first: a refused name changes nothing
    index = _index(vector_index, lists)
    with _store(url_env, prefix, "create") as (_, engine):
        if dry_run:
            with engine.connect() as conn:
                there = pgnamespaces.exists(conn, table)
            console.print(
                f"dry run: would {'keep the existing' if there else 'create'} table {table} (dimension {dimension}, "
                f"vector index {index.describe(dimension)})"
            )
            return
        detail = {"namespace": ns, "table": table, "dimension": dimension, "vector_index": index.describe(dimension)}
        with _audited(database_url, "create", **detail) as outcome, engine.begin() as conn:
            _, created = pgnamespaces.create_namespace(conn, prefix, ns, dimension, index)
            indexes = pgnamespaces.indexes_of(conn, table)
            outcome.update(created=created, indexes=sorted(indexes))
    console.print(
        f"{'created' if created else 'already there:'} table {table} (dimension {dimension}); indexes: "
        f"{_index_names(table, indexes)}"
    )


@group.command()
def stats(
    namespace: NamespaceArg,
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    as_json: JsonOpt = False,
    dry_run: ReadOnlyOpt = False,
) -> None:
    """A namespace's rows, collections (rows per collection_name), table size, dimension, every index it has (name
    and definition) and which ANN index serves its similarity search."""
    ns = _checked(namespace)
    with _store(url_env, prefix, "stats") as (_, engine), engine.connect() as conn:
        found = pgnamespaces.stats(conn, prefix, ns)
    if as_json:
        console.print_json(json.dumps(found.to_json()))
        return
    console.print(
        f"namespace {namespace!r}: table {found.table}, {found.rows} rows, dimension {found.dimension}, "
        f"{found.size_bytes / 1e6:.2f} MB; similarity search served by: {found.vector_index or 'no ANN index'}"
    )
    indexes = Table("index", "definition", title="indexes")
    for name, definition in found.indexes.items():
        indexes.add_row(name, definition)
    console.print(indexes)
    table = Table("collection", "rows", title="collections")
    for name, rows in found.collections.items():
        table.add_row(name, str(rows))
    console.print(table)


@group.command()
def reindex(
    namespace: NamespaceArg,
    vector_index: IndexOpt = "ivfflat",
    lists: ListsOpt = pgvector_layout.DEFAULT_LISTS,
    dry_run: DryRunOpt = False,
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    database_url: DatabaseOpt = None,
) -> None:
    """Rebuild a namespace's documented indexes: {table}_vector_idx made anew as --vector-index and --lists say (an
    ivfflat index clusters the rows there are, so run this after a load), the b-tree ones reindexed, and the missing
    ones created under their documented names; then ANALYZE. Writes to the table wait while it runs."""
    ns = _checked(namespace)
    index = _index(vector_index, lists)
    with _store(url_env, prefix, "reindex") as (_, engine):
        if dry_run:
            with engine.connect() as conn:
                found = pgnamespaces.stats(conn, prefix, ns)
            console.print(
                f"dry run: would rebuild the indexes of {found.table} ({found.rows} rows; now "
                f"{_index_names(found.table, found.indexes)}), the vector index as "
                f"{index.describe(found.dimension or 0)}"
            )
            return
        with engine.connect() as conn:
            table = pgnamespaces.table_or_refuse(conn, prefix, ns)
        with _audited(database_url, "reindex", namespace=ns, table=table) as outcome, engine.begin() as conn:
            done = pgnamespaces.build_indexes(conn, table, index, rebuild=True)
            outcome.update(done)
    console.print(
        f"{table}: {', '.join(done['built']) or 'nothing to do'}; similarity search served by "
        f"{done['vector_index'] or 'no ANN index'}; analyzed"
    )


@group.command("collections")
def collections_cmd(
    namespace: NamespaceArg,
    delete: Annotated[
        str | None,
        typer.Option("--delete", metavar="COLLECTION", help="Delete every row of this collection_name (needs --yes)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --delete: its rows are deleted for good.")] = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    database_url: DatabaseOpt = None,
) -> None:
    """A namespace's collections (collection_name): rows, documents, strategies and last update of each. With
    --delete COLLECTION, delete that collection's rows (--dry-run counts them; --yes deletes them and checks that
    none is left)."""
    ns = _checked(namespace)
    if delete is not None:
        _need_yes(yes, dry_run, f"--delete removes collection {delete!r} of namespace {namespace!r} for good")
    with _store(url_env, prefix, "collections") as (_, engine):
        with engine.connect() as conn:
            table = pgnamespaces.table_or_refuse(conn, prefix, ns)
            found = pgnamespaces.collections(conn, table)
        if delete is not None:
            _delete_collection(engine, table, ns, delete, found, dry_run, database_url)
            return
    if as_json:
        console.print_json(json.dumps(found))
        return
    shown = Table("collection", "rows", "documents", "strategies", "last updated", title=f"collections of {table}")
    for c in found:
        shown.add_row(
            c["collection"], str(c["rows"]), str(c["documents"]), ", ".join(c["strategies"]), c["last_updated"]
        )
    console.print(shown if found else f"{table} holds no rows")


def _delete_collection(
    engine: sa.Engine,
    table: str,
    namespace: str,
    collection: str,
    found: list[dict[str, Any]],
    dry_run: bool,
    database_url: str | None,
) -> None:
    rows = next((c["rows"] for c in found if c["collection"] == collection), 0)
    if not rows:
        known = ", ".join(repr(c["collection"]) for c in found) or "none"
        raise fail(
            f"--delete: {table} has no collection {collection!r} (its collections: {known}); nothing was changed"
        )
    if dry_run:
        console.print(f"dry run: would delete the {rows} rows of collection {collection!r} from {table}")
        return
    detail = {"namespace": namespace, "table": table, "collection": collection, "rows": rows}
    with _audited(database_url, "collection_delete", **detail) as outcome, engine.begin() as conn:
        outcome["deleted"] = pgnamespaces.delete_collection(conn, table, collection)
    console.print(f"deleted the {outcome['deleted']} rows of collection {collection!r} from {table}; none is left")


@group.command()
def drop(
    namespace: NamespaceArg,
    dry_run: DryRunOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the table is dropped for good.")] = False,
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    database_url: DatabaseOpt = None,
) -> None:
    """Drop a namespace's table for good (needs --yes). To keep a copy, `move` it instead.

    Only a namespace table is dropped: {prefix}_{namespace} without the layout's chunk_id, embedding and required
    metadata columns (an application's table, the job table's own) is refused, naming it."""
    ns = _checked(namespace)
    _need_yes(yes, dry_run, f"drop deletes namespace {namespace!r} for good")
    with _store(url_env, prefix, "drop") as (_, engine):
        with engine.connect() as conn:  # refused before the audit record: a table that is not a namespace's
            pgnamespaces.droppable_table(conn, prefix, ns)
            found = pgnamespaces.stats(conn, prefix, ns)
        if dry_run:
            console.print(f"dry run: would drop table {found.table} ({found.rows} rows)")
            return
        with _audited(database_url, "drop", namespace=ns, rows=found.rows) as outcome, engine.begin() as conn:
            table = pgnamespaces.drop_namespace(conn, prefix, ns)
            outcome["table"] = table
    console.print(f"dropped table {table}")


def _transfer(
    op: str,
    url_env: str,
    prefix: str,
    run: Callable[[sa.Engine], table_copies.CopyResult],
    dry_run: bool,
    as_json: bool,
    database_url: str | None,
    **detail: Any,
) -> None:
    with _store(url_env, prefix, op) as (store, engine):
        if dry_run:
            result = run(engine)
        else:
            # The store (its URL's variable name, never the URL) kept with the job: an erasure searches its tables.
            kept = store.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            with _audited(database_url, op, store={**kept, "kind": "pgvector"}, **detail) as outcome:
                result = run(engine)
                outcome.update(result.to_json())

    _print_result(f"pgvector {op}" + (" (dry run)" if dry_run else ""), result, as_json, dry_run)
    if not dry_run and not result.verified:
        raise fail(f"{op}: the target does not match the source; the source was left as it is", 1)


@group.command()
def copy(
    source: NamespaceArg,
    target: NamespaceArg,
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    prefix: PrefixOpt = "embeddings",
    vector_index: IndexOpt = "ivfflat",
    lists: ListsOpt = pgvector_layout.DEFAULT_LISTS,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Copy namespace SOURCE into TARGET inside Postgres with every column SOURCE's table has (its own extra
    columns and NULLs included; a TARGET table that cannot hold one is refused before anything is copied), INSERT …
    SELECT in chunk_id order, 5,000 rows a transaction (NSMIGRATE_PGVECTOR_COPY_CHUNK_ROWS; run it again to resume);
    build TARGET's indexes, ANALYZE, and verify row counts, id sets and every column of every row."""
    index = _index(vector_index, lists)
    _between(
        "copy", table_copies.copy_namespace, (source, target), url_env, prefix, index, dry_run, as_json, database_url
    )


def _between(
    op: str,
    operation: Callable[..., table_copies.CopyResult],
    names: tuple[str, str],
    url_env: str,
    prefix: str,
    vector_index: pgvector_layout.VectorIndex,
    dry_run: bool,
    as_json: bool,
    database_url: str | None,
) -> None:
    """``copy`` or ``move`` (``operation``) from namespace ``names[0]`` to ``names[1]``."""
    source, target = _checked(names[0]), _checked(names[1])  # before the audit record: a refused name writes none
    chunk_rows = settings(database_url, None).pgvector_copy_chunk_rows

    def run(engine: sa.Engine) -> table_copies.CopyResult:
        return operation(
            engine, prefix, source, target, vector_index=vector_index, dry_run=dry_run, chunk_rows=chunk_rows
        )

    detail = {"source": source, "target": target, "vector_index": vector_index.method, "lists": vector_index.lists}
    _transfer(op, url_env, prefix, run, dry_run, as_json, database_url, **detail)


@group.command()
def move(
    source: NamespaceArg,
    target: NamespaceArg,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the source table is renamed to a backup.")] = False,
    dry_run: DryRunOpt = False,
    vector_index: IndexOpt = "ivfflat",
    lists: ListsOpt = pgvector_layout.DEFAULT_LISTS,
    as_json: JsonOpt = False,
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    database_url: DatabaseOpt = None,
) -> None:
    """Move namespace SOURCE to TARGET: copy as `copy` does, then, only when counts, id sets and every column of
    every row match at the moment of the rename (both tables locked and compared again), rename the source table to
    {prefix}_backup_{timestamp}_{SOURCE} (never dropped). Needs --yes."""
    index = _index(vector_index, lists)
    _need_yes(yes, dry_run, f"move renames namespace {source!r}'s table to a backup")
    _between(
        "move", table_copies.move_namespace, (source, target), url_env, prefix, index, dry_run, as_json, database_url
    )


@group.command()
def legacy(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the legacy table is renamed to a backup.")] = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    vector_index: IndexOpt = "ivfflat",
    lists: ListsOpt = pgvector_layout.DEFAULT_LISTS,
    prefix: PrefixOpt = "embeddings",
    url_env: UrlEnvOpt = PGVECTOR_URL_ENV,
    database_url: DatabaseOpt = None,
) -> None:
    """Migrate the legacy single table {prefix} to {prefix}_default (the default namespace) inside Postgres with
    every column it has (NULLs included), verify row counts, id sets and every column of every row, then (compared
    again under a lock) rename the legacy table to {prefix}_backup_{timestamp}. Needs --yes, as move."""
    index = _index(vector_index, lists)
    _need_yes(yes, dry_run, f"legacy renames the legacy table {prefix} to a backup")
    chunk_rows = settings(database_url, None).pgvector_copy_chunk_rows

    def run(engine: sa.Engine) -> table_copies.CopyResult:
        return table_copies.migrate_legacy(engine, prefix, vector_index=index, dry_run=dry_run, chunk_rows=chunk_rows)

    detail = {"source": prefix, "target": "", "vector_index": index.method, "lists": index.lists}
    _transfer("legacy", url_env, prefix, run, dry_run, as_json, database_url, **detail)

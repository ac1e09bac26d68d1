"""Copies of pgvector namespaces made by Postgres itself: a batch copied or compared inside one database
(INSERT … SELECT by keyset ranges: no vector leaves the database) or, a fleet batch between two databases, as rows
in Postgres's binary form (copy_rows: no row becomes a record); and the commands' copy, move and legacy migration
of whole tables, each proven equal before a source is renamed to a backup (never dropped).

Every identifier is quoted and every namespace name checked before it reaches SQL, as in namespaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator import pgvector_layout, pgvector_rows
from nsmigrate.orchestrator.errors import PlanError, StoreError
from nsmigrate.orchestrator.listing import table_batches
from nsmigrate.orchestrator.pgvector_layout import ID_COLUMN, quote
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.workers.stores.pgvector import binary as pgbinary
from nsmigrate.workers.stores.pgvector.namespaces import (
    _one,
    build_indexes,
    columns_of,
    create_namespace,
    dimension_of,
    exists,
    read_table,
    rename_to_backup,
    table_columns,
    table_or_refuse,
)

# --- copies inside Postgres -------------------------------------------------------------------------------------


def carried_columns(conn: sa.Connection, source: str, *, row_numbers: bool = False) -> list[str]:
    """The columns of ``source`` a copy carries: every one, whatever the layout (a user's own columns too), but the
    table's row number unless ``row_numbers`` (a copy into a table of its own, where the numbers cannot clash)."""
    return [c.name for c in table_columns(conn, source) if row_numbers or not c.serial]


def carry_problems(conn: sa.Connection, source: str, target: str, columns: Sequence[str]) -> list[str]:
    """Why ``target`` cannot hold ``columns`` of ``source`` as they are, one line per column (``[]``: it can): a
    column it lacks, of another type, or NOT NULL where source rows hold NULL."""
    have = {c.name: c for c in table_columns(conn, source)}
    wanted = [have[name] for name in columns]
    target_columns = table_columns(conn, target)
    problems = pgvector_rows.carry_problems(target, wanted, target_columns)
    for column in target_columns:
        if column.name in columns and column.not_null and not have[column.name].not_null:
            nulls = int(_one(conn, f"SELECT count(*) FROM {quote(source)} WHERE {quote(column.name)} IS NULL"))
            if nulls:
                problems.append(f"table {target} column {column.name} is NOT NULL; {nulls} rows of {source} hold NULL")
    return problems


def prepare_target(
    conn: sa.Connection, prefix: str, namespace: str, source: str, *, row_numbers: bool = False
) -> tuple[str, list[str]]:
    """The namespace's table made ready to receive every column of ``source``: created if missing (the layout plus
    the source's own columns it lacks), else checked; returns it and the columns carried. Raises ``PlanError``
    naming each column the existing table cannot hold."""
    dimension = dimension_of(conn, source) or 0
    table, created = create_namespace(conn, prefix, namespace, dimension, from_legacy=source == prefix)
    columns = carried_columns(conn, source, row_numbers=row_numbers)
    if created:
        have = columns_of(conn, table)
        for column in table_columns(conn, source):
            if column.name in columns and column.name not in have:
                conn.execute(sa.text(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.sql_type}"))
    pgvector_rows.refuse_columns(carry_problems(conn, source, table, columns), source)
    return table, columns


def _enriched(metadata: str, extra: str = ":extra") -> str:
    """``metadata`` (an SQL expression) with the enrichment ``extra`` (a bound parameter) merged in; a NULL stays NULL
    when there is nothing to add."""
    return (
        f"CASE WHEN CAST({extra} AS jsonb) = '{{}}'::jsonb THEN {metadata} "
        f"ELSE coalesce({metadata}, '{{}}'::jsonb) || CAST({extra} AS jsonb) END"
    )


def _insert_select(
    source: str, target: str, columns: Sequence[str], where: str, tail: str = "", *, overwrite: bool = True
) -> str:
    listed = ", ".join(quote(c) for c in columns)
    picked = ", ".join(
        _enriched("s.metadata") if c == pgvector_layout.METADATA_COLUMN else f"s.{quote(c)}" for c in columns
    )
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns if c != ID_COLUMN)
    conflict = f"DO UPDATE SET {updates}" if overwrite else "DO NOTHING"
    return (
        f"INSERT INTO {quote(target)} ({listed}) SELECT {picked} FROM {quote(source)} s WHERE {where} {tail} "
        f"ON CONFLICT ({ID_COLUMN}) {conflict}"
    )


def copy_ids(
    conn: sa.Connection,
    source: str,
    target: str,
    ids: Sequence[str],
    columns: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> int:
    """Copy ``columns`` of the rows of ``ids`` from ``source`` into ``target`` inside Postgres (one fleet batch),
    their ``metadata`` merged with ``extra`` (the job's enrichment); idempotent (a row copied before is overwritten).
    Returns the rows copied."""
    sql = _insert_select(source, target, columns, f"s.{ID_COLUMN} = ANY(:ids)")
    result = conn.execute(sa.text(sql), {"ids": list(ids), "extra": json.dumps(dict(extra or {}))})
    return int(result.rowcount or 0)


def _tables_only(spec: JobSpec) -> bool:
    """Source and target are the application's tables (``schema: documented``), and no enrichment key is a column
    (those the copy through records puts in the column; a copy of rows puts them in ``metadata``)."""
    if not table_batches.between_tables(spec):
        return False
    enriched = set(spec.enrich.constants) | ({"creator_id", "twin_id"} if spec.enrich.creator_fields else set())
    return not enriched & set(pgvector_layout.COLUMN_BY_NAME)


def in_database(spec: JobSpec) -> bool:
    """Whether ``spec``'s batches can run inside Postgres: ``_tables_only``, in the same database (their URL env
    vars hold the same URL)."""
    return _tables_only(spec) and pgvector_rows.same_database(spec.source, spec.target, os.environ)


def between_databases(spec: JobSpec) -> bool:
    """Whether ``spec``'s batches can pass rows from one database to another as they are (``copy_rows``): the
    application's tables on both sides (``_tables_only``), in two databases."""
    return _tables_only(spec) and not pgvector_rows.same_database(spec.source, spec.target, os.environ)


#: Types whose binary form a staging table of the target's database reads as the source wrote it (built in, or
#: pgvector's). A row with a column of any other type (an enum, a domain of the user's) is copied as a record.
_PASSED_TYPES = frozenset(
    {
        "text",
        "character varying",
        "character",
        "smallint",
        "integer",
        "bigint",
        "real",
        "double precision",
        "numeric",
        "boolean",
        "text[]",
        "character varying[]",
        "json",
        "jsonb",
        "uuid",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "bytea",
        "vector",
    }
)


def passes_as_rows(columns: Sequence[pgvector_rows.TableColumn]) -> bool:
    """Whether rows of ``columns`` can go between databases in binary as they are (every type in ``_PASSED_TYPES``)."""
    return all(c.base_type in _PASSED_TYPES for c in columns)


def copy_rows(
    reading: sa.Connection,
    source: str,
    columns: Sequence[pgvector_rows.TableColumn],
    ids: Sequence[str],
    writing: sa.Connection,
    target: str,
    extra: Mapping[str, Any],
) -> tuple[int, int] | None:
    """One batch between two databases as the single-process rival moves a table (``bench/pgvector_rival.py``): the
    rows of ``ids`` read ``COPY (SELECT …) TO STDOUT (FORMAT BINARY)`` from ``source``, ``metadata`` merged with
    ``extra`` there as a copy inside Postgres merges it, and written by binary ``COPY`` into ``target``
    (``pgbinary.pass_rows``): straight into the table when it holds every column in the source's type and none of
    the ids yet, else through a staging table of the source's types and one ``INSERT … ON CONFLICT``, so a batch run
    again overwrites what it wrote. No row becomes a record. Returns (rows written, bytes passed), or None, with
    nothing written, when ``target`` does not exist."""
    have = {c.name: c.sql_type for c in table_columns(writing, target)}
    if not have:
        return None
    lacking = [c.name for c in columns if c.name not in have]
    if lacking:
        raise StoreError(
            f"table {target} has no column {', '.join(lacking)} of {source}; nothing of this batch was written",
            hint="add the column(s) to the target (same type), or copy into a new namespace",
            table=target,
        )
    # Identifiers are quoted; a "%" in one is doubled in the statements that have the driver's placeholders.
    listed = ", ".join(quote(c.name) for c in columns)
    picked = ", ".join(
        f"{_enriched(quote(c.name), '%(extra)s')} AS {quote(c.name)}"
        if c.name == pgvector_layout.METADATA_COLUMN
        else quote(c.name).replace("%", "%%")
        for c in columns
    )
    # Binary COPY carries no types: the target reads each field as its own column's type, so only a table whose
    # columns are the source's types takes the rows straight.
    same_types = all(have[c.name] == c.sql_type for c in columns)
    updates = ", ".join(f"{quote(c.name)} = EXCLUDED.{quote(c.name)}" for c in columns if c.name != ID_COLUMN)
    return pgbinary.pass_rows(
        reading,
        f"COPY (SELECT {picked} FROM {quote(source)} WHERE {ID_COLUMN} = ANY(%(ids)s)) TO STDOUT (FORMAT BINARY)",
        {"ids": list(ids), "extra": json.dumps(dict(extra))},
        writing,
        f"COPY {quote(target)} ({listed}) FROM STDIN (FORMAT BINARY)" if same_types else None,
        ", ".join(f"{quote(c.name)} {c.sql_type}" for c in columns),
        f"INSERT INTO {quote(target)} ({listed}) SELECT {listed} FROM {{staging}} "
        f"ON CONFLICT ({ID_COLUMN}) DO UPDATE SET {updates}",
    )


@dataclass(frozen=True)
class RunTables:
    """One job run between tables of one database: the source's ``DocumentedPgvectorStore`` (its engine and error
    translation), the target's table prefix and both namespaces."""

    store: Any
    target_prefix: str
    source_namespace: str
    target_namespace: str


def copy_batch_in_postgres(run: RunTables, ids: Sequence[str], extra: Mapping[str, Any]) -> int:
    """One fleet batch inside Postgres: the rows of ``ids`` from the source namespace's table into the target
    namespace's (created with the source's dimension if missing), ``metadata`` merged with ``extra``. Returns the
    rows copied."""
    store = run.store
    with store._errors("copy_in_postgres", run.source_namespace), store.engine().begin() as conn:
        source_table = read_table(conn, store.prefix, run.source_namespace)
        if source_table is None:
            return 0
        target_table, columns = prepare_target(conn, run.target_prefix, run.target_namespace, source_table)
        return copy_ids(conn, source_table, target_table, ids, columns, extra)


def compare_in_postgres(run: RunTables, ids: Sequence[str], extra: Mapping[str, Any]) -> dict[str, str | None]:
    """Verification of one chunk of a job run inside Postgres: for each of ``ids`` still in the source, None when
    the target row equals it (values exactly, every carried column, ``metadata`` = source's merged with ``extra``),
    else why not (``missing`` or the first column that differs). Source ids no longer there are absent."""
    store = run.store
    with store._errors("verify_in_postgres", run.source_namespace), store.engine().connect() as conn:
        source = read_table(conn, store.prefix, run.source_namespace)
        target = read_table(conn, run.target_prefix, run.target_namespace)
        if source is None:
            return {}
        if target is None:
            return {
                i: "missing"
                for i in conn.execute(
                    sa.text(f"SELECT {ID_COLUMN} FROM {quote(source)} WHERE {ID_COLUMN} = ANY(:ids)"),
                    {"ids": list(ids)},
                ).scalars()
            }
        verdict = _row_verdict(conn, source, target, carried_columns(conn, source))
        rows = conn.execute(
            sa.text(
                f"SELECT s.{ID_COLUMN}, {verdict} "
                f"FROM {quote(source)} s LEFT JOIN {quote(target)} t ON t.{ID_COLUMN} = s.{ID_COLUMN} "
                f"WHERE s.{ID_COLUMN} = ANY(:ids)"
            ),
            {"ids": list(ids), "extra": json.dumps(dict(extra))},
        ).all()
    return {row[0]: row[1] for row in rows}


def _row_verdict(conn: sa.Connection, source: str, target: str, columns: Sequence[str]) -> str:
    """The SQL expression (over source ``s`` LEFT JOIN target ``t``) that is NULL when the target row equals the
    source row in every one of ``columns`` (exactly; ``metadata`` merged with ``:extra``), else why not: ``missing``,
    ``{column} differs`` or ``{column} missing in target``."""
    have = {c.name: c for c in table_columns(conn, target)}
    types = {c.name: c.sql_type for c in table_columns(conn, source)}
    said = {c: c.replace("'", "''") for c in columns}  # a column's name inside an SQL string literal
    whens = " ".join(
        f"WHEN true THEN '{said[c]} missing in target'"
        if c not in have
        else f"WHEN {_differs(c, types[c], have[c].sql_type)} THEN '{said[c]} differs'"
        for c in columns
        if c != ID_COLUMN
    )
    return f"CASE WHEN t.{ID_COLUMN} IS NULL THEN 'missing' {whens} END"


def _differs(column: str, source_type: str, target_type: str) -> str:
    """The SQL condition that ``column`` of ``s`` (``metadata`` merged with ``:extra``) is not what the copy wrote
    into ``t``. Of one type, the two values' text forms are compared: a type's ``=`` may be missing (``json``,
    ``point``) or loose (``1 = 1.0`` in ``jsonb``, ``-0 = 0`` in a float), and the text form is exact; the vector
    by its binary form (exact, and cheaper than its text). Of two types of one family (``carry_problems``), the
    source's value cast as the copy's INSERT casts it."""
    s = _enriched("s.metadata") if column == pgvector_layout.METADATA_COLUMN else f"s.{quote(column)}"
    t = f"t.{quote(column)}"
    if source_type != target_type:
        return f"CAST({s} AS {target_type}) IS DISTINCT FROM {t}"
    if column == pgvector_layout.EMBEDDING_COLUMN and source_type.startswith("vector"):
        return f"vector_send({s}) IS DISTINCT FROM vector_send({t})"
    return f"CAST({s} AS text) IS DISTINCT FROM CAST({t} AS text)"


def finish_load(store: Any, namespaces: Sequence[str], index: pgvector_layout.VectorIndex) -> list[dict[str, Any]]:
    """After a bulk load into ``store`` (a ``DocumentedPgvectorStore``): each namespace's indexes and ANALYZE
    (``build_indexes``); verification runs this before it judges."""
    built = []
    with store._errors("build_indexes"), store.engine().begin() as conn:
        for namespace in namespaces:
            table = read_table(conn, store.prefix, namespace)
            if table is not None:
                built.append(build_indexes(conn, table, index))
    return built


@dataclass
class CopyResult:
    source_table: str
    target_table: str
    source_rows: int
    target_rows: int
    copied: int
    missing: list[str] = field(default_factory=list)  # source ids not in the target (first few)
    extra: int = 0  # target rows that are not in the source
    columns: list[str] = field(default_factory=list)  # the columns carried and compared
    differing: dict[str, str] = field(default_factory=dict)  # id → the first column that differs (first few)
    differ: int = 0  # rows in both whose carried columns are not all equal (a source row changed after its copy)
    backup_table: str | None = None
    indexes: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.source_rows == self.target_rows and not self.missing and not self.extra and not self.differ

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "verified": self.verified}


def rows_not_in(conn: sa.Connection, table: str, other: str) -> int:
    """Rows of ``table`` whose ``chunk_id`` ``other`` does not hold."""
    sql = (
        f"SELECT count(*) FROM {quote(table)} t WHERE NOT EXISTS "
        f"(SELECT 1 FROM {quote(other)} o WHERE o.{ID_COLUMN} = t.{ID_COLUMN})"
    )
    return int(_one(conn, sql))


def compare_tables(conn: sa.Connection, source: str, target: str, result: CopyResult) -> CopyResult:
    """Row counts, both id-set differences and every row's carried columns (``result.columns``), computed inside
    Postgres."""
    result.source_rows = int(_one(conn, f"SELECT count(*) FROM {quote(source)}"))
    result.target_rows = int(_one(conn, f"SELECT count(*) FROM {quote(target)}"))
    result.missing = list(
        conn.execute(
            sa.text(
                f"SELECT s.{ID_COLUMN} FROM {quote(source)} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {quote(target)} t WHERE t.{ID_COLUMN} = s.{ID_COLUMN}) ORDER BY 1 LIMIT 20"
            )
        ).scalars()
    )
    result.extra = rows_not_in(conn, target, source)
    verdict = _row_verdict(conn, source, target, result.columns)
    differing = conn.execute(
        sa.text(
            f"SELECT id, why, count(*) OVER () FROM (SELECT s.{ID_COLUMN} AS id, {verdict} AS why "
            f"FROM {quote(source)} s JOIN {quote(target)} t ON t.{ID_COLUMN} = s.{ID_COLUMN}) v "
            "WHERE why IS NOT NULL ORDER BY id LIMIT 20"
        ),
        {"extra": "{}"},
    ).all()
    result.differing = {row[0]: row[1] for row in differing}
    result.differ = int(differing[0][2]) if differing else 0
    return result


def copy_table(
    engine: sa.Engine,
    source: str,
    target: str,
    columns: Sequence[str],
    *,
    chunk_rows: int = DEFAULTS.pgvector_copy_chunk_rows,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy ``columns`` of every row of ``source`` into ``target`` inside Postgres, ``chunk_rows`` at a time in
    ``chunk_id`` order, each chunk its own transaction. Resumable: a copy killed half-way is run again from the
    target's largest ``chunk_id`` (everything below it was committed in order). A row the target holds already is
    kept, never overwritten: the application may write the target while it is copied into (``legacy`` makes the
    default namespace's table first), and its write is the newer; the comparison before any rename then finds it
    differing, and the source is kept. Returns the rows copied by this call."""
    with engine.connect() as conn:
        after = _one(conn, f"SELECT max({ID_COLUMN}) FROM {quote(target)}")
    # The chunk is read once, then inserted: its last id moves the cursor on, whether or not its rows were new.
    chunk = (
        f"SELECT * FROM {quote(source)} s WHERE (CAST(:after AS text) IS NULL OR s.{ID_COLUMN} > :after) "
        f"ORDER BY s.{ID_COLUMN} LIMIT :n"
    )
    insert = _insert_select("chunk", target, columns, "TRUE", overwrite=False)
    sql = (
        f"WITH chunk AS ({chunk}), moved AS ({insert} RETURNING {ID_COLUMN}) "
        f"SELECT (SELECT count(*) FROM chunk), (SELECT max({ID_COLUMN}) FROM chunk), (SELECT count(*) FROM moved)"
    )
    copied = 0
    while True:
        with engine.begin() as conn:
            read, last, n = conn.execute(sa.text(sql), {"after": after, "n": chunk_rows, "extra": "{}"}).one()
        if not read:
            _continue_row_numbers(engine, target, columns)
            return copied
        copied += int(n)
        after = last
        if progress is not None:
            progress(copied)


def _holds_source_row_numbers(conn: sa.Connection, source: str, target: str) -> bool:
    """Whether ``target`` (which holds only rows of ``source``: ``check_copy_target``) has the source's row number
    columns and every row of it the same numbers as in the source, so a copy may keep them without a clash."""
    serial = [c.name for c in table_columns(conn, source) if c.serial]
    if not set(serial) <= columns_of(conn, target):
        return False
    differ = " OR ".join(f"t.{quote(c)} IS DISTINCT FROM s.{quote(c)}" for c in serial) or "false"
    return not _one(
        conn,
        f"SELECT EXISTS (SELECT 1 FROM {quote(target)} t JOIN {quote(source)} s ON s.{ID_COLUMN} = t.{ID_COLUMN} "
        f"WHERE {differ})",
    )


def _continue_row_numbers(engine: sa.Engine, table: str, columns: Sequence[str]) -> None:
    """After rows kept their row numbers (``id``), the table's own sequence goes on after the largest, so the next
    row the application inserts does not take one of them."""
    with engine.begin() as conn:
        for column in table_columns(conn, table):
            if column.serial and column.name in columns:
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence(:t, :c), max({quote(column.name)})) "
                        f"FROM {quote(table)} HAVING max({quote(column.name)}) IS NOT NULL"
                    ),
                    {"t": quote(table), "c": column.name},
                )


def check_copy_target(conn: sa.Connection, source: str, target: str) -> None:
    """A copy may go on into ``target`` only when all it holds came from ``source`` (an earlier, unfinished copy)."""
    foreign = rows_not_in(conn, target, source)
    if foreign:
        raise PlanError(
            f"table {target} already holds {foreign} rows that are not in {source}; nothing was copied",
            hint="copy into a new namespace, or drop the target first (`nsmigrate pgvector drop`)",
            table=target,
        )


# --- the commands' copy, move and legacy migration ----------------------------------------------------------------


def transfer(
    engine: sa.Engine,
    prefix: str,
    source_table: str,
    target_namespace: str,
    *,
    vector_index: pgvector_layout.VectorIndex,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    chunk_rows: int = DEFAULTS.pgvector_copy_chunk_rows,
) -> CopyResult:
    """Copy ``source_table`` into ``target_namespace``'s table inside Postgres (created if missing, resumed if an
    earlier copy of the same source stopped half-way), build its indexes and ANALYZE it, then compare counts and id
    sets. ``dry_run``: only the checks and the counts; nothing is written. ``chunk_rows``: rows a transaction
    (``copy_table``; the setting ``pgvector_copy_chunk_rows``)."""
    target_table = pgvector_layout.table_of(prefix, target_namespace)
    if target_table == source_table:
        raise PlanError(f"source and target are the same table {source_table}", hint="choose another target namespace")
    with engine.connect() as conn:  # one transaction, committed only when this is no dry run
        if dimension_of(conn, source_table) is None:
            raise StoreError(f"table {source_table} has no vector column `embedding`", table=source_table)
        result = CopyResult(source_table, target_table, 0, 0, 0)
        existed = exists(conn, target_table)
        if existed:
            check_copy_target(conn, source_table, target_table)
        keep = not existed or _holds_source_row_numbers(conn, source_table, target_table)
        _, result.columns = prepare_target(conn, prefix, target_namespace, source_table, row_numbers=keep)
        if dry_run:
            conn.rollback()
            return (
                compare_tables(conn, source_table, target_table, result) if existed else _counted_source(conn, result)
            )
        conn.commit()
    result.copied = copy_table(
        engine, source_table, target_table, result.columns, chunk_rows=chunk_rows, progress=progress
    )
    with engine.begin() as conn:
        result.indexes = build_indexes(conn, target_table, vector_index)
    with engine.connect() as conn:
        compare_tables(conn, source_table, target_table, result)
    if result.missing:  # rows the cursor passed: the application wrote them below it while the copy ran
        result.copied += copy_missing(engine, source_table, target_table, result.columns)
        _continue_row_numbers(engine, target_table, result.columns)  # theirs may be the largest row numbers
        with engine.connect() as conn:
            compare_tables(conn, source_table, target_table, result)
    return result


def copy_missing(engine: sa.Engine, source: str, target: str, columns: Sequence[str]) -> int:
    """Copy every row of ``source`` that ``target`` lacks, in one transaction: ``copy_table``'s ``chunk_id`` cursor
    never reads below the largest id it copied, so a row the application wrote there is sent only here. A row held
    otherwise is left as it is (which side changed is unknown: the comparison reports it). Returns the rows copied."""
    absent = f"NOT EXISTS (SELECT 1 FROM {quote(target)} t WHERE t.{ID_COLUMN} = s.{ID_COLUMN})"
    sql = _insert_select(source, target, columns, absent, overwrite=False)
    with engine.begin() as conn:
        return int(_one(conn, f"WITH c AS ({sql} RETURNING 1) SELECT count(*) FROM c", extra="{}"))


def _counted_source(conn: sa.Connection, result: CopyResult) -> CopyResult:
    result.source_rows = int(_one(conn, f"SELECT count(*) FROM {quote(result.source_table)}"))
    return result


def copy_namespace(
    engine: sa.Engine,
    prefix: str,
    source: str,
    target: str,
    *,
    vector_index: pgvector_layout.VectorIndex,
    **options: Any,
) -> CopyResult:
    """``nsmigrate pgvector copy``: ``transfer`` from the source namespace's table; the source is left as it is."""
    pgvector_layout.check_namespace(target)
    with engine.connect() as conn:
        source_table = table_or_refuse(conn, prefix, source)
    return transfer(engine, prefix, source_table, target, vector_index=vector_index, **options)


def move_namespace(
    engine: sa.Engine,
    prefix: str,
    source: str,
    target: str,
    *,
    vector_index: pgvector_layout.VectorIndex,
    dry_run: bool = False,
    **options: Any,
) -> CopyResult:
    """``nsmigrate pgvector move``: ``copy_namespace``, then, only when counts, id sets and contents match at the
    moment of the rename (``retire_if_equal``), the source table is renamed to a backup
    (``{prefix}_backup_{stamp}_{namespace}``), never dropped."""
    result = copy_namespace(engine, prefix, source, target, vector_index=vector_index, dry_run=dry_run, **options)
    if not dry_run and result.verified:
        retire_if_equal(engine, prefix, result, source)
    return result


def retire_if_equal(engine: sa.Engine, prefix: str, result: CopyResult, namespace: str | None) -> None:
    """Rename the source to a backup only if it still equals the target: both tables locked against writes, compared
    again (counts, ids, contents), renamed in the same transaction. The comparison after the copy is a reason to
    try; this one is the proof, so a row written in between keeps the source where it is (``result`` says why)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"LOCK TABLE {quote(result.source_table)} IN ACCESS EXCLUSIVE MODE"))
        conn.execute(sa.text(f"LOCK TABLE {quote(result.target_table)} IN SHARE MODE"))
        compare_tables(conn, result.source_table, result.target_table, result)
        if result.verified:
            result.backup_table = rename_to_backup(conn, prefix, result.source_table, namespace)


def migrate_legacy(
    engine: sa.Engine, prefix: str, *, vector_index: pgvector_layout.VectorIndex, dry_run: bool = False, **options: Any
) -> CopyResult:
    """``nsmigrate pgvector legacy``: the single ``{prefix}`` table → ``{prefix}_default``, verified, then the legacy
    table renamed to ``{prefix}_backup_{stamp}`` (only when they match then: ``retire_if_equal``)."""
    with engine.connect() as conn:
        if not exists(conn, prefix) or ID_COLUMN not in columns_of(conn, prefix):
            raise StoreError(
                f"there is no legacy table {prefix} with a {ID_COLUMN} column to migrate",
                hint="it may have been migrated already: `nsmigrate pgvector list` shows the namespaces",
                table=prefix,
            )
    result = transfer(engine, prefix, prefix, "", vector_index=vector_index, dry_run=dry_run, **options)
    if not dry_run and result.verified:
        retire_if_equal(engine, prefix, result, None)
    return result

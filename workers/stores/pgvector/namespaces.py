"""Namespaces of the application's pgvector layout (``orchestrator.pgvector_layout``) as Postgres sees them: found from
the tables themselves, created, written, described (stats and indexes), dropped and renamed to a backup and back.
Copies of whole namespaces and of fleet batches inside Postgres are ``table_copies``.

Every identifier is quoted (``pgvector_layout.quote``) and every namespace name passes
``pgvector_layout.check_namespace`` before it reaches SQL, so a name like ``x"; DROP TABLE …`` is refused with the rule
it breaks and changes nothing. Used by ``nsmigrate pgvector`` (``cli.pgvector``), the documented store
(``workers.stores.pgvector.documented``), the fleet's server-side copy batches (``workers.steps.copying``) and
verification (indexes + ANALYZE before judging).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator import pgvector_layout, pgvector_rows
from nsmigrate.orchestrator.errors import PlanError, StoreError
from nsmigrate.orchestrator.limits import PG_IDENTIFIER_MAX_BYTES
from nsmigrate.orchestrator.pgvector_layout import ID_COLUMN, quote
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.workers.stores.pgvector import binary as pgbinary


def _one(conn: sa.Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).scalar()


# ``table``'s oid (NULL: none) read from the catalog as this statement sees it, the first of the search path's schemas
# that holds it, as ``to_regclass`` resolves a name. Not ``to_regclass``: it takes no lock, so a transaction that
# once found no such table keeps that answer from its cache after another worker made it and committed (found
# again only once something makes the backend read the catalog's invalidations), and making it again then fails with
# "relation already exists".
_OID_OF = (
    "(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace "
    "WHERE c.relname = :n AND s.nspname = ANY (pg_catalog.current_schemas(false)) "
    "ORDER BY array_position(pg_catalog.current_schemas(false), s.nspname) LIMIT 1)"
)


def exists(conn: sa.Connection, table: str) -> bool:
    return bool(_one(conn, f"SELECT {_OID_OF} IS NOT NULL", n=table))


def columns_of(conn: sa.Connection, table: str) -> frozenset[str]:
    """The columns ``table`` has (empty when it does not exist)."""
    rows = conn.execute(
        sa.text(f"SELECT attname FROM pg_attribute WHERE attrelid = {_OID_OF} AND attnum > 0 AND NOT attisdropped"),
        {"n": table},
    ).scalars()
    return frozenset(rows)


def table_columns(conn: sa.Connection, table: str) -> list[pgvector_rows.TableColumn]:
    """``table``'s columns in table order, as Postgres describes them (empty when it does not exist): what a copy
    carries and verification compares, whatever the table's layout."""
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef, "
            "a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            f"WHERE a.attrelid = {_OID_OF} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        {"n": table},
    ).all()
    return [pgvector_rows.TableColumn(*row) for row in rows]


def dimension_of(conn: sa.Connection, table: str) -> int | None:
    mod = _one(
        conn,
        f"SELECT atttypmod FROM pg_attribute WHERE attrelid = {_OID_OF} AND attname = :c AND NOT attisdropped",
        n=table,
        c=pgvector_layout.EMBEDDING_COLUMN,
    )
    return int(mod) if mod is not None and mod > 0 else None


def discover(conn: sa.Connection, prefix: str) -> dict[str, str]:
    """Every namespace of the database and its table, found from the tables themselves: ``{prefix}_{name}`` tables
    with a ``chunk_id`` and an ``embedding`` column whose name passes the rules; the legacy ``{prefix}`` table is the
    default namespace while ``{prefix}_default`` does not exist."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND (c.relname = :legacy OR left(c.relname, :plen) = :p) "
            "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = :id) "
            "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = :emb) "
            "ORDER BY c.relname"
        ),
        {"legacy": prefix, "p": f"{prefix}_", "plen": len(prefix) + 1, "id": ID_COLUMN, "emb": "embedding"},
    ).scalars()
    found: dict[str, str] = {}
    legacy = False
    for table in rows:
        if table == prefix:
            legacy = True
            continue
        namespace = pgvector_layout.namespace_of(prefix, table)
        if namespace is not None:
            found[namespace] = table
    if legacy and "" not in found:
        found[""] = prefix
    return dict(sorted(found.items()))


def read_table(conn: sa.Connection, prefix: str, namespace: str) -> str | None:
    """The table to read ``namespace`` from, or None when it has none (the legacy table for the default one while
    ``{prefix}_default`` does not exist)."""
    table = pgvector_layout.table_of(prefix, namespace)
    if exists(conn, table):
        return table
    if namespace == "" and exists(conn, prefix) and ID_COLUMN in columns_of(conn, prefix):
        return prefix
    return None


def count_rows(conn: sa.Connection, tables: Mapping[str, str]) -> dict[str, int]:
    """Rows of each namespace's table (one UNION ALL round trip)."""
    if not tables:
        return {}
    items = list(tables.items())
    union = " UNION ALL ".join(f"SELECT {i} AS i, count(*) AS n FROM {quote(t)}" for i, (_, t) in enumerate(items))
    counted: dict[int, int] = {int(i): int(n) for i, n in conn.execute(sa.text(union)).all()}
    return {ns: int(counted[i]) for i, (ns, _) in enumerate(items)}


def create_namespace(
    conn: sa.Connection,
    prefix: str,
    namespace: str,
    dimension: int,
    index: pgvector_layout.VectorIndex | None = None,
    *,
    from_legacy: bool = False,
) -> tuple[str, bool]:
    """Create the namespace's table of the application's layout if missing (safe against concurrent workers); returns
    the table and whether it was created. With ``index`` its four documented indexes come at once, as the
    application's DDL makes them; without, after the load (``build_indexes``: an ivfflat index built on an empty
    table has no lists worth the name, and a bulk load is faster without indexes). The default namespace's table is
    refused while the legacy ``{prefix}`` table holds that namespace (it would hide every legacy row from then on),
    unless ``from_legacy``: the legacy table's own rows are what is copied into it."""
    table = pgvector_layout.table_of(prefix, namespace)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": table})
    if exists(conn, table):
        have = dimension_of(conn, table)
        if have is not None and have != dimension:
            raise StoreError(
                f"table {table} exists with dimension {have}, not {dimension}",
                hint="use the existing dimension, or another namespace",
                namespace=namespace,
            )
        return table, False
    if namespace == "" and not from_legacy and read_table(conn, prefix, "") == prefix:
        raise StoreError(
            f"the default namespace is the legacy table {prefix}: a new {table} would hide its rows from every "
            "reader of the default namespace",
            hint="migrate it first (`nsmigrate pgvector legacy`), or write another namespace; nothing was created",
            namespace=namespace,
        )
    if problem := pgvector_layout.layout_names_problem(prefix, namespace):
        raise PlanError(problem, hint="choose a shorter namespace; nothing was created", namespace=namespace)
    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    conn.execute(sa.text(pgvector_layout.create_table_sql(table, dimension)))
    for sql in pgvector_layout.create_index_sql(table, index, dimension) if index else ():
        conn.execute(sa.text(sql))
    return table, True


def vector_text(values: Sequence[float]) -> str:
    """pgvector's text form of a vector (bound as text, cast in the statement)."""
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def upsert_records(conn: sa.Connection, table: str, records: Sequence[Record]) -> bool:
    """Insert or overwrite ``records`` as rows of ``table``, each row exactly what its record says
    (``pgvector_rows.record_to_row`` over the table's own columns: a record that does not map raises ``MappingError``
    naming it, and nothing of this call is written), in pgvector's binary form (``workers.stores.pgvector.binary``).
    False, with nothing written, when ``table`` does not exist."""
    columns = table_columns(conn, table)
    if not columns:
        return False
    by_name = {c.name: c for c in columns}
    rows = [pgvector_rows.record_to_row(r, columns) for r in records]
    # One write per set of columns (in table order, whatever order a record's keys came in): a NOT NULL column a
    # record leaves out keeps its default (or old value).
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        names = tuple(n for n in by_name if n in row)
        groups.setdefault(names, []).append({n: _bound(by_name[n], row[n]) for n in names})
    for group in groups.values():
        try:
            with conn.begin_nested():  # a value refused below leaves the transaction usable to find it
                pgbinary.upsert_rows(conn, table, columns, group)
        except (sa.exc.DataError, sa.exc.IntegrityError) as e:
            refused = _refused_value(conn, table, by_name, group)
            if refused is None:
                raise
            raise refused from e
    return True


def _refused_value(
    conn: sa.Connection,
    table: str,
    by_name: Mapping[str, pgvector_rows.TableColumn],
    rows: Sequence[dict[str, Any]],
) -> pgvector_layout.MappingError | None:
    """After Postgres refused a write of ``rows``: the first value it cannot cast to its column's type (a malformed
    timestamp or JSON text, an enum's unknown label, a domain's check), named with its record, column and table, or
    None when no single value is to blame. Each value is cast on its own, in a savepoint; only the text forms can be
    refused so (every other value was typed by ``record_to_row``)."""
    for row in rows:
        for name, value in row.items():
            column = by_name[name]
            if value is None or column.kind != "text form" or name == pgvector_layout.EMBEDDING_COLUMN:
                continue
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(f"SELECT {pgvector_rows.placeholder(column, 'v')}"), {"v": value})
            except (sa.exc.DataError, sa.exc.IntegrityError) as e:
                refusal = str(e.orig).splitlines()[0]  # the driver's message, without its DETAIL lines
                return pgvector_layout.MappingError(
                    f"record {row[ID_COLUMN]!r}: metadata {name!r} = {value!r:.60} is refused by the column {name} "
                    f"({column.sql_type}) of table {table}: {refusal}",
                    hint="fix the value in the source; nothing of this batch was written",
                    record_id=row[ID_COLUMN],
                    key=name,
                )
    return None


def _bound(column: pgvector_rows.TableColumn, value: Any) -> Any:
    """``value`` as it is written into ``column`` (the JSONB as its text; the vector as it is, made binary by
    ``pgbinary``)."""
    if value is not None and column.name == pgvector_layout.METADATA_COLUMN:
        return json.dumps(value)
    return value


# --- stats and indexes ------------------------------------------------------------------------------------------


@dataclass
class NamespaceStats:
    namespace: str
    table: str
    rows: int
    collections: dict[str, int]
    size_bytes: int
    dimension: int | None
    vector_index: str | None  # what serves similarity search, e.g. "ivfflat (lists = 100)", "hnsw over halfvec(3072)"
    btree_columns: list[str]  # the documented b-tree indexes' columns that have one
    indexes: dict[str, str]  # every index of the table: name → its definition from USING on

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def indexes_of(conn: sa.Connection, table: str) -> dict[str, str]:
    """Every index of ``table``: name → its definition from ``USING`` on (``USING btree (strategy)``)."""
    rows = conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t "
            "ORDER BY indexname"
        ),
        {"t": table},
    ).all()
    return {name: definition[definition.index(" USING ") + 1 :] for name, definition in rows}


def _vector_index(definitions: Mapping[str, str]) -> str | None:
    """What ANN index ``definitions`` hold, in ``VectorIndex.describe``'s words, or None."""
    for definition in definitions.values():
        lists = re.search(r"lists\s*=\s*'?(\d+)", definition)
        halfvec = re.search(r"halfvec\((\d+)\)", definition)
        if definition.startswith("USING ivfflat "):
            return f"ivfflat (lists = {lists.group(1) if lists else '?'})"
        if definition.startswith("USING hnsw "):
            return f"hnsw over halfvec({halfvec.group(1)})" if halfvec else "hnsw"
    return None


def _btree_on(definitions: Mapping[str, str], column: str) -> str | None:
    """The name of an index on ``column`` alone (b-tree), or None."""
    shapes = (f"USING btree ({column})", f"USING btree ({quote(column)})")
    return next((name for name, d in definitions.items() if d in shapes), None)


def stats(conn: sa.Connection, prefix: str, namespace: str) -> NamespaceStats:
    table = table_or_refuse(conn, prefix, namespace)
    collections: dict[str, int] = {}
    if "collection_name" in columns_of(conn, table):
        collections = {
            str(name): int(n)
            for name, n in conn.execute(
                sa.text(f"SELECT collection_name, count(*) FROM {quote(table)} GROUP BY 1 ORDER BY 2 DESC, 1")
            ).all()
        }
    definitions = indexes_of(conn, table)
    return NamespaceStats(
        namespace=namespace,
        table=table,
        rows=int(_one(conn, f"SELECT count(*) FROM {quote(table)}")),
        collections=collections,
        size_bytes=int(_one(conn, f"SELECT pg_total_relation_size({_OID_OF})", n=table)),
        dimension=dimension_of(conn, table),
        vector_index=_vector_index(definitions),
        btree_columns=[c for c in pgvector_layout.BTREE_COLUMNS if _btree_on(definitions, c)],
        indexes=definitions,
    )


def build_indexes(
    conn: sa.Connection, table: str, index: pgvector_layout.VectorIndex, *, rebuild: bool = False
) -> dict[str, Any]:
    """The layout's four indexes under their documented names, each only if missing, then ``ANALYZE``; run after a
    bulk load. An equivalent index nsmigrate built before the names were known (``{table}_{column}_idx``) is renamed
    to its documented name; one of the user's own is left as it is. ``rebuild`` (``nsmigrate pgvector reindex``):
    the documented vector index is built anew as ``index`` says, and the b-tree ones are reindexed. Returns what was
    done."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": f"indexes:{table}"})
    rows = int(_one(conn, f"SELECT count(*) FROM {quote(table)}"))
    dimension = dimension_of(conn, table) or 0
    present = columns_of(conn, table)
    definitions = indexes_of(conn, table)
    built: list[str] = []
    vector_name = pgvector_layout.index_name(table, pgvector_layout.VECTOR_INDEX)
    older_vector = pgvector_layout.index_name(table, f"{pgvector_layout.EMBEDDING_COLUMN}_idx")
    if older_vector in definitions and vector_name not in definitions:
        conn.execute(sa.text(f"ALTER INDEX {quote(older_vector)} RENAME TO {quote(vector_name)}"))
        definitions[vector_name] = definitions.pop(older_vector)
        built.append(f"{older_vector} renamed {vector_name}")
    if rebuild and vector_name in definitions:
        conn.execute(sa.text(f"DROP INDEX {quote(vector_name)}"))
        del definitions[vector_name]
    if _vector_index(definitions) is None:
        sql = pgvector_layout.vector_index_sql(table, index, dimension)
        if sql is not None:
            conn.execute(sa.text(sql))
            built.append(vector_name)
    for suffix, column in pgvector_layout.BTREE_INDEXES:
        name = pgvector_layout.index_name(table, suffix)
        have = _btree_on(definitions, column)
        if column not in present:
            continue
        if have is None:
            conn.execute(sa.text(pgvector_layout.btree_index_sql(table, suffix, column)))
            built.append(name)
        elif have == pgvector_layout.index_name(table, f"{column}_idx") and have != name and name not in definitions:
            conn.execute(sa.text(f"ALTER INDEX {quote(have)} RENAME TO {quote(name)}"))
            built.append(f"{have} renamed {name}")
        elif rebuild:
            conn.execute(sa.text(f"REINDEX INDEX {quote(have)}"))
            built.append(f"{have} reindexed")
    conn.execute(sa.text(f"ANALYZE {quote(table)}"))
    return {
        "table": table,
        "rows": rows,
        "built": built,
        "vector_index": _vector_index(indexes_of(conn, table)),
        "analyzed": True,
    }


def collections(conn: sa.Connection, table: str) -> list[dict[str, Any]]:
    """Each ``collection_name`` of ``table``: its rows, documents, chunking strategies and last update."""
    rows = conn.execute(
        sa.text(
            "SELECT collection_name, count(*), count(DISTINCT document_id), "
            "array_remove(array_agg(DISTINCT strategy ORDER BY strategy), NULL), max(updated_at) "
            f"FROM {quote(table)} GROUP BY 1 ORDER BY 1"
        )
    ).all()
    return [
        {
            "collection": name,
            "rows": int(n),
            "documents": int(documents),
            "strategies": list(strategies),
            "last_updated": last.isoformat(sep=" ", timespec="seconds") if last else None,
        }
        for name, n, documents, strategies, last in rows
    ]


def collection_rows(conn: sa.Connection, table: str, collection: str) -> int:
    return int(_one(conn, f"SELECT count(*) FROM {quote(table)} WHERE collection_name = :c", c=collection))


def delete_collection(conn: sa.Connection, table: str, collection: str) -> int:
    """Delete every row of ``collection`` from ``table`` and check, in the same transaction, that none is left;
    returns the rows deleted."""
    deleted = conn.execute(
        sa.text(f"DELETE FROM {quote(table)} WHERE collection_name = :c"), {"c": collection}
    ).rowcount
    left = collection_rows(conn, table, collection)
    if left:
        raise StoreError(f"table {table} still holds {left} rows of collection {collection!r} after the delete")
    return int(deleted or 0)


def droppable_table(conn: sa.Connection, prefix: str, namespace: str) -> str:
    """The table of ``namespace``, refused (``StoreError``, nothing changed) unless it is a namespace table of the
    documented layout: ``{prefix}_{name}`` may also be an application's table (``app_users`` for ``users`` with
    prefix ``app``) or the job table's own (``namespace_runs``), which nsmigrate must never drop."""
    table = pgvector_layout.table_of(prefix, namespace)
    if not exists(conn, table):
        raise StoreError(f"namespace {namespace or 'default'!r} has no table {table}", namespace=namespace)
    if re.search(rf"_{pgvector_layout.BACKUP_WORD}_\d{{14}}", table):  # a stamp: `--prefix embeddings_backup` names one
        raise StoreError(
            f"table {table} is a backup (a move or cleanup renamed it away): backups are never dropped; nothing was "
            "dropped",
            hint="drop it with SQL yourself once no rollback or restore needs it",
            namespace=namespace,
        )
    missing = [c for c in pgvector_layout.NAMESPACE_TABLE_COLUMNS if c not in columns_of(conn, table)]
    if missing:
        raise StoreError(
            f"table {table} is not a namespace table of nsmigrate's layout (it has no {', '.join(missing)} "
            "column); nothing was dropped",
            hint="check the namespace and --prefix: only embeddings_{namespace}-style tables are dropped",
            namespace=namespace,
        )
    return table


def drop_namespace(conn: sa.Connection, prefix: str, namespace: str) -> str:
    table = droppable_table(conn, prefix, namespace)
    conn.execute(sa.text(f"DROP TABLE {quote(table)}"))
    return table


def rename_to_backup(conn: sa.Connection, prefix: str, table: str, namespace: str | None) -> str:
    """Rename ``table`` to a backup (``pgvector_layout.backup_table``; ``namespace`` None: the legacy table), its
    indexes (and so its named constraints) with it, so a new table of the same namespace can take the documented names;
    returns its new name. Nothing is dropped."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    backup, suffix = pgvector_layout.backup_table(prefix, namespace, stamp), 1
    while len(backup.encode()) <= PG_IDENTIFIER_MAX_BYTES and exists(conn, backup):  # two moves within one second
        backup, suffix = pgvector_layout.backup_table(prefix, namespace, f"{stamp}{suffix}"), suffix + 1
    if len(backup.encode()) > PG_IDENTIFIER_MAX_BYTES:
        # Postgres would cut it to another backup's name, or the legacy table's: the look above could not tell.
        raise StoreError(
            f"table {table} cannot be renamed to a backup: {backup!r} is longer than Postgres's "
            f"{PG_IDENTIFIER_MAX_BYTES} bytes, which prefix {prefix!r} leaves no room for; nothing was renamed",
            hint="use a shorter table prefix (at most 27 characters keeps every backup name whole)",
        )
    conn.execute(sa.text(f"ALTER TABLE {quote(table)} RENAME TO {quote(backup)}"))
    if namespace is not None:  # its name may keep only the start of it: an erasure reads it from the comment
        conn.execute(sa.text(pgvector_layout.backup_comment_sql(backup, namespace)))
    for index in indexes_of(conn, backup):
        if index.startswith(f"{table}_"):
            renamed = pgvector_layout.backup_index_name(backup, index.removeprefix(f"{table}_"))
            conn.execute(sa.text(f"ALTER INDEX {quote(index)} RENAME TO {quote(renamed)}"))
    return backup


def rename_from_backup(conn: sa.Connection, prefix: str, backup: str, namespace: str) -> str | None:
    """``rename_to_backup`` undone (a rollback): ``backup`` renamed back to ``namespace``'s table (the legacy
    ``{prefix}`` table when ``backup`` is the legacy table's, ``{prefix}_backup_{stamp}``), its indexes (and so its
    named constraints) back to their names there. Returns the table, or None, with nothing changed, when the table
    exists again (the application made it anew: its rows are not the backup's) or the backup does not."""
    legacy = namespace == "" and re.fullmatch(rf"{re.escape(prefix)}_{pgvector_layout.BACKUP_WORD}_\d+", backup)
    table = prefix if legacy else pgvector_layout.table_of(prefix, namespace)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": table})  # as create_namespace takes it
    if exists(conn, table) or not exists(conn, backup):
        return None
    indexes = indexes_of(conn, backup)
    conn.execute(sa.text(f"ALTER TABLE {quote(backup)} RENAME TO {quote(table)}"))
    for index in indexes:
        # The suffix ``backup_index_name`` kept (whole or after a hash): the one that gives this very name back.
        suffixes = [index[i + 1 :] for i, c in enumerate(index) if c == "_"]
        suffix = next((s for s in suffixes if pgvector_layout.backup_index_name(backup, s) == index), None)
        if suffix is not None:
            renamed = pgvector_layout.index_name(table, suffix)
            conn.execute(sa.text(f"ALTER INDEX {quote(index)} RENAME TO {quote(renamed)}"))
    return table


def table_or_refuse(conn: sa.Connection, prefix: str, namespace: str) -> str:
    """``read_table``, or a ``StoreError`` saying the namespace has no table."""
    table = read_table(conn, prefix, namespace)
    if table is None:
        raise StoreError(
            f"namespace {namespace or pgvector_layout.DEFAULT_NAME!r} has no table "
            f"{pgvector_layout.table_of(prefix, namespace)}",
            hint="`nsmigrate pgvector list` shows the namespaces there are",
            namespace=namespace,
        )
    return table

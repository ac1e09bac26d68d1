"""Tables of the application's layout that are no namespace any more, but still hold its rows: the backups a move, a
``legacy`` migration and a cleanup leave (``{prefix}_backup_{stamp}[_{namespace}]``: renamed away, never dropped) and
the legacy ``{prefix}`` table once ``{prefix}_default`` took its place. An erasure searches them like namespaces:
``retired_tables`` finds them with the namespace each held (None where a name cut to 63 bytes no longer tells it and
no COMMENT records it: ``pgvector_layout.backup_namespace``), ``owned_ids`` reads a table's rows as records to find a
creator's, ``delete_ids`` and ``delete_all`` empty it of them. (Staging tables are temporary, dropped with the
transaction that made them: nothing of them outlives a write.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator import pgvector_layout, pgvector_rows
from nsmigrate.orchestrator.pgvector_layout import BACKUP_WORD, DEFAULT_NAME, ID_COLUMN, quote
from nsmigrate.workers.stores.pgvector import binary as pgbinary
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore

#: Rows read per request while a retired table is searched for a creator's.
PAGE_ROWS = 1000


def documented(store: Any) -> DocumentedPgvectorStore | None:
    """The application-layout store behind ``store`` (a ``GuardedStore`` wraps it), or None for any other store."""
    inner = getattr(store, "inner", store)
    return inner if isinstance(inner, DocumentedPgvectorStore) else None


def retired_tables(store: DocumentedPgvectorStore) -> dict[str, tuple[str | None, int]]:
    """Every retired table of the store's prefix → (the namespace it held, ``""`` for the default one, or None when
    it cannot be known; its rows). A backup's namespace is read from its COMMENT when that names it (Postgres keeps a
    comment across renames) or from its name when the name keeps it whole; a name cut to Postgres's 63 bytes
    (``pgvector_layout.backup_table``) without such a record gives None, never the cut name parsed as a namespace:
    the erasure searches such a table row by row (``workers.steps.erasing_copies``)."""
    prefix = store.prefix
    with store._errors("retired_tables"), store.engine().connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
                "AND (c.relname = :legacy OR left(c.relname, :plen) = :p) "
                "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = :id) "
                "ORDER BY c.relname"
            ),
            {
                "legacy": prefix,
                "p": f"{prefix}_{BACKUP_WORD}_",
                "plen": len(prefix) + len(BACKUP_WORD) + 2,
                "id": ID_COLUMN,
            },
        ).all()
        held: dict[str, str | None] = {}
        for table, comment in tables:
            if table == prefix:
                if pgnamespaces.exists(conn, f"{prefix}_{DEFAULT_NAME}"):  # else it is the default namespace itself
                    held[table] = ""
            elif pgvector_layout.is_backup_name(prefix, table):
                held[table] = pgvector_layout.backup_namespace(prefix, table, comment)
        counts = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {quote(t)}")).scalar() or 0) for t in held}
    return {t: (ns, counts[t]) for t, ns in held.items()}


def owned_ids(store: DocumentedPgvectorStore, table: str, owns: Callable[[Mapping[str, Any], str], bool]) -> list[str]:
    """The ids of ``table``'s rows whose record (``pgvector_rows.row_to_record``: columns and ``metadata`` keys, and
    its id) is ``owns``'s, read a page at a time."""
    found: list[str] = []
    after: str | None = None
    with store._errors("retired_rows"), store.engine().connect() as conn:
        if not pgnamespaces.exists(conn, table):
            return []
        columns = [c for c in pgnamespaces.table_columns(conn, table) if not c.serial]
        selected = f"SELECT {pgvector_rows.select_list(columns)} FROM {quote(table)}".replace("%", "%%")
        while True:
            where = f" WHERE {ID_COLUMN} > %(after)s" if after is not None else ""
            rows = pgbinary.select_rows(
                conn, f"{selected}{where} ORDER BY {ID_COLUMN} LIMIT {PAGE_ROWS}", {"after": after}
            )
            for row in rows:
                if owns(pgvector_rows.row_to_record(row, columns).metadata, row[ID_COLUMN]):
                    found.append(row[ID_COLUMN])
            if len(rows) < PAGE_ROWS:
                return found
            after = rows[-1][ID_COLUMN]


def delete_ids(store: DocumentedPgvectorStore, table: str, ids: Sequence[str]) -> int:
    """Delete the rows of ``ids`` from ``table``; how many there were."""
    with store._errors("retired_delete"), store.engine().begin() as conn:
        if not pgnamespaces.exists(conn, table):
            return 0
        deleted = conn.execute(
            sa.text(f"DELETE FROM {quote(table)} WHERE {ID_COLUMN} = ANY(:ids)"), {"ids": list(ids)}
        ).rowcount
    return int(deleted or 0)


def delete_all(store: DocumentedPgvectorStore, table: str) -> int:
    """Empty ``table`` (a backup of a namespace that was wholly the creator's); how many rows it held. The table
    stays, empty: a rollback that renames it back finds nothing of theirs."""
    with store._errors("retired_delete"), store.engine().begin() as conn:
        if not pgnamespaces.exists(conn, table):
            return 0
        return int(conn.execute(sa.text(f"DELETE FROM {quote(table)}")).rowcount or 0)


def exists(store: DocumentedPgvectorStore, table: str) -> bool:
    with store._errors("retired_count"), store.engine().connect() as conn:
        return pgnamespaces.exists(conn, table)


def count_rows(store: DocumentedPgvectorStore, table: str) -> int:
    with store._errors("retired_count"), store.engine().connect() as conn:
        if not pgnamespaces.exists(conn, table):
            return 0
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {quote(table)}")).scalar() or 0)

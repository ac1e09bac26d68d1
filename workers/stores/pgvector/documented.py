"""The pgvector store over the application's per-namespace tables (``schema: documented``): one ``{prefix}_{namespace}``
table per namespace, found from the tables themselves (``workers.stores.pgvector.namespaces.discover``), records
mapped to rows by ``orchestrator.pgvector_layout``. The engine, its lifetime and the error translation are
``PgvectorStore``'s."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator import pgvector_layout, pgvector_rows
from nsmigrate.orchestrator.connections.liveness import find_dead_connections
from nsmigrate.orchestrator.errors import RetryableError, StateError, StoreError
from nsmigrate.orchestrator.pgvector_layout import ID_COLUMN, quote
from nsmigrate.workers.stores.base import IdPage, Record
from nsmigrate.workers.stores.pgvector import binary as pgbinary
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.store import ROW_VERSION_SQL, PgvectorStore, is_undefined_table
from nsmigrate.workers.transfer.concurrent_calls import run_parallel

#: The fewest rows a batch's COPY stream carries (``copy_rows_from``): fewer, and the stream's own statements cost
#: more than the rows it moves.
MIN_STREAM_ROWS = 200
#: Connections a process keeps per store for a batch's extra COPY streams (``_spare``): taken only when free, so a
#: batch never waits for one, and the streams of many batches at once stay within what the cores can use.
SPARE_CONNECTIONS = 2


class DocumentedPgvectorStore(PgvectorStore):
    """``Store`` over the application's per-namespace tables (see the module docstring)."""

    capabilities = replace(PgvectorStore.capabilities, table_columns=True)
    #: This process's pool of spare connections (``_spare``), with the process it belongs to (Celery forks).
    _spare_engine: tuple[int, sa.Engine] | None = None

    def __repr__(self) -> str:
        return f"DocumentedPgvectorStore({self.name!r})"

    @property
    def prefix(self) -> str:
        return self.spec.table

    def engine(self) -> sa.Engine:
        """This process's engine (for the namespace operations of ``workers.stores.pgvector.namespaces``)."""
        return self._get_engine()

    def _spare(self, held: contextlib.ExitStack) -> sa.Connection | None:
        """A connection of this process's spare pool (``SPARE_CONNECTIONS``, beside the engine's), held until ``held``
        closes; None when every one is in use: the caller goes on without it instead of waiting."""
        engine = self._get_engine()
        with self._lock:
            spare = self._spare_engine
            if spare is None or spare[0] != os.getpid():  # none yet, or the parent's (left alone, as its engine)
                pool = {"pool_size": SPARE_CONNECTIONS, "max_overflow": 0, "pool_timeout": 0}
                spare = self._spare_engine = (os.getpid(), find_dead_connections(sa.create_engine(engine.url, **pool)))
        try:
            return held.enter_context(spare[1].connect())
        except sa.exc.TimeoutError:
            return None

    def _reading(self, conn: sa.Connection, namespace: str) -> str | None:
        """The namespace's table (remembered once seen, like the generic store's tables: a list or fetch per batch
        need not look it up again), or None."""
        table = pgvector_layout.table_of(self.prefix, namespace)
        if table in self._existing:
            return table
        found = pgnamespaces.read_table(conn, self.prefix, namespace)
        if found == table:
            self._existing.add(table)
        return found

    @contextlib.contextmanager
    def _errors(self, op: str, namespace: str | None = None) -> Iterator[None]:
        try:
            with super()._errors(op, namespace):
                yield
        except StoreError as e:
            if e.__cause__ is None or not is_undefined_table(e.__cause__):
                raise
            # A table remembered by ``_reading`` was dropped or renamed (a move, by another process): forget the
            # tables seen and let the retry look again.
            self._existing.clear()
            raise RetryableError(str(e.message), store=self.name, op=op, namespace=namespace) from e

    def _dimension_tables(self, conn: sa.Connection) -> list[str]:
        return list(pgnamespaces.discover(conn, self.prefix).values())

    def table_columns(self, namespace: str) -> tuple[str, list[pgvector_rows.TableColumn]] | None:
        """The namespace's table and its columns (what a copy from or into it carries), or None without a table:
        the plan refuses a copy whose target table cannot hold a column of its source's."""
        with self._errors("table_columns", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            return (table, pgnamespaces.table_columns(conn, table)) if table else None

    def namespaces(self) -> dict[str, int]:
        with self._errors("namespaces"), self._get_engine().connect() as conn:
            counts = pgnamespaces.count_rows(conn, pgnamespaces.discover(conn, self.prefix))
        return {ns: n for ns, n in counts.items() if n}

    def count(self, namespace: str) -> int:
        with self._errors("count", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {quote(table)}")).scalar() or 0) if table else 0

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        with self._errors("list_ids", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            if table is None:
                return IdPage(ids=[], next_token=None)
            after = f"WHERE {ID_COLUMN} > :token " if token else ""
            ids = list(
                conn.execute(
                    sa.text(f"SELECT {ID_COLUMN} FROM {quote(table)} {after}ORDER BY {ID_COLUMN} LIMIT :n"),
                    {"token": token, "n": limit + 1},
                ).scalars()
            )
        if len(ids) > limit:
            return IdPage(ids=ids[:limit], next_token=ids[limit - 1])
        return IdPage(ids=ids, next_token=None)

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        with self._errors("fetch", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            if table is None:
                return []
            columns = [c for c in pgnamespaces.table_columns(conn, table) if not c.serial]
            selected = f"SELECT {pgvector_rows.select_list(columns)} FROM {quote(table)}".replace("%", "%%")
            rows = pgbinary.select_rows(conn, f"{selected} WHERE {ID_COLUMN} = ANY(%(ids)s)", {"ids": list(ids)})
            found = {row[ID_COLUMN]: pgvector_rows.row_to_record(row, columns) for row in rows}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        if not records:
            return 0
        self._refuse_sparse(namespace, records)
        dimension = self._dimension or len(records[0].values)
        self._check_dimension(namespace, records, dimension)
        table = pgvector_layout.table_of(self.prefix, namespace)  # the name rules refuse a bad namespace here
        latest = {r.id: r for r in records}  # last write wins within one request, as in Pinecone
        with self._errors("upsert", namespace):
            for _ in range(2):
                with self._get_engine().begin() as conn:
                    if table not in self._existing:
                        pgnamespaces.create_namespace(conn, self.prefix, namespace, dimension)
                    written = pgnamespaces.upsert_records(conn, table, list(latest.values()))
                if written:
                    break
                # Dropped since this process saw it (``nsmigrate pgvector drop``, a rollback): made again, once.
                self._existing.discard(table)
        # Remembered only once committed: another thread of this process that took the table as existing before
        # then would find no columns in it (the creating transaction is not visible to its connection).
        self._existing.add(table)
        return len(records)

    def copy_rows_from(
        self,
        source: DocumentedPgvectorStore,
        source_namespace: str,
        namespace: str,
        ids: Sequence[str],
        extra: Mapping[str, Any],
        *,
        streams: int = 1,
    ) -> tuple[int, int] | None:
        """The rows of ``ids`` from ``source``'s table of ``source_namespace`` (another database) into this store's
        table of ``namespace`` (made with the source's dimension if missing), as they are (``table_copies.copy_rows``),
        ``metadata`` merged with ``extra``, in up to ``streams`` COPY streams at once (``_copy_in_streams``). Returns
        (rows written, bytes passed); None, with nothing written, when a column's type cannot pass as it is (the batch
        goes as records then)."""
        table = pgvector_layout.table_of(self.prefix, namespace)  # the name rules refuse a bad namespace here
        with source._errors("copy_rows", source_namespace), source.engine().connect() as reading:
            source_table = source._reading(reading, source_namespace)
            if source_table is None:
                return 0, 0
            columns = [c for c in pgnamespaces.table_columns(reading, source_table) if not c.serial]
            if not table_copies.passes_as_rows(columns):
                return None
            with self._errors("copy_rows", namespace):
                for _ in range(2):
                    if table not in self._existing:
                        # Made and committed apart from the batch: the other batches wait on its lock only while it
                        # is made, not for this batch's rows. The source's dimension is read only then.
                        dimension = pgnamespaces.dimension_of(reading, source_table) or self._dimension or 0
                        with self._get_engine().begin() as making:
                            pgnamespaces.create_namespace(making, self.prefix, namespace, dimension)
                        self._existing.add(table)
                    with self._get_engine().begin() as writing:
                        copy = functools.partial(
                            table_copies.copy_rows, source=source_table, columns=columns, target=table, extra=extra
                        )
                        done = self._copy_in_streams(source, copy, ids, streams, (reading, writing))
                    if done is not None:
                        return done
                    self._existing.discard(table)  # dropped since this process saw it: made again, once
        return None

    def _copy_in_streams(
        self,
        source: DocumentedPgvectorStore,
        copy: Callable[..., tuple[int, int] | None],
        ids: Sequence[str],
        streams: int,
        own: tuple[sa.Connection, sa.Connection],
    ) -> tuple[int, int] | None:
        """``copy`` of ``ids`` cut into as many COPY streams as ``streams`` allows, each of ``MIN_STREAM_ROWS`` rows
        or more, all at once: the first on the batch's own connections (``own``: reading, writing), the others on
        spare ones of both stores, as many as are free. Writing a table is the target server's work, one core per
        stream: a batch that is its table's only one would otherwise leave the other cores idle. Each stream commits
        on its own; a batch that failed half-way runs again as any batch does, overwriting what it wrote."""
        with contextlib.ExitStack() as held:
            pairs = [own]
            while len(pairs) < min(streams, len(ids) // MIN_STREAM_ROWS):
                reading = source._spare(held)
                writing = self._spare(held) if reading is not None else None
                if reading is None or writing is None:
                    break
                held.enter_context(writing.begin())  # committed as ``held`` closes, after every stream ended
                pairs.append((reading, writing))
            size = -(-len(ids) // len(pairs))
            done: list[tuple[int, int] | None] = [None] * len(pairs)

            def stream(n: int) -> None:
                reading, writing = pairs[n]
                done[n] = copy(reading=reading, writing=writing, ids=ids[n * size : (n + 1) * size])

            run_parallel(stream, range(len(pairs)), len(pairs))
            passed = [d for d in done if d is not None]
            if len(passed) < len(done):
                return None  # the table is gone: made again by the caller
            return sum(rows for rows, _ in passed), sum(nbytes for _, nbytes in passed)

    def close(self) -> None:
        super().close()
        if self._spare_engine is not None and self._spare_engine[0] == os.getpid():
            self._spare_engine[1].dispose()
        self._spare_engine = None

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._errors("delete", namespace), self._get_engine().begin() as conn:
            table = self._reading(conn, namespace)
            if table is not None:
                conn.execute(sa.text(f"DELETE FROM {quote(table)} WHERE {ID_COLUMN} = ANY(:ids)"), {"ids": list(ids)})

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        with self._errors("row_versions", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            if table is None or not ids:
                return {}
            rows = conn.execute(
                sa.text(f"SELECT {ID_COLUMN}, {ROW_VERSION_SQL} FROM {quote(table)} WHERE {ID_COLUMN} = ANY(:ids)"),
                {"ids": list(ids)},
            )
            return {str(row[0]): str(row[1]) for row in rows}

    def delete_unchanged(self, namespace: str, versions: Mapping[str, str]) -> list[str]:
        with self._errors("delete", namespace), self._get_engine().begin() as conn:
            table = self._reading(conn, namespace)
            if table is None or not versions:
                return []
            deleted = conn.execute(
                sa.text(
                    f"DELETE FROM {quote(table)} WHERE {ID_COLUMN} = ANY(:ids) AND {ROW_VERSION_SQL} = ANY(:versions) "
                    f"RETURNING {ID_COLUMN}"
                ),
                {"ids": list(versions), "versions": list(versions.values())},
            )
            return [str(i) for i in deleted.scalars()]

    def delete_namespace(self, namespace: str) -> None:
        """Drop the namespace's table (erasure and rollback: gone for good). A migration's cleanup renames it to a
        backup instead (``retire_namespace``)."""
        with self._errors("delete_namespace", namespace), self._get_engine().begin() as conn:
            table = self._reading(conn, namespace)
            if table is not None:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {quote(table)}"))
                self._existing.discard(table)

    def delete_namespace_if_empty(self, namespace: str) -> bool:
        """Drop the namespace's table only if it has no row once locked against writes (one transaction)."""
        with self._errors("delete_namespace", namespace), self._get_engine().begin() as conn:
            table = self._reading(conn, namespace)
            if table is None:
                return True
            conn.execute(sa.text(f"LOCK TABLE {quote(table)} IN ACCESS EXCLUSIVE MODE"))
            if conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {quote(table)})")).scalar():
                return False
            conn.execute(sa.text(f"DROP TABLE {quote(table)}"))
            self._existing.discard(table)
        return True

    def table_version(self, namespace: str) -> str | None:
        """A digest of the namespace's table's row versions (each row's ``ctid`` and ``xmin``: an insert, update or
        delete changes it, and no value is read), or None when it has no table."""
        with self._errors("table_version", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            return None if table is None else _table_version(conn, table)

    def retire_namespace(self, namespace: str, *, unchanged_from: str | None = None) -> str | None:
        """Rename the namespace's table to a backup (the layout's move: the source is never dropped); its name, or None
        when there was no table. ``unchanged_from`` (``table_version``, taken before the caller proved the rows): the
        table is renamed only if, locked against writes, it still has that version.

        Raises:
            StateError: a row was written, changed or deleted since ``unchanged_from``; nothing was renamed.
        """
        with self._errors("retire_namespace", namespace), self._get_engine().begin() as conn:
            table = self._reading(conn, namespace)
            if table is None:
                return None
            if unchanged_from is not None:
                conn.execute(sa.text(f"LOCK TABLE {quote(table)} IN ACCESS EXCLUSIVE MODE"))
                if _table_version(conn, table) != unchanged_from:
                    raise StateError(
                        f"table {table} was written while its rows were proved; nothing was renamed", table=table
                    )
            self._existing.discard(table)
            return pgnamespaces.rename_to_backup(conn, self.prefix, table, None if table == self.prefix else namespace)

    def reinstate_namespace(self, namespace: str, backup: str) -> bool:
        """``retire_namespace`` undone (a rollback): the backup table renamed back to the namespace's while it has
        none (``pgnamespaces.rename_from_backup``); whether it was."""
        with self._errors("reinstate_namespace", namespace), self._get_engine().begin() as conn:
            return pgnamespaces.rename_from_backup(conn, self.prefix, backup, namespace) is not None

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        if top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        with self._errors("query", namespace), self._get_engine().connect() as conn:
            table = self._reading(conn, namespace)
            if table is None:
                return []
            return list(
                conn.execute(
                    sa.text(
                        # Ordered as the table's vector index serves it (over halfvec above 2,000 dimensions).
                        f"SELECT {ID_COLUMN} FROM {quote(table)} ORDER BY {pgvector_layout.distance_sql(len(vector))}, "
                        f"{ID_COLUMN} LIMIT :k"
                    ),
                    {"v": pgnamespaces.vector_text(vector), "k": top_k},
                ).scalars()
            )


def _table_version(conn: sa.Connection, table: str) -> str:
    versions = f"coalesce(string_agg({ROW_VERSION_SQL}, ',' ORDER BY ctid), '')"
    return str(conn.execute(sa.text(f"SELECT md5({versions}) FROM {quote(table)}")).scalar())

"""The pgvector store: Postgres + pgvector through SQLAlchemy 2.

Two layouts (``PgvectorStoreSpec.layout``):

- ``single_table``: one table ``spec.table`` (``id text, <namespace_column> text, embedding vector(d), metadata
  jsonb``, primary key ``(namespace, id)``) — the legacy ``embeddings`` shape.
- ``table_per_namespace``: one table per namespace, ``{prefix}_{name}`` (``id text primary key, embedding vector(d),
  metadata jsonb``), plus a registry ``{prefix}__namespaces(namespace, table_name)`` so namespaces can be listed by
  their real names. A namespace that is already a plain identifier (``[a-z0-9]`` words joined by single ``_``) and
  short enough keeps its name; any other (upper case, dots, dashes, ``""``, > 63 bytes with the prefix) becomes
  ``{prefix}_{slug}__{sha1[:10]}``: deterministic, always a valid identifier, and never equal to a plain name (plain
  names never contain ``__``). The registry refuses a second namespace mapping to a taken table name.

Tables are created on first write (``spec.dimension``, or the records' own dimension). Namespaces with no vectors are
not listed, as in Pinecone. Connection failures become ``RetryableError``; everything else ``StoreError``. The engine
is created lazily in the process that uses it (Celery forks workers after import); a dead pooled connection is
replaced as it is checked out (``orchestrator.connections.liveness``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from nsmigrate.orchestrator.connections.database_urls import KeptEngines, engine_of, error_text
from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.limits import PG_IDENTIFIER_MAX_BYTES
from nsmigrate.orchestrator.spec.store_identity import pgvector_identity
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers.stores.base import Capabilities, IdPage, Record, StoreDefaults

#: Hex characters of the hash a shortened table name ends with: collisions out of reach, room left for the name.
_HASH_LEN = 10
_PLAIN_NAME = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")  # always fullmatch: "$" would accept a trailing "\n"
#: Tables counted by one UNION ALL query: a query over thousands of tables would plan for long.
_UNION_CHUNK = 200
#: A row's version: where it lies and the transaction that wrote it. An insert, update or delete changes it; VACUUM
#: FULL or CLUSTER do too (a row then counts as changed: kept, never deleted unproved).
ROW_VERSION_SQL = "ctid::text || ':' || xmin::text"
_ROW_VERSION: sa.Label[str] = sa.literal_column(ROW_VERSION_SQL).label("version")


def namespace_table_name(prefix: str, namespace: str) -> str:
    """The table holding ``namespace`` in the ``table_per_namespace`` layout (see the module docstring)."""
    plain = f"{prefix}_{namespace}"
    if _PLAIN_NAME.fullmatch(namespace) and len(plain) <= PG_IDENTIFIER_MAX_BYTES:
        return plain
    digest = hashlib.sha1(namespace.encode("utf-8")).hexdigest()[:_HASH_LEN]
    slug = re.sub(r"[^a-z0-9]+", "_", namespace.lower()).strip("_")
    room = PG_IDENTIFIER_MAX_BYTES - len(prefix) - 1 - 2 - _HASH_LEN
    slug = slug[: max(room, 0)].rstrip("_")
    return f"{prefix}_{slug}__{digest}" if slug else f"{prefix}__{digest}"


def is_undefined_table(e: BaseException) -> bool:
    return getattr(getattr(e, "orig", None), "sqlstate", None) == "42P01"


class PgvectorStore(StoreDefaults):
    """``Store`` over Postgres + pgvector.

    Parameters:
        spec: the store's spec (layout, table or prefix, namespace column, dimension).
        database_url: SQLAlchemy URL; when None it is read from ``os.environ[spec.database_url_env]`` on first use.
        engines: where the engine is taken from and left when the store closes (the fleet's planner keeps them
            between plans); None: the store's own.
    """

    #: A list page is one query, with no service limit (Pinecone's is 100).
    capabilities = Capabilities(list_page_ids=1000, row_versions=True)

    def __init__(
        self, spec: PgvectorStoreSpec, database_url: str | None = None, engines: KeptEngines | None = None
    ) -> None:
        self.spec = spec
        self._engines = engines
        self.name = spec.label
        self._url = database_url
        self._engine: sa.Engine | None = None
        self._engine_pid: int | None = None
        self._lock = threading.Lock()
        self._tables: dict[str, sa.Table] = {}
        self._existing: set[str] = set()
        self._dimension: int | None = spec.dimension
        self._shown_url: str | None = None  # the URL connected to, whose secrets a driver's message must not show

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"PgvectorStore({self.name!r}, layout={self.spec.layout!r})"

    # --- plumbing -------------------------------------------------------------------------------------------------

    def _get_engine(self) -> sa.Engine:
        pid = os.getpid()
        with self._lock:
            if self._engine is None or self._engine_pid != pid:
                if self._engine is not None:
                    # Inherited through fork: leave the parent's connections alone, open our own.
                    self._engine.dispose(close=False)
                    self._existing.clear()
                url = self._url
                if url is None:
                    url = os.environ.get(self.spec.database_url_env)
                    if not url:
                        raise StoreError(
                            f"environment variable {self.spec.database_url_env} is not set",
                            hint="set it to the SQLAlchemy URL of the pgvector database, "
                            "e.g. postgresql+psycopg://user@host:5432/db",
                            store=self.name,
                            env_var=self.spec.database_url_env,
                        )
                make = engine_of if self._engines is None else self._engines.get
                self._engine = make(url, self.spec.database_url_env)
                self._shown_url = url
                self._engine_pid = pid
            return self._engine

    @contextlib.contextmanager
    def _errors(self, op: str, namespace: str | None = None) -> Iterator[None]:
        try:
            yield
        except (RetryableError, StoreError):
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as e:
            raise RetryableError(
                f"pgvector {op} failed: {error_text(e, self._shown_url)}", store=self.name, op=op, namespace=namespace
            ) from e
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(
                f"pgvector {op} refused: {error_text(e, self._shown_url)}", store=self.name, op=op, namespace=namespace
            ) from e

    def identity(self) -> str:
        """The store's identity (``orchestrator.spec.store_identity``): the server's system identifier, the
        database and the schema its tables are made in, asked of the server, so that two URLs of one database are one
        store and
        one prefix in two databases is two."""
        with self._errors("identity"), self._get_engine().connect() as conn:
            row = conn.execute(
                sa.text("SELECT system_identifier, current_database(), current_schema() FROM pg_control_system()")
            ).one()
        return pgvector_identity(self.spec, f"{row[0]}/{row[1]}/{row[2]}")

    def _table_name(self, namespace: str) -> str:
        if self.spec.layout == "single_table":
            return self.spec.table
        return namespace_table_name(self.spec.table, namespace)

    @property
    def _registry_name(self) -> str:
        return f"{self.spec.table}__namespaces"

    def _table(self, name: str, dimension: int | None = None) -> sa.Table:
        table = self._tables.get(name)
        if table is None or (dimension is not None and getattr(table.c.embedding.type, "dim", None) != dimension):
            columns: list[sa.Column[Any]] = []
            if self.spec.layout == "single_table":
                # (namespace, id): the primary key index serves "one namespace, by id" — every list page.
                columns.append(sa.Column(self.spec.namespace_column, sa.Text, primary_key=True))
            columns += [
                sa.Column("id", sa.Text, primary_key=True),
                sa.Column("embedding", Vector(dimension), nullable=False),
                sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
            ]
            table = sa.Table(name, sa.MetaData(), *columns)
            self._tables[name] = table
        return table

    def _where_ns(self, table: sa.Table, namespace: str) -> list[Any]:
        if self.spec.layout == "single_table":
            return [table.c[self.spec.namespace_column] == namespace]
        return []

    def _exists(self, conn: sa.Connection, name: str) -> bool:
        if name in self._existing:
            return True
        found = conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": _quote(name)}).scalar()
        if found:
            self._existing.add(name)
        return bool(found)

    def _column_dimension(self, conn: sa.Connection, name: str) -> int | None:
        row = conn.execute(
            sa.text(
                "SELECT a.atttypmod FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(:n) AND a.attname = 'embedding' AND NOT a.attisdropped"
            ),
            {"n": _quote(name)},
        ).scalar()
        return int(row) if row is not None and row > 0 else None

    def _create(self, namespace: str, dimension: int) -> None:
        """Create the namespace's table (and register it) if missing; safe against concurrent workers."""
        name = self._table_name(namespace)
        with self._get_engine().begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            if not self._exists(conn, name):
                self._table(name, dimension).create(conn, checkfirst=True)
            if self.spec.layout == "table_per_namespace":
                self._register(conn, namespace, name)
        self._existing.add(name)

    def _register(self, conn: sa.Connection, namespace: str, table_name: str) -> None:
        registry = _quote(self._registry_name)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": self._registry_name})
        conn.execute(
            sa.text(f"CREATE TABLE IF NOT EXISTS {registry} (namespace text PRIMARY KEY, table_name text NOT NULL)")
        )
        owner = conn.execute(
            sa.text(f"SELECT namespace FROM {registry} WHERE table_name = :t"), {"t": table_name}
        ).scalar()
        if owner is not None and owner != namespace:
            raise StoreError(
                f"namespaces {owner!r} and {namespace!r} both map to table {table_name}",
                hint="rename one of the namespaces",
                store=self.name,
                namespace=namespace,
            )
        conn.execute(
            sa.text(f"INSERT INTO {registry} (namespace, table_name) VALUES (:ns, :t) ON CONFLICT DO NOTHING"),
            {"ns": namespace, "t": table_name},
        )

    # --- Store ----------------------------------------------------------------------------------------------------

    def dimension(self) -> int:
        if self._dimension is not None:
            return self._dimension
        with self._errors("dimension"), self._get_engine().connect() as conn:
            for name in self._dimension_tables(conn):
                dim = self._column_dimension(conn, name)
                if dim is not None:
                    self._dimension = dim
                    return dim
        raise StoreError(
            "the dimension of this pgvector store is unknown: it has no table yet",
            hint="set `dimension:` in the store spec",
            store=self.name,
        )

    def _dimension_tables(self, conn: sa.Connection) -> list[str]:
        """The tables whose vector column tells the store's dimension."""
        if self.spec.layout == "single_table":
            return [self.spec.table]
        if not self._exists(conn, self._registry_name):
            return []
        return list(conn.execute(sa.text(f"SELECT table_name FROM {_quote(self._registry_name)}")).scalars())

    def metric(self) -> str | None:
        return None  # a table has no metric of its own: each query names its operator

    def namespaces(self) -> dict[str, int]:
        with self._errors("namespaces"), self._get_engine().connect() as conn:
            if self.spec.layout == "single_table":
                if not self._exists(conn, self.spec.table):
                    return {}
                table = self._table(self.spec.table)
                column = table.c[self.spec.namespace_column]
                rows = conn.execute(sa.select(column, sa.func.count()).group_by(column)).all()
                return {ns: int(n) for ns, n in rows if n}
            if not self._exists(conn, self._registry_name):
                return {}
            registered = conn.execute(
                sa.text(
                    f"SELECT r.namespace, r.table_name FROM {_quote(self._registry_name)} r "
                    "WHERE to_regclass(quote_ident(r.table_name)) IS NOT NULL ORDER BY r.namespace"
                )
            ).all()
            counts: dict[str, int] = {}
            for start in range(0, len(registered), _UNION_CHUNK):
                part = registered[start : start + _UNION_CHUNK]
                union = " UNION ALL ".join(
                    f"SELECT :ns{i} AS namespace, count(*) AS n FROM {_quote(t)}" for i, (_, t) in enumerate(part)
                )
                params = {f"ns{i}": ns for i, (ns, _) in enumerate(part)}
                counts.update({ns: int(n) for ns, n in conn.execute(sa.text(union), params).all() if n})
            return counts

    def count(self, namespace: str) -> int:
        name = self._table_name(namespace)
        with self._errors("count", namespace), self._get_engine().connect() as conn:
            if not self._exists(conn, name):
                return 0
            table = self._table(name)
            query = sa.select(sa.func.count()).select_from(table).where(*self._where_ns(table, namespace))
            return int(conn.execute(query).scalar() or 0)

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        name = self._table_name(namespace)
        with self._errors("list_ids", namespace), self._get_engine().connect() as conn:
            if not self._exists(conn, name):
                return IdPage(ids=[], next_token=None)
            table = self._table(name)
            query = sa.select(table.c.id).where(*self._where_ns(table, namespace))
            if token:
                query = query.where(table.c.id > token)
            ids = list(conn.execute(query.order_by(table.c.id).limit(limit + 1)).scalars())
        if len(ids) > limit:
            ids = ids[:limit]
            return IdPage(ids=ids, next_token=ids[-1])
        return IdPage(ids=ids, next_token=None)

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        name = self._table_name(namespace)
        with self._errors("fetch", namespace), self._get_engine().connect() as conn:
            if not self._exists(conn, name):
                return []
            table = self._table(name)
            query = sa.select(table.c.id, table.c.embedding, table.c.metadata).where(
                *self._where_ns(table, namespace), table.c.id.in_(list(ids))
            )
            found = {
                row.id: Record(id=row.id, values=[float(v) for v in row.embedding], metadata=dict(row.metadata or {}))
                for row in conn.execute(query)
            }
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def _refuse_sparse(self, namespace: str, records: Sequence[Record]) -> None:
        sparse = [r.id for r in records if r.sparse_values is not None]
        if sparse:
            # pgvector has no place for a Pinecone record's sparse values: refuse rather than drop them.
            raise StoreError(
                f"{len(sparse)} records have sparse values, which a pgvector table cannot hold (e.g. {sparse[0]!r}); "
                "nothing of this upsert was written",
                hint="copy an index with sparse values into a Pinecone index (dotproduct metric) instead",
                store=self.name,
                namespace=namespace,
                record_id=sparse[0],
            )

    def _check_dimension(self, namespace: str, records: Sequence[Record], dimension: int) -> None:
        for record in records:
            if len(record.values) != dimension:
                raise StoreError(
                    f"record {record.id!r} has {len(record.values)} values, the store holds {dimension}-dimensional "
                    "vectors",
                    store=self.name,
                    namespace=namespace,
                    record_id=record.id,
                )

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        if not records:
            return 0
        dimension = self._dimension or len(records[0].values)
        self._refuse_sparse(namespace, records)
        self._check_dimension(namespace, records, dimension)
        # Last write wins within one request, as in Pinecone; ON CONFLICT cannot touch one row twice.
        latest = {r.id: r for r in records}
        name = self._table_name(namespace)
        with self._errors("upsert", namespace):
            for attempt in range(2):
                if name not in self._existing:
                    self._create(namespace, dimension)
                table = self._table(name)
                rows = [
                    {"id": r.id, "embedding": list(r.values), "metadata": dict(r.metadata)} for r in latest.values()
                ]
                if self.spec.layout == "single_table":
                    for row in rows:
                        row[self.spec.namespace_column] = namespace
                statement = pg_insert(table)
                statement = statement.on_conflict_do_update(
                    index_elements=[c.name for c in table.primary_key.columns],
                    set_={"embedding": statement.excluded.embedding, "metadata": statement.excluded.metadata},
                )
                try:
                    with self._get_engine().begin() as conn:
                        conn.execute(statement, rows)
                    break
                except sa.exc.ProgrammingError as e:
                    # Dropped by another worker since we saw it: create it again, once.
                    if attempt or not is_undefined_table(e):
                        raise
                    self._existing.discard(name)
        return len(records)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        name = self._table_name(namespace)
        with self._errors("delete", namespace), self._get_engine().begin() as conn:
            if not self._exists(conn, name):
                return
            table = self._table(name)
            conn.execute(sa.delete(table).where(*self._where_ns(table, namespace), table.c.id.in_(list(ids))))

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        if not ids:
            return {}
        name = self._table_name(namespace)
        with self._errors("row_versions", namespace), self._get_engine().connect() as conn:
            if not self._exists(conn, name):
                return {}
            table = self._table(name)
            where = (*self._where_ns(table, namespace), table.c.id.in_(list(ids)))
            query = sa.select(table.c.id, _ROW_VERSION).where(*where)
            return {row.id: row.version for row in conn.execute(query)}

    def delete_unchanged(self, namespace: str, versions: Mapping[str, str]) -> list[str]:
        if not versions:
            return []
        name = self._table_name(namespace)
        with self._errors("delete", namespace), self._get_engine().begin() as conn:
            if not self._exists(conn, name):
                return []
            table = self._table(name)
            statement = sa.delete(table).where(
                *self._where_ns(table, namespace),
                table.c.id.in_(list(versions)),
                _ROW_VERSION.in_(list(versions.values())),  # a version is one row's: its ctid is nobody else's
            )
            return list(conn.execute(statement.returning(table.c.id)).scalars())

    def delete_namespace(self, namespace: str) -> None:
        name = self._table_name(namespace)
        with self._errors("delete_namespace", namespace), self._get_engine().begin() as conn:
            if self.spec.layout == "single_table":
                if self._exists(conn, name):
                    table = self._table(name)
                    conn.execute(sa.delete(table).where(*self._where_ns(table, namespace)))
                return
            self._drop(conn, namespace, name)
        self._existing.discard(name)

    def delete_namespace_if_empty(self, namespace: str) -> bool:
        """Drop the namespace's table only if it has no row once locked against writes, in one transaction; with one
        shared table there is nothing to drop, and an empty namespace is gone already."""
        name = self._table_name(namespace)
        with self._errors("delete_namespace", namespace), self._get_engine().begin() as conn:
            if not conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": _quote(name)}).scalar():
                return True
            table = self._table(name)
            if self.spec.layout != "single_table":
                conn.execute(sa.text(f"LOCK TABLE {_quote(name)} IN ACCESS EXCLUSIVE MODE"))
            held = sa.select(sa.exists().where(*self._where_ns(table, namespace)).select_from(table))
            if conn.execute(held).scalar():
                return False
            if self.spec.layout == "single_table":
                return True
            self._drop(conn, namespace, name)
        self._existing.discard(name)
        return True

    def _drop(self, conn: sa.Connection, namespace: str, name: str) -> None:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {_quote(name)}"))
        if self._exists(conn, self._registry_name):
            conn.execute(sa.text(f"DELETE FROM {_quote(self._registry_name)} WHERE namespace = :ns"), {"ns": namespace})

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        return [id_ for id_, _ in self.query_scored(namespace, vector, top_k)]

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """``(id, cosine similarity)`` of the ``top_k`` nearest, best first (higher is closer, as Pinecone's cosine)."""
        if top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        name = self._table_name(namespace)
        with self._errors("query", namespace), self._get_engine().connect() as conn:
            if not self._exists(conn, name):
                return []
            table = self._table(name)
            distance = table.c.embedding.cosine_distance(list(vector))
            query = (
                sa.select(table.c.id, distance)
                .where(*self._where_ns(table, namespace))
                .order_by(distance, table.c.id)
                .limit(top_k)
            )
            return [(str(id_), 1.0 - float(d)) for id_, d in conn.execute(query)]

    def close(self) -> None:
        """Release this process's connections (a kept engine's stay open for the next store)."""
        if self._engine is not None and self._engine_pid == os.getpid() and self._engines is None:
            self._engine.dispose()
        self._engine = None


def _quote(name: str) -> str:
    """A double-quoted SQL identifier (names here are sanitised already; quoting keeps them exact)."""
    return '"' + name.replace('"', '""') + '"'

"""Ids of a Pinecone source that cannot list them (a pod index), served as ``list_ids`` pages.

``catalogue``: the ids are read from where the application keeps them (a CSV file, a Postgres table, a Supabase
table through the real ``supabase`` client), one page per request, ordered by id. ``sweep``: the first page of a
listing runs a sweep of the namespace (queries with seeded random vectors, ``top_k`` ids each, no values and no
metadata, until the ids seen reach the namespace's count in describe_index_stats or ``max_queries`` were made) and
keeps the result in this process; the pages after it are cut from it. A page token names the sweep's seed, so
another process (a lister redelivered elsewhere) sweeps again with the same vectors and goes on after the last id.
A sweep that could not reach the count hands out what it found and says so in ``last_sweep``; what must hold every
record compares an enumerated namespace with its count and fails it, never silently short: verification
(``workers.steps.verifying``) and an export, e.g. a backup (``workers.stores.backup.exporting.enumerated_in_full``).

The pure parts (tokens, the CSV format, the query vectors, costs) are in ``orchestrator.listing.pod_enumeration``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nsmigrate.orchestrator.connections import supabase_queries
from nsmigrate.orchestrator.connections.keys import check_service_url
from nsmigrate.orchestrator.errors import RetryableError, SpecError, StoreError
from nsmigrate.orchestrator.listing.pod_enumeration import (
    PageToken,
    ids_after,
    parse_catalogue_csv,
    sweep_vector,
    utf8_order,
)
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import IdPage
from nsmigrate.orchestrator.spec.stores import Enumeration, IdCatalogue

if TYPE_CHECKING:
    from postgrest.exceptions import APIError

log = logging.getLogger(__name__)

#: Sweeps kept per process (the namespaces a lister or verification is working through).
_SWEEPS_KEPT = 64


# --- catalogues ------------------------------------------------------------------------------------------------


class _CatalogueReader(Protocol):
    def ids_after(self, namespace: str, after: str | None, limit: int) -> list[str]: ...


def _env(name: str, field: str) -> str:
    value = os.environ.get(name, "")
    if not value.strip():
        raise StoreError(
            f"environment variable {name} (enumerate.catalogue.{field}) is not set",
            hint=f"export {name} in the environment of the CLI and the workers",
            env_var=name,
        )
    return value


class FileCatalogue:
    """A ``namespace,id`` CSV, read once per process (and again when the file changes)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._loaded: tuple[float, dict[str, list[str]]] | None = None
        self._lock = threading.Lock()

    def _ids(self) -> dict[str, list[str]]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except OSError as e:
                raise StoreError(
                    f"id catalogue {self.path} cannot be read: {e}",
                    hint="enumerate.catalogue.path must be readable by the CLI and every worker",
                ) from e
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, parse_catalogue_csv(self.path.read_text(), str(self.path)))
            return self._loaded[1]

    def ids_after(self, namespace: str, after: str | None, limit: int) -> list[str]:
        return ids_after(self._ids().get(namespace, []), after, limit)


class PostgresCatalogue:
    """A table of (namespace, id) rows in Postgres, paged by id in bytewise ("C") order, as Pinecone orders ids."""

    def __init__(self, catalogue: IdCatalogue) -> None:
        self.catalogue = catalogue
        self._engine: Any = None
        self._url: str | None = None  # the errors about it are scrubbed against it
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._engine is None:
                from nsmigrate.orchestrator.connections.database_urls import (
                    engine_of,  # SQLAlchemy: only where a catalogue is in Postgres
                )

                env_var = self.catalogue.database_url_env
                self._url = _env(env_var, "database_url_env")
                self._engine = engine_of(self._url, env_var)
            return self._engine

    def ids_after(self, namespace: str, after: str | None, limit: int) -> list[str]:
        import sqlalchemy as sa

        from nsmigrate.orchestrator.connections.database_urls import error_text

        c = self.catalogue
        # Identifiers were checked by the spec (lower-case SQL names); values are bound parameters.
        sql = (
            f'SELECT "{c.id_column}" FROM "{c.table}" WHERE "{c.namespace_column}" = :ns'
            + (f' AND "{c.id_column}" COLLATE "C" > :after' if after is not None else "")
            + f' ORDER BY "{c.id_column}" COLLATE "C" LIMIT :limit'
        )
        # A table names the default namespace __default__ (an empty string is easily mistaken for a missing value).
        params = {"ns": display_namespace(namespace), "after": after, "limit": limit}
        try:
            with self._connect().connect() as conn:
                rows = [str(r[0]) for r in conn.execute(sa.text(sql), params)]
        # The driver's line, scrubbed: it goes to the run's last error, its events, the log and Flower.
        except sa.exc.OperationalError as e:
            raise RetryableError(
                f"the id catalogue table {c.table!r} could not be read: {type(e).__name__}: {error_text(e, self._url)}"
            ) from e
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(
                f"the id catalogue table {c.table!r} could not be read: {type(e).__name__}: {error_text(e, self._url)}",
                hint=f"check enumerate.catalogue (table, namespace_column, id_column) and {c.database_url_env}",
            ) from e
        return rows


class SupabaseCatalogue:
    """A table of (namespace, id) rows read through the real ``supabase`` client, one page per request."""

    def __init__(self, catalogue: IdCatalogue) -> None:
        self.catalogue = catalogue
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from supabase import create_client  # heavy import, only where it is used

                c = self.catalogue
                url, key = _env(c.url_env, "url_env"), _env(c.key_env, "key_env")
                check_service_url(url, c.url_env)
                try:
                    self._client = create_client(url, key)
                except StoreError:
                    raise
                except Exception as e:  # the client validates the URL and key shapes
                    raise SpecError(
                        f"cannot create a Supabase client from {c.url_env} / {c.key_env}: {type(e).__name__}: {e}",
                        hint=f"check that {c.url_env} holds the project URL and {c.key_env} a service key",
                    ) from e
            return self._client

    def ids_after(self, namespace: str, after: str | None, limit: int) -> list[str]:
        c = self.catalogue

        def refused(e: APIError) -> StoreError:
            return StoreError(
                f"Supabase refused to read the id catalogue table {c.table!r}: {e.message} (code {e.code})",
                hint=f"check enumerate.catalogue (table, columns) and that the key in {c.key_env} may read it",
            )

        query = self._connect().table(c.table).select(c.id_column).eq(c.namespace_column, display_namespace(namespace))
        if after is not None:
            query = query.gt(c.id_column, after)
        # Ordered by the database's collation on both sides of the filter, so pages neither overlap nor skip.
        # Sent once: the store's retry policy (workers.stores.guarded) retries what is worth it.
        rows = supabase_queries.rows(query.order(c.id_column).limit(limit), c.url_env, refused)
        return [str(row[c.id_column]) for row in rows]


class CatalogueIds:
    """``list_ids`` from a catalogue: each page asks it for the ids after the last one handed out. A Supabase
    server caps the rows of a response (PostgREST max-rows), so there a short page is not the end: only an empty one
    is."""

    def __init__(self, reader: _CatalogueReader) -> None:
        self.reader = reader
        self._exact = not isinstance(reader, SupabaseCatalogue)

    def list_ids(self, namespace: str, *, limit: int, token: str | None) -> IdPage:
        after = PageToken.decode(token, "catalogue").last if token else None
        ids = self.reader.ids_after(namespace, after, limit + 1)
        page = ids[:limit]
        more = bool(page) and (len(ids) > limit or not self._exact)
        return IdPage(ids=page, next_token=PageToken("catalogue", "-", page[-1]).encode() if more else None)


def open_catalogue(catalogue: IdCatalogue) -> _CatalogueReader:
    if catalogue.source == "file":
        assert catalogue.path is not None  # the spec requires it
        return FileCatalogue(catalogue.path)
    if catalogue.source == "postgres":
        return PostgresCatalogue(catalogue)
    return SupabaseCatalogue(catalogue)


# --- sweeps ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """What one sweep of a namespace found: its ids (UTF-8 order), the count it aimed for, the queries it made."""

    namespace: str
    ids: list[str]
    expected: int
    queries: int

    @property
    def covered(self) -> bool:
        return len(self.ids) >= self.expected


@dataclass(frozen=True)
class SweepReads:
    """The reads a sweep makes: ``query(namespace, vector, top_k) → ids`` (no values, no metadata), every
    namespace's count (describe_index_stats), the index's dimension and metric. A ``GuardedStore`` passes its own,
    so each query takes a token of the read budget and is retried on its own."""

    query: Callable[[str, list[float], int], list[str]]
    counts: Callable[[], dict[str, int]]
    dimension: Callable[[], int]
    metric: Callable[[], str | None]


class SweepIds:
    """``list_ids`` by sweeping (see the module docstring); keeps this process's sweeps for the pages after the
    first."""

    def __init__(self, enumeration: Enumeration, label: str) -> None:
        self.top_k, self.max_queries = enumeration.top_k, enumeration.max_queries
        self.label = label
        self._sweeps: dict[tuple[str, str], SweepResult] = {}
        self._lock = threading.Lock()
        #: The most recent sweep of each namespace in this process.
        self.last_sweep: dict[str, SweepResult] = {}

    def sweep(self, namespace: str, session: str, reads: SweepReads) -> SweepResult:
        """Query until the ids seen reach the namespace's count or ``max_queries`` queries were made."""
        expected = reads.counts().get(namespace, 0)
        dimension, metric = reads.dimension(), reads.metric()
        seen: set[str] = set()
        queries = 0
        while len(seen) < expected and queries < self.max_queries:
            vector = sweep_vector(dimension, metric, session, namespace, queries)
            seen.update(reads.query(namespace, vector, min(self.top_k, expected)))
            queries += 1
        result = SweepResult(namespace, utf8_order(list(seen)), expected, queries)
        if not result.covered:
            log.warning(
                "sweep of %s namespace %s found %d of %d ids in %d queries (top_k %d): it cannot cover the "
                "namespace; an export (a backup) of it fails, and so does its verification",
                self.label,
                display_namespace(namespace),
                len(result.ids),
                expected,
                queries,
                self.top_k,
            )
        with self._lock:
            if len(self._sweeps) >= _SWEEPS_KEPT:
                self._sweeps.pop(next(iter(self._sweeps)))
            self._sweeps[(namespace, session)] = result
            self.last_sweep[namespace] = result
        return result

    def list_ids(self, namespace: str, *, limit: int, token: str | None, reads: SweepReads) -> IdPage:
        if token is None:
            # A new listing sweeps afresh (a sync or a re-verification must see what was written since).
            session, after = secrets.token_hex(6), None
            result = self.sweep(namespace, session, reads)
        else:
            parsed = PageToken.decode(token, "sweep")
            session, after = parsed.session, parsed.last
            with self._lock:
                kept = self._sweeps.get((namespace, session))
            result = kept if kept is not None else self.sweep(namespace, session, reads)
        page = ids_after(result.ids, after, limit + 1)
        more = len(page) > limit
        page = page[:limit]
        return IdPage(ids=page, next_token=PageToken("sweep", session, page[-1]).encode() if more else None)

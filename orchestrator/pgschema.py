"""Seed 004's pgvector layout, as pure data and functions: the table of a namespace, its columns, its indexes, the
name rules, and the mapping Pinecone record ↔ table row. The I/O is in ``workers.pgnamespaces`` and
``workers.stores.pgdocumented``; the choices seed 004 leaves open are listed in ``migrations/README.md``
("pgvector tables as seed 004 documents them").

- One table per namespace, ``{prefix}_{namespace}`` (prefix ``embeddings``); the default namespace is
  ``{prefix}_default``, and a legacy single table ``{prefix}`` (no namespace column) *is* the default namespace
  until ``nsmigrate pgvector legacy`` moved it there.
- Namespace names: lowercase letters, digits and ``_``, at most 50 characters, none of ``backup``, ``temp``,
  ``tmp``, ``system``, ``admin`` (nor starting with ``backup_``: backups are ``{prefix}_backup_…`` tables).
- A record maps to a row: id ↔ ``chunk_id``, values ↔ ``embedding``, a metadata key named like a column ↔ that column
  (typed as the schema says), every other key ↔ the ``metadata`` JSONB. ``document_id``, ``collection_name`` and
  ``text`` are required: a record without them is refused by id, never filled in.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import PlanError
from orchestrator.records import Record

PREFIX = "embeddings"
DEFAULT_NAME = "default"  # the default namespace "" lives in {prefix}_default
NAME_MAX = 50
RESERVED = ("backup", "temp", "tmp", "system", "admin")
BACKUP_WORD = "backup"
PG_IDENTIFIER_MAX = 63
#: pgvector builds ivfflat and hnsw indexes on ``vector`` columns of at most this many dimensions.
ANN_MAX_DIMENSION = 2000
ID_COLUMN = "chunk_id"
EMBEDDING_COLUMN = "embedding"
METADATA_COLUMN = "metadata"
BTREE_COLUMNS = ("collection_name", "document_id", "strategy")

_NAME = re.compile(r"[a-z0-9_]+")  # always fullmatch

ColumnKind = Literal["text", "integer", "float", "boolean", "text[]"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = False

    @property
    def sql_type(self) -> str:
        return {
            "text": "text",
            "integer": "integer",
            "float": "double precision",
            "boolean": "boolean",
            "text[]": "text[]",
        }[self.kind]


#: The named metadata columns, in table order (``chunk_id``, ``embedding``, ``metadata`` and the timestamps are not
#: metadata keys). Seed 004 names the groups "depth/hierarchy levels, quality scores, sizes, flags"; the column names
#: inside those groups are nsmigrate's choice (documented in migrations/README.md).
COLUMNS: tuple[Column, ...] = (
    Column("document_id", "text", required=True),
    Column("collection_name", "text", required=True),
    Column("text", "text", required=True),
    Column("strategy", "text"),
    Column("content_type", "text"),
    Column("path", "text"),
    Column("parent_chunk_id", "text"),
    Column("depth", "integer"),
    Column("hierarchy_level", "integer"),
    Column("quality_score", "float"),
    Column("coherence_score", "float"),
    Column("chunk_size", "integer"),
    Column("token_count", "integer"),
    Column("is_leaf", "boolean"),
    Column("has_code", "boolean"),
    Column("domain_tags", "text[]"),
    Column("original_keys", "text[]"),
)
COLUMN_BY_NAME = {c.name: c for c in COLUMNS}
#: The columns that make a table a namespace table (an id, a vector and the required metadata): what ``pgvector
#: drop`` checks before it drops anything.
NAMESPACE_TABLE_COLUMNS = (ID_COLUMN, EMBEDDING_COLUMN, *(c.name for c in COLUMNS if c.required))
#: Every column a copy carries, in table order (the timestamps too: a copy keeps when a chunk was made).
COPIED_COLUMNS = (ID_COLUMN, *(c.name for c in COLUMNS), EMBEDDING_COLUMN, METADATA_COLUMN, "created_at", "updated_at")


class MappingError(PlanError):
    """A record that cannot become a row of the documented schema (a required key missing, a value of the wrong
    type); the message names the record and the key."""


def quote(name: str) -> str:
    """A double-quoted SQL identifier: every identifier nsmigrate writes into SQL goes through here."""
    return '"' + name.replace('"', '""') + '"'


# --- names --------------------------------------------------------------------------------------------------------


def namespace_problem(namespace: str) -> str | None:
    """Why ``namespace`` cannot be a namespace of the documented layout, or None ("" is the default namespace)."""
    if namespace == "":
        return None
    if len(namespace) > NAME_MAX:
        return f"namespace {namespace[:60]!r} has {len(namespace)} characters; at most {NAME_MAX} are allowed"
    if not _NAME.fullmatch(namespace):
        return f"namespace {namespace[:60]!r} may hold only lowercase letters, digits and '_'"
    if namespace in RESERVED or namespace.startswith(f"{BACKUP_WORD}_"):
        return f"namespace {namespace!r} is reserved (not {', '.join(RESERVED)}, nor backup_…)"
    return None


def check_namespace(namespace: str) -> None:
    """Raise ``PlanError`` saying why ``namespace`` breaks the name rules (nothing is changed)."""
    problem = namespace_problem(namespace)
    if problem:
        raise PlanError(
            problem,
            hint="use lowercase letters, digits and '_' (≤ 50 characters), e.g. docs_2024; map other names with "
            "routing.mode explicit",
            namespace=namespace,
        )


def check_target_names(namespaces: Iterable[str]) -> None:
    """The plan's refusal of target namespaces a documented pgvector store cannot hold, all of them in one error."""
    problems = [p for ns in namespaces if (p := namespace_problem(ns))]
    if problems:
        raise PlanError(
            "target namespace(s) that seed 004's tables cannot hold:\n  " + "\n  ".join(problems),
            hint="map them to names of lowercase letters, digits and '_' (≤ 50 characters) with routing.mode "
            "explicit; nothing was written",
        )


def check_distinct_tables(prefix: str, namespaces: Iterable[str]) -> None:
    """Refuse (``PlanError``) target namespaces that would share one table, naming both: ``""`` and ``default`` are
    both ``{prefix}_default``, and Postgres cuts every name to its first 63 characters, so two long names that differ
    only after that are one table. Two namespaces in one table would overwrite each other's rows."""
    first: dict[str, str] = {}
    clashes = []
    for namespace in namespaces:
        table = table_of(prefix, namespace)[:PG_IDENTIFIER_MAX]
        other = first.setdefault(table, namespace)
        if other != namespace:
            clashes.append(f"{_shown(other)} and {_shown(namespace)} would both be the table {table}")
    if clashes:
        raise PlanError(
            "target namespaces that map to one pgvector table:\n  " + "\n  ".join(clashes),
            hint="route one of each pair to another name (routing.mode explicit) or leave it out "
            "(namespaces.exclude); nothing was written",
        )


def _shown(namespace: str) -> str:
    return "'' (the default namespace)" if namespace == "" else repr(namespace)


def table_of(prefix: str, namespace: str) -> str:
    """The table of ``namespace`` (``""`` and ``default`` → ``{prefix}_default``); raises ``PlanError`` for a name
    the rules refuse."""
    check_namespace(namespace)
    return f"{prefix}_{namespace or DEFAULT_NAME}"


def namespace_of(prefix: str, table: str) -> str | None:
    """The namespace a table holds (``""`` for ``{prefix}_default``), or None when it is not a namespace table
    (backups, other tables, names the rules refuse)."""
    if not table.startswith(f"{prefix}_"):
        return None
    name = table[len(prefix) + 1 :]
    if name == DEFAULT_NAME:
        return ""
    return None if namespace_problem(name) else name


def backup_table(prefix: str, namespace: str | None, stamp: str) -> str:
    """``{prefix}_backup_{stamp}`` (the legacy table) or ``{prefix}_backup_{stamp}_{namespace}`` for a namespace's
    table; a name too long for Postgres keeps the start of the namespace and a hash of all of it."""
    base = f"{prefix}_{BACKUP_WORD}_{stamp}"
    if namespace is None:
        return base
    name = f"{base}_{namespace or DEFAULT_NAME}"
    if len(name) <= PG_IDENTIFIER_MAX:
        return name
    digest = hashlib.sha1(namespace.encode()).hexdigest()[:8]
    room = PG_IDENTIFIER_MAX - len(base) - 2 - len(digest)
    return f"{base}_{namespace[: max(room, 1)]}_{digest}"


# --- DDL ----------------------------------------------------------------------------------------------------------


def create_table_sql(table: str, dimension: int) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of seed 004's shape; no index but the keys (indexes come after the load)."""
    columns = ",\n  ".join(
        [
            "id bigserial PRIMARY KEY",
            f"{ID_COLUMN} text NOT NULL UNIQUE",
            *(f"{quote(c.name)} {c.sql_type}{' NOT NULL' if c.required else ''}" for c in COLUMNS),
            f"{EMBEDDING_COLUMN} vector({int(dimension)}) NOT NULL",
            f"{METADATA_COLUMN} jsonb NOT NULL DEFAULT '{{}}'::jsonb",
            "created_at timestamptz NOT NULL DEFAULT now()",
            "updated_at timestamptz NOT NULL DEFAULT now()",
        ]
    )
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} (\n  {columns}\n)"


def ivfflat_lists(rows: int) -> int:
    """pgvector's advice for ivfflat ``lists``: rows / 1000 up to 1M rows, sqrt(rows) above; at least 1."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return max(1, int(math.sqrt(rows)))


def vector_index_sql(table: str, method: str, rows: int, dimension: int) -> str | None:
    """The cosine ANN index of ``table`` (``ivfflat`` with lists sized to ``rows``, or ``hnsw``), or None when there
    is none to build (``none``, or more dimensions than pgvector indexes)."""
    if method == "none" or dimension > ANN_MAX_DIMENSION:
        return None
    options = f" WITH (lists = {ivfflat_lists(rows)})" if method == "ivfflat" else ""
    return f"CREATE INDEX ON {quote(table)} USING {method} ({EMBEDDING_COLUMN} vector_cosine_ops){options}"


def btree_index_sql(table: str, column: str) -> str:
    return f"CREATE INDEX ON {quote(table)} ({quote(column)})"


# --- record ↔ row ---------------------------------------------------------------------------------------------------


def _typed(record_id: str, column: Column, value: Any) -> Any:
    """``value`` as ``column`` holds it, or MappingError."""
    ok: bool
    if column.kind == "text":
        ok = isinstance(value, str)
    elif column.kind == "boolean":
        ok = isinstance(value, bool)
    elif column.kind == "integer":
        # Pinecone returns every number as a float: 3.0 is the integer 3, 2.5 is not an integer.
        ok = not isinstance(value, bool) and isinstance(value, int | float) and float(value).is_integer()
        if ok:
            value = int(value)
    elif column.kind == "float":
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            value = list(value)
    if not ok:
        raise MappingError(
            f"record {record_id!r}: metadata {column.name!r} = {value!r:.60} is not {column.kind} as the "
            f"{column.name} column needs",
            hint="fix the value in the source, or copy into a pgvector store with schema: generic",
            record_id=record_id,
            key=column.name,
        )
    return value


def record_to_row(record: Record, columns: frozenset[str] | None = None) -> dict[str, Any]:
    """The row ``record`` becomes. ``columns``: the columns the table really has (an existing table may lack some);
    a metadata key without its column goes to ``metadata``. Raises ``MappingError`` naming the id and the key."""
    present = columns if columns is not None else frozenset(COLUMN_BY_NAME)
    row: dict[str, Any] = {ID_COLUMN: record.id, EMBEDDING_COLUMN: record.values}
    rest: dict[str, Any] = {}
    for key, value in record.metadata.items():
        column = COLUMN_BY_NAME.get(key)
        if column is None or key not in present:
            rest[key] = value
        elif value is not None:
            row[key] = _typed(record.id, column, value)
    missing = [c.name for c in COLUMNS if c.required and c.name in present and row.get(c.name) is None]
    if missing:
        raise MappingError(
            f"record {record.id!r} has no {', '.join(missing)} in its metadata, which the documented pgvector "
            "schema requires",
            hint="add the key(s) in the source, or copy into a pgvector store with schema: generic",
            record_id=record.id,
            key=missing[0],
        )
    row[METADATA_COLUMN] = rest
    return row


def row_to_record(row: Mapping[str, Any]) -> Record:
    """The record a row is: the named columns that are not NULL and the ``metadata`` JSONB's keys as metadata."""
    metadata: dict[str, Any] = dict(row.get(METADATA_COLUMN) or {})
    for column in COLUMNS:
        value = row.get(column.name)
        if value is not None:
            metadata[column.name] = list(value) if column.kind == "text[]" else value
    values = row[EMBEDDING_COLUMN]
    if not isinstance(values, list):
        values = [float(v) for v in values]
    return Record(id=row[ID_COLUMN], values=values, metadata=metadata)

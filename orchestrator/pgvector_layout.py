"""The application's pgvector layout (its DDL is sandbox/application-table.sql), as
pure data and functions: the table of a namespace, its columns, its four named indexes, the name rules, and the
mapping Pinecone record ↔ table row. The I/O is in ``workers.stores.pgvector.namespaces`` and
``workers.stores.pgvector.documented``; ``migrations/README.md`` ("pgvector tables as seed 004 documents them", a
heading there) describes it for users.

- One table per namespace, ``{prefix}_{namespace}`` (prefix ``embeddings``); the default namespace is
  ``{prefix}_default``, and a legacy single table ``{prefix}`` (no namespace column) *is* the default namespace
  until ``nsmigrate pgvector legacy`` moved it there.
- Namespace names: lowercase letters, digits and ``_``, at most 50 characters, none of ``backup``, ``temp``,
  ``tmp``, ``system``, ``admin`` (nor starting with ``backup_``: backups are ``{prefix}_backup_…`` tables).
- A record maps to a row of the table's **own columns, as Postgres describes them** (``TableColumn``, reflected by
  ``workers.stores.pgvector.namespaces.table_columns``; no column list is assumed): id ↔ ``chunk_id``, values ↔
  ``embedding``, a metadata key named like a column ↔ that column (typed as the column is), every other key ↔ the
  ``metadata`` JSONB. A column that is NULL is left out of the record, and a column a record does not mention is NULL
  (its default where it is NOT NULL); a NULL ``metadata`` is ``NULL_METADATA_KEY``. A NOT NULL column without a default
  (``document_id``, ``collection_name``, ``text``, ``strategy``, ``content_type``) is required: a record without it
  is refused by id, never filled in. So a row that goes to Pinecone and back comes back equal, column for column
  (the ``id`` row number excepted: each table numbers its own rows).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import (
    METADATA_EXACT_INTEGER_MAX,
    PG_IDENTIFIER_MAX_BYTES,
    PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS,
    PGVECTOR_INDEX_MAX_DIMENSIONS,
)
from nsmigrate.orchestrator.records.vectors import BinaryValues, Record

DEFAULT_NAME = "default"  # the default namespace "" lives in {prefix}_default
#: Longest namespace a table is made for: with the prefix it stays within Postgres's 63-byte identifiers.
NAME_MAX = 50
RESERVED = ("backup", "temp", "tmp", "system", "admin")
BACKUP_WORD = "backup"
#: The layout's ``WITH (lists = 100)``: the documented ivfflat size, whatever the rows.
DEFAULT_LISTS = 100
ID_COLUMN = "chunk_id"
EMBEDDING_COLUMN = "embedding"
METADATA_COLUMN = "metadata"
VECTOR_INDEX = "vector_idx"
#: The layout's b-tree indexes: ``{table}_{suffix}`` on one column each.
BTREE_INDEXES = (("collection_idx", "collection_name"), ("document_idx", "document_id"), ("strategy_idx", "strategy"))
BTREE_COLUMNS = tuple(column for _, column in BTREE_INDEXES)

_NAME = re.compile(r"[a-z0-9_]+")  # always fullmatch

ColumnKind = Literal["text", "integer", "float", "boolean", "text[]", "serial", "vector", "jsonb", "timestamp"]
VectorMethod = Literal["ivfflat", "hnsw", "none"]


@dataclass(frozen=True)
class Column:
    """One column as the application's DDL declares it (``sql_type`` and the constraints spelled as there)."""

    name: str
    kind: ColumnKind
    sql_type: str
    not_null: bool = False
    default: str | None = None
    unique: bool = False
    primary_key: bool = False

    @property
    def required(self) -> bool:
        """A record must carry it: NOT NULL with no default to fall back on."""
        return self.not_null and self.default is None

    @property
    def max_length(self) -> int | None:
        """The ``n`` of ``VARCHAR(n)``."""
        found = re.fullmatch(r"VARCHAR\((\d+)\)", self.sql_type)
        return int(found.group(1)) if found else None

    def ddl(self, dimension: int) -> str:
        sql_type = f"VECTOR({int(dimension)})" if self.kind == "vector" else self.sql_type
        constraints = [
            *(["PRIMARY KEY"] if self.primary_key else []),
            *(["UNIQUE"] if self.unique else []),
            *(["NOT NULL"] if self.not_null else []),
            *([f"DEFAULT {self.default}"] if self.default else []),
        ]
        return " ".join([quote(self.name), sql_type, *constraints])


#: The application's table of a namespace, column by column in table order, exactly as its DDL declares it
#: (sandbox/application-table.sql; tests/integration/test_pgvector_layout.py holds the two
#: equal in Postgres' catalogue).
LAYOUT: tuple[Column, ...] = (
    Column("id", "serial", "SERIAL", primary_key=True),
    Column(ID_COLUMN, "text", "VARCHAR(512)", unique=True, not_null=True),
    Column("document_id", "text", "VARCHAR(512)", not_null=True),
    Column("collection_name", "text", "VARCHAR(255)", not_null=True),
    Column("text", "text", "TEXT", not_null=True),
    Column(EMBEDDING_COLUMN, "vector", "VECTOR", not_null=True),
    Column("strategy", "text", "VARCHAR(50)", not_null=True),
    Column("content_type", "text", "VARCHAR(100)", not_null=True),
    Column("path", "text", "VARCHAR(4096)"),
    Column("parent_chunk_id", "text", "VARCHAR(512)"),
    Column("depth_level", "integer", "INTEGER", default="0"),
    Column("hierarchy_level", "integer", "INTEGER", default="0"),
    Column("semantic_density", "float", "FLOAT", default="0.0"),
    Column("confidence", "float", "FLOAT", default="1.0"),
    Column("chunk_size", "integer", "INTEGER"),
    Column("token_count", "integer", "INTEGER"),
    Column("key_count", "integer", "INTEGER"),
    Column("contains_arrays", "boolean", "BOOLEAN", default="FALSE"),
    Column("is_leaf", "boolean", "BOOLEAN", default="FALSE"),
    Column("domain_tags", "text[]", "TEXT[]"),
    Column("original_keys", "text[]", "TEXT[]"),
    Column(METADATA_COLUMN, "jsonb", "JSONB"),
    Column("created_at", "timestamp", "TIMESTAMP", default="CURRENT_TIMESTAMP"),
    Column("updated_at", "timestamp", "TIMESTAMP", default="CURRENT_TIMESTAMP"),
)
_NOT_METADATA_KEYS = ("id", ID_COLUMN, EMBEDDING_COLUMN, METADATA_COLUMN, "created_at", "updated_at")
#: The columns a record's metadata keys map to, in table order.
COLUMNS: tuple[Column, ...] = tuple(c for c in LAYOUT if c.name not in _NOT_METADATA_KEYS)
COLUMN_BY_NAME = {c.name: c for c in COLUMNS}
#: The columns that make a table a namespace table (an id, a vector and the required metadata): what ``pgvector
#: drop`` checks before it drops anything.
NAMESPACE_TABLE_COLUMNS = (ID_COLUMN, EMBEDDING_COLUMN, *(c.name for c in COLUMNS if c.required))


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
            "target namespace(s) that the application's per-namespace tables cannot hold:\n  " + "\n  ".join(problems),
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
        table = table_of(prefix, namespace)[:PG_IDENTIFIER_MAX_BYTES]
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
    if len(name) <= PG_IDENTIFIER_MAX_BYTES:
        return name
    digest = hashlib.sha1(namespace.encode()).hexdigest()[:8]
    room = PG_IDENTIFIER_MAX_BYTES - len(base) - 2 - len(digest)
    return f"{base}_{namespace[: max(room, 1)]}_{digest}"


def backup_index_name(backup: str, suffix: str) -> str:
    """The name an index ``{table}_{suffix}`` takes when its table becomes ``backup``: ``{backup}_{suffix}``, or, too
    long for Postgres, the start of it and a hash (so the suffixes of one table never cut to the same name)."""
    name = f"{backup}_{suffix}"
    if len(name) <= PG_IDENTIFIER_MAX_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{backup[: PG_IDENTIFIER_MAX_BYTES - len(suffix) - 10]}_{digest}_{suffix}"[:PG_IDENTIFIER_MAX_BYTES]


# --- DDL ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorIndex:
    """How a table's ANN index is built: ``method`` (ivfflat, hnsw or none) and, for ivfflat, its ``lists``."""

    method: VectorMethod = "ivfflat"
    lists: int = DEFAULT_LISTS

    def describe(self, dimension: int) -> str:
        """What ``vector_index_sql`` builds for ``dimension``, in words (for plans, stats and messages)."""
        if self.method == "none":
            return "none"
        if dimension > PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
            return f"none (pgvector indexes at most {PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS} dimensions)"
        if dimension > PGVECTOR_INDEX_MAX_DIMENSIONS:
            return f"hnsw over halfvec({dimension})"
        return f"ivfflat (lists = {self.lists})" if self.method == "ivfflat" else "hnsw"


def index_name(table: str, suffix: str) -> str:
    """``{table}_{suffix}`` cut to 63 characters, as Postgres itself cuts the DDL's names."""
    return f"{table}_{suffix}"[:PG_IDENTIFIER_MAX_BYTES]


def layout_names_problem(prefix: str, namespace: str) -> str | None:
    """Why the layout's names cannot all exist for ``namespace``'s table, or None: Postgres cuts names to 63
    characters, so for a long table two of them become one (``…_chunk_id_key`` and ``…_collection_idx`` both end
    ``…_c`` for a namespace of 50 characters), and the application's own DDL fails on that table too."""
    table = f"{prefix}_{namespace or DEFAULT_NAME}"
    names = [index_name(table, s) for s in ("chunk_id_key", VECTOR_INDEX, *(s for s, _ in BTREE_INDEXES))]
    if len(set(names)) == len(names):
        return None
    longest = PG_IDENTIFIER_MAX_BYTES - len(prefix) - len("__co")  # "_ch…" and "_co…" must still differ
    return (
        f"namespace {namespace!r}: the names of its table's constraint and indexes ({table}_chunk_id_key, "
        f"{table}_collection_idx, …) are cut to {PG_IDENTIFIER_MAX_BYTES} characters by Postgres and collide (the "
        f"application's DDL fails on this table as well); with prefix {prefix!r} a namespace has at most {longest} "
        "characters"
    )


def create_table_sql(table: str, dimension: int) -> str:
    """The application's ``CREATE TABLE`` for ``table``, column for column, with its named unique constraint (the
    DDL also marks ``chunk_id`` UNIQUE inline; Postgres keeps one constraint of that name). No index but the keys:
    ``create_index_sql`` adds the documented ones."""
    lines = [
        *(c.ddl(dimension) for c in LAYOUT),
        f"CONSTRAINT {quote(index_name(table, 'chunk_id_key'))} UNIQUE (chunk_id)",
    ]
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {quote(table)} (\n    {body}\n)"


def vector_index_sql(table: str, index: VectorIndex, dimension: int) -> str | None:
    """``{table}_vector_idx``, the cosine ANN index: ivfflat with ``index.lists`` (the layout's 100 by default) or
    hnsw; above 2,000 dimensions HNSW over ``embedding::halfvec(d)`` (pgvector's limit for ``vector`` is 2,000, for
    ``halfvec`` 4,000), so a search must order by ``embedding::halfvec(d) <=> …`` to use it. None: no index to build
    (``none``, or more than 4,000 dimensions)."""
    if index.method == "none" or dimension > PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
        return None
    head = f"CREATE INDEX {quote(index_name(table, VECTOR_INDEX))} ON {quote(table)}\n    "
    if dimension > PGVECTOR_INDEX_MAX_DIMENSIONS:
        return head + f"USING hnsw (({EMBEDDING_COLUMN}::halfvec({int(dimension)})) halfvec_cosine_ops)"
    if index.method == "hnsw":
        return head + f"USING hnsw ({EMBEDDING_COLUMN} vector_cosine_ops)"
    return head + f"USING ivfflat ({EMBEDDING_COLUMN} vector_cosine_ops) WITH (lists = {int(index.lists)})"


def btree_index_sql(table: str, suffix: str, column: str) -> str:
    """One of the layout's b-tree indexes, ``{table}_{suffix}`` on ``column``."""
    return f"CREATE INDEX {quote(index_name(table, suffix))} ON {quote(table)} ({quote(column)})"


def create_index_sql(table: str, index: VectorIndex, dimension: int) -> list[str]:
    """The layout's four indexes in the DDL's order: the vector index (when there is one to build), then the
    b-tree indexes on collection, document and strategy."""
    vector = vector_index_sql(table, index, dimension)
    return [*([vector] if vector else []), *(btree_index_sql(table, s, c) for s, c in BTREE_INDEXES)]


def distance_sql(dimension: int) -> str:
    """The cosine distance to ``:v`` as the vector index serves it (over halfvec above 2,000 dimensions)."""
    if PGVECTOR_INDEX_MAX_DIMENSIONS < dimension <= PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
        return f"{EMBEDDING_COLUMN}::halfvec({int(dimension)}) <=> CAST(:v AS halfvec({int(dimension)}))"
    return f"{EMBEDDING_COLUMN} <=> CAST(:v AS vector)"


# --- columns as a table has them ---------------------------------------------------------------------------------

#: How each column's value travels as Pinecone metadata (``column_kind``): ``text``, ``integer``, ``float``,
#: ``boolean`` and ``text[]`` as themselves; every other type (timestamps, JSON, numeric, uuid, vectors, other
#: arrays…) as Postgres's own text form of the value, cast back on the way in, so it is exact.
ValueKind = Literal["text", "integer", "float", "boolean", "text[]", "text form"]

_KIND_BY_TYPE: dict[str, ValueKind] = {
    "text": "text",
    "character varying": "text",
    "character": "text",
    "smallint": "integer",
    "integer": "integer",
    "bigint": "integer",
    "double precision": "float",
    "real": "float",
    "boolean": "boolean",
    "text[]": "text[]",
    "character varying[]": "text[]",
}
#: Types a copy inside Postgres may carry into one another (a length limit is checked by the insert itself).
_FAMILY = {
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp",
    "json": "json",
    "jsonb": "json",
}
#: Set on a record whose row holds NULL in ``metadata``: a record with no other keys would otherwise come back as
#: ``{}``. Every other NULL column is simply left out (a column a record does not mention is NULL).
NULL_METADATA_KEY = "nsmigrate_metadata_null"
#: Lists the keys whose values Pinecone metadata cannot hold as they are (``_pinecone_holds``): of the ``metadata``
#: JSONB, objects, nulls, lists of anything but strings, integers beyond 2**53; of the columns, a ``text[]`` with a NULL
#: element, an integer beyond 2**53, a float that is no JSON number (NaN, ±Infinity). Each travels as its JSON text
#: and is parsed back on the way in.
JSON_KEYS_KEY = "nsmigrate_json_keys"
#: Lists the ``metadata`` JSONB keys whose values are integers: Pinecone gives every number back as a float (``1`` as
#: ``1.0``), and the application's ``1`` must come back ``1``, not ``1.0``. (A column is typed by its column.)
INT_KEYS_KEY = "nsmigrate_int_keys"
#: The keys the mapping itself sets on a record: a ``metadata`` JSONB key of one of these names is refused.
_MAPPING_KEYS = (NULL_METADATA_KEY, JSON_KEYS_KEY, INT_KEYS_KEY)


@dataclass(frozen=True)
class TableColumn:
    """A column as Postgres describes it (``workers.stores.pgvector.namespaces.table_columns``)."""

    name: str
    sql_type: str  # format_type(): "character varying(512)", "vector(1536)", "timestamp without time zone"…
    not_null: bool = False
    has_default: bool = False
    serial: bool = False  # the table's own row number (a nextval default or an identity)

    @property
    def base_type(self) -> str:
        return re.sub(r"\(\d+(,\d+)?\)", "", self.sql_type)

    @property
    def kind(self) -> ValueKind:
        return _KIND_BY_TYPE.get(self.base_type, "text form")

    @property
    def family(self) -> str:
        """Columns of one family hold each other's values unchanged (a vector's dimension is checked apart)."""
        return _FAMILY.get(self.base_type, self.kind if self.kind != "text form" else self.base_type)

    @property
    def max_length(self) -> int | None:
        """The ``n`` of ``VARCHAR(n)``."""
        found = re.fullmatch(r"character varying\((\d+)\)", self.sql_type)
        return int(found.group(1)) if found else None

    @property
    def required(self) -> bool:
        """A record must give a value (NOT NULL and no default)."""
        return self.not_null and not self.has_default and not self.serial


def record_columns(columns: Iterable[TableColumn]) -> list[TableColumn]:
    """The columns a record carries as metadata: all but the id, the vector, the ``metadata`` JSONB and the table's
    own row number (it numbers rows of one table; another table numbers its own)."""
    skip = (ID_COLUMN, EMBEDDING_COLUMN, METADATA_COLUMN)
    return [c for c in columns if c.name not in skip and not c.serial]


def carry_problems(table: str, source: Sequence[TableColumn], target: Sequence[TableColumn]) -> list[str]:
    """Why ``target`` cannot hold every column of ``source`` as it is (one line per column), or []: a column it
    lacks, or one of another type family. NULLs into a NOT NULL column are checked against the rows
    (``workers.stores.pgvector.namespaces``)."""
    have = {c.name: c for c in target}
    problems = []
    for column in source:
        there = have.get(column.name)
        if there is None:
            problems.append(f"table {table} has no column {column.name} ({column.sql_type})")
        elif there.family != column.family:
            problems.append(
                f"table {table} column {column.name} is {there.sql_type}, the source's is {column.sql_type}"
            )
    return problems


def same_database(source: Any, target: Any, environ: Mapping[str, str]) -> bool:
    """Whether two pgvector store specs name the same database (their URL env vars hold the same URL in
    ``environ``): then a job's batches run inside Postgres, and a new target table gets the source's own columns."""
    url = environ.get(source.database_url_env)
    return bool(url) and url == environ.get(target.database_url_env)


def new_table_problems(table: str, source: Sequence[TableColumn]) -> list[str]:
    """Why a new table of the layout, filled through the workers, would not hold every column of ``source`` (one
    line per column the layout lacks), or []."""
    layout = {c.name for c in LAYOUT}
    return [
        f"table {table} (new, of the application's layout) would have no column {c.name} ({c.sql_type})"
        for c in source
        if c.name not in layout
    ]


def refuse_columns(problems: Sequence[str], source: str) -> None:
    """The plan-time refusal of a copy that would drop or change columns (``carry_problems``), all in one error."""
    if problems:
        raise PlanError(
            f"the copy of {source} would not carry every column:\n  " + "\n  ".join(problems),
            hint="add the column(s) to the target (same type), or copy into a new namespace, whose table nsmigrate "
            "makes with every column of the source; nothing was copied",
        )


# --- record ↔ row ---------------------------------------------------------------------------------------------------


def _refuse(record_id: str, column: TableColumn, value: Any) -> MappingError:
    return MappingError(
        f"record {record_id!r}: metadata {column.name!r} = {value!r:.60} is not {column.kind} as the "
        f"{column.name} column ({column.sql_type}) needs",
        hint="fix the value in the source, or copy into a pgvector store with schema: generic",
        record_id=record_id,
        key=column.name,
    )


def _typed(record_id: str, column: TableColumn, value: Any) -> Any:
    """``value`` as ``column`` holds it, or MappingError."""
    kind = column.kind
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        # Pinecone returns every number as a float: 3.0 is the integer 3, 2.5 is not an integer.
        ok = not isinstance(value, bool) and isinstance(value, int | float) and float(value).is_integer()
        value = int(value) if ok else value
    elif kind == "float":
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        value = float(value) if ok else value
    elif kind == "text[]":  # NULL elements included: the application's DDL allows them
        ok = isinstance(value, list | tuple) and all(v is None or isinstance(v, str) for v in value)
        value = list(value) if ok else value
    else:  # text, and the text form Postgres casts (it refuses a malformed one itself)
        ok = isinstance(value, str)
    if not ok:
        raise _refuse(record_id, column, value)
    if column.max_length is not None and len(value) > column.max_length:
        raise MappingError(
            f"record {record_id!r}: metadata {column.name!r} has {len(value)} characters; the {column.name} column "
            f"({column.sql_type}) holds at most {column.max_length}",
            hint="shorten the value in the source, or copy into a pgvector store with schema: generic",
            record_id=record_id,
            key=column.name,
        )
    return value


def record_to_row(record: Record, columns: Sequence[TableColumn]) -> dict[str, Any]:
    """The row ``record`` becomes in a table of ``columns``: a metadata key named like a column goes there (typed as
    the column is), a column the record does not mention is NULL (its default where it is NOT NULL), every other key
    goes to the ``metadata`` JSONB (NULL when the record says so, ``NULL_METADATA_KEY``). Raises ``MappingError``
    naming the id and the key (a required column missing, a value of the wrong type)."""
    named = {c.name: c for c in record_columns(columns)}
    row: dict[str, Any] = {ID_COLUMN: record.id, EMBEDDING_COLUMN: record.values}
    rest: dict[str, Any] = {}
    null_metadata = False
    as_json = record.metadata.get(JSON_KEYS_KEY) or []
    integers = record.metadata.get(INT_KEYS_KEY) or []
    for key, value in record.metadata.items():
        if key == NULL_METADATA_KEY:
            null_metadata = value is True
            continue
        if key in _MAPPING_KEYS:
            continue
        if key in as_json:
            value = _parsed_json(record.id, key, value)
        elif key in integers and isinstance(value, float) and value.is_integer():
            value = int(value)
        column = named.get(key)
        if column is None:
            rest[key] = value
        elif value is not None:
            row[key] = _typed(record.id, column, value)
    missing = [c.name for c in named.values() if c.required and row.get(c.name) is None]
    if missing:
        raise MappingError(
            f"record {record.id!r} has no {', '.join(missing)} in its metadata, which its pgvector table requires",
            hint="add the key(s) in the source, or copy into a pgvector store with schema: generic",
            record_id=record.id,
            key=missing[0],
        )
    for column in named.values():
        if column.name not in row and not column.not_null:
            row[column.name] = None
    if any(c.name == METADATA_COLUMN for c in columns):
        row[METADATA_COLUMN] = None if null_metadata and not rest else rest
    return row


def _parsed_json(record_id: str, key: str, value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError) as e:
        raise MappingError(
            f"record {record_id!r}: metadata {key!r} = {value!r:.60} is listed in {JSON_KEYS_KEY} but is no JSON text",
            hint=f"fix the value in the source, or remove {key!r} from its {JSON_KEYS_KEY}",
            record_id=record_id,
            key=key,
        ) from e


def _pinecone_holds(value: Any) -> bool:
    """Whether Pinecone metadata holds ``value`` and gives it back equal: a string, a boolean, a finite number (an
    integer up to 2**53: Pinecone keeps a 64-bit float), a list of strings."""
    if isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return abs(value) <= METADATA_EXACT_INTEGER_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _carried(column: TableColumn, value: Any) -> Any:
    """A column's value as Pinecone metadata holds it (the text form is selected as text already)."""
    if column.kind == "text[]":
        return list(value)
    if column.kind == "text":
        return str(value)
    return value


def row_to_record(row: Mapping[str, Any], columns: Sequence[TableColumn]) -> Record:
    """The record a row is: every column that is not NULL as a metadata key, and the ``metadata`` JSONB's keys (a
    value Pinecone cannot hold as its JSON text, listed in ``JSON_KEYS_KEY``); a NULL ``metadata`` sets
    ``NULL_METADATA_KEY``. Raises ``MappingError`` for a ``metadata`` that is not a JSON object or holds a key named
    like a column or like those two (the way back could not tell them apart)."""
    record_id = row[ID_COLUMN]
    stored = row.get(METADATA_COLUMN)
    named = record_columns(columns)
    if stored is not None and not isinstance(stored, dict):
        raise MappingError(
            f"row {record_id!r}: metadata is {stored!r:.60}, not a JSON object", record_id=record_id, key="metadata"
        )
    metadata: dict[str, Any] = dict(stored or {})
    clash = sorted(metadata.keys() & ({c.name for c in named} | set(_MAPPING_KEYS)))
    if clash:
        raise MappingError(
            f"row {record_id!r}: its metadata JSONB holds the key {clash[0]!r}, which is also a column or a key "
            "nsmigrate's mapping uses",
            hint="rename the key in the metadata JSONB; a copy could not tell it from the column",
            record_id=record_id,
            key=clash[0],
        )
    as_json = [k for k, v in metadata.items() if not _pinecone_holds(v)]
    integers = sorted(k for k, v in metadata.items() if type(v) is int and k not in as_json)
    if stored is None and any(c.name == METADATA_COLUMN for c in columns):
        metadata[NULL_METADATA_KEY] = True
    for column in named:
        value = row.get(column.name)
        if value is not None:
            metadata[column.name] = _carried(column, value)
            if not _pinecone_holds(metadata[column.name]):
                as_json.append(column.name)
    for key in as_json:
        metadata[key] = json.dumps(metadata[key])
    if as_json:
        metadata[JSON_KEYS_KEY] = sorted(as_json)
    if integers:
        metadata[INT_KEYS_KEY] = integers
    values = row[EMBEDDING_COLUMN]
    if not isinstance(values, list | BinaryValues):  # pgvector's binary form is kept as it came
        values = [float(v) for v in values]
    return Record(id=record_id, values=values, metadata=metadata)


def select_list(columns: Sequence[TableColumn]) -> str:
    """The SELECT list that reads ``columns`` for ``row_to_record`` (a text-form column as its text; the vector and
    the JSONB as they are: the reader takes their own forms)."""
    return ", ".join(
        f"CAST({quote(c.name)} AS text) AS {quote(c.name)}"
        if c.kind == "text form" and c.name not in (METADATA_COLUMN, EMBEDDING_COLUMN)
        else quote(c.name)
        for c in columns
    )


def placeholder(column: TableColumn, bind: str) -> str:
    """The VALUES placeholder of ``column`` bound as ``:bind`` (a text-form value, the vector and the JSON among
    them, is bound as text and cast)."""
    return f"CAST(:{bind} AS {column.sql_type})" if column.kind == "text form" else f":{bind}"

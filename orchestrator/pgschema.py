"""Seed 004's pgvector layout, as pure data and functions: the table of a namespace, its columns, its indexes, the
name rules, and the mapping Pinecone record ↔ table row. The I/O is in ``workers.pgnamespaces`` and
``workers.stores.pgdocumented``; the choices seed 004 leaves open are listed in ``migrations/README.md``
("pgvector tables as seed 004 documents them").

- One table per namespace, ``{prefix}_{namespace}`` (prefix ``embeddings``); the default namespace is
  ``{prefix}_default``, and a legacy single table ``{prefix}`` (no namespace column) *is* the default namespace
  until ``nsmigrate pgvector legacy`` moved it there.
- Namespace names: lowercase letters, digits and ``_``, at most 50 characters, none of ``backup``, ``temp``,
  ``tmp``, ``system``, ``admin`` (nor starting with ``backup_``: backups are ``{prefix}_backup_…`` tables).
- A record maps to a row of the table's **own columns, as Postgres describes them** (``TableColumn``, reflected by
  ``workers.pgnamespaces.table_columns``; no column list is assumed): id ↔ ``chunk_id``, values ↔ ``embedding``, a
  metadata key named like a column ↔ that column (typed as the column is), every other key ↔ the ``metadata`` JSONB.
  A column that is NULL is left out of the record, and a column a record does not mention is NULL (its default
  where it is NOT NULL); a NULL ``metadata`` is ``NULL_METADATA_KEY``. A NOT NULL column without a default
  (``document_id``, ``collection_name``, ``text``…) is required: a record without it is refused by id, never filled
  in. So a row that goes to Pinecone and back comes back equal, column for column (the ``id`` row number excepted:
  each table numbers its own rows).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
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
            f"{METADATA_COLUMN} jsonb",
            "created_at timestamp DEFAULT CURRENT_TIMESTAMP",
            "updated_at timestamp DEFAULT CURRENT_TIMESTAMP",
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
#: Lists the ``metadata`` JSONB keys whose values Pinecone metadata cannot hold (objects, nulls, lists of anything
#: but strings): each travels as its JSON text and is parsed back on the way in.
JSON_KEYS_KEY = "nsmigrate_json_keys"


@dataclass(frozen=True)
class TableColumn:
    """A column as Postgres describes it (``workers.pgnamespaces.table_columns``)."""

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
    (``workers.pgnamespaces``)."""
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
    elif kind == "text[]":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
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
    for key, value in record.metadata.items():
        column = named.get(key)
        if key == NULL_METADATA_KEY:
            null_metadata = value is True
        elif key == JSON_KEYS_KEY:
            continue
        elif key in as_json:
            rest[key] = _parsed_json(record.id, key, value)
        elif column is None:
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
    """Whether Pinecone metadata holds ``value`` as it is: a string, a boolean, a finite number, a list of strings."""
    if isinstance(value, str | bool):
        return True
    if isinstance(value, int | float):
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
    clash = sorted(metadata.keys() & ({c.name for c in named} | {NULL_METADATA_KEY, JSON_KEYS_KEY}))
    if clash:
        raise MappingError(
            f"row {record_id!r}: its metadata JSONB holds the key {clash[0]!r}, which is also a column or a key "
            "nsmigrate's mapping uses",
            hint="rename the key in the metadata JSONB; a copy could not tell it from the column",
            record_id=record_id,
            key=clash[0],
        )
    as_json = sorted(k for k, v in metadata.items() if not _pinecone_holds(v))
    for key in as_json:
        metadata[key] = json.dumps(metadata[key])
    if as_json:
        metadata[JSON_KEYS_KEY] = as_json
    if stored is None and any(c.name == METADATA_COLUMN for c in columns):
        metadata[NULL_METADATA_KEY] = True
    for column in named:
        value = row.get(column.name)
        if value is not None:
            metadata[column.name] = _carried(column, value)
    values = row[EMBEDDING_COLUMN]
    if not isinstance(values, list):
        values = [float(v) for v in values]
    return Record(id=record_id, values=values, metadata=metadata)


def select_list(columns: Sequence[TableColumn]) -> str:
    """The SELECT list that reads ``columns`` for ``row_to_record`` (a text-form column as its text)."""
    return ", ".join(
        f"CAST({quote(c.name)} AS text) AS {quote(c.name)}"
        if c.kind == "text form" and c.name != METADATA_COLUMN
        else quote(c.name)
        for c in columns
    )


def placeholder(column: TableColumn, bind: str) -> str:
    """The VALUES placeholder of ``column`` bound as ``:bind`` (a text-form value, the vector and the JSON among
    them, is bound as text and cast)."""
    return f"CAST(:{bind} AS {column.sql_type})" if column.kind == "text form" else f":{bind}"

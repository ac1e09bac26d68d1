"""Rows of the application's pgvector tables as nsmigrate reads and writes them: a table's columns as Postgres
describes them (TableColumn), whether a target can hold a source's columns, and a record made a row and a row a
record (record_to_row, row_to_record) over whatever columns the table has, exactly or refused by id (a
value that does not fit its column raises MappingError naming the record, the column and the table).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import (
    METADATA_EXACT_INTEGER_MAX,
)
from nsmigrate.orchestrator.pgvector_layout import (
    EMBEDDING_COLUMN,
    ID_COLUMN,
    LAYOUT,
    METADATA_COLUMN,
    MappingError,
    quote,
)
from nsmigrate.orchestrator.records.vectors import BinaryValues, Record

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
#: Pairs of one family whose copy would change a value without an error (a copy inside Postgres casts it, and its
#: verification casts the source the same way, so nothing else would tell): a double rounded to a real, a timestamp
#: with its zone turned into the session's wall time without one, a text padded into a ``character(n)`` (its
#: trailing blanks lost, and the ones past ``n`` cut), a ``json`` text made ``jsonb`` (keys reordered, duplicates and
#: blanks dropped).
_NARROWING = {
    ("double precision", "real"),
    ("timestamp with time zone", "timestamp without time zone"),
    ("text", "character"),
    ("character varying", "character"),
    ("json", "jsonb"),
}
#: A time type's fractional digits when its type names none (the most it holds).
_TIME_DIGITS = 6
#: Types whose modifier is a precision the insert's cast rounds to, silently: fractional seconds, a numeric's scale.
_PRECISE = frozenset(
    {
        "numeric",
        "timestamp without time zone",
        "timestamp with time zone",
        "time without time zone",
        "time with time zone",
        "interval",
    }
)
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
        elif (
            there.family != column.family
            or (column.base_type, there.base_type) in _NARROWING
            or _rounds(column, there)
            or _shorter(column, there)
        ):
            problems.append(
                f"table {table} column {column.name} is {there.sql_type}, the source's is {column.sql_type}"
            )
    return problems


def _shorter(source: TableColumn, target: TableColumn) -> bool:
    """Whether ``target`` is a ``varchar(m)`` that holds less than ``source``'s text: a value too long only by its
    trailing blanks is cut to fit, silently (Postgres raises only for other characters), and the comparison's cast
    cuts it alike."""
    limit = target.max_length
    return source.family == "text" and limit is not None and (source.max_length or limit + 1) > limit


def _rounds(source: TableColumn, target: TableColumn) -> bool:
    """Whether ``target``, of ``source``'s own type, keeps less of its precision (``timestamp(0)`` of a
    ``timestamp``, ``numeric(10,2)`` of a ``numeric(10,4)`` or of an unbounded ``numeric``)."""
    if source.base_type != target.base_type or source.base_type not in _PRECISE:
        return False
    kept, given = _modifier(target.sql_type), _modifier(source.sql_type)
    if source.base_type == "numeric":  # (precision, scale): digits after the point, and before it; none: unbounded
        if kept is None or given is None:
            return kept is not None
        return kept[1] < given[1] or kept[0] - kept[1] < given[0] - given[1]
    # A time's fractional digits: none given is the most it holds, 6.
    return (kept or (_TIME_DIGITS, 0))[0] < (given or (_TIME_DIGITS, 0))[0]


def _modifier(sql_type: str) -> tuple[int, int] | None:
    """A type's ``(p)`` or ``(p,s)`` as (p, s) (s 0 when absent), or None when it has none."""
    found = re.search(r"\((\d+)(?:,(\d+))?\)", sql_type)
    return (int(found.group(1)), int(found.group(2) or 0)) if found else None


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

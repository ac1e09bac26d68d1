"""Rows of the application's pgvector tables read and written in Postgres's binary form (psycopg 3), for the copies
that pass through a worker: a vector in pgvector's text form costs a ``repr`` per value to write and a parse per
value on both sides, where its binary form is the float32 bytes themselves (bench/README.md, "pgvector through the
workers").

- ``select_rows``: a query's rows with every column in binary; the vector arrives as ``BinaryValues`` (kept as it
  came: a copy into another pgvector table writes the same bytes back), everything else as psycopg loads it.
- ``upsert_rows``: rows written with ``COPY … FROM STDIN (FORMAT BINARY)`` into a staging table of the transaction,
  then one ``INSERT … SELECT … ON CONFLICT`` into the table (COPY itself cannot overwrite a row).
- ``pass_rows``: rows of one database written into another as Postgres sent them, by ``COPY`` straight into the
  table, or, when one of their ids is there already, read again through a staging table and ``INSERT … ON
  CONFLICT``.

Values are exact both ways: a column's value is what the text form gave before (a ``real`` column's value as its
shortest decimal too), and what is written is cast by Postgres as the text path cast it. The statements run on the
connection's own driver connection, inside the caller's transaction; a driver error is raised as SQLAlchemy's (the
stores translate those).
"""

from __future__ import annotations

import contextlib
import struct
import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa

from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.pgvector_layout import EMBEDDING_COLUMN, quote
from nsmigrate.orchestrator.pgvector_rows import TableColumn
from nsmigrate.orchestrator.records.vectors import BinaryValues

#: pgvector's binary vector starts with its dimension and an unused word, both uint16 big-endian.
_VECTOR_HEAD = struct.Struct(">HH")
#: The staging table's type of each kind of value (``TableColumn.kind``), and psycopg's name for it in COPY.
_STAGED: dict[str, tuple[str, str]] = {
    "text": ("text", "text"),
    "integer": ("bigint", "int8"),
    "float": ("double precision", "float8"),
    "boolean": ("boolean", "bool"),
    "text[]": ("text[]", "text[]"),
    "text form": ("text", "text"),  # cast to the column's type by the INSERT, as the text path's placeholders do
}
_STAGING = "nsmigrate_staged_rows"
#: The savepoint a batch's straight COPY into its table is undone to when one of its ids is there already.
_DIRECT = "nsmigrate_direct_copy"
_FLOAT4_OID = psycopg.adapters.types["float4"].oid


def vector_binary(values: Sequence[float]) -> bytes:
    """pgvector's binary form of ``values`` (the bytes a ``BinaryValues`` holds are passed on as they are)."""
    if isinstance(values, BinaryValues):
        return values.binary
    floats = array("f", values)  # C floats, rounded as pgvector's own cast rounds them
    if sys.byteorder == "little":
        floats.byteswap()  # the binary form is big-endian
    return _VECTOR_HEAD.pack(len(values), 0) + floats.tobytes()


@contextlib.contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as e:
        # As SQLAlchemy raises it (OperationalError, ProgrammingError…, the driver's error as ``orig``).
        raise sa.exc.DBAPIError.instance(statement, None, e, psycopg.Error) from e


def _driver(conn: sa.Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection), "the pgvector stores use the psycopg 3 driver"
    return driver


def select_rows(conn: sa.Connection, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``sql`` (psycopg placeholders, ``%(name)s``) with every column read in binary: the vector column
    as ``BinaryValues``, a ``real`` column as the float its text form reads as."""
    driver = _driver(conn)
    with _driver_errors(sql), driver.cursor(binary=True) as cursor:
        cursor.execute(sql, params)
        names = [d.name for d in cursor.description or ()]
        float4 = {i for i, d in enumerate(cursor.description or ()) if d.type_code == _FLOAT4_OID}
        rows = cursor.fetchall()
    vector = names.index(EMBEDDING_COLUMN) if EMBEDDING_COLUMN in names else -1
    out = []
    for row in rows:
        values = list(row)
        if vector >= 0 and values[vector] is not None:
            values[vector] = BinaryValues(bytes(values[vector]))
        for i in float4:
            if values[i] is not None:
                values[i] = _as_text_reads(values[i])
        out.append(dict(zip(names, values, strict=True)))
    return out


def _as_text_reads(value: float) -> float:
    """A ``real`` read in binary as the float its text form (the shortest decimal of the float32) reads as. numpy is
    imported here, not at the top: only a table with a ``real`` column needs it, and a worker starts without it."""
    import numpy as np

    return float(str(np.float32(value)))


def upsert_rows(
    conn: sa.Connection, table: str, columns: Sequence[TableColumn], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert or overwrite ``rows`` (all of the same keys, each a column of ``columns``: a column left out keeps its
    default, or its old value) into ``table``, by binary COPY into a staging table and one ``INSERT … SELECT … ON
    CONFLICT (chunk_id)``. Values as ``pgvector_rows.record_to_row`` makes them (the ``metadata`` as its JSON
    text, other text-form values as their text)."""
    if not rows:
        return
    by_name = {c.name: c for c in columns}
    names = list(rows[0])
    staged = [_staged(by_name[n]) for n in names]
    driver = _driver(conn)
    defined = ", ".join(f"{quote(n)} {s[0]}" for n, s in zip(names, staged, strict=True))
    create = f"CREATE TEMP TABLE {_STAGING} ({defined}) ON COMMIT DROP"
    copy_sql = f"COPY {_STAGING} FROM STDIN (FORMAT BINARY)"
    cast = [by_name[n].kind == "text form" and n != EMBEDDING_COLUMN for n in names]
    picked = ", ".join(
        f"CAST({quote(n)} AS {by_name[n].sql_type})" if c else quote(n) for n, c in zip(names, cast, strict=True)
    )
    updates = ", ".join(f"{quote(n)} = EXCLUDED.{quote(n)}" for n in names if n != pgvector_layout.ID_COLUMN)
    insert = (
        f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in names)}) SELECT {picked} FROM {_STAGING} "
        f"ON CONFLICT ({pgvector_layout.ID_COLUMN}) DO UPDATE SET {updates}"
    )
    embedding = names.index(EMBEDDING_COLUMN) if EMBEDDING_COLUMN in names else -1
    with driver.cursor() as cursor:
        with _driver_errors(create):
            cursor.execute(create)  # no parameters: the driver reads no placeholder in it
        with _driver_errors(copy_sql), cursor.copy(copy_sql) as copy:
            copy.set_types([s[1] for s in staged])
            for row in rows:
                values = [row[n] for n in names]
                if embedding >= 0:
                    values[embedding] = vector_binary(values[embedding])
                copy.write_row(values)
        with _driver_errors(insert):
            cursor.execute(insert)
            cursor.execute(f"DROP TABLE {_STAGING}")


def _staged(column: TableColumn) -> tuple[str, str]:
    """(the staging table's type, psycopg's type for COPY) of ``column``."""
    if column.name == EMBEDDING_COLUMN:
        # The vector's binary form is written as bytes (bytea's binary form is the bytes as they are) into a column
        # of the vector type: binary COPY carries no type, the server reads each field as its column's type.
        return "vector", "bytea"
    return _STAGED[column.kind]


def pass_rows(
    reading: sa.Connection,
    copy_out: str,
    out_params: Mapping[str, Any],
    writing: sa.Connection,
    copy_in: str | None,
    staged_columns: str,
    insert: str,
) -> tuple[int, int]:
    """Rows from one database into another as they are: ``copy_out`` (a ``COPY … TO STDOUT (FORMAT BINARY)``) on
    ``reading`` streamed into ``copy_in`` (a ``COPY table (…) FROM STDIN (FORMAT BINARY)``) on ``writing``, straight
    into the table, as the single-process rival writes. COPY cannot overwrite a row: when one of the ids is there
    already (the batch run again after its commit, a target that holds some of them), that COPY is undone to a
    savepoint, and the rows are read again into a staging table of ``staged_columns``, then ``insert`` (its
    ``{staging}`` the staging table) overwrites. ``copy_in`` None: always the staging table (a column the table holds
    in another type than the rows have: only the INSERT casts). Returns (rows written, bytes passed)."""
    source, target = _driver(reading), _driver(writing)
    if copy_in is not None:
        done = _copy_straight(source, copy_out, out_params, target, copy_in)
        if done is not None:
            return done
    create = f"CREATE TEMP TABLE {_STAGING} ({staged_columns}) ON COMMIT DROP"
    staged = f"COPY {_STAGING} FROM STDIN (FORMAT BINARY)"
    insert = insert.replace("{staging}", _STAGING)
    with target.cursor() as cursor:
        with _driver_errors(create):
            cursor.execute(create)
        with _driver_errors(staged):
            passed = _stream(source, copy_out, out_params, cursor, staged)
        with _driver_errors(insert):
            cursor.execute(insert)
            written = cursor.rowcount
            cursor.execute(f"DROP TABLE {_STAGING}")
    return written, passed


def _copy_straight(
    source: psycopg.Connection[Any],
    copy_out: str,
    out_params: Mapping[str, Any],
    target: psycopg.Connection[Any],
    copy_in: str,
) -> tuple[int, int] | None:
    """``_stream`` under a savepoint: (rows written, bytes passed), or None, with nothing written (undone to the
    savepoint), when one of the rows' ids is in the table already."""
    with _driver_errors(copy_in), target.cursor() as cursor:
        cursor.execute(f"SAVEPOINT {_DIRECT}")
        try:
            passed = _stream(source, copy_out, out_params, cursor, copy_in)
        except psycopg.errors.UniqueViolation:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {_DIRECT}")
            return None
        written = cursor.rowcount
        cursor.execute(f"RELEASE SAVEPOINT {_DIRECT}")
        return written, passed


def _stream(
    source: psycopg.Connection[Any],
    copy_out: str,
    out_params: Mapping[str, Any],
    cursor: psycopg.Cursor[Any],
    copy_in: str,
) -> int:
    """The rows of ``copy_out`` on ``source`` written by ``copy_in`` on ``cursor`` one by one as they come (none is
    kept: a kept row is fresh memory, which cost as much CPU as passing it); returns the bytes passed. When the
    writing side refuses a row whose id is there already, the source's COPY is read to its end first: cancelled, it
    would leave its connection's transaction unusable for the second read that follows."""
    passed = 0
    with source.cursor() as reading, reading.copy(copy_out, out_params) as out:
        try:
            with cursor.copy(copy_in) as into:
                for row in out:
                    passed += len(row)
                    into.write(row)
        except psycopg.errors.UniqueViolation:
            for _ in out:
                pass
            raise
    return passed

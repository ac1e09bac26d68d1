"""A PostgREST-compatible subset over a real Postgres, so the real ``supabase`` client works against the sandbox.

Why: the planner reads the creator → twin mapping from Supabase (``client.table("twins").select(...)``). Tests and the
demo must exercise that exact client code path — URL building, headers, ``Content-Range`` parsing, pagination under the
server's row cap, error objects — without a Supabase project. So this is a small HTTP server that speaks the wire
protocol the ``supabase``/``postgrest`` Python client (2.x) speaks, answered from real tables in a real Postgres:

- ``GET|HEAD /rest/v1/<table>?select=a,b,alias:c,*&<col>=<op>.<value>&order=c.desc.nullslast&limit=&offset=``
  with operators ``eq neq gt gte lt lte like ilike match imatch in is isdistinct`` and a ``not.`` prefix;
  the ``Range`` header; ``Prefer: count=exact`` (``planned``/``estimated`` are answered exactly);
  ``Accept: application/vnd.pgrst.object+json`` (``.single()``); ``Content-Range`` / 206 / 416 like PostgREST.
- ``POST /rest/v1/<table>`` insert of one object or an array, ``Prefer: return=representation|minimal``,
  ``resolution=merge-duplicates|ignore-duplicates`` (upsert on the primary key or ``on_conflict=``), ``columns=``.
- A server-side row cap (``max_rows``, PostgREST's ``db-max-rows``): a request for more rows gets at most that many and
  a ``Content-Range`` that says so, which is what makes client pagination bugs visible in tests.
- The ``apikey`` header must equal the configured key (401 otherwise, as Supabase's gateway does). The key is never
  written to responses or logs.
- Errors are PostgREST's JSON ``{"code","details","hint","message"}`` with its codes (``PGRST100`` parse errors,
  ``PGRST205`` unknown table, ``42703`` unknown column, Postgres SQLSTATEs for database errors), because the client
  turns exactly that into ``postgrest.APIError``.

Not supported (answered with a clear 400/405 rather than a wrong result): resource embedding (``select=*,sources(*)``),
casts and JSON paths in ``select``, ``or=``/``and=`` trees, array/range/full-text operators, PATCH/DELETE, RPC, CSV.

Safety: every identifier (table, column) is checked against ``information_schema`` for the exposed schema and then
quoted by ``psycopg.sql.Identifier``; every value is a bound parameter; reads run in READ ONLY transactions. No request
text is ever interpolated into SQL.

Usage::

    srv = PostgrestStandIn(database_url, api_key="sandbox-service-key", max_rows=1000).start()
    client = supabase.create_client(srv.url, "sandbox-service-key")
    srv.stop()

or ``python -m nsmigrate_sandbox.postgrest --database-url URL --port N`` (serves until SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
import sqlalchemy as sa
from psycopg import sql

from nsmigrate_sandbox.serving import serve_in_thread, stop_serving

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "sandbox-service-key"
DEFAULT_MAX_ROWS = 1000
REST_PREFIX = "/rest/v1/"
#: Request bodies above this are refused (413) before they are parsed.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Query-string keys that are not column filters.
RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})

_JSON = "application/json; charset=utf-8"
_SINGLE_OBJECT = "application/vnd.pgrst.object+json"

# Fixed SQL fragments chosen by operator name; user text only ever selects a key of these maps.
_COMPARISONS: Mapping[str, str] = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "match": "~",
    "imatch": "~*",
    "isdistinct": "IS DISTINCT FROM",
}
_IS_VALUES: Mapping[str, str] = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}
_DIRECTIONS: Mapping[str, str] = {"asc": "ASC", "desc": "DESC"}
_NULLS: Mapping[str, str] = {"nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}
_RANGE_HEADER = re.compile(r"^(\d+)-(\d*)$")


# --------------------------------------------------------------------------------------------------------------------
# Errors and responses


class PostgrestError(Exception):
    """An error answered as PostgREST's JSON error object with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, details: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint

    def response(self) -> Response:
        body = {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}
        return Response(self.status, {"Content-Type": _JSON}, json.dumps(body).encode())


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Request:
    """One HTTP request, already read off the socket; header names are lower-case."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)


def parse_error(what: str, text: str, details: str) -> PostgrestError:
    """PostgREST's PGRST100 shape: ``"failed to parse <what> (<text>)" (line 1, column 1)``."""
    return PostgrestError(400, "PGRST100", f'"failed to parse {what} ({text})" (line 1, column 1)', details)


def unknown_column(table: str, column: str, known: Sequence[str]) -> PostgrestError:
    """Postgres' own 42703, which PostgREST passes through with status 400."""
    close = difflib.get_close_matches(column, known, n=1)
    hint = f'Perhaps you meant to reference the column "{table}.{close[0]}".' if close else None
    return PostgrestError(400, "42703", f"column {table}.{column} does not exist", None, hint)


def status_for_sqlstate(sqlstate: str | None) -> int:
    """HTTP status PostgREST answers for a Postgres error (its documented SQLSTATE table, abridged)."""
    state = sqlstate or ""
    exact = {"23503": 409, "23505": 409, "25006": 405, "42P01": 404, "42883": 404, "42501": 403, "P0001": 400}
    if state in exact:
        return exact[state]
    by_class = {"08": 503, "09": 500, "0L": 403, "0P": 403, "22": 400, "23": 400, "28": 403, "42": 400, "53": 503}
    return by_class.get(state[:2], 500)


def database_error(e: psycopg.Error) -> PostgrestError:
    diag = e.diag
    message = diag.message_primary or str(e).strip() or type(e).__name__
    return PostgrestError(
        status_for_sqlstate(e.sqlstate), e.sqlstate or "XX000", message, diag.message_detail, diag.message_hint
    )


# --------------------------------------------------------------------------------------------------------------------
# Parsing the request (pure functions over strings)


@dataclass(frozen=True)
class SelectItem:
    column: str
    alias: str


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str
    value: str | list[str]
    negated: bool = False


@dataclass(frozen=True)
class OrderTerm:
    column: str
    direction: str = "asc"
    nulls: str | None = None


@dataclass(frozen=True)
class RowRange:
    """Rows ``offset .. offset+limit-1``; ``limit`` None means to the end."""

    offset: int = 0
    limit: int | None = None


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside double quotes and parentheses (PostgREST's list syntax)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote_identifier(text: str) -> str:
    """``"a b"`` → ``a b`` (the client quotes names holding reserved characters); anything else unchanged."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_select(text: str) -> list[SelectItem | None]:
    """``id,alias:col,*`` → items; ``None`` stands for ``*``. Embedding, casts and JSON paths are refused."""
    items: list[SelectItem | None] = []
    for raw in split_top_level(text):
        part = raw.strip()
        if part == "*":
            items.append(None)
            continue
        if not part:
            raise parse_error("select", text, "an empty column name is not allowed")
        if "(" in part or "::" in part or "->" in part:
            raise parse_error(
                "select",
                text,
                "resource embedding, casts and JSON paths are not supported by the "
                "sandbox PostgREST stand-in; select plain columns",
            )
        alias, sep, column = part.partition(":")
        if not sep:
            alias = column = part
        items.append(SelectItem(unquote_identifier(column), unquote_identifier(alias)))
    return items


def parse_in_list(text: str, original: str) -> list[str]:
    """``(a,"b,c",d)`` → ``["a", "b,c", "d"]``."""
    if not (text.startswith("(") and text.endswith(")")):
        raise parse_error("filter", original, "`in` takes a parenthesised list, e.g. in.(a,b)")
    inner = text[1:-1]
    if inner == "":
        return []
    return [unquote_identifier(item) for item in split_top_level(inner)]


def parse_filter(column: str, text: str) -> Filter:
    """``creator_id`` + ``eq.a.1`` → Filter(eq, "a.1"); ``not.in.(x,y)`` → negated."""
    negated = False
    rest = text
    if rest.startswith("not."):
        negated, rest = True, rest[len("not.") :]
    operator, sep, value = rest.partition(".")
    if not sep:
        raise parse_error("filter", text, "expected <operator>.<value>, e.g. eq.42")
    if operator == "in":
        return Filter(column, operator, parse_in_list(value, text), negated)
    if operator == "is":
        if value.lower() not in _IS_VALUES:
            raise parse_error("filter", text, "`is` takes null, not_null, true, false or unknown")
        return Filter(column, operator, value.lower(), negated)
    if operator not in _COMPARISONS:
        raise parse_error(
            "filter",
            text,
            f"operator {operator!r} is not supported by the sandbox PostgREST stand-in "
            f"(supported: {', '.join([*_COMPARISONS, 'in', 'is'])})",
        )
    if operator in ("like", "ilike"):
        value = value.replace("*", "%")  # PostgREST's URL-friendly wildcard
    return Filter(column, operator, value, negated)


def parse_order(text: str) -> list[OrderTerm]:
    """``name.desc.nullslast,id`` → terms."""
    terms: list[OrderTerm] = []
    for raw in split_top_level(text):
        column, *modifiers = raw.strip().split(".")
        direction, nulls = "asc", None
        for modifier in modifiers:
            if modifier in _DIRECTIONS:
                direction = modifier
            elif modifier in _NULLS:
                nulls = modifier
            else:
                raise parse_error("order", text, f"unexpected {modifier!r}: expected asc, desc, nullsfirst, nullslast")
        if not column:
            raise parse_error("order", text, "an empty column name is not allowed")
        terms.append(OrderTerm(unquote_identifier(column), direction, nulls))
    return terms


def _non_negative_int(name: str, text: str) -> int:
    if not text.isdigit():
        raise parse_error(name, text, f"`{name}` must be a non-negative integer")
    return int(text)


def requested_range(range_header: str | None, limit: str | None, offset: str | None, max_rows: int | None) -> RowRange:
    """Intersect the ``Range`` header with ``limit``/``offset``, then cap at ``max_rows`` (PostgREST's RangeQuery).

    An unparseable ``Range`` header is ignored, as PostgREST does.
    """
    lower, upper = 0, None
    match = _RANGE_HEADER.match((range_header or "").strip())
    if match:
        lower = int(match.group(1))
        upper = int(match.group(2)) if match.group(2) else None
        if upper is not None and upper < lower:
            raise PostgrestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
            )
    if offset is not None:
        lower = max(lower, _non_negative_int("offset", offset))
    if limit is not None:
        count = _non_negative_int("limit", limit)
        if count == 0:
            return RowRange(lower, 0)
        query_upper = (int(offset) if offset is not None else 0) + count - 1
        upper = query_upper if upper is None else min(upper, query_upper)
    if upper is not None and upper < lower:
        return RowRange(lower, 0)
    size = None if upper is None else upper - lower + 1
    if max_rows is not None:
        size = max_rows if size is None else min(size, max_rows)
    return RowRange(lower, size)


def preferences(headers: Mapping[str, str]) -> dict[str, str]:
    """``Prefer: return=representation,count=exact`` → {"return": "representation", "count": "exact"}."""
    result: dict[str, str] = {}
    for token in headers.get("prefer", "").split(","):
        key, sep, value = token.strip().partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


def content_range(offset: int, returned: int, total: int | None) -> str:
    """PostgREST's ``Content-Range``: ``0-99/805``, ``0-99/*``, ``*/0``, ``*/*``."""
    total_text = "*" if total is None else str(total)
    if returned > 0 and total != 0:
        return f"{offset}-{offset + returned - 1}/{total_text}"
    return f"*/{total_text}"


def range_status(offset: int, returned: int, total: int | None) -> int:
    if total is None:
        return 200
    if offset > total:
        return 416
    return 206 if returned < total else 200


# --------------------------------------------------------------------------------------------------------------------
# SQL building (identifiers already validated; values always bound)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def require(self, column: str) -> str:
        if column not in self.columns:
            raise unknown_column(self.name, column, self.columns)
        return column


def select_list(table: Table, items: Sequence[SelectItem | None]) -> sql.Composable:
    expanded: list[SelectItem] = []
    for item in items:
        if item is None:
            expanded.extend(SelectItem(c, c) for c in table.columns)
        else:
            expanded.append(SelectItem(table.require(item.column), item.alias))
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.Identifier(i.column), sql.Identifier(i.alias)) for i in expanded
    )


def filter_sql(table: Table, flt: Filter) -> tuple[sql.Composable, list[object]]:
    column = sql.Identifier(table.require(flt.column))
    params: list[object] = []
    if flt.operator == "in":
        values = list(flt.value)
        params = list(values)
        clause: sql.Composable = (
            sql.SQL("{} IN ({})").format(column, sql.SQL(", ").join(sql.Placeholder() for _ in values))
            if values
            else sql.SQL("FALSE")
        )
    elif flt.operator == "is":
        clause = sql.SQL("{} {}").format(column, sql.SQL(_IS_VALUES[str(flt.value)]))
    else:
        clause = sql.SQL("{} {} {}").format(column, sql.SQL(_COMPARISONS[flt.operator]), sql.Placeholder())
        params = [flt.value]
    if flt.negated:
        clause = sql.SQL("NOT ({})").format(clause)
    return clause, params


def where_sql(table: Table, filters: Sequence[Filter]) -> tuple[sql.Composable, list[object]]:
    if not filters:
        return sql.SQL("TRUE"), []
    clauses: list[sql.Composable] = []
    params: list[object] = []
    for flt in filters:
        clause, values = filter_sql(table, flt)
        clauses.append(clause)
        params.extend(values)
    return sql.SQL(" AND ").join(clauses), params


def order_sql(table: Table, terms: Sequence[OrderTerm]) -> sql.Composable:
    if not terms:
        return sql.SQL("")
    parts = []
    for term in terms:
        part = sql.SQL("{} {}").format(sql.Identifier(table.require(term.column)), sql.SQL(_DIRECTIONS[term.direction]))
        if term.nulls:
            part = sql.SQL("{} {}").format(part, sql.SQL(_NULLS[term.nulls]))
        parts.append(part)
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)


# json_agg over the page keeps the subquery's order and gives PostgREST's own JSON rendering of every type.
_AGGREGATE = sql.SQL("SELECT coalesce(json_agg(_pgrst_page), '[]')::text, count(*) FROM ({}) AS _pgrst_page")


# --------------------------------------------------------------------------------------------------------------------
# The application: Request -> Response


class ConnectionPool:
    """Idle psycopg connections kept for reuse; connections that broke (e.g. Postgres restarted) are replaced.

    Small on purpose: SQLAlchemy's pool needs a dialect for its pre-ping and psycopg_pool is not a dependency.
    Connections are in autocommit mode so that the ping is one round trip and transactions are explicit.
    """

    def __init__(self, conninfo: str, max_idle: int = 8) -> None:
        self._conninfo = conninfo
        self._max_idle = max_idle
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    def _checkout(self) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        try:
            return psycopg.connect(self._conninfo, autocommit=True, application_name="nsmigrate-postgrest-standin")
        except psycopg.OperationalError as e:
            # PostgREST answers 503 while the database is unreachable.
            raise PostgrestError(503, "PGRST000", _DATABASE_DOWN.message, type(e).__name__) from e

    def _checkin(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            keep = not (self._closed or conn.closed or conn.broken) and len(self._idle) < self._max_idle
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


#: PostgREST's answer while its database cannot be reached.
_DATABASE_DOWN = PostgrestError(503, "PGRST000", "Database connection error. Retrying the connection.")


class PostgrestApp:
    """Answers requests from the database; thread-safe (each request checks out its own pooled connection)."""

    def __init__(self, database_url: str, api_key: str, max_rows: int | None, schemas: Sequence[str]) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._api_key = api_key.encode()
        self.max_rows = max_rows
        self.schemas = tuple(schemas)
        conninfo = sa.engine.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool = ConnectionPool(conninfo)
        #: HTTP status → how many requests were answered with it: what a client really sent, retries included.
        self.answered: Counter[int] = Counter()
        #: Requests still to answer as if the database were gone (``fail_next``).
        self._failing = 0
        self._answered_lock = threading.Lock()

    def fail_next(self, requests: int) -> None:
        """Answer the next ``requests`` requests 503 ``PGRST000``, as PostgREST does while its database is down."""
        with self._answered_lock:
            self._failing = requests

    def close(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def _connection(self, read_only: bool) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: READ ONLY for reads, committed on success for writes."""
        with self._pool.connection() as conn:
            conn.read_only = read_only
            with conn.transaction():
                yield conn

    # -- entry point ------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        with self._answered_lock:
            failing, self._failing = self._failing > 0, max(0, self._failing - 1)
        response = _DATABASE_DOWN.response() if failing else self._answer(request)
        with self._answered_lock:
            self.answered[response.status] += 1
        return response

    def _answer(self, request: Request) -> Response:
        try:
            self._authorize(request.headers)
            table_name = self._table_name(request.path)
            if request.method in ("GET", "HEAD"):
                return self._read(request, table_name)
            if request.method == "POST":
                return self._insert(request, table_name)
            raise PostgrestError(
                405,
                "PGRST117",
                f"Unsupported HTTP method: {request.method}",
                "The sandbox PostgREST stand-in answers GET, HEAD and POST only.",
            )
        except PostgrestError as e:
            return e.response()
        except psycopg.Error as e:
            return database_error(e).response()
        except Exception as e:  # a bug here must still answer in the client's error shape
            log.exception("PostgREST stand-in failed on %s %s", request.method, request.path)
            return PostgrestError(
                500, "XX000", "internal error in the sandbox PostgREST stand-in", type(e).__name__
            ).response()

    def _authorize(self, headers: Mapping[str, str]) -> None:
        given = headers.get("apikey")
        if given is None:
            raise PostgrestError(
                401, "401", "No API key found in request", hint="No `apikey` request header or url param was found."
            )
        if not hmac.compare_digest(given.encode(), self._api_key):
            raise PostgrestError(
                401, "401", "Invalid API key", hint="Double check your Supabase `anon` or `service_role` API key."
            )

    @staticmethod
    def _table_name(path: str) -> str:
        if not path.startswith(REST_PREFIX):
            raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")
        rest = path[len(REST_PREFIX) :]
        if rest.startswith("rpc/"):
            raise PostgrestError(
                404,
                "PGRST202",
                "Could not find the function in the schema cache",
                "RPC is not supported by the sandbox PostgREST stand-in.",
            )
        if not rest or "/" in rest:
            raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")
        return unquote(rest)

    def _schema(self, headers: Mapping[str, str], header: str) -> str:
        schema = headers.get(header, self.schemas[0])
        if schema not in self.schemas:
            raise PostgrestError(
                406,
                "PGRST106",
                f"Invalid schema: {schema}",
                hint=f"Only the following schemas are exposed: {', '.join(self.schemas)}",
            )
        return schema

    @staticmethod
    def _table(conn: psycopg.Connection[Any], schema: str, name: str) -> Table:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, name),
        ).fetchall()
        if rows:
            return Table(schema, name, tuple(r[0] for r in rows))
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            ).fetchall()
        ]
        close = difflib.get_close_matches(name, tables, n=1)
        raise PostgrestError(
            404,
            "PGRST205",
            f"Could not find the table '{schema}.{name}' in the schema cache",
            hint=f"Perhaps you meant the table '{schema}.{close[0]}'" if close else None,
        )

    # -- GET / HEAD -------------------------------------------------------------------------------------------------

    def _read(self, request: Request, table_name: str) -> Response:
        schema = self._schema(request.headers, "accept-profile")
        single = _wants_single_object(request.headers)
        params = request.params
        query = {k: v for k, v in params if k in RESERVED_PARAMS}
        filters = [
            parse_filter(unquote_identifier(k), v)
            for k, v in params
            if k not in RESERVED_PARAMS and _filter_key_supported(k, v)
        ]
        items = parse_select(query.get("select", "*"))
        order = parse_order(query["order"]) if "order" in query else []
        rows = requested_range(request.headers.get("range"), query.get("limit"), query.get("offset"), self.max_rows)
        count_wanted = preferences(request.headers).get("count") in ("exact", "planned", "estimated")

        with self._connection(read_only=True) as conn:
            table = self._table(conn, schema, table_name)
            where, where_params = where_sql(table, filters)
            page = sql.SQL("SELECT {} FROM {} WHERE {}{} LIMIT %s OFFSET %s").format(
                select_list(table, items), table.ident, where, order_sql(table, order)
            )
            body_text, returned = conn.execute(
                _AGGREGATE.format(page), [*where_params, rows.limit, rows.offset]
            ).fetchone() or ("[]", 0)
            total = None
            if count_wanted:
                count_query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table.ident, where)
                total = int((conn.execute(count_query, where_params).fetchone() or (0,))[0])

        status = range_status(rows.offset, returned, total)
        if single and returned != 1:
            raise PostgrestError(
                406,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
                f"The result contains {returned} rows",
            )
        if status == 416:
            raise PostgrestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {rows.offset} was requested, but there are only {total} rows.",
            )
        headers = {"Content-Range": content_range(rows.offset, returned, total)}
        if count_wanted:
            headers["Preference-Applied"] = "count=exact"
        return _json_response(200 if single else status, headers, body_text, single, request.headers)

    # -- POST -------------------------------------------------------------------------------------------------------

    def _insert(self, request: Request, table_name: str) -> Response:
        schema = self._schema(request.headers, "content-profile")
        prefer = preferences(request.headers)
        query = dict(request.params)
        rows = _json_rows(request.body)
        items = parse_select(query.get("select", "*"))

        with self._connection(read_only=False) as conn:
            table = self._table(conn, schema, table_name)
            columns = _insert_columns(table, rows, query.get("columns"))
            statement = self._insert_sql(conn, table, columns, prefer.get("resolution"), query.get("on_conflict"))
            wrapped = sql.SQL("WITH _pgrst_ins AS ({}) ").format(statement) + _AGGREGATE.format(
                sql.SQL("SELECT {} FROM _pgrst_ins").format(select_list(table, items))
            )
            body_text, inserted = conn.execute(wrapped, [json.dumps(rows)]).fetchone() or ("[]", 0)

        count_wanted = prefer.get("count") in ("exact", "planned", "estimated")
        headers = {"Content-Range": f"*/{inserted if count_wanted else '*'}"}
        applied = [f"{k}={prefer[k]}" for k in ("return", "resolution", "count") if k in prefer]
        if applied:
            headers["Preference-Applied"] = ",".join(applied)
        if prefer.get("return") != "representation":
            return Response(201, headers)
        single = _wants_single_object(request.headers)
        if single and inserted != 1:
            raise PostgrestError(
                406,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
                f"The result contains {inserted} rows",
            )
        return _json_response(201, headers, body_text, single, request.headers)

    @staticmethod
    def _insert_sql(
        conn: psycopg.Connection[Any],
        table: Table,
        columns: Sequence[str],
        resolution: str | None,
        on_conflict: str | None,
    ) -> sql.Composable:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        statement = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, %s::json)"
        ).format(table=table.ident, cols=cols)
        if resolution in ("merge-duplicates", "ignore-duplicates"):
            target = (
                [table.require(unquote_identifier(c.strip())) for c in on_conflict.split(",")]
                if on_conflict
                else _primary_key(conn, table)
            )
            if not target:
                raise PostgrestError(
                    400,
                    "42P10",
                    "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                    hint="Pass on_conflict=<columns> for a table without a primary key.",
                )
            conflict = sql.SQL(", ").join(sql.Identifier(c) for c in target)
            if resolution == "ignore-duplicates":
                statement += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(conflict)
            else:
                updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns)
                statement += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(conflict, updates)
        return statement + sql.SQL(" RETURNING *")


def _primary_key(conn: psycopg.Connection[Any], table: Table) -> list[str]:
    rows = conn.execute(
        "SELECT kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu "
        "  ON kcu.constraint_schema = tc.constraint_schema AND kcu.constraint_name = tc.constraint_name "
        "WHERE tc.table_schema = %s AND tc.table_name = %s AND tc.constraint_type = 'PRIMARY KEY' "
        "ORDER BY kcu.ordinal_position",
        (table.schema, table.name),
    ).fetchall()
    return [r[0] for r in rows]


def _filter_key_supported(key: str, value: str) -> bool:
    """Logical trees (``or=(...)``, ``and=(...)``) are refused; everything else is a column filter."""
    if key in ("or", "and", "not.or", "not.and") or key.endswith((".or", ".and")):
        raise parse_error("logic tree", value, "or/and filters are not supported by the sandbox PostgREST stand-in")
    return True


def _wants_single_object(headers: Mapping[str, str]) -> bool:
    accept = headers.get("accept", "application/json")
    media = [part.split(";")[0].strip() for part in accept.split(",")]
    if _SINGLE_OBJECT in media:
        return True
    if any(m in ("application/json", "application/vnd.pgrst.array+json", "*/*", "application/*") for m in media):
        return False
    raise PostgrestError(406, "PGRST107", f"None of these media types are available: {accept}")


def _json_response(
    status: int, headers: dict[str, str], body_text: str, single: bool, request_headers: Mapping[str, str]
) -> Response:
    strip_nulls = "nulls=stripped" in request_headers.get("accept", "")
    if single or strip_nulls:
        data: Any = json.loads(body_text)
        if strip_nulls:
            data = [{k: v for k, v in row.items() if v is not None} for row in data]
        body_text = json.dumps(data[0] if single else data)
    content_type = f"{_SINGLE_OBJECT}; charset=utf-8" if single else _JSON
    return Response(status, {**headers, "Content-Type": content_type}, body_text.encode())


def _json_rows(body: bytes) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body or b"null")
    except ValueError as e:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", str(e)) from e
    rows = [payload] if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PostgrestError(
            400, "PGRST102", "Empty or invalid json", "The body must be a JSON object or an array of objects."
        )
    return rows


def _insert_columns(table: Table, rows: Sequence[dict[str, Any]], columns_param: str | None) -> list[str]:
    if columns_param is not None:
        wanted = [unquote_identifier(c.strip()) for c in split_top_level(columns_param)]
    else:
        key_sets = {tuple(sorted(r)) for r in rows}
        if len(key_sets) > 1:
            raise PostgrestError(
                400,
                "PGRST102",
                "All object keys must match",
                hint="Send the same keys in every object, or pass columns=.",
            )
        wanted = list(rows[0]) if rows else []
    if not wanted:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", "No columns to insert.")
    for column in wanted:
        if column not in table.columns:
            raise PostgrestError(
                400, "PGRST204", f"Could not find the '{column}' column of '{table.name}' in the schema cache"
            )
    return list(dict.fromkeys(wanted))


# --------------------------------------------------------------------------------------------------------------------
# HTTP layer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: clients connecting at once overflowed it and waited out a 1 s SYN retry.
    request_queue_size = socket.SOMAXCONN
    # Keep-alive connections from pooled clients would otherwise make server_close() wait for them.
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: PostgrestApp) -> None:
        self.app = app
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nsmigrate-postgrest-standin"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by default; never logs headers (they carry the API key).
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body makes the connection unusable
            self._send(
                PostgrestError(
                    413, "PGRST413", "Payload too large", f"The body is limited to {MAX_BODY_BYTES} bytes."
                ).response()
            )
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): ", ".join(self.headers.get_all(k) or []) for k in set(self.headers.keys())}
        response = self.server.app.handle(Request(self.command, self.path, headers, body))
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch


class PostgrestStandIn:
    """The server: ``start()`` binds a free port on ``host`` (or ``port``) and serves on a daemon thread.

    Parameters:
        database_url: SQLAlchemy or libpq URL of the database whose tables are served.
        api_key: the value every request's ``apikey`` header must carry.
        max_rows: most rows one response holds (PostgREST's ``db-max-rows``); None for no cap.
        schemas: exposed schemas; the first is the default (``Accept-Profile``/``Content-Profile`` pick another).
    """

    def __init__(
        self,
        database_url: str,
        api_key: str = DEFAULT_API_KEY,
        max_rows: int | None = DEFAULT_MAX_ROWS,
        host: str = "127.0.0.1",
        port: int = 0,
        schemas: Sequence[str] = ("public",),
    ) -> None:
        self._app = PostgrestApp(database_url, api_key, max_rows, schemas)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the PostgREST stand-in is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What ``supabase.create_client`` takes, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def answered(self) -> Counter[int]:
        """HTTP status → requests answered with it (``PostgrestApp.answered``)."""
        return self._app.answered

    def fail_next(self, requests: int) -> None:
        """The next ``requests`` requests find the database gone (``PostgrestApp.fail_next``)."""
        self._app.fail_next(requests)

    def start(self) -> PostgrestStandIn:
        self._server = _Server(self._address, self._app)
        self._thread = serve_in_thread(self._server, "postgrest-standin")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            stop_serving(server)
            server.server_close()
            # Cut idle keep-alive connections so their threads end now and release pooled DB connections.
            with server.sockets_lock:
                for sock in list(server.open_sockets):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._app.close()

    def __enter__(self) -> PostgrestStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------------
# Tenancy tables: the shape of the Supabase project the planner reads


_TENANCY_DDL = (
    "CREATE TABLE IF NOT EXISTS creators (id text PRIMARY KEY, name text)",
    "CREATE TABLE IF NOT EXISTS twins (id text PRIMARY KEY, creator_id text NOT NULL REFERENCES creators(id), "
    "name text)",
    "CREATE INDEX IF NOT EXISTS twins_creator_id_idx ON twins (creator_id)",
    "CREATE TABLE IF NOT EXISTS sources (id text PRIMARY KEY, twin_id text NOT NULL REFERENCES twins(id), "
    "kind text, uri text)",
)


def create_tenancy_tables(database_url: str) -> None:
    """Create ``creators``, ``twins`` and ``sources`` (idempotent)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            for statement in _TENANCY_DDL:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def load_tenancy(database_url: str, *, twins: Mapping[str, str]) -> None:
    """Insert ``{twin_id: creator_id}``: each creator once, each twin, and one source row per twin (idempotent)."""
    creators = sorted(set(twins.values()))
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            if creators:
                conn.execute(
                    sa.text("INSERT INTO creators (id, name) VALUES (:id, :name) ON CONFLICT DO NOTHING"),
                    [{"id": c, "name": f"Creator {c}"} for c in creators],
                )
            if twins:
                conn.execute(
                    sa.text(
                        "INSERT INTO twins (id, creator_id, name) VALUES (:id, :creator_id, :name) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [{"id": t, "creator_id": c, "name": f"Twin {t}"} for t, c in twins.items()],
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO sources (id, twin_id, kind, uri) VALUES (:id, :twin_id, 'document', :uri) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [{"id": f"src_{t}", "twin_id": t, "uri": f"sandbox://twins/{t}/source"} for t in twins],
                )
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsmigrate_sandbox.postgrest", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("NSMIGRATE_DATABASE_URL"),
        help="SQLAlchemy/libpq URL of the database to serve (default: $NSMIGRATE_DATABASE_URL)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="0 for no cap")
    parser.add_argument(
        "--api-key-env",
        default="SUPABASE_KEY",
        help=f"env var holding the API key to require (unset: {DEFAULT_API_KEY!r})",
    )
    parser.add_argument("--create-tenancy-tables", action="store_true", help="create creators/twins/sources first")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required (or set NSMIGRATE_DATABASE_URL)")
    if args.create_tenancy_tables:
        create_tenancy_tables(args.database_url)

    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    server = PostgrestStandIn(
        args.database_url,
        api_key=os.environ.get(args.api_key_env) or DEFAULT_API_KEY,
        max_rows=args.max_rows or None,
        host=args.host,
        port=args.port,
    ).start()
    print(
        f"PostgREST stand-in serving {server.url}/rest/v1/ (key from ${args.api_key_env} or the sandbox default)",
        flush=True,
    )
    try:
        stopped.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

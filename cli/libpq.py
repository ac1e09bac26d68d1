"""The job table's one-value statements (``orchestrator.snapshot.Execute``) over libpq itself, through ctypes.

Why: a command that reads the job table — `run --wait` twice a second while its job runs, `status`, `jobs` — sends a
few small statements, and importing psycopg for them costs a tenth of a CPU-second, taken from the cores the job's
first tasks need. libpq is the library psycopg drives (psycopg's binary wheel carries it), so connecting, TLS and
authentication are exactly psycopg's; this module only sends a statement with its parameters as text and reads the
first value of the first row, loaded as psycopg loads it (text, JSON, integers, booleans, floats).

Where libpq cannot be found (``connect`` returns None), the command reads over psycopg as before.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

_CONNECTION_OK = 0
_PGRES_TUPLES_OK = 2
_PG_DIAG_SQLSTATE = ord("C")
#: Parameter type OIDs as psycopg sends them; 0 (unknown) lets Postgres infer a text parameter's type from its place.
_INT8, _BOOL, _FLOAT8, _INT8_ARRAY, _TEXT_ARRAY = 20, 16, 701, 1016, 1009
#: Loaders of a result's value by its type OID, as psycopg loads them; any other type is refused (``Failed``).
_LOADERS: dict[int, Callable[[str], Any]] = {
    **dict.fromkeys((25, 1043, 19, 18), str),  # text, varchar, name, char
    **dict.fromkeys((114, 3802), orjson.loads),  # json, jsonb
    **dict.fromkeys((20, 21, 23, 26), int),  # int8, int2, int4, oid
    16: lambda text: text == "t",
    **dict.fromkeys((700, 701), float),
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


class Failed(Exception):
    """A statement Postgres refused (``sqlstate``: its SQLSTATE code, e.g. ``42P01`` for a table that is missing)."""

    def __init__(self, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class ConnectionFailed(Failed):
    """No connection to the job table (unreachable, or refused: authentication, a missing database…), or the one
    held was lost and could not be made again."""


def _library_paths() -> list[str]:
    """libpq as psycopg's binary wheel carries it (Linux and Windows: ``psycopg_binary.libs``; macOS: ``.dylibs``),
    then the system's."""
    found: list[str] = []
    spec = importlib.util.find_spec("psycopg_binary")  # finds, does not import
    for package in (spec.submodule_search_locations or []) if spec else []:
        for pattern in ("../psycopg_binary.libs/libpq*", ".dylibs/libpq*"):
            found += sorted(glob.glob(os.path.join(package, pattern)))
    return [*found, "libpq.so.5", "libpq.5.dylib", "libpq.dll"]


def _load() -> ctypes.CDLL | None:
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, restype, argtypes in (
            ("PQconnectdbParams", p, [ctypes.POINTER(s), ctypes.POINTER(s), i]),
            ("PQstatus", i, [p]),
            ("PQerrorMessage", s, [p]),
            ("PQreset", None, [p]),
            ("PQfinish", None, [p]),
            ("PQexecParams", p, [p, s, i, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(s), p, p, i]),
            ("PQresultStatus", i, [p]),
            ("PQresultErrorMessage", s, [p]),
            ("PQresultErrorField", s, [p, i]),
            ("PQntuples", i, [p]),
            ("PQftype", ctypes.c_uint, [p, i]),
            ("PQgetisnull", i, [p, i, i]),
            ("PQgetvalue", s, [p, i, i]),
            ("PQclear", None, [p]),
        ):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        return lib
    return None


_lib: ctypes.CDLL | bool | None = False  # False: not looked for yet


def library() -> ctypes.CDLL | None:
    """libpq, loaded once; None when this machine has none that loads."""
    global _lib
    if _lib is False:
        _lib = _load()
    return _lib  # type: ignore[return-value]


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace").strip()


def _parameter(value: Any) -> tuple[int, bytes | None]:
    """(type OID, text) of one parameter."""
    if value is None:
        return 0, None
    if isinstance(value, bool):
        return _BOOL, b"t" if value else b"f"
    if isinstance(value, int):
        return _INT8, str(value).encode()
    if isinstance(value, float):
        return _FLOAT8, repr(value).encode()
    if isinstance(value, str):
        return 0, value.encode()
    if isinstance(value, list | tuple):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return _INT8_ARRAY, ("{" + ",".join(map(str, value)) + "}").encode()
        if all(isinstance(v, str) for v in value):
            quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
            return _TEXT_ARRAY, ("{" + ",".join(quoted) + "}").encode()
    raise TypeError(f"no text form for a parameter of type {type(value).__name__}")


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` with psycopg's ``%(name)s`` placeholders as libpq's ``$1``… (a name used twice is one parameter; ``%%``
    is ``%``), encoded, and the parameters' names in that order. Cached: a waiting command sends the same statement
    twice a second."""
    order: dict[str, int] = {}

    def place(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    return _PLACEHOLDER.sub(place, sql).encode(), tuple(order)


class Connection:
    """One connection to the job table, autocommit as libpq's always is; ``execute`` is an ``Execute``."""

    def __init__(self, lib: ctypes.CDLL, conn: int):
        self._lib = lib
        self._conn: int | None = conn

    def execute(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The first value of the first row (None: no row, or NULL). A connection found lost (the server restarted,
        an idle timeout) is made again once and the statement sent again: it only reads."""
        try:
            return self._execute(sql, params)
        except ConnectionFailed:
            self._lib.PQreset(self._conn)
            if self._lib.PQstatus(self._conn) != _CONNECTION_OK:
                raise ConnectionFailed(_text(self._lib.PQerrorMessage(self._conn))) from None
            return self._execute(sql, params)

    def _execute(self, sql: str, params: Mapping[str, Any]) -> Any:
        lib = self._lib
        text, names = _numbered(sql)
        typed = [_parameter(params[name]) for name in names]
        n = len(typed)
        res = lib.PQexecParams(
            self._conn,
            text,
            n,
            (ctypes.c_uint * n)(*(oid for oid, _ in typed)),
            (ctypes.c_char_p * n)(*(raw for _, raw in typed)),
            None,
            None,
            0,  # results as text
        )
        try:
            if lib.PQresultStatus(res) != _PGRES_TUPLES_OK:
                if res is None or lib.PQstatus(self._conn) != _CONNECTION_OK:
                    raise ConnectionFailed(_text(lib.PQerrorMessage(self._conn)))
                sqlstate = lib.PQresultErrorField(res, _PG_DIAG_SQLSTATE)
                raise Failed(_text(lib.PQresultErrorMessage(res)), sqlstate.decode() if sqlstate else None)
            if lib.PQntuples(res) == 0 or lib.PQgetisnull(res, 0, 0):
                return None
            oid = lib.PQftype(res, 0)
            load = _LOADERS.get(oid)
            if load is None:
                raise Failed(f"no loader here for a value of type OID {oid}; read it as text or JSON")
            return load(lib.PQgetvalue(res, 0, 0).decode())
        finally:
            if res is not None:
                lib.PQclear(res)

    def close(self) -> None:
        if self._conn is not None:
            self._lib.PQfinish(self._conn)
            self._conn = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(conninfo: str) -> Connection | None:
    """A connection to ``conninfo`` (a libpq URL or key=value string), in UTF-8; None when this machine has no libpq
    that loads (read over psycopg instead).

    Raises:
        ConnectionFailed: Postgres refused or could not be reached (libpq's message: host, port, authentication…).
    """
    lib = library()
    if lib is None:
        return None
    keys = (ctypes.c_char_p * 3)(b"dbname", b"client_encoding", None)
    values = (ctypes.c_char_p * 3)(conninfo.encode(), b"UTF8", None)
    conn = lib.PQconnectdbParams(keys, values, 1)  # 1: dbname may be a whole URL or key=value string
    if conn is None:
        raise ConnectionFailed("libpq could not allocate a connection")
    if lib.PQstatus(conn) != _CONNECTION_OK:
        message = _text(lib.PQerrorMessage(conn))
        lib.PQfinish(conn)
        raise ConnectionFailed(message)
    return Connection(lib, conn)

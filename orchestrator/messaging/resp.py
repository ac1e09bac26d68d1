"""The few Redis commands a command sends to hand a spec to the fleet's planner (``cli.submit``), over one socket.

Why not redis-py there: importing it loads its asyncio, cluster and keyspace-notification clients with the package,
about a quarter of the CPU ``nsmigrate run`` spent before the fleet had the spec; five commands need a socket and RESP2.
URLs as redis-py reads them: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, the certificate
verified), ``unix://[[user]:password@]/path[?db=N]``, the user name and password also as ``?username=&password=``;
anything else is a ``ValueError``.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from nsmigrate.orchestrator.connections.redis_urls import credentials_in_userinfo

#: What the hand-off reads or writes: a key or value, sent as UTF-8.
Arg = str | bytes | int | float


class RedisFailed(Exception):
    """Redis answered with an error, or the connection could not be made or broke."""


class Connection:
    """One connection to the Redis of ``url``, opened at the first command."""

    def __init__(self, url: str, *, connect_timeout_s: float, timeout_s: float) -> None:
        parts = urlsplit(credentials_in_userinfo(url))  # ``?password=`` as redis-py reads it
        query = parse_qs(parts.query)
        if parts.scheme not in ("redis", "rediss", "unix") or set(query) - {"db"}:
            raise ValueError(f"not a Redis URL this client reads: scheme {parts.scheme!r}, options {sorted(query)}")
        self._scheme = parts.scheme
        self._address: str | tuple[str, int] = (
            parts.path if parts.scheme == "unix" else (parts.hostname or "localhost", parts.port or 6379)
        )
        self._db = int(query.get("db", [""])[0] or (parts.path.strip("/") if parts.scheme != "unix" else "") or 0)
        self._auth = [unquote(p) for p in (parts.username, parts.password) if p] if parts.password else []
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: Any = None

    def get(self, key: str) -> bytes | None:
        answer: bytes | None = self.command("GET", key)
        return answer

    def exists(self, key: str) -> int:
        return int(self.command("EXISTS", key))

    def rpush(self, key: str, value: Arg) -> int:
        return int(self.command("RPUSH", key, value))

    def lrem(self, key: str, count: int, value: Arg) -> int:
        return int(self.command("LREM", key, count, value))

    def blpop(self, keys: list[str], timeout: float) -> tuple[bytes, bytes] | None:
        """The first item of the first non-empty list of ``keys``, waiting at most ``timeout`` seconds; None: none."""
        answer = self.command("BLPOP", *keys, timeout)
        return None if answer is None else (answer[0], answer[1])

    def command(self, *args: Arg) -> Any:
        """Send one command and read its answer (bytes, int, None or a list of them)."""
        try:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(_encode(args))
            return self._read()
        except RedisFailed:
            raise  # an error answer: the connection is still in step
        except OSError as e:
            self.close()
            raise RedisFailed(f"{type(e).__name__}: {e}") from e
        except BaseException:  # e.g. Ctrl-C during BLPOP: its answer may still come, so never reuse this socket
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def _connect(self) -> None:
        if isinstance(self._address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout_s)
            sock.connect(self._address)
        else:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout_s)
            if self._scheme == "rediss":
                import ssl  # only for rediss://: loading it costs a plain command ~10 ms

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._address[0])
        sock.settimeout(self._timeout_s)
        self._sock, self._reader = sock, sock.makefile("rb")
        if self._auth:
            self.command("AUTH", *self._auth)
        if self._db:
            self.command("SELECT", self._db)

    def _read(self) -> Any:
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisFailed(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._reader.read(size + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"not a RESP2 answer: {line[:40]!r}")


def _encode(args: tuple[Arg, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)

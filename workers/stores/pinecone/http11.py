"""Keep-alive HTTP/1.1 connections to one origin, each answer's body read in one piece: the data plane's transport.

Why not httpx's own transport: its h11 parser hands a body over in 64 KB pieces, each copied into a buffer, cut out
of it and joined again, and sends a request's body joined to its head; a copy worker moves about 20 MB of JSON per
1,000 vectors of 1,536 dimensions each way, so those copies, and httpx's per-request layers, were its largest CPU
cost after the copy itself (bench/README.md, "Measurements behind the tuning"). Here a body of known length is read
straight from the socket into the bytes returned (``BufferedReader.read``), a large request body is sent as it is,
and the head is parsed in a few lines.

What it keeps of httpx's transport (``httpx.HTTPTransport``, which still carries the requests when a proxy is set:
``workers.stores.pinecone.rest``): at most ``max_connections`` connections at once, a request waiting up to the
timeout for one (``httpx.PoolTimeout``); a pooled connection is dropped once idle ``KEEPALIVE_EXPIRY_S`` or found
closed by the server; connect, read and write timeouts; TLS with httpx's own context (certifi, ``SSL_CERT_FILE``);
answers in Content-Length, chunked or read-until-close framing, 1xx answers skipped, ``gzip``/``deflate`` decoded;
the answer to a request whose body the server stopped reading (a 413) is still read. Failures raise httpx's own
``TransportError`` types, which the store's error mapping reads (``workers.stores.pinecone.access``). Each request
is sent once: retrying is tenacity's (``workers.stores.guarded``).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

#: A connection idle this long is closed rather than reused (httpx's default keep-alive expiry).
KEEPALIVE_EXPIRY_S = 5.0
#: Longest status or header line, and most header lines, read from an answer.
_MAX_LINE = 65_536
_MAX_HEADERS = 256
#: A request body at most this long is sent in one write with its head; a longer one is sent as it is, not copied.
_JOINED_BODY_MAX = 16_384
#: The read buffer of a connection: an answer's head and small bodies; a larger body bypasses it.
_READ_BUFFER = 65_536
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters of a request target left as they are when it has others to percent-encode (escapes kept).
_TARGET_SAFE = "!$%&'()*+,/:;=?@[]~"

Headers = tuple[tuple[str, str], ...]


class Answer:
    """A complete answer: its status, reason phrase, headers by lower-case name (repeated ones joined with ", ", as
    httpx joins them) and its decoded body."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class Exchange(Protocol):
    """Sends one request to an origin and returns its complete answer (``target``: the path and query)."""

    def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> Answer: ...

    def close(self) -> None: ...


class OriginPool:
    """Keep-alive HTTP/1.1 connections to ``origin`` (``http://host:port`` or ``https://…``), thread-safe.

    Parameters:
        origin: scheme, host and port; any path is ignored.
        timeout_s: connect, read, write and pool timeout, as ``httpx.Timeout(timeout_s)``.
        max_connections: connections open at once; a request waits for one up to ``timeout_s``.
        ssl_context: the TLS context of an https origin (None: httpx's default context).
        socket_options: ``setsockopt`` arguments applied to each new connection.
    """

    def __init__(
        self,
        origin: str,
        *,
        timeout_s: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        socket_options: list[tuple[int, int, int]] | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {parts.scheme}://{parts.hostname}")
        self._host = parts.hostname
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        shown = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = shown if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{shown}:{parts.port}"
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl_context or httpx.create_ssl_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        self._timeout_s = timeout_s
        self._socket_options = list(socket_options or [])
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: list[tuple[_Connection, float]] = []  # most recently used last
        self._heads: dict[tuple[str, str, Headers], bytes] = {}

    def __repr__(self) -> str:
        return f"OriginPool({self._authority!r})"

    def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> Answer:
        head = self._head(method, target, headers)
        if body is not None:
            head += b"Content-Length: %d\r\n\r\n" % len(body)
        else:
            head += b"\r\n"
        if not self._slots.acquire(timeout=self._timeout_s):
            raise httpx.PoolTimeout(f"no connection to {self._authority} was free within {self._timeout_s} s")
        try:
            connection = self._pooled() or self._connect()
            try:
                answer, reusable = connection.exchange(method, head, body)
            except BaseException:
                connection.close()
                raise
            if reusable:
                with self._lock:
                    self._idle.append((connection, time.monotonic()))
            else:
                connection.close()
            return answer
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def _head(self, method: str, target: str, headers: Headers) -> bytes:
        """The request line and headers, without the blank line that ends them; the fixed part made once."""
        key = (method, self._authority, headers)
        fixed = self._heads.get(key)
        if fixed is None:
            lines = [f"Host: {self._authority}", *(f"{name}: {value}" for name, value in headers)]
            fixed = self._heads[key] = ("".join(f"{line}\r\n" for line in lines)).encode("latin-1")
        if not target.isascii():  # what the data plane's client sends is percent-encoded already; to be sure
            target = quote(target, safe=_TARGET_SAFE)
        return f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + fixed

    def _pooled(self) -> _Connection | None:
        """The most recently used idle connection still fit to carry a request, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection, since = self._idle.pop()
            if time.monotonic() - since < KEEPALIVE_EXPIRY_S and not connection.closed_by_peer():
                return connection
            connection.close()

    def _connect(self) -> _Connection:
        address = f"{self._authority}"
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout_s)
        except TimeoutError as e:
            raise httpx.ConnectTimeout(f"connecting to {address} timed out") from e
        except OSError as e:
            raise httpx.ConnectError(f"cannot connect to {address}: {e}") from e
        try:
            for option in self._socket_options:
                sock.setsockopt(*option)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except TimeoutError as e:
            sock.close()
            raise httpx.ConnectTimeout(f"the TLS handshake with {address} timed out") from e
        except OSError as e:  # ssl.SSLError is one: a refused certificate
            sock.close()
            raise httpx.ConnectError(f"cannot connect to {address}: {e}") from e
        return _Connection(sock)


class _Connection:
    """One socket and its read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb", buffering=_READ_BUFFER)

    def closed_by_peer(self) -> bool:
        """Whether an idle connection has something to read: the server closed it (or sent what it should not)."""
        try:
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def exchange(self, method: str, head: bytes, body: bytes | None) -> tuple[Answer, bool]:
        """Send one request and read its answer; whether the connection may carry another."""
        try:
            if body is not None and len(body) <= _JOINED_BODY_MAX:
                self._sock.sendall(head + body)
            else:
                self._sock.sendall(head)
                if body:
                    self._sock.sendall(body)
        except TimeoutError as e:
            raise httpx.WriteTimeout("sending the request timed out") from e
        except OSError as e:
            # The server may have answered and stopped reading (a 413): its answer says more than a broken pipe.
            try:
                answer, _ = self._answer(method)
            except (httpx.TransportError, OSError):
                raise httpx.WriteError(f"sending the request failed: {e}") from e
            return answer, False
        try:
            return self._answer(method)
        except TimeoutError as e:
            raise httpx.ReadTimeout("reading the answer timed out") from e
        except OSError as e:
            raise httpx.ReadError(f"reading the answer failed: {e}") from e

    def _answer(self, method: str) -> tuple[Answer, bool]:
        while True:
            version, status, reason = self._status_line()
            headers = self._headers()
            if not (100 <= status < 200) or status == 101:
                break  # an informational answer (100 Continue, 103) is followed by the real one
        reusable = version == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (101, 204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            body = self._exactly(_content_length(headers["content-length"]))
        else:  # delimited by the server closing the connection
            body, reusable = self._reader.read(), False
        return Answer(status, reason, headers, _decoded(body, headers.get("content-encoding"))), reusable

    def _line(self) -> bytes:
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise httpx.RemoteProtocolError("the server sent a line longer than 64 KB")
        return line

    def _status_line(self) -> tuple[bytes, int, str]:
        line = self._line()
        if not line:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        version, _, rest = line.rstrip(b"\r\n").partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise httpx.RemoteProtocolError(f"the server did not answer in HTTP/1.1: {line[:40]!r}")
        return version, int(code), reason.decode("latin-1").strip()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        name = ""
        for _ in range(_MAX_HEADERS):
            line = self._line()
            if not line:
                raise httpx.RemoteProtocolError("Server disconnected in the middle of an answer's headers.")
            if line in (b"\r\n", b"\n"):
                return headers
            if line[:1] in (b" ", b"\t") and name:  # an obsolete folded continuation of the previous header
                headers[name] += " " + line.strip().decode("latin-1")
                continue
            raw_name, colon, value = line.partition(b":")
            if not colon or not raw_name or raw_name != raw_name.strip():
                raise httpx.RemoteProtocolError(f"the server sent a malformed header line: {line[:40]!r}")
            name = raw_name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        raise httpx.RemoteProtocolError(f"the server sent more than {_MAX_HEADERS} header lines")

    def _exactly(self, length: int) -> bytes:
        body = self._reader.read(length)  # straight into the bytes returned, past the buffer
        if len(body) != length:
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body: received {len(body)} bytes, "
                f"expected {length}"
            )
        return body

    def _chunked(self) -> bytes:
        pieces = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"the server sent a malformed chunk size: {size_line[:20]!r}") from None
            if size == 0:
                break
            pieces.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise httpx.RemoteProtocolError("a chunk of the answer did not end where its size said")
        while self._line() not in (b"\r\n", b"\n", b""):  # trailers, ignored
            pass
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _content_length(value: str) -> int:
    """Content-Length's value; repeated equal values (``"12, 12"``) are one."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (length := values.pop()).isdigit():
        raise httpx.RemoteProtocolError(f"the server sent a malformed Content-Length: {value[:40]!r}")
    return int(length)


def _gunzip(data: bytes) -> bytes:
    return zlib.decompress(data, zlib.MAX_WBITS | 16)


def _inflate(data: bytes) -> bytes:
    """``deflate`` as servers send it: zlib-wrapped as the RFC says, or raw as some do (httpx reads both)."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": _gunzip, "x-gzip": _gunzip, "deflate": _inflate}


def _decoded(body: bytes, encodings: str | None) -> bytes:
    """``body`` undone of its content codings, last applied first; an unknown coding is left as httpx leaves it."""
    if not encodings or not body:
        return body
    for coding in reversed([c.strip().lower() for c in encodings.split(",")]):
        decoder = _DECODERS.get(coding)
        if decoder is not None:
            try:
                body = decoder(body)
            except zlib.error as e:
                raise httpx.DecodingError(f"the answer's {coding} body could not be decoded: {e}") from e
    return body


class HttpxExchange:
    """The same requests through an httpx transport: what carries them through a proxy (httpx speaks to HTTP and
    HTTPS proxies, tunnels with CONNECT and sends a proxy's credentials)."""

    def __init__(self, origin: str, transport: httpx.BaseTransport, *, timeout_s: float) -> None:
        self._origin = origin.rstrip("/")
        self._transport = transport
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}

    def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> Answer:
        request = httpx.Request(
            method, self._origin + target, headers=headers, content=body, extensions=self._extensions
        )
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return Answer(response.status_code, response.reason_phrase, dict(response.headers.items()), response.content)

    def close(self) -> None:
        self._transport.close()

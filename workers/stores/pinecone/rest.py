"""nsmigrate's own client of Pinecone's data plane: one index host, the REST API of the published OpenAPI spec.

The ``pinecone`` SDK keeps the control plane (``workers.stores.pinecone.control``, an index name resolved to its
host); every data-plane request of ``workers.stores.pinecone`` goes through ``DataPlane``. Owning these few requests
lets nsmigrate read the replies its own way (a fetch's values left as JSON: ``workers.stores.pinecone.fetch_body``),
send each request exactly once (tenacity in ``workers.stores.guarded`` is the only retry layer, so one 429 costs one
request of the fleet's budget), and depend on no private part of the SDK, which ``pinecone>=10,<11`` does not promise.

A request's head is made from parts built once per client (headers, the query's encoding in ``query_string``) and
sent over nsmigrate's own keep-alive HTTP/1.1 connections (``workers.stores.pinecone.http11``), which read an
answer's body in one piece; through a proxy, over httpx's transport. Headers are those the SDK sends (``Api-Key``,
``X-Pinecone-Api-Version``); the key is never put in a message, a log line or a ``repr``.

Answers other than 2xx raise ``DataPlaneError`` with the status, the server's message (read as the SDK reads it:
``error.message``, ``message``, else the text) and ``Retry-After``; ``workers.stores.pinecone.access.pinecone_errors``
turns it into ``RetryableError``/``StoreError``. Transport failures raise ``httpx.TransportError`` (both
transports).
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import orjson

from nsmigrate.workers.stores.pinecone.http11 import Answer, Exchange, Headers, HttpxExchange, OriginPool

#: The API version SDK 10.x sends; the data-plane paths and shapes are those of the 2026-04 reference.
API_VERSION = "2026-07"
USER_AGENT = "nsmigrate"
#: Longest server text kept in an error message.
_MESSAGE_MAX_CHARS = 500
#: How httpx would encode a path segment that is only dots: left as it is, it would be dropped as "." or "..".
_DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}
#: ASCII as ``urllib.parse.quote_plus`` writes it in a query (what httpx sends for ``params``): only letters, digits
#: and ``_.-~`` kept, a space made ``+``; in one ``str.translate`` instead of a Python call per character.
_QUERY_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_QUERY_ASCII = {c: ("+" if c == 0x20 else f"%{c:02X}") for c in range(128) if chr(c) not in _QUERY_KEPT}

Params = Mapping[str, str | int | list[str]]

#: Where a write's log sequence number is answered, and a read's reconciled one: the documented names
#: (https://docs.pinecone.io/guides/index-data/check-data-freshness) first, then the names SDK 10 reads on the
#: vectors API, which it warns may change; the first that parses as an integer wins.
COMMITTED_LSN_HEADERS = ("x-pinecone-request-lsn", "x-pinecone-lsn-committed")
RECONCILED_LSN_HEADERS = ("x-pinecone-max-indexed-lsn", "x-pinecone-lsn-reconciled")


def _without_dot_segments(path: str) -> str:
    """``path`` with its ``.`` and ``..`` segments resolved, as an HTTP client sends it (RFC 3986, 5.2.4): a host
    written ``http://h:p/indexes/./a`` serves its index at ``/indexes/a``."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/".join(kept)


class DataPlaneError(Exception):
    """The data plane answered with a status other than 2xx. ``reason`` and ``metadata``: the machine-readable cause
    API 2026-07 sends in ``details[0]`` (``ALIAS_ALREADY_EXISTS``, ``{"target_namespace": …}``), when it sent one."""

    def __init__(
        self,
        status: int,
        message: str,
        retry_after_s: float | None,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        self.reason = reason
        self.metadata = dict(metadata or {})
        super().__init__(f"{status}: {message}")


def key_refusal(api_key: str) -> str | None:
    """Why ``api_key`` cannot be sent as a header, without showing it (an HTTP library's own error would quote the
    value), or None: it must be printable ASCII with no whitespace around it."""
    if api_key != api_key.strip():
        return "the key has whitespace around it"
    if not (api_key.isascii() and api_key.isprintable()):
        return "the key holds a control or non-ASCII character"
    return None


def path_segment(value: str) -> str:
    """``value`` as one segment of a URL path: percent-encoded, a segment of dots kept (``%2E``)."""
    encoded = quote(value, safe="")
    return _DOT_SEGMENTS.get(encoded, encoded)


def _query_part(value: str) -> str:
    return value.translate(_QUERY_ASCII) if value.isascii() else quote_plus(value, safe="")


def query_string(params: Params) -> str:
    """``params`` as the query httpx would send for them (``urlencode`` of their items, a list repeating its name)."""
    parts = []
    for name, value in params.items():
        key = _query_part(name)
        for item in value if isinstance(value, list) else (value,):
            parts.append(f"{key}={_query_part(str(item))}")
    return "&".join(parts)


def _socket_options() -> list[tuple[int, int, int]]:
    """No Nagle delay on small requests; keep-alive probes so a pooled connection a NAT dropped is found."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    if hasattr(socket, "TCP_KEEPIDLE"):
        options += [(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 300), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 60)]
    return options


def proxy_for(host: str) -> str | None:
    """The proxy the environment names for ``host`` (``HTTPS_PROXY``/``HTTP_PROXY``, unless ``NO_PROXY`` exempts
    it), as the SDK's client honours them."""
    parts = urlsplit(host)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _pool_size() -> int:
    return max(5 * (os.cpu_count() or 1), 20)


class DataPlane:
    """Requests to one index host over one connection pool (make one per process: a pool must not cross a fork).

    Parameters:
        host: the index host, ``https://…`` (or ``http://`` for a local data plane, where no CA bundle is loaded).
        api_key: sent as ``Api-Key``.
        timeout_s: per-request connect/read/write/pool timeout.
        transport: what to send through (default: ``http11.OriginPool`` of this host, or httpx's transport through
            the proxy the environment names for it: ``proxy_for``).
    """

    def __init__(self, host: str, api_key: str, *, timeout_s: float, transport: Exchange | None = None) -> None:
        refusal = key_refusal(api_key)
        if refusal is not None:
            raise ValueError(refusal)
        self.host = host if "://" in host else f"https://{host}"
        parts = urlsplit(self.host)
        origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = _without_dot_segments(parts.path).rstrip("/")
        headers = (
            ("Api-Key", api_key),
            ("X-Pinecone-Api-Version", API_VERSION),
            ("User-Agent", USER_AGENT),
            ("Accept", "application/json"),
            ("Accept-Encoding", "gzip, deflate"),
        )
        #: The headers of a request by its body's content type (None: no body), made once.
        self._headers: dict[str | None, Headers] = {
            kind: headers if kind is None else (*headers, ("Content-Type", kind))
            for kind in (None, "application/json", "application/x-ndjson")
        }
        if transport is None:
            size = _pool_size()
            proxy = proxy_for(self.host)
            if proxy is None:
                transport = OriginPool(
                    origin, timeout_s=timeout_s, max_connections=size, socket_options=_socket_options()
                )
            else:
                proxied = httpx.HTTPTransport(
                    verify=parts.scheme == "https",
                    proxy=proxy,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    socket_options=_socket_options(),
                )
                transport = HttpxExchange(origin, proxied, timeout_s=timeout_s)
        self._transport = transport
        self._answered = threading.local()  # the LSNs of the last answer in this thread (``lsns``)

    def __repr__(self) -> str:
        return f"DataPlane({self.host!r})"

    def get(self, path: str, params: Params | None = None) -> bytes:
        return self._send("GET", path, params, None, None)

    def post(self, path: str, body: Any) -> bytes:
        """POST ``body`` as JSON (orjson: an ``orjson.Fragment`` is written verbatim)."""
        return self._send("POST", path, None, orjson.dumps(body), "application/json")

    def post_json(self, path: str, body: bytes) -> bytes:
        """POST ``body``, JSON already written (``wire.upsert_json``)."""
        return self._send("POST", path, None, body, "application/json")

    def post_ndjson(self, path: str, rows: list[dict[str, Any]]) -> bytes:
        """POST ``rows`` as NDJSON, one object a line (the records API)."""
        return self._send("POST", path, None, b"".join(orjson.dumps(r) + b"\n" for r in rows), "application/x-ndjson")

    def patch(self, path: str, body: Any) -> bytes:
        return self._send("PATCH", path, None, orjson.dumps(body), "application/json")

    def delete(self, path: str) -> bytes:
        return self._send("DELETE", path, None, None, None)

    def close(self) -> None:
        self._transport.close()

    def lsns(self) -> tuple[int | None, int | None]:
        """(committed, reconciled) log sequence numbers of the last answer this thread got, None where it sent
        none: a write answers the first, a lagging read (list, query) the second."""
        return getattr(self._answered, "lsns", (None, None))

    def _send(
        self, method: str, path: str, params: Params | None, content: bytes | None, content_type: str | None
    ) -> bytes:
        target = self._prefix + path
        if params:
            target = f"{target}?{query_string(params)}"
        answer = self._transport.send(method, target, self._headers[content_type], content)
        if not 200 <= answer.status < 300:
            reason, metadata = _reason(answer)
            raise DataPlaneError(answer.status, _message(answer), _retry_after(answer), reason, metadata)
        headers = answer.headers
        self._answered.lsns = (_lsn(headers, COMMITTED_LSN_HEADERS), _lsn(headers, RECONCILED_LSN_HEADERS))
        return answer.body


def _reason(answer: Answer) -> tuple[str | None, dict[str, Any]]:
    """``details[0].reason`` and its ``metadata`` of an ``rpcStatus`` answer, when it has them."""
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None, {}
    details = body.get("details") if isinstance(body, dict) else None
    first = details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
    reason, metadata = first.get("reason"), first.get("metadata")
    return (reason if isinstance(reason, str) else None), (metadata if isinstance(metadata, dict) else {})


def _message(answer: Answer) -> str:
    """The server's message, read where Pinecone puts it (``{"error": {"message"}}``, ``{"message"}``), else its
    text (cut) or the reason phrase."""
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
            return str(error["message"])
        for key in ("message", "detail", "description"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    text = answer.body.decode("utf-8", "replace").strip()
    if len(text) > _MESSAGE_MAX_CHARS:
        text = text[:_MESSAGE_MAX_CHARS] + "… (cut)"
    return text or answer.reason or httpx.codes.get_reason_phrase(answer.status)


def _lsn(headers: dict[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        try:
            return int(headers[name])
        except (KeyError, ValueError):
            continue
    return None


def _retry_after(answer: Answer) -> float | None:
    """``Retry-After`` in seconds, when the server sent a number ≥ 0."""
    try:
        value = float(answer.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None

"""GET requests through a Pinecone ``Index``'s own HTTP client, answered as bytes (``raw_http``).

nsmigrate reads the replies of fetch, list and describe_namespace itself (``workers.stores.pinecone``), so it asks
the ``Index``'s ``HTTPClient`` (SDK 10.2: ``Index._http``) for the bytes. That client's ``get`` goes through every
per-request layer of ``httpx.Client``: URL, header and cookie merging, the auth and redirect steps, cookie
extraction. Here that is about 150 µs of CPU per request, a quarter of a small fetch, and a three-vector namespace is
read with two GETs by its copy and four by its verification. The SDK's own ``post`` skips those layers: it builds the
request from parts made once and hands it to the client's transport. ``RawGet`` does the same for a GET, with the
client's own headers (key, API version, user agent, Accept-Encoding), transport (the SDK's, its retries off), timeout
and error types (``_raise_for_status``). A client of another shape gets its ``get`` as it is.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import httpx

logger = logging.getLogger(__name__)

Params = Mapping[str, str | int | list[str]]


class RawGet:
    """``raw(path, params) -> bytes``: one GET on ``http`` (an ``HTTPClient``), the SDK's exceptions on failure."""

    def __init__(self, http: Any) -> None:
        self._http = http
        self._parts = _request_parts(http)

    @property
    def fast(self) -> bool:
        """Whether requests skip ``httpx.Client``'s layers (False: the SDK's ``get``)."""
        return self._parts is not None

    def __call__(self, path: str, params: Params | None = None) -> bytes:
        parts = self._parts
        if parts is None:
            return bytes(self._http.get(path, params=dict(params or {})).content)
        base, headers, extensions, prepare_path, raise_for_status, raise_transport_error = parts
        url = httpx.URL(base + prepare_path(path), params=params)
        request = httpx.Request("GET", url, headers=headers, extensions=extensions)
        try:
            # The live transport, as the SDK's post uses it: a client swapped in after this was built is honoured.
            response = self._http._client._transport.handle_request(request)
            response.request = request
            try:
                response.read()
            except BaseException:
                response.close()
                raise
        except httpx.TransportError as exc:
            raise_transport_error(exc)
        raise_for_status(response)
        return response.content


_Parts = tuple[
    str,
    httpx.Headers,
    dict[str, Any],
    Callable[[str], str],
    Callable[[httpx.Response], None],
    Callable[[httpx.TransportError], NoReturn],
]


def _request_parts(http: Any) -> _Parts | None:
    """What every GET of ``http`` shares, or None when the client is not of the shape this was written against."""
    try:
        from pinecone._internal.http_client import _prepare_path, _raise_for_status, _raise_transport_error
    except ImportError:  # pragma: no cover - depends on the installed SDK
        return None
    client = getattr(http, "_client", None)
    base = getattr(http, "_base_url_str", None)
    extensions = getattr(http, "_default_timeout_extensions", None)
    if not (
        isinstance(client, httpx.Client)
        and isinstance(base, str)
        and isinstance(extensions, dict)
        and callable(getattr(getattr(client, "_transport", None), "handle_request", None))
    ):
        return None
    return base, httpx.Headers(client.headers), extensions, _prepare_path, _raise_for_status, _raise_transport_error


_RAW_GETS: weakref.WeakKeyDictionary[Any, RawGet] = weakref.WeakKeyDictionary()


def raw_http(index: Any) -> RawGet | None:
    """GETs on the ``Index``'s own HTTP client (made once per client), or None when it has no ``_http.get``."""
    http = getattr(index, "_http", None)
    if not callable(getattr(http, "get", None)):
        return None
    raw = _RAW_GETS.get(http)
    if raw is None:
        raw = _RAW_GETS[http] = RawGet(http)
        if not raw.fast:
            logger.warning("the Pinecone SDK's HTTP client changed shape: reads take its slower get")
    return raw

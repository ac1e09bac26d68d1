"""Several indexes of a local data plane served under paths of one host and port, as some Pinecone-compatible
servers serve theirs (``http://h:p/indexes/a`` and ``http://h:p/indexes/b``): what a spec naming such hosts meets.

Each request under ``{prefix}/{name}`` goes to index ``name`` as if sent to its own port, the rest of its path and
its query string unchanged (faults, stats and data are the index's own); anything else is answered 404 in the data
plane's error shape. ``aliases`` maps more path names onto an index: two paths of one index, which only a marker
written through one and read through the other can tell.

    served = serve_under_paths(sandbox, ["src", "dst"])
    served.host("src")   # http://127.0.0.1:PORT/indexes/src
    served.close()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit

from nsmigrate_sandbox.pinecone_server import PineconeSandbox, _data_error, _Refusal, _Reply, _Server

PREFIX = "/indexes"


class PathRouter:
    """The service of a server whose paths name the indexes: ``{prefix}/{name}/…`` → index ``name``'s service."""

    def __init__(self, sandbox: PineconeSandbox, names: Mapping[str, str], prefix: str) -> None:
        self.sandbox = sandbox
        self.names = dict(names)  # path name → index name
        self.prefix = prefix.rstrip("/")

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        under = parts.path[len(self.prefix) :] if parts.path.startswith(self.prefix + "/") else ""
        name, _, rest = under.lstrip("/").partition("/")
        index = self.names.get(unquote(name))
        if index is None:
            return _data_error(_Refusal(404, f"Not Found: {parts.path}"))
        inner = "/" + rest + (f"?{parts.query}" if parts.query else "")
        return self.sandbox.service(index).handle(method, inner, headers, body)


class PathServer:
    """A running server of ``PathRouter``: ``host(name)`` is an index's address under its path."""

    def __init__(self, server: _Server, prefix: str) -> None:
        self._server = server
        self.prefix = prefix.rstrip("/")

    @property
    def url(self) -> str:
        return self._server.url

    def host(self, name: str) -> str:
        return f"{self._server.url}{self.prefix}/{quote(name, safe='')}"

    def close(self) -> None:
        self._server.close()


def serve_under_paths(
    sandbox: PineconeSandbox,
    indexes: Iterable[str],
    *,
    aliases: Mapping[str, str] | None = None,
    prefix: str = PREFIX,
) -> PathServer:
    """Serve ``indexes`` of a started ``sandbox`` (and ``aliases``: path name → index) under ``prefix`` on one new
    loopback port, in a daemon thread; ``close()`` stops it (the indexes' own ports stay)."""
    names = {name: name for name in indexes} | dict(aliases or {})
    for index in names.values():
        sandbox.service(index)  # an unknown index fails here, not on the first request
    router = PathRouter(sandbox, names, prefix)
    server = _Server((sandbox.bind, 0), router, "paths", sandbox.verbose, sandbox.tls).start()
    return PathServer(server, prefix)

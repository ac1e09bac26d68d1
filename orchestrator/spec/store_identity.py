"""Which store a spec names: its identity, not its spelling. Pure: no I/O here.

Two specs name the same store when they reach the same index or the same tables. For a Pinecone host that is the
host, port and path once spelling is taken out of them: case, a trailing dot or slash, the default port of the
scheme, the scheme's case, and the loopback aliases (``localhost``, ``127.x.x.x``, ``::1``); a path names an index of
a server that serves several under one host and port. An index name is
resolved to its host through the control plane before it can be compared with a host (``workers`` asks); a pgvector
store is its server (``system_identifier``), database and schema, layout and table or prefix, which only the
server can say. ``spec_identity`` is what the spec alone says: equal spec identities are the same store; unequal
ones may still be (an index name and its host, two variables holding one URL) until resolved.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec, store_spec_from_json

_DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK = "loopback"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    # 0.0.0.0 and :: reach this machine too when connected to.
    return bool(address.is_loopback or address.is_unspecified or (mapped is not None and mapped.is_loopback))


def host_identity(url: str) -> str:
    """``host:port`` of a data-plane URL with its spelling taken out, e.g. ``HTTP://LocalHost:80/`` and
    ``http://127.0.0.1`` are both ``loopback:80``, followed by its path when it has one: a server may serve several
    indexes under paths of one host and port (``http://h:p/indexes/a``, ``…/indexes/b``), and two paths are two
    indexes unless a marker proves them one (``workers.stores.identity``). Of a path only its spelling goes (repeated,
    trailing and ``.`` slashes); its case stays, as a server reads it. A URL without a scheme is read as https (the
    SDK's default)."""
    parts = urlsplit(url.strip() if "://" in url else f"https://{url.strip()}")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")  # hostname is lower-cased, without brackets or user info
    if _is_loopback(host):
        host = LOOPBACK
    elif ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    path = posixpath.normpath("/" + unquote(parts.path)).lstrip("/")
    return f"{host}:{port}" + (f"/{path}" if path and path != "." else "")


def pinecone_host_identity(host: str) -> str:
    """A Pinecone index by its data-plane host (a resolved index name included)."""
    return f"pinecone:{host_identity(host)}"


def pgvector_identity(spec: PgvectorStoreSpec, database: str) -> str:
    """A pgvector store in ``database`` (a server's ``system_identifier/database/schema``, or the spec's variable
    when the server was not asked): the layout and the table or prefix name its tables. The generic and the
    documented table-per-namespace stores of one prefix name the same tables, so ``schema`` is left out."""
    return f"pgvector:{database}/{spec.layout}:{spec.table}"


def spec_identity(spec: PineconeStoreSpec | PgvectorStoreSpec) -> str:
    """What the spec alone says about its store's identity. Equal → the same store; unequal → distinct only once
    resolved (``workers.stores.identity``)."""
    if isinstance(spec, PineconeStoreSpec):
        if spec.host is not None:
            return pinecone_host_identity(spec.host)
        # One name in two projects is two indexes; the key says which project.
        control = host_identity(spec.control_host) if spec.control_host else "api.pinecone.io:443"
        return f"pinecone-index:{control}/${spec.api_key_env}/{spec.index}"
    return pgvector_identity(spec, f"${spec.database_url_env}")


def key_of_json(data: dict[str, Any] | None) -> str:
    """``spec_identity`` of a store spec as the job table keeps it (JSON); "" for none."""
    if not data:
        return ""
    try:
        return spec_identity(store_spec_from_json(data))
    except ValidationError:
        # A row written by an older nsmigrate whose spec no longer validates: its exact text still tells it apart.
        return json.dumps(data, sort_keys=True)

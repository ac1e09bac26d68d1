"""Namespace aliases of one index of the local data plane, as API 2026-07 defines them (``/namespace-aliases``).

An alias is a movable read name inside an index: ``{name, target_namespace, created_at, updated_at}``. What the spec
(``db_data_2026-07.oas.yaml``) and Pinecone's guides (``guides/manage-data/namespace-aliases/overview`` and
``…/manage-aliases``) say, and this module does:

- Managing aliases needs API version 2026-07 or later (``X-Pinecone-Api-Version``; a request without the header gets
  the oldest supported version, as Pinecone's ``reference/api/versioning`` says): else 400 ``API_VERSION_TOO_OLD``.
  Reading through an alias works on any version.
- Aliases and namespaces share one name space: an alias cannot take a namespace's name (409
  ``NAME_IN_USE_BY_NAMESPACE``) and no namespace can be created under an alias's (409 ``NAME_IN_USE_BY_ALIAS``).
- The target is an existing, active namespace, never an alias; repointing is atomic (validated and rewritten under
  the index's lock, so a failed repoint keeps the old target and a read sees the old target or the new one).
- Reads name an alias wherever they name a namespace (query, fetch, fetch by metadata, list, records search, and the
  documents API's fetch, list and search where the index serves it) and are served from its target; each answer's
  ``namespace`` field names the namespace that served it. A deleted alias reads as a namespace that does not exist
  (empty answers). ``describe_index_stats`` and ``GET /namespaces`` list namespaces only.
- Writes naming an alias are refused: vectors ``update``/``delete`` 400 ``WRITE_TO_ALIAS``; vectors ``upsert`` and
  ``POST /namespaces`` 409 ``NAME_IN_USE_BY_ALIAS``; records and documents ``upsert`` 409, documents
  ``update``/``delete`` 412 (those in the records error shape); describing or deleting a namespace by an alias's name
  400 ``NAMESPACE_OPERATION_ON_ALIAS``; deleting a namespace an alias targets 400 ``NAMESPACE_TARGETED_BY_ALIAS``. A
  targeted namespace emptied by its writes stays a namespace.
- Errors are the vector operations' ``rpcStatus`` with one ``google.rpc.ErrorInfo`` entry in ``details``: its
  ``reason`` (``details[0].reason``) and, for ``ALIAS_ALREADY_EXISTS``, ``metadata.target_namespace``. The 404 of an
  unknown alias carries no reason: the spec names none.

Not pinned down by Pinecone, chosen here: no alias limit unless ``AliasTable.limit`` is set (then 400
``ALIASES_PER_INDEX_EXCEEDED``; the docs state none); a namespace is active unless a test holds it back
(``AliasTable.inactive``: 400 ``TARGET_NAMESPACE_NOT_ACTIVE``, as for a namespace still importing); an unknown query
parameter of the list is refused without a reason (the spec says it is rejected, not with which).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_server import IndexStore

#: The first API version that manages aliases; versions are ``YYYY-MM`` and compare as text.
MIN_API_VERSION = "2026-07"
MAX_NAME_CHARS = 512
MAX_LIST_LIMIT = 100
DEFAULT_NAMESPACE_NAME = "__default__"
#: The spec's ``alias_name`` pattern: printable ASCII but space and ``/ ? # % & = \\ ; +``.
_ALIAS_NAME = re.compile(r"[\x21\x22\x24\x27-\x2A\x2C-\x2E\x30-\x3A\x3C\x3E\x40-\x5B\x5D-\x7E]+")
_RESERVED_NAMES = frozenset({DEFAULT_NAMESPACE_NAME, ".", ".."})
_LIST_PARAMS = frozenset({"limit", "paginationToken", "prefix", "target_namespace"})

#: The alias-management operations (names as in the stats' ``requests``), served on serverless indexes only.
ALIAS_OPS = frozenset(
    {
        "list_namespace_aliases",
        "create_namespace_alias",
        "describe_namespace_alias",
        "repoint_namespace_alias",
        "delete_namespace_alias",
    }
)
#: Reads that may name an alias: served from its target.
READ_OPS = frozenset(
    {"fetch", "fetch_by_metadata", "list", "query", "search_records"}
    | {"fetch_documents", "list_documents", "search_documents"}
)
#: Writes and namespace operations that name an alias: refused with (status, reason, error shape).
_REFUSED_ON_ALIAS: dict[str, tuple[int, str, str]] = {
    "upsert": (409, "NAME_IN_USE_BY_ALIAS", "rpc"),
    "create_namespace": (409, "NAME_IN_USE_BY_ALIAS", "rpc"),
    "update": (400, "WRITE_TO_ALIAS", "rpc"),
    "delete": (400, "WRITE_TO_ALIAS", "rpc"),
    "upsert_records": (409, "NAME_IN_USE_BY_ALIAS", "records"),
    "upsert_documents": (409, "NAME_IN_USE_BY_ALIAS", "records"),
    "update_documents": (412, "WRITE_TO_ALIAS", "records"),
    "delete_documents": (412, "WRITE_TO_ALIAS", "records"),
    "describe_namespace": (400, "NAMESPACE_OPERATION_ON_ALIAS", "rpc"),
    "delete_namespace": (400, "NAMESPACE_OPERATION_ON_ALIAS", "rpc"),
}
#: Operations that name their namespace in the path (``arg``), and the one that names it as ``name`` in its body.
_PATH_OPS = frozenset(
    {"upsert_records", "search_records", "describe_namespace", "delete_namespace"}
    | {"upsert_documents", "update_documents", "delete_documents", "fetch_documents", "list_documents"}
    | {"search_documents"}
)


def _refusal(status: int, message: str, reason: str | None = None, **metadata: str) -> Exception:
    from nsmigrate_sandbox.pinecone_server import (
        _Refusal,  # built on the server's request plumbing, as sandbox.embedding is
    )

    return _Refusal(status, message, reason=reason, metadata=metadata or None)


def _stored(name: str) -> str:
    return "" if name == DEFAULT_NAMESPACE_NAME else name


def _shown(namespace: str) -> str:
    return namespace or DEFAULT_NAMESPACE_NAME


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alias:
    name: str
    target: str  # the stored namespace name ("" is the default namespace)
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target_namespace": _shown(self.target),
            "created_at": _timestamp(self.created_at),
            "updated_at": _timestamp(self.updated_at),
        }


class AliasTable:
    """The aliases of one index. Every change and every check against the index's namespaces holds the index's lock
    (``store.lock``), so an alias and a namespace can never take one name, nor a targeted namespace be deleted."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._aliases: dict[str, Alias] = {}
        self._clock_lock = threading.Lock()
        self._last_stamp = 0.0
        #: Namespaces that are not active yet (a test's stand-in for one still importing or restoring).
        self.inactive: set[str] = set()
        #: The most aliases the index may hold; None: no limit.
        self.limit: int | None = None
        store.kept = self.targeted

    def clear(self) -> None:
        with self.store.lock:
            self._aliases.clear()
            self.inactive.clear()

    # -- what the data plane asks

    def targeted(self, namespace: str) -> bool:
        """Whether an alias resolves to ``namespace`` (stored name)."""
        with self.store.lock:
            return any(a.target == namespace for a in self._aliases.values())

    def refuse_deleting(self, namespace: str) -> None:
        """Refuse to delete ``namespace`` (stored name) while an alias targets it (the caller holds the index lock
        through the deletion)."""
        serving = sorted(a.name for a in self._aliases.values() if a.target == namespace)
        if serving:
            raise _refusal(
                400,
                f"Namespace '{_shown(namespace)}' is the target of namespace alias(es) {', '.join(serving)}: repoint "
                "or delete them before deleting it",
                "NAMESPACE_TARGETED_BY_ALIAS",
            )

    def route(self, op: str, payload: Any, query: dict[str, list[str]], arg: str | None) -> tuple[Any, str | None]:
        """A read that names an alias, pointed at its target (the payload or query changed in place, or the path's
        name returned); a write that names one, or the deletion of a namespace one targets, refused. Returns the
        payload and the path's name to serve."""
        named = self._named(op, payload, query, arg)
        alias = self._aliases.get(named) if named is not None else None  # one read of the dict: atomic
        if alias is None:
            return payload, arg
        target = _shown(alias.target)
        if op in READ_OPS:
            if op in _PATH_OPS:
                return payload, target
            if isinstance(payload, dict):
                payload["namespace"] = target
            else:
                query["namespace"] = [target]
            return payload, arg
        refused = _REFUSED_ON_ALIAS.get(op)
        if refused is None:
            return payload, arg
        status, reason, shape = refused
        message = f"'{named}' is a namespace alias (of '{target}'), not a namespace: " + (
            "aliases are described via GET /namespace-aliases/{alias_name}"
            if op in ("describe_namespace", "delete_namespace")
            else "writes cannot address an alias; write to its target namespace directly"
        )
        if shape == "records":
            from nsmigrate_sandbox.pinecone_server import _Refusal

            raise _Refusal(status, message, records_shape=True)
        raise _refusal(status, message, reason)

    def _named(self, op: str, payload: Any, query: dict[str, list[str]], arg: str | None) -> str | None:
        """The namespace name a request gives, as given; None when it names none (or an invalid one, which the
        operation refuses itself)."""
        if op in _PATH_OPS:
            return arg
        if op == "create_namespace":
            name = payload.get("name") if isinstance(payload, dict) else None
        elif op in READ_OPS or op in _REFUSED_ON_ALIAS:
            if isinstance(payload, dict):
                name = payload.get("namespace")
            else:
                values = query.get("namespace")
                name = values[-1] if values else None
        else:
            return None
        return name if isinstance(name, str) and name else None

    # -- the /namespace-aliases endpoints

    def routes(self) -> dict[tuple[str, str], tuple[str, Callable[[Any, dict[str, list[str]], str | None], Any]]]:
        """The index's routes of these endpoints: (method, path) → (operation, handler of payload, query, name)."""
        return {
            ("GET", "/namespace-aliases"): ("list_namespace_aliases", lambda _p, q, _a: self.list(q)),
            ("POST", "/namespace-aliases"): ("create_namespace_alias", lambda p, _q, _a: self.create(p)),
            ("GET", "/namespace-aliases/{}"): ("describe_namespace_alias", lambda _p, _q, a: self.describe(a)),
            ("PATCH", "/namespace-aliases/{}"): ("repoint_namespace_alias", lambda p, _q, a: self.repoint(a, p)),
            ("DELETE", "/namespace-aliases/{}"): ("delete_namespace_alias", lambda _p, _q, a: self.delete(a)),
        }

    @staticmethod
    def check_version(headers: Any) -> None:
        version = headers.get("X-Pinecone-Api-Version") or ""
        if not re.fullmatch(r"\d{4}-\d{2}", version) or version < MIN_API_VERSION:
            shown = version or "none (the oldest supported version)"
            raise _refusal(
                400,
                f"Namespace aliases need API version {MIN_API_VERSION} or later; this request's is {shown}. Set "
                f"X-Pinecone-Api-Version: {MIN_API_VERSION}",
                "API_VERSION_TOO_OLD",
            )

    def create(self, payload: Any) -> dict[str, Any]:
        body = payload if isinstance(payload, dict) else {}
        name = _alias_name(body.get("name"))
        target = _target_name(body.get("target_namespace"))
        with self.store.lock:
            existing = self._aliases.get(name)
            if existing is not None:
                raise _refusal(
                    409,
                    f"Namespace alias '{name}' already exists (target '{_shown(existing.target)}')",
                    "ALIAS_ALREADY_EXISTS",
                    target_namespace=_shown(existing.target),
                )
            if name in self.store.namespaces:
                raise _refusal(
                    409,
                    f"The name '{name}' is in use by a namespace; aliases and namespaces share one name space",
                    "NAME_IN_USE_BY_NAMESPACE",
                )
            self._check_target(target)
            if self.limit is not None and len(self._aliases) >= self.limit:
                raise _refusal(
                    400,
                    f"The index has reached its limit of {self.limit} namespace aliases",
                    "ALIASES_PER_INDEX_EXCEEDED",
                )
            now = self._stamp()
            alias = self._aliases[name] = Alias(name, _stored(target), now, now)
            return alias.to_json()

    def describe(self, arg: str | None) -> dict[str, Any]:
        name = _alias_name(arg)
        with self.store.lock:
            return self._existing(name).to_json()

    def repoint(self, arg: str | None, payload: Any) -> dict[str, Any]:
        name = _alias_name(arg)
        body = payload if isinstance(payload, dict) else {}
        target = _target_name(body.get("target_namespace"))
        with self.store.lock:  # validated and rewritten at once: a refusal keeps the old target
            alias = self._existing(name)
            self._check_target(target)
            alias.target = _stored(target)
            alias.updated_at = self._stamp()
            return alias.to_json()

    def delete(self, arg: str | None) -> dict[str, Any]:
        name = _alias_name(arg)
        with self.store.lock:
            self._existing(name)
            del self._aliases[name]
        return {}

    def list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        unknown = sorted(set(query) - _LIST_PARAMS)
        if unknown:
            raise _refusal(400, f"Unknown query parameter(s) {unknown}; known: {sorted(_LIST_PARAMS)}")
        limit = _list_limit(_last(query, "limit"))
        prefix = _last(query, "prefix")
        target = _last(query, "target_namespace")
        if prefix is not None:
            _check_prefix(prefix)
        if target is not None and not target:
            raise _refusal(400, "target_namespace must not be empty when given", "TARGET_FILTER_EMPTY")
        after = ""
        token = _last(query, "paginationToken")
        if token:
            after, prefix, target = _read_token(token, prefix, target)
        prefix = prefix or ""
        with self.store.lock:
            names = sorted((n.encode() for n in self._aliases), key=bytes)
            matching = [
                self._aliases[n.decode()]
                for n in names[bisect.bisect_right(names, after.encode()) if after else 0 :]
                if n.decode().startswith(prefix)
                and (target is None or self._aliases[n.decode()].target == _stored(target))
            ]
            total = sum(
                1
                for a in self._aliases.values()
                if a.name.startswith(prefix) and (target is None or a.target == _stored(target))
            )
        page = matching[:limit]
        reply: dict[str, Any] = {"namespace_aliases": [a.to_json() for a in page], "total_count": total}
        if len(matching) > limit:
            reply["pagination"] = {"next": _make_token(page[-1].name, prefix or None, target)}
        return reply

    # -- helpers

    def _existing(self, name: str) -> Alias:
        alias = self._aliases.get(name)
        if alias is None:
            raise _refusal(404, f"Namespace alias '{name}' not found")
        return alias

    def _check_target(self, target: str) -> None:
        """Under the index lock: the target is an existing, active namespace, not an alias."""
        if target in self._aliases:
            raise _refusal(
                400, f"Target '{target}' is itself a namespace alias; aliases cannot chain", "TARGET_IS_ALIAS"
            )
        if _stored(target) not in self.store.namespaces:
            raise _refusal(400, f"Target namespace '{target}' not found", "TARGET_NAMESPACE_NOT_FOUND")
        if _stored(target) in self.inactive:
            raise _refusal(
                400, f"Target namespace '{target}' is not active yet; retry once it is", "TARGET_NAMESPACE_NOT_ACTIVE"
            )

    def _stamp(self) -> float:
        """Now, later than any stamp before (``updated_at`` advances on every repoint, even within a millisecond)."""
        with self._clock_lock:
            self._last_stamp = max(time.time(), self._last_stamp + 0.001)
            return self._last_stamp


def _alias_name(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_NAME_CHARS
        or not _ALIAS_NAME.fullmatch(value)
        or value in _RESERVED_NAMES
    ):
        raise _refusal(
            400,
            f"Invalid alias name {value!r}: 1-{MAX_NAME_CHARS} printable ASCII characters, no space or "
            "/ ? # % & = \\ ; +, and not __default__, . or ..",
            "ALIAS_NAME_INVALID",
        )
    return value


def _target_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _refusal(400, "target_namespace is required", "TARGET_NAMESPACE_REQUIRED")
    if len(value) > MAX_NAME_CHARS:
        raise _refusal(
            400, f"target_namespace is {len(value)} characters; at most {MAX_NAME_CHARS}", "NAMESPACE_TOO_LONG"
        )
    if not value.isascii() or "\0" in value:
        raise _refusal(400, f"target_namespace {value!r} is not a possible namespace name (ASCII)", "NAMESPACE_INVALID")
    return value


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _list_limit(value: str | None) -> int:
    if value is None:
        return MAX_LIST_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise _refusal(400, f"limit must be between 1 and {MAX_LIST_LIMIT}, got {value!r}", "LIST_INVALID_LIMIT")
    return limit


def _check_prefix(prefix: str) -> None:
    if len(prefix) > MAX_NAME_CHARS:
        raise _refusal(400, f"prefix is {len(prefix)} characters; at most {MAX_NAME_CHARS}", "PREFIX_TOO_LONG")
    if not prefix.isascii():
        raise _refusal(400, "prefix must be ASCII", "PREFIX_MUST_BE_ASCII")
    if "\0" in prefix:
        raise _refusal(400, "prefix must not contain a NUL character", "PREFIX_MUST_NOT_CONTAIN_NULL_CHARACTER")


def _make_token(after: str, prefix: str | None, target: str | None) -> str:
    raw = orjson.dumps({"kind": "namespace-aliases", "after": after, "prefix": prefix, "target": target})
    return base64.urlsafe_b64encode(raw).decode()


def _read_token(token: str, prefix: str | None, target: str | None) -> tuple[str, str | None, str | None]:
    """Where the token's listing stopped and its filters; the request's filters must repeat them or be absent."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("kind") != "namespace-aliases" or not isinstance(data.get("after"), str):
        raise _refusal(
            400, "Invalid pagination token (malformed, or from another endpoint)", "INVALID_PAGINATION_TOKEN"
        )
    for given, carried, what in ((prefix, data.get("prefix"), "PREFIX"), (target, data.get("target"), "TARGET")):
        if given is not None and carried is None:
            raise _refusal(
                400, f"The {what.lower()} filter was added mid-listing", f"LIST_INVALID_TOKEN_WITH_NEW_{what}"
            )
        if given is not None and given != carried:
            raise _refusal(
                400, f"The {what.lower()} filter differs from the token's", f"LIST_INVALID_TOKEN_WITH_{what}"
            )
    return data["after"], data.get("prefix"), data.get("target")

"""Namespace aliases of one Pinecone index (API 2026-07, ``/namespace-aliases`` on the index host): nsmigrate's
calls, and errors that say what went wrong and what to do.

An alias is a movable read name inside an index: reads naming it are served from its target namespace, writes naming
it are refused, a namespace it targets cannot be deleted, and aliases and namespaces share one name space. Managing
them is REST only (the SDK has no calls for it); they go through the store's own data-plane client
(``workers.stores.pinecone.rest``), which sends ``X-Pinecone-Api-Version: 2026-07``.

Every call is safe to repeat, as Pinecone makes them: a create answered 409 ``ALIAS_ALREADY_EXISTS`` naming the
target asked for means an earlier call succeeded (returned as done); a delete answered 404 means the alias is gone
already (``False``). An index that serves no aliases (a pod index, Pinecone Local, a server before 2026-07) answers
the list 404: it has none, and ``list`` says so with ``[]``. Refusals become ``StoreError`` with a hint, keyed on
``details[0].reason`` (never on the message text); a target that is not active yet is ``RetryableError``, as the
same request succeeds once it is.
"""

from __future__ import annotations

import builtins
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.limits import ALIAS_LIST_MAX_PAGE
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers.stores.pinecone.rest import DataPlane, DataPlaneError, path_segment
from nsmigrate.workers.stores.pinecone.wire import Pagination

#: How Pinecone names the default namespace as a target; nsmigrate calls it "".
_DEFAULT = "__default__"
#: An alias name (the spec's pattern): 1-512 printable ASCII characters but space and ``/ ? # % & = \\ ; +``.
_ALIAS_NAME = re.compile(r"[\x21\x22\x24\x27-\x2A\x2C-\x2E\x30-\x3A\x3C\x3E\x40-\x5B\x5D-\x7E]{1,512}")
_RESERVED = frozenset({_DEFAULT, ".", ".."})


class _Alias(msgspec.Struct):
    name: str
    target_namespace: str
    created_at: str = ""
    updated_at: str = ""


class _ListReply(msgspec.Struct):
    namespace_aliases: list[_Alias] = []
    pagination: Pagination | None = None


_ALIAS = msgspec.json.Decoder(_Alias)
_LIST = msgspec.json.Decoder(_ListReply)


@dataclass(frozen=True)
class NamespaceAlias:
    """One alias: its name and the namespace it resolves to ("" is the default namespace); times as Pinecone wrote
    them (``updated_at`` advances on every repoint)."""

    name: str
    target_namespace: str
    created_at: str
    updated_at: str


def _from_wire(alias: _Alias) -> NamespaceAlias:
    target = "" if alias.target_namespace == _DEFAULT else alias.target_namespace
    return NamespaceAlias(alias.name, target, alias.created_at, alias.updated_at)


def alias_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an alias's name, or None."""
    if not _ALIAS_NAME.fullmatch(name) or name in _RESERVED:
        return (
            f"{name!r} cannot name a namespace alias: 1-512 printable ASCII characters, no space or "
            "/ ? # % & = \\ ; +, and not __default__, . or .."
        )
    return None


class NamespaceAliases:
    """The alias operations on one index.

    Parameters:
        plane: gives the index's data-plane client (the store's, built on first use in this process).
        label: the store's label, for messages.
    """

    def __init__(self, plane: Callable[[], DataPlane], label: str) -> None:
        self._plane = plane
        self.label = label

    def list(self, *, prefix: str | None = None, target_namespace: str | None = None) -> list[NamespaceAlias]:
        """Every alias of the index (by name), or those whose name starts with ``prefix`` / that resolve to
        ``target_namespace``; ``[]`` for an index that serves no aliases."""
        params: dict[str, Any] = {"limit": ALIAS_LIST_MAX_PAGE}
        if prefix:
            params["prefix"] = prefix
        if target_namespace is not None:
            params["target_namespace"] = target_namespace or _DEFAULT
        found: list[NamespaceAlias] = []
        with self._errors("list_namespace_aliases"):
            while True:
                try:
                    reply: _ListReply = _LIST.decode(self._plane().get("/namespace-aliases", params))
                except DataPlaneError as e:
                    if e.status == 404 and not found:
                        return []  # no such endpoint: the index has no aliases
                    raise
                found.extend(_from_wire(a) for a in reply.namespace_aliases)
                token = reply.pagination.next if reply.pagination is not None else None
                if not token:
                    return found
                params = {"limit": ALIAS_LIST_MAX_PAGE, "paginationToken": token}

    def targeting(self, namespace: str) -> builtins.list[str]:
        """The names of the aliases that resolve to ``namespace``, sorted."""
        return sorted(a.name for a in self.list(target_namespace=namespace))

    def describe(self, name: str) -> NamespaceAlias | None:
        """The alias ``name``, or None when the index has none of that name."""
        self._check_name(name)
        with self._errors("describe_namespace_alias", name):
            try:
                return _from_wire(_ALIAS.decode(self._plane().get(f"/namespace-aliases/{path_segment(name)}")))
            except DataPlaneError as e:
                if e.status == 404 and e.reason is None:
                    return None
                raise

    def create(self, name: str, target_namespace: str) -> NamespaceAlias:
        """Make ``name`` resolve to ``target_namespace``; done already (the same target) is done."""
        self._check_name(name)
        body = {"name": name, "target_namespace": target_namespace or _DEFAULT}
        with self._errors("create_namespace_alias", name, target_namespace):
            try:
                return _from_wire(_ALIAS.decode(self._plane().post("/namespace-aliases", body)))
            except DataPlaneError as e:
                same = e.metadata.get("target_namespace") in (body["target_namespace"], target_namespace)
                if e.reason == "ALIAS_ALREADY_EXISTS" and same:
                    found = self.describe(name)
                    if found is not None:
                        return found
                raise

    def repoint(self, name: str, target_namespace: str) -> NamespaceAlias:
        """Make the alias ``name`` resolve to ``target_namespace`` instead, atomically (a refusal keeps the old)."""
        self._check_name(name)
        body = {"target_namespace": target_namespace or _DEFAULT}
        with self._errors("repoint_namespace_alias", name, target_namespace):
            return _from_wire(_ALIAS.decode(self._plane().patch(f"/namespace-aliases/{path_segment(name)}", body)))

    def delete(self, name: str) -> bool:
        """Remove the alias ``name`` (its target and data stay); False when it was gone already."""
        self._check_name(name)
        with self._errors("delete_namespace_alias", name):
            try:
                self._plane().delete(f"/namespace-aliases/{path_segment(name)}")
            except DataPlaneError as e:
                if e.status == 404 and e.reason is None:
                    return False
                raise
        return True

    def _check_name(self, name: str) -> None:
        problem = alias_name_problem(name)
        if problem is not None:
            raise StoreError(problem, hint="choose another alias name", store=self.label, alias=name)

    @contextlib.contextmanager
    def _errors(self, op: str, name: str | None = None, target: str | None = None) -> Iterator[None]:
        """A refusal explained by its reason; anything else as every Pinecone call's (``pinecone_errors``)."""
        from nsmigrate.workers.stores.pinecone.access import pinecone_errors  # that module builds on this one

        ids: dict[str, Any] = {"store": self.label, "op": op, "alias": name}
        with pinecone_errors(op, store=self.label, alias=name):
            try:
                yield
            except DataPlaneError as e:
                explained = _explained(e, self.label, name, target, ids)
                if explained is None:
                    raise
                raise explained from e
            except msgspec.MsgspecError as e:
                raise StoreError(f"Pinecone {op} answered something that is not its response: {e}", **ids) from e


def _explained(
    e: DataPlaneError, label: str, name: str | None, target: str | None, ids: dict[str, Any]
) -> Exception | None:
    """The error of a refusal whose reason nsmigrate can explain, or None."""
    alias = repr(name)
    shown = repr(display_namespace(target)) if target is not None else "the target"
    where = f"index {label}"
    if e.status == 404 and e.reason is None and name is not None:
        return StoreError(
            f"{where} has no namespace alias {alias}, or serves no aliases (a pod-based index, or a server before "
            "API 2026-07)",
            hint="list the index's aliases; create the alias first",
            **ids,
        )
    messages: dict[str, tuple[str, str]] = {
        "ALIAS_ALREADY_EXISTS": (
            f"namespace alias {alias} already exists in {where} and resolves to "
            f"{display_namespace(str(e.metadata.get('target_namespace', '?')))!r}, not {shown}",
            "repoint it to move it, or choose another alias name",
        ),
        "NAME_IN_USE_BY_NAMESPACE": (
            f"{alias} is a namespace of {where}: aliases and namespaces share one name space",
            "choose an alias name that no namespace has",
        ),
        "TARGET_NAMESPACE_NOT_FOUND": (
            f"namespace {shown} does not exist in {where}: an alias resolves to an existing namespace",
            "copy into that namespace first (an alias can point only at a namespace of its own index)",
        ),
        "TARGET_IS_ALIAS": (
            f"{shown} is itself a namespace alias in {where}: aliases cannot point at aliases",
            "point it at the namespace that alias resolves to",
        ),
        "ALIASES_PER_INDEX_EXCEEDED": (
            f"{where} holds as many namespace aliases as it may",
            "delete aliases no application reads through, then try again",
        ),
        "API_VERSION_TOO_OLD": (
            f"{where} refused API version 2026-07's alias calls as too old",
            "the index host must serve Pinecone API 2026-07 or later",
        ),
    }
    if e.reason == "TARGET_NAMESPACE_NOT_ACTIVE":
        return RetryableError(f"namespace {shown} of {where} is not active yet: {e.message}", status=e.status, **ids)
    if e.reason in ("ALIAS_NAME_INVALID", "TARGET_NAMESPACE_REQUIRED", "NAMESPACE_TOO_LONG", "NAMESPACE_INVALID"):
        return StoreError(f"{where} refused {e.reason}: {e.message}", hint="check the alias and target names", **ids)
    if e.reason in messages:
        message, hint = messages[e.reason]
        return StoreError(message, hint=hint, **ids)
    return None

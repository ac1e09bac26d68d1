"""The namespace convention: ``creator_{creator_id}_twin_{twin_id}``, ``creator_{creator_id}`` and ``public``.

Names are built and parsed only here. A name must parse back to exactly one (creator, twin): that is what lets a
creator's data be found and erased as one, so ids that could make a name ambiguous are refused when a plan is made,
not discovered when an erasure deletes the wrong namespace. Ids therefore never contain ``_`` (the separator):
``creator_a_twin_b_twin_c`` could be creator ``a`` / twin ``b_twin_c`` or creator ``a_twin_b`` / twin ``c``.
Pure: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import PlanError

PUBLIC = "public"
"""The shared namespace: vectors that belong to no twin."""

MAX_ID_CHARS = 100
MAX_NAMESPACE_CHARS = 512  # Pinecone's limit on a namespace name

IdKind = Literal["creator_id", "twin_id"]
NamespaceKind = Literal["twin", "creator", "public", "other"]

_ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9.\-]{{0,{MAX_ID_CHARS - 1}}}"
# Always used with fullmatch: `$` would also match before a trailing newline.
_ID = re.compile(_ID_PATTERN)
_TWIN_NS = re.compile(rf"creator_({_ID_PATTERN})_twin_({_ID_PATTERN})")
_CREATOR_NS = re.compile(rf"creator_({_ID_PATTERN})")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE)
_ID_RULE = "ids are 1 to 100 characters: letters, digits, '.' and '-', starting with a letter or digit"


def display_namespace(namespace: str) -> str:
    """How a namespace is shown to people: the default one as ``__default__``."""
    return namespace or "__default__"


def parse_namespace_arg(value: str) -> str:
    """The inverse of display_namespace for CLI/spec input."""
    return "" if value == "__default__" else value


@dataclass(frozen=True)
class ParsedNamespace:
    """What a namespace name means under the convention. ``other`` names (UUID namespaces, the default namespace
    ``""``, anything hand-made) carry no ids."""

    kind: NamespaceKind
    creator_id: str | None = None
    twin_id: str | None = None


def _why_invalid(value: object) -> str | None:
    """The reason ``value`` cannot be an id, or None when it can."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if value == "":
        return "is empty"
    if "_" in value:
        return (
            "contains '_', the separator of namespace names: with it a name like creator_a_twin_b_twin_c "
            "could be read two ways"
        )
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters long; at most {MAX_ID_CHARS} are allowed"
    if not value[0].isascii() or not value[0].isalnum():
        return f"starts with {value[0]!r}; it must start with a letter or a digit"
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in ".-"))})
    if bad:
        return f"contains {', '.join(repr(c) for c in bad)}; only letters, digits, '.' and '-' are allowed"
    # The checks above spell the pattern out so the message can say which rule broke; this is the rule itself.
    if not _ID.fullmatch(value):
        return f"does not match ^{_ID.pattern}$"
    return None


def identifier_problem(kind: IdKind, value: object) -> str | None:
    """The sentence ``validate_identifier`` would raise with, or None for a valid id (to collect many problems)."""
    why = _why_invalid(value)
    return None if why is None else f"{kind} {value!r} {why}"


def validate_identifier(kind: IdKind, value: str) -> str:
    """Check that ``value`` can be a creator or twin id inside a namespace name and return it.

    Raises:
        PlanError: saying exactly why the id would make a name invalid or ambiguous (empty, ``_``, too long, a
            character outside ``[A-Za-z0-9.-]``).
    """
    problem = identifier_problem(kind, value)
    if problem is not None:
        raise PlanError(
            problem, hint=f"{_ID_RULE}; fix the id at its source (the creator mapping or the metadata)", **{kind: value}
        )
    return value


def _checked_length(name: str) -> str:
    if len(name) > MAX_NAMESPACE_CHARS:
        raise PlanError(
            f"namespace {name[:60]!r}… is {len(name)} characters long; at most {MAX_NAMESPACE_CHARS}",
            hint="use shorter creator or twin ids",
        )
    return name


def twin_namespace(creator_id: str, twin_id: str) -> str:
    """``creator_{creator_id}_twin_{twin_id}``; raises PlanError for an id that would make it ambiguous."""
    validate_identifier("creator_id", creator_id)
    validate_identifier("twin_id", twin_id)
    return _checked_length(f"creator_{creator_id}_twin_{twin_id}")


def creator_namespace(creator_id: str) -> str:
    """``creator_{creator_id}``: data of a creator that belongs to none of their twins."""
    validate_identifier("creator_id", creator_id)
    return _checked_length(f"creator_{creator_id}")


def parse_namespace(name: str) -> ParsedNamespace:
    """What ``name`` means. Exact inverse of ``twin_namespace``/``creator_namespace``: because ids never contain
    ``_``, a name matches at most one of the shapes, and a name that only *looks* like one (``creator_a_b``) is
    ``other`` rather than guessed at."""
    if name == PUBLIC:
        return ParsedNamespace("public")
    if len(name) <= MAX_NAMESPACE_CHARS:
        m = _TWIN_NS.fullmatch(name)
        if m:
            return ParsedNamespace("twin", creator_id=m.group(1), twin_id=m.group(2))
        m = _CREATOR_NS.fullmatch(name)
        if m:
            return ParsedNamespace("creator", creator_id=m.group(1))
    return ParsedNamespace("other")


def namespace_problem(name: str) -> str | None:
    """Why ``name`` cannot be a target namespace, or None. A name starting with ``creator_`` must parse under the
    convention: one that does not (``creator_a_b_twin_c``) would be invisible to erasure by creator."""
    if len(name) > MAX_NAMESPACE_CHARS:
        return f"namespace {name[:60]!r}… is {len(name)} characters long; at most {MAX_NAMESPACE_CHARS} are allowed"
    if name.startswith("creator_") and parse_namespace(name).kind == "other":
        return (
            f"namespace {name!r} starts with 'creator_' but is not creator_{{creator_id}}_twin_{{twin_id}} or "
            f"creator_{{creator_id}} with valid ids ({_ID_RULE}), so erasing that creator would miss it"
        )
    return None


def namespaces_of_creator(creator_id: str, namespaces: Iterable[str]) -> list[str]:
    """The namespaces (in the given order) that belong to ``creator_id``: its twin namespaces and its creator-wide
    namespace. Matched by parsing, never by prefix, so creator ``a.1`` never matches ``creator_a.10_twin_x``.

    Raises:
        PlanError: ``creator_id`` is not a valid id (it could not own any namespace; most likely a typo).
    """
    validate_identifier("creator_id", creator_id)
    return [n for n in namespaces if parse_namespace(n).creator_id == creator_id]


def is_uuid_like(name: str) -> bool:
    """True for a UUID, with or without dashes, any case (the shape of the seeds' twin namespaces)."""
    return bool(_UUID.fullmatch(name))

"""The namespace convention: ``creator_{creator_id}_twin_{twin_id}``, ``creator_{creator_id}`` and ``public``.

Names are built and read only here. Ids may contain ``_`` (the seeds' own ids do: ``twin_abc123``,
``test_creator_123``), so a name alone can have several readings: ``creator_a_twin_b_twin_c`` is creator ``a`` /
twin ``b_twin_c`` or creator ``a_twin_b`` / twin ``c``. What a name means is therefore decided by the ``Registry``
of the names actually built from the creator → twin mapping; a plan is refused only when two different meanings
build the same name. A name nobody registered is read by ``parse_namespace``: its one twin reading, or its creator
reading when it has no twin reading, else ``other`` (never guessed at). Pure: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import NAMESPACE_MAX_CHARS

PUBLIC = "public"
"""The shared namespace: vectors that belong to no twin."""

#: Longest creator or twin id the namespace convention accepts (two of them fit a namespace's 512 characters).
MAX_ID_CHARS = 100

IdKind = Literal["creator_id", "twin_id"]
NamespaceKind = Literal["twin", "creator", "public", "other"]

_ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._\-]{{0,{MAX_ID_CHARS - 1}}}"
# Always used with fullmatch: `$` would also match before a trailing newline.
_ID = re.compile(_ID_PATTERN)
ID_RULE = "ids are 1 to 100 characters: letters, digits, '.', '-' and '_', starting with a letter or digit"
_CREATOR_PREFIX = "creator_"
_TWIN_SEPARATOR = "_twin_"


def id_text(value: Any) -> str | None:
    """A metadata value as the creator or twin id it names, or None (missing or empty): a text as it is, a number as
    its digits, an integral float as the integer (Pinecone gives every number back as a float: the application's
    twin ``7`` comes back ``7.0``, and is still twin ``7``)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def id_texts(value: Any) -> frozenset[str]:
    """Every creator or twin id a metadata value names, as Pinecone's filters match it: a list (Pinecone keeps lists
    of strings; a pgvector JSONB or ``text[]`` may hold one too) names each of its elements, as ``$eq`` and ``$in``
    match a record whose list holds the operand; anything else names what ``id_text`` reads, or nothing."""
    if isinstance(value, (list, tuple)):
        return frozenset(text for item in value if (text := id_text(item)) is not None)
    text = id_text(value)
    return frozenset() if text is None else frozenset((text,))


def display_namespace(namespace: str) -> str:
    """How a namespace is shown to people: the default one as ``__default__``."""
    return namespace or "__default__"


def parse_namespace_arg(value: str) -> str:
    """The inverse of display_namespace for CLI/spec input."""
    return "" if value == "__default__" else value


SHOWN = 10  # how many names an error lists before "…"


def shown_namespaces(names: Iterable[str]) -> str:
    """Namespaces as an error lists them: display names, the first ``SHOWN`` of them and how many more."""
    items = [display_namespace(n) for n in names]
    more = f", … ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


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
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters long; at most {MAX_ID_CHARS} are allowed"
    if not value[0].isascii() or not value[0].isalnum():
        return f"starts with {value[0]!r}; it must start with a letter or a digit"
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad:
        return f"contains {', '.join(repr(c) for c in bad)}; only letters, digits, '.', '-' and '_' are allowed"
    # The checks above spell the pattern out so the message can say which rule broke; this is the rule itself.
    if not _ID.fullmatch(value):
        return f"does not match ^{_ID.pattern}$"
    return None


def identifier_problem(kind: IdKind, value: object) -> str | None:
    """The sentence ``validate_identifier`` would raise with, or None for a valid id (to collect many problems)."""
    why = _why_invalid(value)
    return None if why is None else f"{kind} {value!r} {why}"


def mapping_problems(twins: Mapping[str, str]) -> list[str]:
    """``identifier_problem`` of every twin id and creator id of a twin → creator mapping, in its order."""
    return [
        p
        for t, c in twins.items()
        for p in (identifier_problem("twin_id", t), identifier_problem("creator_id", c))
        if p
    ]


def validate_identifier(kind: IdKind, value: str) -> str:
    """Check that ``value`` can be a creator or twin id inside a namespace name and return it.

    Raises:
        PlanError: saying exactly why the id cannot be part of a name (empty, too long, a character outside
            ``[A-Za-z0-9._-]``, not starting with a letter or digit).
    """
    problem = identifier_problem(kind, value)
    if problem is not None:
        raise PlanError(
            problem, hint=f"{ID_RULE}; fix the id at its source (the creator mapping or the metadata)", **{kind: value}
        )
    return value


def _checked_length(name: str) -> str:
    if len(name) > NAMESPACE_MAX_CHARS:
        raise PlanError(
            f"namespace {name[:60]!r}… is {len(name)} characters long; at most {NAMESPACE_MAX_CHARS}",
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


def readings(name: str) -> list[ParsedNamespace]:
    """Every meaning ``name`` could have under the convention, with ids valid: each split at a ``_twin_`` (twin
    readings first, in order) and the creator-wide reading. Empty for names outside the convention."""
    if name == PUBLIC:
        return [ParsedNamespace("public")]
    if len(name) > NAMESPACE_MAX_CHARS or not name.startswith(_CREATOR_PREFIX):
        return []
    rest = name[len(_CREATOR_PREFIX) :]
    found = []
    at = rest.find(_TWIN_SEPARATOR)
    while at != -1:
        creator, twin = rest[:at], rest[at + len(_TWIN_SEPARATOR) :]
        if _why_invalid(creator) is None and _why_invalid(twin) is None:
            found.append(ParsedNamespace("twin", creator_id=creator, twin_id=twin))
        at = rest.find(_TWIN_SEPARATOR, at + 1)
    if _why_invalid(rest) is None:
        found.append(ParsedNamespace("creator", creator_id=rest))
    return found


def parse_namespace(name: str) -> ParsedNamespace:
    """What an unregistered ``name`` means: ``public``; its only twin reading; its creator reading when it has no
    twin reading; otherwise ``other`` — a name with two twin readings (``creator_a_twin_b_twin_c``) is never
    guessed at. Names built through a ``Registry`` are read with ``Registry.meaning`` instead."""
    found = readings(name)
    twins = [r for r in found if r.kind == "twin"]
    if len(twins) == 1:
        return twins[0]
    if not twins and len(found) == 1:
        return found[0]
    return ParsedNamespace("other")


def namespace_problem(name: str) -> str | None:
    """Why ``name`` cannot be a target namespace that no registry built, or None. A name starting with ``creator_``
    must parse under the convention: one that does not (``creator_.a``) would be invisible to erasure by creator."""
    if len(name) > NAMESPACE_MAX_CHARS:
        return f"namespace {name[:60]!r}… is {len(name)} characters long; at most {NAMESPACE_MAX_CHARS} are allowed"
    if name.startswith(_CREATOR_PREFIX) and parse_namespace(name).kind == "other":
        return (
            f"namespace {name!r} starts with 'creator_' but is not creator_{{creator_id}}_twin_{{twin_id}} or "
            f"creator_{{creator_id}} with one reading ({ID_RULE}), so erasing that creator could miss it"
        )
    return None


class Registry:
    """The names built for known creators and twins, and what each one means.

    ``twin_namespace``/``creator_namespace`` build a name and remember its meaning; ``conflicts`` lists names built
    for two different meanings (the only plans refused for ambiguity); ``owned`` finds a creator's (or twin's)
    namespaces among existing names: the registered ones by lookup, unregistered ones by ``parse_namespace``, and it
    reports names that might be theirs but have several readings instead of guessing.
    """

    def __init__(self, twins: Mapping[str, str] | None = None, creators: Iterable[str] = ()) -> None:
        """``twins``: twin_id → creator_id; ``creators``: creators whose creator-wide namespace is registered too."""
        self._meanings: dict[str, set[ParsedNamespace]] = {}
        self._creators: set[str] = set()
        for twin, creator in (twins or {}).items():
            self.twin_namespace(creator, twin)
        for creator in creators:
            self.creator_namespace(creator)

    def _add(self, name: str, meaning: ParsedNamespace) -> str:
        self._meanings.setdefault(name, set()).add(meaning)
        self._creators.add(meaning.creator_id or "")
        return name

    def twin_namespace(self, creator_id: str, twin_id: str) -> str:
        return self._add(twin_namespace(creator_id, twin_id), ParsedNamespace("twin", creator_id, twin_id))

    def creator_namespace(self, creator_id: str) -> str:
        return self._add(creator_namespace(creator_id), ParsedNamespace("creator", creator_id))

    def __contains__(self, name: object) -> bool:
        return name in self._meanings

    def _candidates(self, name: str) -> list[ParsedNamespace]:
        """The readings of an unregistered name worth considering: every twin reading, and the creator-wide reading
        when the name has no twin reading or that creator is known (``creator_a.1_twin_t1`` is not taken for a
        creator ``a.1_twin_t1`` nobody ever registered)."""
        found = readings(name)
        has_twin = any(r.kind == "twin" for r in found)
        return [r for r in found if r.kind != "creator" or not has_twin or r.creator_id in self._creators]

    def meaning(self, name: str) -> ParsedNamespace:
        """What ``name`` means: its registered meaning (``other`` when it has two), else its only candidate reading
        (``other`` when it has several)."""
        meanings = self._meanings.get(name)
        if meanings is not None:
            return next(iter(meanings)) if len(meanings) == 1 else ParsedNamespace("other")
        found = self._candidates(name)
        return found[0] if len(found) == 1 else ParsedNamespace("other")

    def conflicts(self) -> list[str]:
        """One sentence per name built for two different meanings."""
        out = []
        for name, meanings in sorted(self._meanings.items()):
            if len(meanings) > 1:
                shown = " and ".join(
                    f"creator {m.creator_id!r}" + (f" / twin {m.twin_id!r}" if m.twin_id is not None else "")
                    for m in sorted(meanings, key=lambda m: (m.creator_id or "", m.twin_id or ""))
                )
                out.append(f"namespace {name!r} would be built for {shown}")
        return out

    def check(self) -> None:
        """PlanError listing every name two meanings would share."""
        problems = self.conflicts()
        if problems:
            raise PlanError(
                "creator routing would build namespace names that could be confused:\n  " + "\n  ".join(problems),
                hint="with '_' in ids, creator_a_twin_b_twin_c can be two things; rename one of the ids at its source",
            )

    def owned(
        self, creator_id: str, namespaces: Iterable[str], twin_id: str | None = None
    ) -> tuple[list[str], list[str]]:
        """``(mine, ambiguous)`` among ``namespaces`` (order kept): the names of ``creator_id`` (its twin namespaces
        and creator-wide namespace; with ``twin_id`` only that twin's namespace), and names with a reading of
        theirs among others, which are reported, never erased on a guess.

        Raises:
            PlanError: ``creator_id`` or ``twin_id`` is not a valid id.
        """
        validate_identifier("creator_id", creator_id)
        if twin_id is not None:
            validate_identifier("twin_id", twin_id)

        def theirs(m: ParsedNamespace) -> bool:
            if twin_id is None:
                return m.creator_id == creator_id
            return m.kind == "twin" and m.creator_id == creator_id and m.twin_id == twin_id

        mine, ambiguous = [], []
        for name in namespaces:
            meaning = self.meaning(name)
            if theirs(meaning):
                mine.append(name)
            elif meaning.kind == "other" and name.startswith(_CREATOR_PREFIX):
                possible = readings(name) if name in self else self._candidates(name)
                if any(theirs(r) for r in possible):
                    ambiguous.append(name)
        return mine, ambiguous

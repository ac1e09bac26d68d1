"""Which source namespaces a job takes: the spec's include/exclude globs against a store's inventory, and whether
source and target are one store. Pure: no I/O here."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import replace

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.records.namespaces import display_namespace, parse_namespace_arg, shown_namespaces
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.store_identity import spec_identity

_GLOB_CHARS = frozenset("*?[")


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def _matches(namespace: str, pattern: str) -> bool:
    # Case-sensitive (namespaces are); the default namespace also answers to its display name.
    if fnmatch.fnmatchcase(namespace, pattern):
        return True
    return namespace == "" and fnmatch.fnmatchcase(display_namespace(namespace), pattern)


def normalized(inventory: Inventory) -> Inventory:
    """The default namespace as "" even if a store reported it as ``__default__`` (Pinecone's stats do)."""
    if "__default__" not in inventory.namespaces:
        return inventory
    counts = {parse_namespace_arg(ns): n for ns, n in inventory.namespaces.items()}
    return replace(inventory, namespaces=counts)


def exact_pattern(namespace: str) -> str:
    """An include entry that selects ``namespace`` alone, whatever characters it has (``__default__`` for "")."""
    return "".join(f"[{c}]" if c in _GLOB_CHARS else c for c in display_namespace(namespace))


def matching(spec: JobSpec, namespaces: Iterable[str]) -> list[str]:
    """The namespaces of ``namespaces`` that the spec's include takes and its exclude leaves, sorted (the default
    namespace first); none is no error here."""
    include = [parse_namespace_arg(p) for p in spec.namespaces.include]
    exclude = [parse_namespace_arg(p) for p in spec.namespaces.exclude]
    return sorted(
        ns for ns in namespaces if any(_matches(ns, p) for p in include) and not any(_matches(ns, p) for p in exclude)
    )


def select_namespaces(spec: JobSpec, source: Inventory) -> list[str]:
    """The source namespaces the spec selects, sorted (the default namespace first).

    Raises:
        PlanError: an include entry without glob characters names a namespace the source does not have, or nothing
            is selected at all.
    """
    include = [parse_namespace_arg(p) for p in spec.namespaces.include]
    available = sorted(source.namespaces)
    unknown = [p for p in include if not _is_glob(p) and p not in source.namespaces]
    if unknown:
        aliases = [
            f"{p!r} is a namespace alias of {display_namespace(source.aliases[p])!r}"
            for p in unknown
            if p in source.aliases
        ]
        raise PlanError(
            f"namespaces.include names {len(unknown)} namespace(s) that {source.label} does not have: "
            f"{shown_namespaces(unknown)}; it has {len(available)}: {shown_namespaces(available) or '(none)'}"
            + (f" ({'; '.join(aliases)})" if aliases else ""),
            hint="fix the name (an alias is not a namespace: name the namespace it resolves to), or use a glob such as "
            "'abc*' to select whatever matches",
            source=source.label,
        )
    selected = matching(spec, available)
    if not selected:
        raise PlanError(
            f"no namespace of {source.label} is selected by include {spec.namespaces.include} "
            f"minus exclude {spec.namespaces.exclude}; it has {len(available)}: "
            f"{shown_namespaces(available) or '(none)'}",
            hint="widen namespaces.include or narrow namespaces.exclude",
            source=source.label,
        )
    return selected


def same_store(spec: JobSpec, source: Inventory, target: Inventory | None) -> bool:
    """Whether source and target are one store: by the identities their servers gave (an index name and its host,
    two URLs of one database), else by what the specs say (``orchestrator.spec.store_identity``), never by
    labels: a
    pgvector single table and a table-per-namespace layout share a label yet are different stores."""
    if source.identity is not None and target is not None and target.identity is not None:
        return source.identity == target.identity
    return spec_identity(spec.source) == spec_identity(spec.target)

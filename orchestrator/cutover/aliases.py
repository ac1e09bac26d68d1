"""A cut-over by namespace alias, pure: which aliases a job has and where each points at a rollout step.

For a migration inside one Pinecone index (spec ``cutover.aliases``, a name template): each namespace the job copies
to one namespace gets an alias named by the template (``{source}``, ``{target}``: the namespaces' names), which the
application reads through. It points at the old (source) namespace until a ``cutover set`` moves it to the verified
new (target) namespace. An alias is all or nothing per name, so a step of p % moves the first ⌈n·p/100⌉ of the job's
n aliases in the order of a hash of their names: the same aliases at every call, each step keeping those of the one
before, and at least one at the first step (a canary that moves nothing tests nothing). An alias whose copy has
passed verification only since the rollout began (a namespace ``sync --new-namespaces`` added, one verified late or
failed and passed again) comes after all the others, in the order they passed, so it never takes the place of one
a step moved already. A namespace routed per record (one old namespace, many new ones) has no alias: its readers
read the new namespaces by name.

The calls are ``workers.steps.alias_cutover``; the rollout itself is the job's ``cutover_set`` events, as for
``DualWriteIndex``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nsmigrate.orchestrator.records.namespaces import display_namespace


@dataclass(frozen=True)
class AliasRoute:
    """One alias of a job: its ``name``, the ``old`` namespace it reads before the cut-over, the ``new`` after."""

    name: str
    old: str
    new: str


def alias_routes(template: str, runs: Iterable[tuple[str, str | None]]) -> tuple[list[AliasRoute], list[str]]:
    """The job's aliases, by name, from its runs' (source namespace, target namespace or None when routed per
    record); and the source namespaces that get none (routed per record, or copied into a namespace of their own
    name: an alias cannot take a namespace's name).

    Raises:
        ValueError: two runs' aliases would have one name.
    """
    routes: dict[str, AliasRoute] = {}
    unaliased = []
    for source, target in runs:
        if target is None or target == source:
            unaliased.append(source)
            continue
        name = template.format(source=display_namespace(source), target=display_namespace(target))
        other = routes.get(name)
        if other is not None:
            raise ValueError(
                f"cutover.aliases {template!r} names the aliases of namespaces {display_namespace(other.old)!r} and "
                f"{display_namespace(source)!r} both {name!r}: use {{source}} in it"
            )
        routes[name] = AliasRoute(name, source, target)
    return sorted(routes.values(), key=lambda r: r.name), sorted(unaliased)


def moved_by(routes: list[AliasRoute], percent: int, added_late: Mapping[str, int] | None = None) -> set[str]:
    """The names of the aliases that point at the new namespace at ``percent``: the first ⌈n·percent/100⌉ in the
    order of their names' hash, those in ``added_late`` (an alias → when it became movable, in any increasing number:
    after the rollout began) after all the others, in that order."""
    if percent <= 0:
        return set()
    late = added_late or {}
    ordered = sorted(
        routes, key=lambda r: (r.name in late, late.get(r.name, 0), hashlib.sha256(r.name.encode()).digest(), r.name)
    )
    return {r.name for r in ordered[: math.ceil(len(ordered) * percent / 100)]}


def targets_at(routes: list[AliasRoute], percent: int, added_late: Mapping[str, int] | None = None) -> dict[str, str]:
    """Each alias's name → the namespace it points at when reads are ``percent`` % new (``moved_by``)."""
    moved = moved_by(routes, percent, added_late)
    return {r.name: r.new if r.name in moved else r.old for r in routes}


def stray_aliases(routes: list[AliasRoute], existing: dict[str, str]) -> list[str]:
    """What keeps nsmigrate from taking over existing aliases of the job's names: each one that points at neither
    of its namespaces (someone else's alias; repointing it would move their readers), as a sentence."""
    return [
        f"alias {r.name!r} points at {display_namespace(existing[r.name])!r}, neither "
        f"{display_namespace(r.old)!r} nor {display_namespace(r.new)!r}"
        for r in routes
        if r.name in existing and existing[r.name] not in (r.old, r.new)
    ]

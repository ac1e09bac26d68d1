"""Ids two sources could both write into one target namespace: which target namespaces are shared and which sources
must have their ids listed (that is I/O, done by ``orchestrator.launch``), then the judgement of the listed ids
(collisions, and ids a Pinecone target cannot hold: too long, not ASCII, with NUL). Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import RECORD_ID_MAX_CHARS
from nsmigrate.orchestrator.planning.plan import NamespacePlan, Plan
from nsmigrate.orchestrator.records.namespaces import PUBLIC, display_namespace, shown_namespaces
from nsmigrate.orchestrator.records.vectors import pinecone_id_problem
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec


def shared_targets(
    runs: Sequence[NamespacePlan], may_route_to: Callable[[str], bool] | None
) -> dict[str, tuple[str, ...]]:
    """Target namespace → sources (with vectors) that may write into it, where there are two or more."""
    writers: dict[str, list[str]] = {}
    active = [r for r in runs if r.vector_count > 0]
    fixed = [r for r in active if not r.routed]
    routed = [r for r in active if r.routed]
    for r in fixed:
        if r.target_namespace is not None:
            writers.setdefault(r.target_namespace, []).append(r.source_namespace)
    for r in routed:
        # A routed run may write into every twin namespace of the mapping and public, so it shares each fixed
        # target it can reach, and with other routed runs it always shares public.
        for target_ns in list(writers):
            if may_route_to is not None and may_route_to(target_ns):
                writers[target_ns].append(r.source_namespace)
        if len(routed) > 1:
            writers.setdefault(PUBLIC, [])
            if r.source_namespace not in writers[PUBLIC]:
                writers[PUBLIC].append(r.source_namespace)
    return {t: tuple(s) for t, s in writers.items() if len(s) > 1}


def namespaces_needing_id_check(plan: Plan) -> list[str]:
    """Source namespaces whose ids must be listed to rule out id collisions in a shared target namespace, in plan
    order. Empty when no two sources (with vectors) may write into the same target namespace."""
    involved = {s for sources in plan.shared_targets.values() for s in sources}
    return [r.source_namespace for r in plan.runs if r.source_namespace in involved]


IdListing = Sequence[str] | Mapping[str, str]
"""The ids of one source namespace: all of them, or (routed runs, when metadata was read) id → target namespace."""


def _ids_into(listing: IdListing, target_namespace: str) -> Sequence[str]:
    if isinstance(listing, Mapping):
        return [i for i, t in listing.items() if t == target_namespace]
    return listing


def _too_long(spec: JobSpec, ids: Mapping[str, IdListing]) -> list[tuple[str, str]]:
    """(source namespace, what is wrong) for each listed id a Pinecone target cannot hold."""
    if not isinstance(spec.target, PineconeStoreSpec):
        return []
    return [
        (ns, f"source namespace {display_namespace(ns)!r}: id {repr(i) if len(i) <= 40 else f'{i[:40]!r}…'} {problem}")
        for ns, listing in ids.items()
        for i in listing
        if (problem := pinecone_id_problem(i)) is not None
    ]


def _too_long_message(problems: Sequence[str]) -> str:
    return (
        f"{len(problems)} ids cannot be Pinecone record ids (at most {RECORD_ID_MAX_CHARS} ASCII characters, no "
        f"NUL): {'; '.join(problems[:10])}{'; …' if len(problems) > 10 else ''}"
    )


_TOO_LONG_HINT = "shorten or rename those ids in the source (or leave their namespaces out), then plan again"


def check_id_lengths(spec: JobSpec, ids: Mapping[str, IdListing]) -> None:
    """PlanError naming the listed ids (source namespace → ids, as for ``check_id_collisions``) a Pinecone target
    cannot hold: longer than ``RECORD_ID_MAX_CHARS``, not ASCII or with NUL. Only where the plan reads ids; the copy
    checks the rest."""
    too_long = [text for _, text in _too_long(spec, ids)]
    if too_long:
        raise PlanError(_too_long_message(too_long), hint=_TOO_LONG_HINT, target=spec.target.label)


Collision = tuple[str, str, str, list[str]]
"""A target namespace, two sources that write into it, and the ids both write there."""


def _collisions(plan: Plan, ids: Mapping[str, IdListing]) -> list[Collision]:
    """Every pair of sources sharing an id in a shared target namespace, where the ids of both were listed."""
    collisions: list[Collision] = []
    for target_ns, sources in plan.shared_targets.items():
        landing = {s: _ids_into(ids[s], target_ns) for s in sources if s in ids}
        for i, a in enumerate(sources):
            for b in sources[i + 1 :]:
                if a not in landing or b not in landing:
                    continue
                other = set(landing[b])
                common = [x for x in landing[a] if x in other]
                if common:
                    collisions.append((target_ns, a, b, common))
    return collisions


def _collision_message(collision: Collision) -> str:
    target_ns, a, b, common = collision
    return (
        f"source namespaces {display_namespace(a)!r} and {display_namespace(b)!r} both write into target namespace "
        f"{display_namespace(target_ns)!r} and share {len(common)} id(s), e.g. {', '.join(sorted(common)[:5])}: one "
        "would overwrite the other"
    )


_COLLISION_HINT = (
    "exclude one of them, route them to different targets, or set allow_id_overwrite: true if the last write may win"
)


def check_id_collisions(plan: Plan, ids: Mapping[str, IdListing], allow_overwrite: bool) -> None:
    """PlanError naming the target namespace, both sources and up to 5 example ids if two sources share an id there.

    Parameters:
        plan: the plan from ``make_plan``.
        ids: source namespace → its ids, for every namespace of ``namespaces_needing_id_check(plan)``. For a routed
            source either all its ids (then every id *may* land in every target it can reach, and a shared id is
            refused) or, when its records' metadata was read, id → target namespace (see
            ``orchestrator.routing.route.target_of``), which refuses only ids that really land in the same namespace.
        allow_overwrite: the spec's ``allow_id_overwrite``; when True nothing is refused (last write wins).

    Raises:
        ValueError: ``ids`` lacks a namespace that must be checked (a caller bug, not a data problem).
        PlanError: the first collision found, with the number of other colliding (target, source pair)s.
    """
    if allow_overwrite:
        return
    missing = [s for s in namespaces_needing_id_check(plan) if s not in ids]
    if missing:
        raise ValueError(f"ids of {shown_namespaces(missing)} are needed to check collisions")
    collisions = _collisions(plan, ids)
    if not collisions:
        return
    target_ns, a, b, _ = collisions[0]
    more = (
        f" ({len(collisions) - 1} more target namespace(s)/source pair(s) collide too)" if len(collisions) > 1 else ""
    )
    raise PlanError(
        _collision_message(collisions[0]) + more,
        hint=_COLLISION_HINT,
        target_namespace=display_namespace(target_ns),
        source_namespaces=f"{display_namespace(a)},{display_namespace(b)}",
    )


def sharing_with(plan: Plan, namespace: str) -> set[str]:
    """``namespace`` and every source namespace that may write into a target namespace it writes into: whose ids
    its own collision check needs."""
    return {namespace} | {s for sources in plan.shared_targets.values() if namespace in sources for s in sources}


def namespace_refusals(
    spec: JobSpec, plan: Plan, ids: Mapping[str, IdListing], namespaces: Sequence[str]
) -> dict[str, str]:
    """Each of ``namespaces`` that fails its own checks → why, with what to do: ids a Pinecone target cannot hold,
    or ids it shares with another source in a shared target namespace (then both are refused: neither writes
    there). ``ids`` holds the listed ids of every namespace ``sharing_with`` each of them."""
    refused: dict[str, list[str]] = {}
    for ns, text in _too_long(spec, {ns: ids[ns] for ns in namespaces if ns in ids}):
        refused.setdefault(ns, []).append(text)
    long_ids = {ns: _too_long_message(texts) + f" — {_TOO_LONG_HINT}" for ns, texts in refused.items()}
    wanted = set(namespaces)
    collided: dict[str, str] = {}
    if not spec.allow_id_overwrite:
        for collision in _collisions(plan, ids):
            for ns in {collision[1], collision[2]} & wanted:
                collided.setdefault(ns, _collision_message(collision) + f" — {_COLLISION_HINT}")
    return {ns: long_ids.get(ns) or collided[ns] for ns in namespaces if ns in long_ids or ns in collided}

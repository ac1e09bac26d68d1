"""Where each selected source namespace goes, decided once per plan: the same name, the spec's explicit map, or its
creator's twin namespace (creator routing; the default namespace is then routed record by record, see
``orchestrator.routing.route``). Also which namespaces such a routed run may write into, and the mapping ids'
validity.
Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.plan import ROUTED
from nsmigrate.orchestrator.records.namespaces import (
    PUBLIC,
    SHOWN,
    identifier_problem,
    mapping_problems,
    parse_namespace,
    parse_namespace_arg,
    shown_namespaces,
    twin_namespace,
)
from nsmigrate.orchestrator.spec.jobspec import JobSpec


def route_namespaces(
    spec: JobSpec, selected: Sequence[str], twins: Mapping[str, str]
) -> list[tuple[str, str | None, str | None, str | None]]:
    """(source, target, creator_id, twin_id) for every selected namespace; PlanError listing every problem."""
    routing = spec.routing
    if routing.mode == "same":
        return [(ns, ns, None, None) for ns in selected]
    if routing.mode == "explicit":
        mapping = {parse_namespace_arg(k): parse_namespace_arg(v) for k, v in routing.map.items()}
        unmapped = [ns for ns in selected if ns not in mapping]
        if unmapped:
            raise PlanError(
                f"routing.map has no target for {len(unmapped)} selected namespace(s): {shown_namespaces(unmapped)}",
                hint="add them to routing.map (the default namespace as __default__) or to namespaces.exclude",
            )
        return [(ns, mapping[ns], None, None) for ns in selected]

    routes: list[tuple[str, str | None, str | None, str | None]] = []
    problems: list[tuple[str, str]] = []
    unknown: list[str] = []
    for ns in selected:
        if ns == "":
            routes.append((ns, ROUTED, None, None))
            continue
        if parse_namespace(ns).kind != "other":
            # An output of this convention (a second plan of the same index), not a twin id: never re-route it.
            problems.append(
                (
                    ns,
                    f"source namespace {ns!r} already follows the convention: add it to namespaces.exclude "
                    "(e.g. 'creator_*', 'public')",
                )
            )
            continue
        creator = routing.override_creator or twins.get(ns)
        if creator is None:
            if routing.unknown_twin == "public":
                routes.append((ns, PUBLIC, None, None))
            else:
                unknown.append(ns)
            continue
        bad = [p for p in (identifier_problem("creator_id", creator), identifier_problem("twin_id", ns)) if p]
        if bad:
            problems.append((ns, f"source namespace {ns!r}: {'; '.join(bad)}"))
            continue
        routes.append((ns, twin_namespace(creator, ns), creator, ns))
    if unknown:
        raise PlanError(
            f"{len(unknown)} source namespace(s) are twins with no creator in the mapping: {shown_namespaces(unknown)}",
            hint="add them to the twin → creator mapping, exclude them, or set routing.unknown_twin: public",
            source_namespace=unknown[0],
        )
    if problems:
        raise PlanError(
            "creator routing would make invalid or ambiguous namespace names:\n  "
            + "\n  ".join(text for _, text in problems),
            hint="ids are letters, digits, '.', '-' and '_', starting with a letter or digit; fix them where the "
            "mapping comes from",
            source_namespace=problems[0][0],
        )
    return routes


def routed_targets(
    spec: JobSpec, twins: Mapping[str, str], owners: Mapping[str, tuple[str, str | None]] | None = None
) -> Callable[[str], bool]:
    """Whether a routed run may write into a namespace: the twin namespaces its records can be sent to (the mapping's
    and the owners table's pairs), any creator-wide namespace (routed by creator id), the review namespace, or
    public."""
    override = spec.routing.override_creator
    fixed = {PUBLIC, spec.routing.review_namespace}
    if override is not None:
        # Any twin id found in the metadata goes under the override creator: every twin namespace of that creator.
        def may_write(ns: str) -> bool:
            parsed = parse_namespace(ns)
            return ns in fixed or ns.startswith(f"creator_{override}_twin_") or parsed.kind == "creator"

        return may_write
    mapped = {twin_namespace(c, t) for t, c in twins.items()}
    mapped |= {twin_namespace(c, t) for c, t in (owners or {}).values() if t is not None}
    return lambda ns: ns in fixed or ns in mapped or parse_namespace(ns).kind == "creator"


def check_mapping_ids(twins: Mapping[str, str]) -> None:
    problems = mapping_problems(twins)
    if problems:
        raise PlanError(
            f"the twin → creator mapping has {len(problems)} id(s) that cannot be part of a namespace name:\n  "
            + "\n  ".join(problems[:SHOWN])
            + ("\n  …" if len(problems) > SHOWN else ""),
            hint="ids are letters, digits, '.', '-' and '_', starting with a letter or digit; fix them where the "
            "mapping comes from",
        )

"""The checks on a copy's target made before anything is written: matching dimension and metric, ids that can be
listed, valid target names, no non-empty target namespace (unless allowed), no namespace written onto itself or onto
another source of the same store, and the index's namespace limit. Each raises a ``PlanError``. Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import SERVERLESS_MAX_NAMESPACES_PER_INDEX
from nsmigrate.orchestrator.planning.plan import Inventory, NamespacePlan
from nsmigrate.orchestrator.records.namespaces import SHOWN, display_namespace, namespace_problem, shown_namespaces
from nsmigrate.orchestrator.routing.text import check_text_target
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec


def check_compatible(spec: JobSpec, source: Inventory, target: Inventory) -> None:
    """PlanError when the target cannot take the source's vectors as they are: another dimension or another metric
    (a job that embeds text is checked against its text records instead)."""
    if spec.text_from is not None:
        check_text_target(spec, target.label, target.dimension)
    elif source.dimension > 0 and target.dimension > 0 and source.dimension != target.dimension:
        raise PlanError(
            f"dimension mismatch: source {source.label} has dimension {source.dimension}, target {target.label} has "
            f"{target.dimension}",
            hint="vectors cannot change dimension in a copy; choose a target index created with the source dimension",
            source=source.label,
            target=target.label,
        )
    if spec.text_from is None and source.metric and target.metric and source.metric != target.metric:
        raise PlanError(
            f"metric mismatch: source {source.label} uses {source.metric}, target {target.label} uses {target.metric}",
            hint="the copied vectors would rank differently; choose a target index created with the same metric as "
            "the source",
            source=source.label,
            target=target.label,
        )


def check_listable(inventory: Inventory, role: str) -> None:
    """PlanError for a store whose ids are to be listed when it cannot list (a Pinecone pod index)."""
    if inventory.enumeration == "list" and not inventory.can_list:
        what = "its ids are listed to copy and verify them" if role == "source" else "verification lists its ids"
        raise PlanError(
            f"the {role} {inventory.label} is a pod-based index: Pinecone serves `list` only for serverless indexes, "
            f"and {what}",
            hint=f"set {role}.enumerate.mode to `catalogue` (the ids kept in a CSV file, a Postgres or a Supabase "
            f"table: {role}.enumerate.catalogue) or `sweep` (queries until every namespace's count in "
            "describe_index_stats is covered); see migrations/README.md, `enumerate`",
            **{role: inventory.label},
        )


def check_target_names(runs: Sequence[NamespacePlan]) -> None:
    # Names built from the mapping (runs with a creator) are checked by the registry, not by parsing them back.
    problems = [
        f"source namespace {display_namespace(r.source_namespace)!r} → {p}"
        for r in runs
        if r.target_namespace is not None and r.creator_id is None and (p := namespace_problem(r.target_namespace))
    ]
    if problems:
        raise PlanError(
            "invalid target namespace name(s):\n  " + "\n  ".join(problems),
            hint="pick target names that follow creator_{creator}_twin_{twin}, or do not start with creator_",
        )


def check_targets(
    spec: JobSpec,
    runs: Sequence[NamespacePlan],
    target: Inventory,
    one_store: bool,
    selected: Sequence[str],
    may_route_to: Callable[[str], bool] | None,
) -> None:
    """Refuse a non-empty target namespace (unless allow_id_overwrite) and, within one store, writing into any
    selected source namespace (that source's cleanup would delete what was copied into it)."""
    if one_store:
        sources = set(selected)
        for r in runs:
            if r.target_namespace == r.source_namespace:
                raise PlanError(
                    f"namespace {display_namespace(r.source_namespace)!r} would be copied onto itself: source and "
                    f"target are the same store ({target.label})",
                    hint="route it elsewhere (routing.mode explicit or creator) or pick another target index",
                    source_namespace=display_namespace(r.source_namespace),
                )
            if r.target_namespace is not None:
                hit = [r.target_namespace] if r.target_namespace in sources else []
            elif may_route_to is not None:
                hit = sorted(ns for ns in sources if ns != r.source_namespace and may_route_to(ns))
            else:
                hit = []
            if hit:
                raise PlanError(
                    f"source namespace {display_namespace(r.source_namespace)!r} would write into "
                    f"{shown_namespaces(hit)}, which is itself a selected source namespace of this job in "
                    f"{target.label}: "
                    "its cleanup would delete the copied vectors",
                    hint="exclude that namespace from the job, or route to a namespace that is not a source",
                    source_namespace=display_namespace(r.source_namespace),
                )
    if spec.allow_id_overwrite:
        return
    for r in runs:
        if r.target_namespace is not None:
            existing = [r.target_namespace] if target.namespaces.get(r.target_namespace, 0) > 0 else []
        elif may_route_to is not None:
            existing = sorted(ns for ns, n in target.namespaces.items() if n > 0 and may_route_to(ns))
        else:
            existing = []
        if existing:
            counts = ", ".join(f"{display_namespace(ns)} ({target.namespaces[ns]} vectors)" for ns in existing[:SHOWN])
            raise PlanError(
                f"target namespace(s) already hold vectors in {target.label}: {counts}; source namespace "
                f"{display_namespace(r.source_namespace)!r} would write into them",
                hint="empty or delete the target namespace first, choose another target, or set "
                "allow_id_overwrite: true to write into it anyway (ids already there are replaced)",
                target_namespace=display_namespace(existing[0]),
                source_namespace=display_namespace(r.source_namespace),
            )


def check_alias_names(
    runs: Sequence[NamespacePlan], target: Inventory, may_route_to: Callable[[str], bool] | None
) -> None:
    """PlanError when a run would write into a name that is a namespace alias of the target: Pinecone refuses writes
    to an alias, and no namespace can be created under its name (aliases and namespaces share one name space)."""
    for r in runs:
        if r.target_namespace is not None:
            hit = [r.target_namespace] if r.target_namespace in target.aliases else []
        elif may_route_to is not None:
            hit = sorted(alias for alias in target.aliases if may_route_to(alias))
        else:
            hit = []
        if hit:
            alias = hit[0]
            raise PlanError(
                f"target namespace {alias!r} is a namespace alias of {target.label} (it resolves to "
                f"{display_namespace(target.aliases[alias])!r}), not a free namespace: Pinecone refuses writes to an "
                f"alias and creates no namespace under its name; source namespace "
                f"{display_namespace(r.source_namespace)!r} would write into it",
                hint=f"copy into a namespace of another name; to serve the copy under {alias!r}, repoint the alias to "
                "that namespace once it is verified",
                target_namespace=alias,
                source_namespace=display_namespace(r.source_namespace),
            )


def check_namespace_limit(spec: JobSpec, runs: Sequence[NamespacePlan], target: Inventory) -> None:
    """PlanError when a Pinecone target would hold more namespaces than its index may: the ones there now plus the
    named targets of this copy. A routed run's targets are known per vector only and are not counted."""
    if not isinstance(spec.target, PineconeStoreSpec):
        return
    limit = spec.target.max_namespaces or SERVERLESS_MAX_NAMESPACES_PER_INDEX
    existing = set(target.namespaces)
    new = {r.target_namespace for r in runs if r.target_namespace is not None and r.vector_count > 0} - existing
    if len(existing) + len(new) > limit:
        raise PlanError(
            f"the target {target.label} would hold {len(existing) + len(new)} namespaces after this copy "
            f"({len(existing)} now, {len(new)} new), over its limit of {limit}",
            hint="Pinecone refuses writes to namespaces past the index's limit (Starter: 100, Builder: 1,000, "
            "Standard/Enterprise: 100,000); set target.max_namespaces to your plan's limit, copy fewer namespaces, "
            "or ask Pinecone to raise it",
            target=target.label,
        )

"""Planning: a validated spec + what the stores hold → the namespace runs of a job. Pure: no I/O here.

``make_plan`` decides, before anything is written, which source namespaces take part (``selection``), where each one
goes (``destinations``), how many copy batches it makes and roughly what it costs (``costs``); and it refuses
plans that would lose or mix up data (``target_checks``: a dimension mismatch, a non-empty target, a namespace copied
onto itself, …). Collisions of ids between two sources that share a target namespace can only be ruled out by listing
ids, which is I/O: the plan names those sources and ``id_checks`` judges the listed ids. The plan's data types live in
``plan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsmigrate.orchestrator.listing import table_batches
from nsmigrate.orchestrator.planning.costs import enumerated, estimate
from nsmigrate.orchestrator.planning.destinations import check_mapping_ids, route_namespaces, routed_targets
from nsmigrate.orchestrator.planning.id_checks import shared_targets
from nsmigrate.orchestrator.planning.plan import ROUTED, Inventory, NamespacePlan, Plan
from nsmigrate.orchestrator.planning.selection import normalized, same_store, select_namespaces
from nsmigrate.orchestrator.planning.target_checks import (
    check_alias_names,
    check_compatible,
    check_listable,
    check_namespace_limit,
    check_target_names,
    check_targets,
)
from nsmigrate.orchestrator.records.namespaces import (
    PUBLIC,
    Registry,
    creator_namespace,
    display_namespace,
    shown_namespaces,
)
from nsmigrate.orchestrator.routing.route import routing_table
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec


def make_plan(
    spec: JobSpec,
    source: Inventory,
    target: Inventory | None,
    twins: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
    owners: Mapping[str, tuple[str, str | None]] | None = None,
) -> Plan:
    """Namespace runs for ``spec``.

    Parameters:
        spec: the validated job spec.
        source: the source store's namespaces, counts and dimension.
        target: the target store's, or None when it is not known (then, unless source and target are the same
            store, the non-empty-target and dimension checks are skipped).
        twins: twin_id → creator_id (creator routing; see ``orchestrator.tenancy.creator_mapping.load_twins``).
        sources: the sources table's key → twin_id (``routing.sources``;
        ``orchestrator.tenancy.creator_mapping.load_sources``).
        owners: the owners table's vector id → (creator_id, twin_id or None) (``routing.owners``;
        ``orchestrator.tenancy.creator_mapping.load_owners``).

    Returns:
        The plan; ``plan.shared_targets`` / ``namespaces_needing_id_check`` say which sources must have their ids
        listed and passed to ``check_id_collisions`` before copying.

    Raises:
        PlanError: unknown namespace, nothing selected, unmapped namespace (explicit), twin without creator, invalid or
            ambiguous target name, dimension mismatch, non-empty target namespace without allow_id_overwrite, or a
            namespace written onto itself or onto another source of the same store.
    """
    source = normalized(source)
    target = normalized(target) if target is not None else None
    one_store = same_store(spec, source, target)
    if target is None and one_store:
        target = source
    if target is not None:
        check_compatible(spec, source, target)

    check_listable(source, "source")
    if target is not None and not one_store:
        check_listable(target, "target")

    selected = select_namespaces(spec, source)
    creator_mode = spec.routing.mode == "creator"
    routes = route_namespaces(spec, selected, twins)
    routed_present = any(t is ROUTED for _, t, _, _ in routes)
    if routed_present and spec.routing.override_creator is None:
        # Every twin of the mapping is a potential target of the routed run, so every id must be valid.
        check_mapping_ids(twins)
    runs = [
        NamespacePlan(
            source_namespace=ns,
            target_namespace=target_ns,
            vector_count=source.namespaces[ns],
            batches=table_batches.batches(spec, source.namespaces[ns]),
            creator_id=creator,
            twin_id=twin,
        )
        for ns, target_ns, creator, twin in routes
    ]
    runs = [enumerated(spec, r, source) for r in runs]
    check_target_names(runs)
    if creator_mode:
        # Ids may contain '_': refuse only names that two different (creator, twin) pairs would share.
        pairs = dict(twins) if routed_present else {r.twin_id: r.creator_id for r in runs if r.creator_id and r.twin_id}
        if spec.routing.override_creator is not None:
            pairs = {t: spec.routing.override_creator for t in pairs}
        Registry(pairs, set(pairs.values())).check()
    may_route_to = routed_targets(spec, twins, owners) if routed_present else None
    if target is not None:
        check_targets(spec, runs, target, one_store, selected, may_route_to)
        check_alias_names(runs, target, may_route_to)
        check_namespace_limit(spec, runs, target)
    shared = shared_targets(runs, may_route_to)

    used_twins: dict[str, Any]
    if routed_present:
        used_twins = routing_table(twins, sources, owners)
    else:
        used_twins = {r.twin_id: r.creator_id for r in runs if r.twin_id is not None and r.creator_id is not None}

    warnings: list[str] = []
    empty = [r.source_namespace for r in runs if r.vector_count == 0]
    if empty:
        warnings.append(f"{len(empty)} selected namespace(s) are empty and get no batches: {shown_namespaces(empty)}")
    if shared:
        what = (
            "their ids are checked for collisions before copying"
            if not spec.allow_id_overwrite
            else "allow_id_overwrite is set: for an id in two sources the last write wins"
        )
        examples = "; ".join(
            f"{display_namespace(t)} ← {shown_namespaces(sources)}" for t, sources in list(shared.items())[:3]
        )
        warnings.append(
            f"{len(shared)} target namespace(s) may receive vectors from more than one source ({examples}"
            f"{'; …' if len(shared) > 3 else ''}); {what}"
        )
    if routed_present:
        warnings.append(
            "the default namespace is routed vector by vector (metadata "
            f"{spec.routing.twin_id_field!r}, else {spec.routing.creator_id_field!r}"
            + (f", else {spec.routing.sources.key_field!r} in the sources table" if spec.routing.sources else "")
            + (
                f", else its vector id in the owners table {spec.routing.owners.table!r} ({len(owners or {})} rows)"
                if spec.routing.owners
                else ""
            )
            + f"; resolved nowhere → {_unresolved_goes(spec)}); its upsert estimate is a lower bound"
        )
        if not twins and spec.routing.override_creator is None:
            warnings.append("the twin → creator mapping is empty: every routed vector with a twin id will be refused")
    unknown_public = [r.source_namespace for r in runs if creator_mode and r.target_namespace == PUBLIC]
    if unknown_public:
        warnings.append(
            f"{len(unknown_public)} namespace(s) are twins with no creator and go to {PUBLIC!r}: "
            f"{shown_namespaces(unknown_public)}"
        )
    if isinstance(spec.source, PineconeStoreSpec) and source.enumeration == "sweep":
        top_k, most = spec.source.enumerate.top_k, spec.source.enumerate.max_queries
        short = [r.source_namespace for r in runs if r.vector_count > top_k * most]
        if short:
            warnings.append(
                f"{len(short)} namespace(s) hold more than a sweep of {most} queries of top_k {top_k} can return: "
                f"{shown_namespaces(short)}; they cannot be covered and will fail verification (raise "
                "source.enumerate.max_queries or use a catalogue)"
            )
        several = [r.source_namespace for r in runs if top_k < r.vector_count <= top_k * most]
        if several:
            warnings.append(
                f"{len(several)} namespace(s) hold more than top_k {top_k} ids and need several sweep queries: "
                f"{shown_namespaces(several)}; random query vectors overlap, so it may take more than the least shown, "
                "and verification fails a namespace the sweep did not cover"
            )
    served = sorted({t for t in source.aliases.values()} & {r.source_namespace for r in runs})
    if served and spec.cleanup.mode != "never":
        warnings.append(
            f"{len(served)} source namespace(s) are served by namespace aliases of {source.label}: "
            f"{shown_namespaces(served)}; cleanup refuses to delete them until those aliases are repointed or deleted"
        )
    if not source.can_list:
        warnings.append(
            f"{source.label} is a pod-based index, billed by the hour: the read units shown are what the same reads "
            "cost on serverless"
        )
    if target is None:
        warnings.append("the target inventory is not known: dimension and non-empty target checks were skipped")
    elif target.dimension <= 0 and spec.text_records is None:  # an integrated index has its model's dimension
        made = spec.reembed.dimension if spec.reembed is not None else source.dimension
        warnings.append(f"the dimension of {target.label} is not known yet; it will be created with {made}")

    return Plan(
        runs=runs,
        estimate=estimate(spec, runs, source.dimension),
        twins=used_twins,
        warnings=warnings,
        shared_targets=shared,
    )


def _unresolved_goes(spec: JobSpec) -> str:
    """Where ``routing.unresolved`` sends a default-namespace vector that resolves to no twin and no creator."""
    routing = spec.routing
    if routing.unresolved == "drop-with-report":
        return "not copied, listed in the report, kept in the source (routing.unresolved: drop-with-report)"
    if routing.unresolved == "creator" and routing.unresolved_creator is not None:
        return (
            f"{creator_namespace(routing.unresolved_creator)!r} (routing.unresolved: creator, unresolved_creator: "
            f"{routing.unresolved_creator})"
        )
    if routing.unresolved == "creator" and routing.override_creator is not None:
        return f"{creator_namespace(routing.override_creator)!r} (routing.unresolved: creator)"
    return f"{routing.review_namespace!r} (routing.unresolved: review)"

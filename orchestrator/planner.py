"""Planning: a validated spec + what the stores hold → the namespace runs of a job. Pure: no I/O here.

``make_plan`` decides, before anything is written, which source namespaces take part, where each one goes, how many
copy batches it makes and roughly what it costs; and it refuses plans that would lose or mix up data (an unknown
namespace, an ambiguous target name, a dimension mismatch, a non-empty target, a namespace copied onto itself).
Collisions of ids between two sources that share a target namespace can only be ruled out by listing ids, which is
I/O: the plan names those sources (``namespaces_needing_id_check``) and ``check_id_collisions`` judges the listed ids.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.enumeration import sweep_cost
from orchestrator.errors import PlanError
from orchestrator.limits import (
    LIST_MAX_PAGE_IDS,
    RECORD_ID_MAX_CHARS,
    SERVERLESS_MAX_NAMESPACES_PER_INDEX,
    UPSERT_MAX_BYTES,
    UPSERT_MAX_VECTORS,
    UPSERT_RECORDS_MAX,
)
from orchestrator.naming import (
    PUBLIC,
    Registry,
    identifier_problem,
    namespace_problem,
    parse_namespace,
    twin_namespace,
)
from orchestrator.records import display_namespace, parse_namespace_arg
from orchestrator.routing import routing_table
from orchestrator.spec import JobSpec, PineconeStoreSpec
from orchestrator.textrecords import check_text_target

ROUTED = None  # target_namespace of a run whose vectors are routed one by one (the default namespace, creator mode)

# Pinecone pricing used by the estimate (serverless, API 2026-07); its request limits are in orchestrator.limits.
BYTES_PER_VALUE = 20  # a float as JSON text, with its separator: what an upsert request really carries
BYTES_PER_VECTOR_OVERHEAD = 200  # id, metadata and JSON framing per vector
RECORDS_PER_READ_UNIT = 10  # fetch: 1 RU per 10 records, at least 1 per request
BYTES_PER_WRITE_UNIT = 1000  # upsert: 1 WU per KB of request, at least 5 per request
MIN_WRITE_UNITS_PER_REQUEST = 5

_GLOB_CHARS = frozenset("*?[")
_SHOWN = 10  # how many names an error lists before "…"


@dataclass(frozen=True)
class Inventory:
    """What a store holds: namespace → vector count ("" is the default namespace), its dimension, its label.
    A dimension ≤ 0 means "not known yet" (a pgvector target whose tables do not exist)."""

    label: str
    dimension: int
    namespaces: Mapping[str, int]
    #: cosine, dotproduct or euclidean; None: not known (the metric check is skipped).
    metric: str | None = None
    #: Whether the store serves ``list`` (a Pinecone pod does not), and how the spec says its ids are found.
    can_list: bool = True
    enumeration: str = "list"


@dataclass(frozen=True)
class NamespacePlan:
    """One source namespace of a job: where it goes, how many vectors and copy batches it has. ``creator_id`` and
    ``twin_id`` are set for a twin namespace made by creator routing."""

    source_namespace: str
    target_namespace: str | None  # None = routed per vector (see orchestrator.routing)
    vector_count: int
    batches: int
    creator_id: str | None = None
    twin_id: str | None = None
    #: How its ids are found (list, catalogue, sweep) and, for a sweep, its queries (at least, at most) and their
    #: read units at least (serverless pricing; a pod is billed by the hour instead).
    enumeration: str = "list"
    sweep_queries: tuple[int, int] = (0, 0)
    sweep_read_units: float = 0.0

    @property
    def routed(self) -> bool:
        return self.target_namespace is ROUTED


@dataclass(frozen=True)
class Estimate:
    """Rough cost of a plan: Pinecone requests, read/write units and the wall time the rate budget allows."""

    list_requests: int
    fetch_requests: int
    upsert_requests: int
    read_units: int
    write_units: int
    duration_s: float
    bytes: int = 0  # total upsert payload, bytes
    #: Sweep queries (at least, at most) when the source's ids are found by a sweep; included in read_units and
    #: duration_s at their lower bound.
    sweep_queries: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Plan:
    """The namespace runs of a job and what they cost.

    ``shared_targets`` maps a target namespace to the (non-empty) sources that may write into it, for targets
    with two or more such sources; their ids must not collide (see ``check_id_collisions``).
    """

    runs: list[NamespacePlan]
    estimate: Estimate
    #: twin_id → creator_id actually used; for a routed run its whole routing table (``routing.routing_table``: the
    #: sources lookup too)
    twins: Mapping[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    shared_targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Routed source namespace → how many of its vectors take each route (``routing.ROUTES``), when read at plan time
    routes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def total_vectors(self) -> int:
        return sum(r.vector_count for r in self.runs)

    @property
    def total_batches(self) -> int:
        return sum(r.batches for r in self.runs)


def _shown(names: Iterable[str]) -> str:
    items = [display_namespace(n) for n in names]
    more = f", … ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def _matches(namespace: str, pattern: str) -> bool:
    # Case-sensitive (namespaces are); the default namespace also answers to its display name.
    if fnmatch.fnmatchcase(namespace, pattern):
        return True
    return namespace == "" and fnmatch.fnmatchcase(display_namespace(namespace), pattern)


def _normalized(inventory: Inventory) -> Inventory:
    """The default namespace as "" even if a store reported it as ``__default__`` (Pinecone's stats do)."""
    if "__default__" not in inventory.namespaces:
        return inventory
    counts = {parse_namespace_arg(ns): n for ns, n in inventory.namespaces.items()}
    return replace(inventory, namespaces=counts)


def select_namespaces(spec: JobSpec, source: Inventory) -> list[str]:
    """The source namespaces the spec selects, sorted (the default namespace first).

    Raises:
        PlanError: an include entry without glob characters names a namespace the source does not have, or nothing
            is selected at all.
    """
    include = [parse_namespace_arg(p) for p in spec.namespaces.include]
    exclude = [parse_namespace_arg(p) for p in spec.namespaces.exclude]
    available = sorted(source.namespaces)
    unknown = [p for p in include if not _is_glob(p) and p not in source.namespaces]
    if unknown:
        raise PlanError(
            f"namespaces.include names {len(unknown)} namespace(s) that {source.label} does not have: "
            f"{_shown(unknown)}; it has {len(available)}: {_shown(available) or '(none)'}",
            hint="fix the name, or use a glob such as 'abc*' to select whatever matches",
            source=source.label,
        )
    selected = [
        ns for ns in available if any(_matches(ns, p) for p in include) and not any(_matches(ns, p) for p in exclude)
    ]
    if not selected:
        raise PlanError(
            f"no namespace of {source.label} is selected by include {spec.namespaces.include} "
            f"minus exclude {spec.namespaces.exclude}; it has {len(available)}: {_shown(available) or '(none)'}",
            hint="widen namespaces.include or narrow namespaces.exclude",
            source=source.label,
        )
    return selected


def same_store(spec: JobSpec) -> bool:
    """Whether source and target are one store (same address, same layout). Decided on the spec, not on inventory
    labels: a pgvector single table and a table-per-namespace layout share a label yet are different stores."""
    return spec.source == spec.target


def _route(
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
                f"routing.map has no target for {len(unmapped)} selected namespace(s): {_shown(unmapped)}",
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
            f"{len(unknown)} source namespace(s) are twins with no creator in the mapping: {_shown(unknown)}",
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


def _routed_targets(spec: JobSpec, twins: Mapping[str, str]) -> Callable[[str], bool]:
    """Whether a routed run may write into a namespace: the twin namespaces its records can be sent to, any
    creator-wide namespace (routed by creator id), the review namespace, or public."""
    override = spec.routing.override_creator
    fixed = {PUBLIC, spec.routing.review_namespace}
    if override is not None:
        # Any twin id found in the metadata goes under the override creator: every twin namespace of that creator.
        def may_write(ns: str) -> bool:
            parsed = parse_namespace(ns)
            return ns in fixed or ns.startswith(f"creator_{override}_twin_") or parsed.kind == "creator"

        return may_write
    mapped = {twin_namespace(c, t) for t, c in twins.items()}
    return lambda ns: ns in fixed or ns in mapped or parse_namespace(ns).kind == "creator"


def _check_mapping_ids(twins: Mapping[str, str]) -> None:
    problems = [
        p
        for t, c in twins.items()
        for p in (identifier_problem("twin_id", t), identifier_problem("creator_id", c))
        if p
    ]
    if problems:
        raise PlanError(
            f"the twin → creator mapping has {len(problems)} id(s) that cannot be part of a namespace name:\n  "
            + "\n  ".join(problems[:_SHOWN])
            + ("\n  …" if len(problems) > _SHOWN else ""),
            hint="ids are letters, digits, '.', '-' and '_', starting with a letter or digit; fix them where the "
            "mapping comes from",
        )


def _check_target_names(runs: Sequence[NamespacePlan]) -> None:
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


def _check_targets(
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
                    f"{_shown(hit)}, which is itself a selected source namespace of this job in {target.label}: "
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
            counts = ", ".join(f"{display_namespace(ns)} ({target.namespaces[ns]} vectors)" for ns in existing[:_SHOWN])
            raise PlanError(
                f"target namespace(s) already hold vectors in {target.label}: {counts}; source namespace "
                f"{display_namespace(r.source_namespace)!r} would write into them",
                hint="empty or delete the target namespace first, choose another target, or set "
                "allow_id_overwrite: true to write into it anyway (ids already there are replaced)",
                target_namespace=display_namespace(existing[0]),
                source_namespace=display_namespace(r.source_namespace),
            )


def _check_namespace_limit(spec: JobSpec, runs: Sequence[NamespacePlan], target: Inventory) -> None:
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


def _shared_targets(
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


def _batch_sizes(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(vectors in a batch, how many such batches) for ``count`` vectors."""
    full, rest = divmod(count, batch_size)
    return [(n, k) for n, k in ((batch_size, full), (rest, 1 if rest else 0)) if k]


def _upsert_cost(vectors: int, dimension: int, per_request: int = UPSERT_MAX_VECTORS) -> tuple[int, int, int]:
    """(upsert requests, write units, bytes) to write one batch of ``vectors``, ``per_request`` at most in one."""
    vector_bytes = max(dimension, 1) * BYTES_PER_VALUE + BYTES_PER_VECTOR_OVERHEAD
    total = vectors * vector_bytes
    chunks = max(math.ceil(vectors / per_request), math.ceil(total / UPSERT_MAX_BYTES), 1)
    per_chunk, bigger = divmod(vectors, chunks)
    units = sum(
        k * max(MIN_WRITE_UNITS_PER_REQUEST, math.ceil(n * vector_bytes / BYTES_PER_WRITE_UNIT))
        for n, k in ((per_chunk + 1, bigger), (per_chunk, chunks - bigger))
        if k
    )
    return chunks, units, total


def estimate(spec: JobSpec, runs: Sequence[NamespacePlan], dimension: int) -> Estimate:
    """Requests, read/write units and duration of copying ``runs`` under ``spec.rate``.

    Upserts of a routed run are counted as if they went to one namespace: a lower bound on requests (a batch whose
    records go to k namespaces makes ≥ k upserts) and an upper bound on its share of the time.
    """
    list_requests = fetch_requests = upserts = read_units = write_units = total_bytes = 0
    # Text records for an integrated index carry no values and go 96 to a request; a re-embedding writes its own.
    per_request = UPSERT_RECORDS_MAX if spec.text_records else UPSERT_MAX_VECTORS
    written_dimension = 0 if spec.text_records else spec.reembed.dimension if spec.reembed else dimension
    upserts_per_target: dict[str | None, int] = {}
    sweep_least = sweep_most = 0
    sweep_units = 0.0
    for r in runs:
        if r.enumeration == "list":
            list_requests += math.ceil(r.vector_count / LIST_MAX_PAGE_IDS)
        sweep_least += r.sweep_queries[0]
        sweep_most += r.sweep_queries[1]
        sweep_units += r.sweep_read_units
        for n, k in _batch_sizes(r.vector_count, spec.batch_size):
            chunks, units, size = _upsert_cost(n, written_dimension, per_request)
            fetch_requests += k
            read_units += k * max(1, math.ceil(n / RECORDS_PER_READ_UNIT))
            upserts += k * chunks
            write_units += k * units
            total_bytes += k * size
            upserts_per_target[r.target_namespace] = upserts_per_target.get(r.target_namespace, 0) + k * chunks
    read_units += list_requests + math.ceil(sweep_units)
    rate = spec.rate
    targets = len(upserts_per_target)
    duration_s = max(
        (fetch_requests + sweep_least) / rate.read_rps,
        list_requests / rate.list_rps,
        max(upserts_per_target.values(), default=0) / rate.write_rps,
        total_bytes / (rate.write_mb_per_s * 1e6 * targets) if targets else 0.0,
    )
    return Estimate(
        list_requests,
        fetch_requests,
        upserts,
        read_units,
        write_units,
        duration_s,
        total_bytes,
        (sweep_least, sweep_most),
    )


def _check_listable(inventory: Inventory, role: str) -> None:
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


def _enumerated(spec: JobSpec, run: NamespacePlan, source: Inventory) -> NamespacePlan:
    """``run`` with how its ids are found and what a sweep of it costs."""
    if source.enumeration != "sweep" or not isinstance(spec.source, PineconeStoreSpec):
        return replace(run, enumeration=source.enumeration)
    cost = sweep_cost(
        run.vector_count, source.dimension, spec.source.enumerate.top_k, spec.source.enumerate.max_queries
    )
    return replace(
        run,
        enumeration="sweep",
        sweep_queries=(cost.min_queries, cost.max_queries),
        sweep_read_units=cost.min_read_units,
    )


def make_plan(
    spec: JobSpec,
    source: Inventory,
    target: Inventory | None,
    twins: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
) -> Plan:
    """Namespace runs for ``spec``.

    Parameters:
        spec: the validated job spec.
        source: the source store's namespaces, counts and dimension.
        target: the target store's, or None when it is not known (then, unless source and target are the same
            store, the non-empty-target and dimension checks are skipped).
        twins: twin_id → creator_id (creator routing; see ``orchestrator.tenancy.load_twins``).
        sources: the sources table's key → twin_id (``routing.sources``; ``orchestrator.tenancy.load_sources``).

    Returns:
        The plan; ``plan.shared_targets`` / ``namespaces_needing_id_check`` say which sources must have their ids
        listed and passed to ``check_id_collisions`` before copying.

    Raises:
        PlanError: unknown namespace, nothing selected, unmapped namespace (explicit), twin without creator, invalid or
            ambiguous target name, dimension mismatch, non-empty target namespace without allow_id_overwrite, or a
            namespace written onto itself or onto another source of the same store.
    """
    source = _normalized(source)
    target = _normalized(target) if target is not None else None
    one_store = same_store(spec)
    if target is None and one_store:
        target = source
    if target is not None and spec.text_from is not None:
        check_text_target(spec, target.label, target.dimension)
    elif target is not None and source.dimension > 0 and target.dimension > 0 and source.dimension != target.dimension:
        raise PlanError(
            f"dimension mismatch: source {source.label} has dimension {source.dimension}, target {target.label} has "
            f"{target.dimension}",
            hint="vectors cannot change dimension in a copy; choose a target index created with the source dimension",
            source=source.label,
            target=target.label,
        )
    if (
        target is not None
        and spec.text_from is None
        and source.metric
        and target.metric
        and source.metric != target.metric
    ):
        raise PlanError(
            f"metric mismatch: source {source.label} uses {source.metric}, target {target.label} uses {target.metric}",
            hint="the copied vectors would rank differently; choose a target index created with the same metric as "
            "the source",
            source=source.label,
            target=target.label,
        )

    _check_listable(source, "source")
    if target is not None and not one_store:
        _check_listable(target, "target")

    selected = select_namespaces(spec, source)
    creator_mode = spec.routing.mode == "creator"
    routes = _route(spec, selected, twins)
    routed_present = any(t is ROUTED for _, t, _, _ in routes)
    if routed_present and spec.routing.override_creator is None:
        # Every twin of the mapping is a potential target of the routed run, so every id must be valid.
        _check_mapping_ids(twins)
    runs = [
        NamespacePlan(
            source_namespace=ns,
            target_namespace=target_ns,
            vector_count=source.namespaces[ns],
            batches=math.ceil(source.namespaces[ns] / spec.batch_size),
            creator_id=creator,
            twin_id=twin,
        )
        for ns, target_ns, creator, twin in routes
    ]
    runs = [_enumerated(spec, r, source) for r in runs]
    _check_target_names(runs)
    if creator_mode:
        # Ids may contain '_': refuse only names that two different (creator, twin) pairs would share.
        pairs = dict(twins) if routed_present else {r.twin_id: r.creator_id for r in runs if r.creator_id and r.twin_id}
        if spec.routing.override_creator is not None:
            pairs = {t: spec.routing.override_creator for t in pairs}
        Registry(pairs, set(pairs.values())).check()
    may_route_to = _routed_targets(spec, twins) if routed_present else None
    if target is not None:
        _check_targets(spec, runs, target, one_store, selected, may_route_to)
        _check_namespace_limit(spec, runs, target)
    shared = _shared_targets(runs, may_route_to)

    used_twins: dict[str, Any]
    if routed_present:
        used_twins = routing_table(twins, sources)
    else:
        used_twins = {r.twin_id: r.creator_id for r in runs if r.twin_id is not None and r.creator_id is not None}

    warnings: list[str] = []
    empty = [r.source_namespace for r in runs if r.vector_count == 0]
    if empty:
        warnings.append(f"{len(empty)} selected namespace(s) are empty and get no batches: {_shown(empty)}")
    if shared:
        what = (
            "their ids are checked for collisions before copying"
            if not spec.allow_id_overwrite
            else "allow_id_overwrite is set: for an id in two sources the last write wins"
        )
        examples = "; ".join(f"{display_namespace(t)} ← {_shown(sources)}" for t, sources in list(shared.items())[:3])
        warnings.append(
            f"{len(shared)} target namespace(s) may receive vectors from more than one source ({examples}"
            f"{'; …' if len(shared) > 3 else ''}); {what}"
        )
    if routed_present:
        warnings.append(
            "the default namespace is routed vector by vector (metadata "
            f"{spec.routing.twin_id_field!r}, else {spec.routing.creator_id_field!r}"
            + (f", else {spec.routing.sources.key_field!r} in the sources table" if spec.routing.sources else "")
            + f"; resolved nowhere → {spec.routing.review_namespace!r}); its upsert estimate is a lower bound"
        )
        if not twins and spec.routing.override_creator is None:
            warnings.append("the twin → creator mapping is empty: every routed vector with a twin id will be refused")
    unknown_public = [r.source_namespace for r in runs if creator_mode and r.target_namespace == PUBLIC]
    if unknown_public:
        warnings.append(
            f"{len(unknown_public)} namespace(s) are twins with no creator and go to {PUBLIC!r}: "
            f"{_shown(unknown_public)}"
        )
    if isinstance(spec.source, PineconeStoreSpec) and source.enumeration == "sweep":
        top_k, most = spec.source.enumerate.top_k, spec.source.enumerate.max_queries
        short = [r.source_namespace for r in runs if r.vector_count > top_k * most]
        if short:
            warnings.append(
                f"{len(short)} namespace(s) hold more than a sweep of {most} queries of top_k {top_k} can return: "
                f"{_shown(short)}; they cannot be covered and will fail verification (raise "
                "source.enumerate.max_queries or use a catalogue)"
            )
        several = [r.source_namespace for r in runs if top_k < r.vector_count <= top_k * most]
        if several:
            warnings.append(
                f"{len(several)} namespace(s) hold more than top_k {top_k} ids and need several sweep queries: "
                f"{_shown(several)}; random query vectors overlap, so it may take more than the least shown, and "
                "verification fails a namespace the sweep did not cover"
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


def check_id_lengths(spec: JobSpec, ids: Mapping[str, IdListing]) -> None:
    """PlanError naming the listed ids (source namespace → ids, as for ``check_id_collisions``) a Pinecone target
    cannot hold: longer than ``RECORD_ID_MAX_CHARS``. Only where the plan reads ids; the copy checks the rest."""
    if not isinstance(spec.target, PineconeStoreSpec):
        return
    too_long = [
        f"source namespace {display_namespace(ns)!r}: id "
        + (repr(i) if len(i) <= 40 else f"{i[:40]!r}…")
        + f" is {len(i)} characters"
        for ns, listing in ids.items()
        for i in listing
        if len(i) > RECORD_ID_MAX_CHARS
    ]
    if too_long:
        raise PlanError(
            f"{len(too_long)} ids are longer than a Pinecone record id may be (at most {RECORD_ID_MAX_CHARS} "
            f"characters): {'; '.join(too_long[:10])}{'; …' if len(too_long) > 10 else ''}",
            hint="shorten those ids in the source (or leave their namespaces out), then plan again",
            target=spec.target.label,
        )


def check_id_collisions(plan: Plan, ids: Mapping[str, IdListing], allow_overwrite: bool) -> None:
    """PlanError naming the target namespace, both sources and up to 5 example ids if two sources share an id there.

    Parameters:
        plan: the plan from ``make_plan``.
        ids: source namespace → its ids, for every namespace of ``namespaces_needing_id_check(plan)``. For a routed
            source either all its ids (then every id *may* land in every target it can reach, and a shared id is
            refused) or, when its records' metadata was read, id → target namespace (see
            ``orchestrator.routing.target_of``), which refuses only ids that really land in the same namespace.
        allow_overwrite: the spec's ``allow_id_overwrite``; when True nothing is refused (last write wins).

    Raises:
        ValueError: ``ids`` lacks a namespace that must be checked (a caller bug, not a data problem).
        PlanError: the first collision found, with the number of other colliding (target, source pair)s.
    """
    if allow_overwrite:
        return
    missing = [s for s in namespaces_needing_id_check(plan) if s not in ids]
    if missing:
        raise ValueError(f"ids of {_shown(missing)} are needed to check collisions")
    collisions: list[tuple[str, str, str, list[str]]] = []
    for target_ns, sources in plan.shared_targets.items():
        landing = {s: _ids_into(ids[s], target_ns) for s in sources}
        for i, a in enumerate(sources):
            for b in sources[i + 1 :]:
                other = set(landing[b])
                common = [x for x in landing[a] if x in other]
                if common:
                    collisions.append((target_ns, a, b, common))
    if not collisions:
        return
    target_ns, a, b, common = collisions[0]
    examples = ", ".join(sorted(common)[:5])
    more = (
        f" ({len(collisions) - 1} more target namespace(s)/source pair(s) collide too)" if len(collisions) > 1 else ""
    )
    raise PlanError(
        f"source namespaces {display_namespace(a)!r} and {display_namespace(b)!r} both write into target namespace "
        f"{display_namespace(target_ns)!r} and share {len(common)} id(s), e.g. {examples}: one would overwrite the "
        f"other{more}",
        hint="exclude one of them, route them to different targets, or set allow_id_overwrite: true if the last "
        "write may win",
        target_namespace=display_namespace(target_ns),
        source_namespaces=f"{display_namespace(a)},{display_namespace(b)}",
    )


def split_batches(ids: Sequence[str], batch_size: int) -> list[list[str]]:
    """Consecutive batches of ≤ batch_size ids, every id in exactly one batch, order kept.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    return [list(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]

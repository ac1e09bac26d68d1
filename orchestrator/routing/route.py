"""Routing and enrichment of records during a copy. Pure: no I/O here.

A copy batch calls ``route_records`` to learn which target namespace each record goes to and with what metadata;
verification calls ``expected_metadata`` to learn what the target must hold. Both use the same enrichment rule
(``_enrich``), so what is copied and what is checked cannot drift apart.

A routed record (the default namespace in creator mode) takes the first route that resolves, as the seeds describe:
``twin_id`` metadata → that twin's namespace; else ``creator_id`` metadata → the creator-wide namespace; else a
metadata key looked up in the ``sources`` table → twin → creator; else its vector id looked up in the owners table
(``routing.owners``) → its creator (and twin); else it is unresolved and ``routing.unresolved`` decides: the spec's
review namespace, the creator-wide namespace of ``unresolved_creator`` (or of the override creator), or dropped (not
copied, reported; never ``public``: shared data is exactly the cross-tenant mixing the refactor removes). ``ROUTES``
names them for counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.pgvector_layout import COLUMN_BY_NAME
from nsmigrate.orchestrator.pgvector_rows import NULL_METADATA_KEY
from nsmigrate.orchestrator.records.namespaces import (
    PUBLIC,
    creator_namespace,
    display_namespace,
    id_texts,
    identifier_problem,
    parse_namespace,
    twin_namespace,
)
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import Enrichment, JobSpec

_EXAMPLES = 5  # how many offending records an error lists

#: The routes a routed record can take, in the order they are tried (``public``: an unknown twin with
#: ``unknown_twin: public``; ``review``: unresolved with ``unresolved: review``, or an unknown twin with
#: ``unknown_twin: review``; ``override_creator`` and ``dropped``: unresolved with ``unresolved: creator`` or
#: ``drop-with-report``).
ROUTES = (
    "twin_id",
    "creator_id",
    "source",
    "owner",
    "public",
    "review",
    "override_creator",
    "unresolved_creator",
    "dropped",
)
DROPPED = "dropped"

#: Key of a run's routing table that holds the sources lookup (source key → twin id); never a twin id, which starts
#: with a letter or digit.
SOURCES_KEY = "@sources"
#: Key of a run's routing table that holds the owners lookup (vector id → [creator id, twin id or None]).
OWNERS_KEY = "@owners"

Owners = Mapping[str, tuple[str, str | None]]


def routing_table(
    twins: Mapping[str, str], sources: Mapping[str, str] | None = None, owners: Owners | None = None
) -> dict[str, Any]:
    """What a routed run keeps in the job table: twin → creator, the sources lookup under ``SOURCES_KEY`` and the
    owners lookup under ``OWNERS_KEY``."""
    table: dict[str, Any] = dict(twins)
    if sources:
        table[SOURCES_KEY] = dict(sources)
    if owners:
        table[OWNERS_KEY] = {vid: [creator, twin] for vid, (creator, twin) in owners.items()}
    return table


def split_routing_table(table: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """``(twins, sources)`` of a run's routing table (``routing_table``'s inverse; ``owners_of`` reads the owners)."""
    table = dict(table or {})
    sources = table.pop(SOURCES_KEY, None) or {}
    table.pop(OWNERS_KEY, None)
    return {str(k): str(v) for k, v in table.items()}, {str(k): str(v) for k, v in sources.items()}


def owners_of(table: Mapping[str, Any] | None) -> dict[str, tuple[str, str | None]]:
    """The owners lookup of a run's routing table: vector id → (creator id, twin id or None)."""
    found = (table or {}).get(OWNERS_KEY) or {}
    return {str(vid): (str(pair[0]), str(pair[1]) if pair[1] else None) for vid, pair in found.items()}


@dataclass(frozen=True)
class RouteContext:
    """Everything a copy batch needs to decide where each record goes and what metadata it gets."""

    source_label: str
    source_namespace: str
    target_namespace: str | None  # None: route each record by its twin id field
    enrichment: Enrichment
    creator_id: str | None = None
    twin_id: str | None = None
    twins: Mapping[str, str] = field(default_factory=dict)  # twin_id → creator_id, for routed runs
    override_creator: str | None = None
    twin_id_field: str = "twin_id"
    unknown_twin: str = "fail"
    creator_id_field: str = "creator_id"
    sources: Mapping[str, str] = field(default_factory=dict)  # source key → twin_id (the sources table)
    source_key_field: str | None = None  # the metadata key looked up in ``sources``
    owners: Owners = field(default_factory=dict)  # vector id → (creator, twin or None): the owners table
    unresolved_creator: str | None = None  # ``unresolved: creator``: whose creator-wide namespace takes the rest
    review_namespace: str = "review"
    unresolved: str = "review"
    #: The target is the application's pgvector tables, whose ``metadata`` column is either NULL or holds keys: a NULL
    #: one given keys by the enrichment becomes those keys there (``_enrich``).
    target_folds_null_metadata: bool = False

    def pair_of(self, target_namespace: str) -> tuple[str | None, str | None]:
        """(creator_id, twin_id) that ``target_namespace`` was built for: the run's own for a fixed target; for a
        routed run, found among the names its mapping builds (never by parsing a name that ``_`` makes ambiguous)."""
        if self.target_namespace is not None:
            if self.creator_id is not None:
                return self.creator_id, self.twin_id
            parsed = parse_namespace(target_namespace)
            return parsed.creator_id, parsed.twin_id
        if self.override_creator is not None:
            prefix = f"creator_{self.override_creator}_twin_"
            if target_namespace.startswith(prefix):
                return self.override_creator, target_namespace[len(prefix) :]
        names = self.__dict__.get("_names")
        if names is None:
            pairs = {(c, t) for t, c in self.twins.items()}
            pairs |= {(self.override_creator or c, t) for c, t in self.owners.values() if t is not None}
            names = {twin_namespace(c, t): (c, t) for c, t in sorted(pairs) if _ids_ok(c, t)}
            object.__setattr__(self, "_names", names)  # a cache on a frozen dataclass: built once per context
        if target_namespace in names:
            return names[target_namespace]
        if target_namespace.startswith("creator_") and target_namespace not in (PUBLIC, self.review_namespace):
            return target_namespace[len("creator_") :], None  # the creator-wide route
        return None, None


def _ids_ok(creator: str, twin: str) -> bool:
    return identifier_problem("creator_id", creator) is None and identifier_problem("twin_id", twin) is None


def route_context(
    spec: JobSpec,
    source_label: str,
    source_namespace: str,
    target_namespace: str | None,
    creator_id: str | None = None,
    twin_id: str | None = None,
    twins: Mapping[str, Any] | None = None,
) -> RouteContext:
    """The RouteContext of one namespace run (a row of the plan) under ``spec``'s routing and enrichment;
    ``twins`` is the run's routing table (``routing_table``: twin → creator, with the sources lookup)."""
    twin_map, sources = split_routing_table(twins)
    return RouteContext(
        source_label=source_label,
        source_namespace=source_namespace,
        target_namespace=target_namespace,
        enrichment=spec.enrich,
        creator_id=creator_id,
        twin_id=twin_id,
        twins=twin_map,
        override_creator=spec.routing.override_creator,
        twin_id_field=spec.routing.twin_id_field,
        unknown_twin=spec.routing.unknown_twin,
        creator_id_field=spec.routing.creator_id_field,
        sources=sources,
        source_key_field=spec.routing.sources.key_field if spec.routing.sources is not None else None,
        owners=owners_of(twins),
        unresolved_creator=spec.routing.unresolved_creator,
        review_namespace=spec.routing.review_namespace,
        unresolved=spec.routing.unresolved,
        target_folds_null_metadata=spec.target.kind == "pgvector" and spec.target.documented,
    )


class RunRouting(Protocol):
    """What a namespace run (or one of its batches) records of its routing."""

    @property
    def source_namespace(self) -> str: ...
    @property
    def target_namespace(self) -> str | None: ...
    @property
    def creator_id(self) -> str | None: ...
    @property
    def twin_id(self) -> str | None: ...
    @property
    def routing_table(self) -> Mapping[str, Any]: ...


def run_route_context(spec: JobSpec, source_label: str, run: RunRouting) -> RouteContext:
    """``route_context`` of a recorded namespace run, or of a batch of one."""
    return route_context(
        spec,
        source_label,
        run.source_namespace,
        run.target_namespace,
        run.creator_id,
        run.twin_id,
        run.routing_table,
    )


def _enrich(metadata: Mapping[str, Any], target_namespace: str, ctx: RouteContext) -> dict[str, Any]:
    """The metadata a record gets in ``target_namespace``: a new dict; the source's is never changed. In the
    application's pgvector tables (``target_folds_null_metadata``) a NULL ``metadata`` (``NULL_METADATA_KEY``) that
    the enrichment writes a key to (not a column's) is NULL no more but holds it, as the copy inside Postgres makes
    it (``coalesce(metadata, '{}') || enrichment``) and as the table holds a record's
    (``pgvector_layout.record_to_row``); elsewhere the mark travels."""
    added: dict[str, Any] = {}
    rules = ctx.enrichment
    if rules.creator_fields:
        # From the target, not the record: a routed record's creator and twin are known only by where it goes.
        creator, twin = ctx.pair_of(target_namespace)
        if creator is not None and twin is not None:
            added["creator_id"] = creator
            added["twin_id"] = twin
    if rules.migrated_from:
        added["migrated_from"] = f"{ctx.source_label}/{display_namespace(ctx.source_namespace)}"
    # Constants last: the spec's explicit values win over everything else.
    added.update(rules.constants)
    out = {**metadata, **added}
    if ctx.target_folds_null_metadata and added.keys() - COLUMN_BY_NAME.keys():  # a column's key stays out of it
        out.pop(NULL_METADATA_KEY, None)
    return out


def routed_twin(target_namespace: str, ctx: RouteContext) -> str | None:
    """The twin a record routed one by one into ``target_namespace`` was routed by (its ``twin_id_field`` holds it):
    None when the run has a fixed target, or the namespace is no twin's."""
    parsed = parse_namespace(target_namespace)
    return parsed.twin_id if ctx.target_namespace is None and parsed.kind == "twin" else None


def expected_metadata(source_record: Record, target_namespace: str, ctx: RouteContext) -> dict[str, Any]:
    """The metadata ``source_record`` must have in ``target_namespace`` after the copy (verification uses this; the
    copy uses the same rule)."""
    return _enrich(source_record.metadata, target_namespace, ctx)


def _text(record: Record, field_name: str | None, ctx: RouteContext) -> str | None:
    """The one id a metadata value names, read as an erasure reads it (``id_texts``): a list names each element, so
    ``["t1"]`` routes as ``t1``, and a list naming several ids is refused (a record goes to one namespace)."""
    named = id_texts(record.metadata.get(field_name)) if field_name else frozenset()
    if len(named) > 1:
        problem = f"{field_name} names {len(named)} ids {sorted(named)}: a record is copied to one namespace"
        raise _bad_id(record, ctx, problem)
    return next(iter(named), None)


def _bad_id(record: Record, ctx: RouteContext, problem: str, **ids: Any) -> PlanError:
    return PlanError(
        f"record {record.id!r} of namespace {display_namespace(ctx.source_namespace)!r}: {problem}",
        hint="ids are letters, digits, '.', '-' and '_', starting with a letter or digit; fix the metadata or mapping",
        record_id=record.id,
        **ids,
    )


def _twin_route(record: Record, twin: str, ctx: RouteContext, via: str) -> tuple[str, str]:
    creator = ctx.override_creator or ctx.twins.get(twin)
    if creator is None:
        if ctx.unknown_twin in ("public", "review"):
            return (PUBLIC if ctx.unknown_twin == "public" else ctx.review_namespace), ctx.unknown_twin
        raise PlanError(
            f"record {record.id!r} of namespace {display_namespace(ctx.source_namespace)!r} has "
            f"{via}={twin!r}, a twin with no creator in the mapping",
            hint="add the twin to the twin → creator mapping, or set routing.unknown_twin: review",
            record_id=record.id,
            twin_id=twin,
        )
    problem = identifier_problem("twin_id", twin) or identifier_problem("creator_id", creator)
    if problem:
        raise _bad_id(record, ctx, problem, twin_id=twin)
    return twin_namespace(creator, twin), "twin_id" if via == ctx.twin_id_field else "source"


def _owner_route(record: Record, owner: tuple[str, str | None], ctx: RouteContext) -> tuple[str, str]:
    """A vector without metadata whose id the owners table names: its twin's namespace, else its creator's."""
    creator, twin = ctx.override_creator or owner[0], owner[1]
    problem = identifier_problem("creator_id", creator) or (identifier_problem("twin_id", twin) if twin else None)
    if problem:
        raise _bad_id(record, ctx, f"{problem} (the owners table)", creator_id=creator)
    return (twin_namespace(creator, twin) if twin is not None else creator_namespace(creator)), "owner"


def route_of(record: Record, ctx: RouteContext) -> tuple[str | None, str]:
    """``(target namespace, route)`` of one record; the route is one of ``ROUTES`` (``fixed`` for a fixed target).
    The target is None for a record ``DROPPED`` (``unresolved: drop-with-report``): it is not copied.

    Raises:
        PlanError: routed record whose twin has no creator (``unknown_twin == "fail"``), or whose ids cannot be
            part of a namespace name.
    """
    if ctx.target_namespace is not None:
        return ctx.target_namespace, "fixed"
    twin = _text(record, ctx.twin_id_field, ctx)
    if twin is not None:
        return _twin_route(record, twin, ctx, ctx.twin_id_field)
    creator = _text(record, ctx.creator_id_field, ctx)
    if creator is not None:
        creator = ctx.override_creator or creator
        problem = identifier_problem("creator_id", creator)
        if problem:
            raise _bad_id(record, ctx, problem, creator_id=creator)
        return creator_namespace(creator), "creator_id"
    key = _text(record, ctx.source_key_field, ctx)
    if key is not None and key in ctx.sources:
        return _twin_route(record, ctx.sources[key], ctx, f"{ctx.source_key_field} {key!r} → twin_id")
    owner = ctx.owners.get(record.id)
    if owner is not None:
        return _owner_route(record, owner, ctx)
    if ctx.unresolved == "drop-with-report":
        return None, DROPPED
    if ctx.unresolved == "creator" and ctx.unresolved_creator is not None:
        return creator_namespace(ctx.unresolved_creator), "unresolved_creator"
    if ctx.unresolved == "creator" and ctx.override_creator is not None:
        return creator_namespace(ctx.override_creator), "override_creator"
    return ctx.review_namespace, "review"


def target_of(record: Record, ctx: RouteContext) -> str | None:
    """The target namespace of one record (``route_of`` without the route); None: dropped, not copied."""
    return route_of(record, ctx)[0]


def route_counts(records: Sequence[Record], ctx: RouteContext) -> dict[str, int]:
    """How many of ``records`` take each route (only routes taken; they add up to ``len(records)``)."""
    return dict(Counter(route_of(r, ctx)[1] for r in records))


def route_records(records: Sequence[Record], ctx: RouteContext) -> dict[str, list[Record]]:
    """Target namespace → enriched records (new Record objects, inputs untouched; the order of first appearance
    and, within a namespace, the input order are kept).

    A fixed-target context sends every record to its target; a routed context (target None) by ``route_of``.
    Dropped records (``unresolved: drop-with-report``) are in none of them.

    Raises:
        PlanError: for the first record whose twin is unknown (``unknown_twin == "fail"``) or whose ids cannot form
            a namespace name; the message counts the others. Nothing is returned for the batch then: it fails whole,
            so it is never half copied.
    """
    routed: dict[str, list[Record]] = {}
    errors: list[PlanError] = []
    for record in records:
        try:
            target = target_of(record, ctx)
        except PlanError as e:
            errors.append(e)
            continue
        if target is None:
            continue
        # The values list is shared, not copied: records are frozen and nothing here changes values.
        enriched = Record(record.id, record.values, _enrich(record.metadata, target, ctx), record.sparse_values)
        routed.setdefault(target, []).append(enriched)
    if errors:
        first = errors[0]
        others = ""
        if len(errors) > 1:
            more = ", ".join(str(e.ids.get("record_id")) for e in errors[1:_EXAMPLES])
            others = f" ({len(errors) - 1} more record(s) in this batch too, e.g. {more})"
        raise PlanError(first.message + others, hint=first.hint, **first.ids)
    return routed


def targets_by_id(records: Sequence[Record], ctx: RouteContext) -> dict[str, str]:
    """id → target namespace of each record that is copied: what ``id_checks.check_id_collisions`` takes for a
    routed source when its metadata was read, so that only ids that really land in a shared namespace are refused."""
    return {record.id: target for record in records if (target := target_of(record, ctx)) is not None}


def dropped_ids(records: Sequence[Record], ctx: RouteContext) -> list[str]:
    """The ids of ``records`` that are dropped, not copied (``unresolved: drop-with-report``)."""
    return [record.id for record in records if route_of(record, ctx)[1] == DROPPED]

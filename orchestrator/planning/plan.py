"""The plan's data: what a store holds (``Inventory``), one namespace run (``NamespacePlan``), a job's cost
(``Estimate``) and the whole ``Plan``. Plain frozen data, no logic beyond totals; ``orchestrator.planning.planner``
makes
them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROUTED = None  # target_namespace of a run whose vectors are routed one by one (the default namespace, creator mode)


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
    #: Which index or tables this is, as its server says (``orchestrator.spec.store_identity``); None: not asked.
    identity: str | None = None
    #: Its namespace aliases (a Pinecone index, API 2026-07) → the namespace each resolves to: names that are not free
    #: namespaces (writes to them are refused) and namespaces whose deletion is refused.
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NamespacePlan:
    """One source namespace of a job: where it goes, how many vectors and copy batches it has. ``creator_id`` and
    ``twin_id`` are set for a twin namespace made by creator routing."""

    source_namespace: str
    target_namespace: str | None  # None = routed per vector (see orchestrator.routing.route)
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
    #: The dimension of the vectors written (what an import's files hold per record).
    dimension: int = 0


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

"""A cut-over by namespace alias: point a job's aliases where a rollout step says (``orchestrator.cutover.aliases``).

Used by ``nsmigrate cutover aliases|set`` for a job whose spec names ``cutover.aliases``. Every call is safe to
repeat: an alias already where it should be is left alone, a missing one is created, one elsewhere is repointed
(atomically, by Pinecone). Before anything changes, every alias of the job's names is read: one that points at
neither of its namespaces (another application's), or a name a namespace has, is refused with nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.aliases import AliasRoute, alias_routes, stray_aliases, targets_at
from nsmigrate.orchestrator.cutover.published import readable
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.alias_guard import alias_calls


@dataclass
class AliasOutcome:
    """What a call left: each alias → the namespace it points at, and which of them it created or repointed."""

    targets: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    repointed: list[str] = field(default_factory=list)
    unaliased: list[str] = field(default_factory=list)  # source namespaces with no alias (routed per record)
    erased: list[str] = field(default_factory=list)  # aliases of an erased twin: removed by its erasure, not made again
    routes: list[AliasRoute] = field(default_factory=list)


def job_routes(ctx: WorkerContext, job_id: int) -> tuple[list[AliasRoute], list[str]]:
    """The job's aliases and the source namespaces without one (``alias_routes``)."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    if spec.cutover.aliases is None:
        raise StateError(
            f"job {job_id} does not cut over by alias (its spec has no cutover.aliases)",
            hint="its applications read through DualWriteIndex",
            job_id=job_id,
        )
    runs = [(r.source_namespace, r.target_namespace) for r in jobs_and_runs.runs_of(ctx.db, job_id)]
    try:
        return alias_routes(spec.cutover.aliases, runs)
    except ValueError as e:
        raise StateError(str(e), job_id=job_id) from e


def ready_routes(
    db: Database, job_id: int, routes: list[AliasRoute], runs: Iterable[NamespaceRun]
) -> tuple[list[AliasRoute], dict[str, int]]:
    """Of ``routes``, those whose copy passed verification (``published.readable``; ``runs``: the job's): a step
    moves only these; a namespace added since the rollout began (``sync --new-namespaces``) is read where it was until
    it has. With them, those whose copy has passed only since the rollout began (its current streak of passes, so a
    copy that failed and passed again too), each by that verdict's event (``aliases.moved_by``'s ``added_late``):
    they come after the others, so none takes the place of an alias a step moved already."""
    by_source = {r.source_namespace: r for r in runs}
    ready = [r for r in routes if r.old in by_source and readable(by_source[r.old])]
    began = rollout_rows.rollout_of(db, job_id).started_at
    if began is None:
        return ready, {}
    passing = rollout_rows.passing_since(db, job_id)
    verdicts = {r.name: passing.get(by_source[r.old].id) for r in ready}
    return ready, {name: verdict[0] for name, verdict in verdicts.items() if verdict is not None and verdict[1] > began}


def point_aliases(ctx: WorkerContext, job_id: int, percent: int) -> AliasOutcome:
    """Point job ``job_id``'s aliases where ``percent`` % new says (creating the missing ones); an alias of a source
    a cleanup deleted from serves its copy at any step.

    Raises:
        StateError: the job has no aliases, or one of its alias names is taken (nothing changed).
        StoreError, RetryableError: a call failed; those before it took effect, and a repeat finishes the rest.
    """
    routes, unaliased = job_routes(ctx, job_id)
    if not routes:
        raise StateError(
            f"job {job_id} has no namespace an alias can serve (each is routed per record, or keeps its name)",
            job_id=job_id,
        )
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    store = ctx.guarded(spec.target, spec.rate)
    calls = alias_calls(store)
    if calls is None:
        raise StateError(f"{store.name} is not a Pinecone index: it has no namespace aliases", job_id=job_id)
    existing = {a.name: a.target_namespace for a in calls.list()}
    taken = stray_aliases(routes, existing)
    namespaces = store.namespaces()
    taken += [f"{r.name!r} is a namespace" for r in routes if r.name in namespaces]
    if taken:
        raise StateError(
            f"the aliases of job {job_id} cannot take these names: {'; '.join(taken)}; nothing was changed",
            hint="choose another cutover.aliases template in a new job, or delete the aliases no one reads",
            job_id=job_id,
        )
    runs = jobs_and_runs.runs_of(ctx.db, job_id)
    # An erasure deleted both namespaces of its subject's twins and removed their aliases: none is made again (Pinecone
    # refuses an alias of a namespace that is gone, and every later step and roll back would fail on it).
    erasures = [subject for _, subject in jobs_erasure_ledger.erasure_subjects(ctx.db)]
    gone = {r.source_namespace for r in runs if any(s.owns_pair(r.creator_id, r.twin_id) for s in erasures)}
    erased = {r.name for r in routes if r.old in gone}
    ready, added_late = ready_routes(ctx.db, job_id, routes, runs)
    targets = {r.name: r.old for r in routes} | targets_at(ready, percent, added_late)
    routes = [r for r in routes if r.name not in erased]  # after the share: the other aliases keep their sides
    targets = {name: ns for name, ns in targets.items() if name not in erased}
    # A source a cleanup deleted from (or is deleting) is never read again: its alias serves the copy, whatever the
    # step and the copy's verdict (ids written during the cleanup may have failed it; they are in the copy too, or
    # kept in the source for `sync`).
    # Once a rollback wrote the originals back and verified them, they may serve again (`cutover set --reads old`).
    emptied = {r.source_namespace for r in runs if r.source_may_be_deleted} - rollout_rows.restored_sources(
        ctx.db, job_id
    )
    targets |= {r.name: r.new for r in routes if r.old in emptied}
    outcome = AliasOutcome(targets=targets, unaliased=unaliased, routes=routes, erased=sorted(erased))
    for name, namespace in outcome.targets.items():
        if name not in existing:
            calls.create(name, namespace)
            outcome.created.append(name)
        elif existing[name] != namespace:
            calls.repoint(name, namespace)
            outcome.repointed.append(name)
    return outcome

"""Delta sync of one namespace run: copy again what appeared or changed in the source since it was copied.

The source stays live during a migration; users cut over after a final sync. A sync re-lists the run's source
namespace, fetches each chunk (≤ 1,000 ids) from the source and from the target namespace the copy's routing sends
it to, and lets ``orchestrator.verification.delta.plan_delta`` decide per id: new (absent from the target) or changed
(values beyond tolerance, or metadata ≠ source + enrichment) ids are copied; ids the run wrote earlier that the source
no longer has are *reported* as deleted in the source, and deleted from the target only with ``propagate_deletes``.

A ``strategy: convert`` job's run is synced right after Pinecone's conversion (``workers.steps.converting``): what
was written to the source after the snapshot is new or changed here, and an id deleted from the source since is one
its target namespace holds that the source no longer has (the conversion wrote the whole target index).

The copy itself goes the normal way: the ids become new ``batches`` rows of the run
(``jobs_sync_rollback.start_sync``: state back to ``copying``, a ``sync`` audit event with the counts) and
``copy_batch`` tasks on the copy queue, so progress, retries, ``resume`` and Flower work as for the first copy; the
last batch marks the run ``copied`` and verification runs again (``auto_verify``). Nothing is written before the scan
is complete, so an interrupted sync is simply run again. Every store request goes through ``ctx.guarded`` (list/read
scopes of each store, write scope for deletes).

``--propagate-deletes`` deletes from the target only ids the source does not hold *now*: each chunk is fetched from
the source again right before its delete (``workers.steps.proving.delete_absent``). It refuses a source namespace that
lists no ids at all while the run's copies remain (the namespace vanished, or a wrong key or host reads an empty
one) unless ``allow_vanished_source`` says so, at the start and again right before each delete (a namespace dropped
while the scan listed it makes every id after the page it had reached look deleted). And it refuses a run whose
cleanup already deleted part of its source or is under way (those ids are gone on purpose; their copies are the
only ones left), asked again right before each delete: a cleanup another operator starts while the sync scans is
seen there (``jobs_sync_rollback.propagate_refusal``). A target namespace other source namespaces write into too is
shared: an id one of them holds now is its copy and kept (``_other_sources_copies``), and one of them cleaned up, or
one of another source store, refuses as this run's own cleanup does.

Known limit: a record whose routing changed (its twin id metadata was edited) is copied to its new namespace, but
its old copy is found as stale only if the record is gone from the source, not when it still exists elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.routing.route import run_route_context
from nsmigrate.orchestrator.routing.text import split_by_text
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.verification.comparisons import fields_comparer
from nsmigrate.orchestrator.verification.delta import Delta, plan_delta, route_source
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.steps.proving import delete_absent
from nsmigrate.workers.steps.verifying import list_all_ids
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.transfer.chunking import chunks

log = logging.getLogger(__name__)


def _refused(ctx: WorkerContext, run: NamespaceRun, reason: str, actor: str, **detail: Any) -> dict[str, Any]:
    jobs_and_runs.record_event(
        ctx.db, "sync_refused", actor, run.job_id, run.id, namespace=run.source_namespace, reason=reason, **detail
    )
    log.info("sync of run %s refused: %s", run.id, reason)  # info: the caller reports it (see cleaning._refuse)
    return {"run_id": run.id, "namespace": run.source_namespace, "action": "refused", "reason": reason, **detail}


def sync_run(
    ctx: WorkerContext,
    run_id: int,
    *,
    propagate_deletes: bool = False,
    allow_vanished_source: bool = False,
    dry_run: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Find and copy the new and changed ids of one namespace run.

    Parameters:
        run_id: a run in state copied, verified or verify_failed (a cleaned run is refused: its source is gone).
        propagate_deletes: also delete from the target the ids this run wrote that the source no longer has.
        allow_vanished_source: with ``propagate_deletes``, delete them even when the source namespace lists no ids
            at all (emptied on purpose); refused otherwise.
        dry_run: only scan and count: nothing is copied, deleted or recorded but a refusal.
        actor: who asked, for the audit log (default: this worker).

    Returns:
        ``{"run_id", "namespace", "action": "synced" | "dry_run" | "refused", "reason"?, "new", "changed",
        "unchanged", "to_copy", "deleted_in_source", "deleted", "batches", …}``; the same counts are in the ``sync``
        event.
    """
    actor = actor or ctx.worker_name
    run = jobs_and_runs.get_run(ctx.db, run_id)
    # The applications' failed dual writes are filed before this sync's own event, which then covers them.
    if not dry_run:
        published.file_writes(ctx.db, ctx.redis, run.job_id)
    refusal = jobs_sync_rollback.sync_refusal(ctx.db, run_id)
    if refusal is not None:
        return _refused(ctx, run, refusal, actor)
    spec = jobs_and_runs.job_spec(ctx.db, run.job_id)
    if propagate_deletes and spec.allow_id_overwrite:
        return _refused(
            ctx,
            run,
            "--propagate-deletes is off for jobs with allow_id_overwrite: an id in a shared "
            "target namespace may belong to another source",
            actor,
        )
    cleaned = jobs_sync_rollback.propagate_refusal(ctx.db, run_id) if propagate_deletes else None
    if cleaned is not None:
        return _refused(ctx, run, cleaned, actor)
    source, target = ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate)
    delta, listed = _scan(ctx, run, spec, source, target)
    if propagate_deletes and not listed and delta.stale_count and not allow_vanished_source:
        return _refused(
            ctx,
            run,
            _vanished(run, f"would delete all {delta.stale_count} ids this run copied into the target; nothing was"),
            actor,
            deleted_in_source=delta.stale_count,
        )
    if dry_run:
        counts = {**delta.counts(), "deleted": 0, "propagate_deletes": propagate_deletes}
        batches = len(list(chunks(delta.to_copy, spec.batch_size)))
        return {"run_id": run_id, "namespace": run.source_namespace, "action": "dry_run", "batches": batches, **counts}
    deleted, kept, stopped = (
        _delete_stale(ctx, run, source, target, delta, allow_vanished_source=allow_vanished_source)
        if propagate_deletes
        else (0, 0, None)
    )
    if stopped is not None:  # a cleanup of this run started since the check above, or the source vanished
        return _refused(ctx, run, stopped, actor, deleted=deleted)
    counts = {**delta.counts(), "deleted": deleted, "kept_present": kept, "propagate_deletes": propagate_deletes}
    try:
        batch_ids = jobs_sync_rollback.start_sync(
            ctx.db, run_id, list(chunks(delta.to_copy, spec.batch_size)), actor, **counts
        )
    except StateError as e:  # another sync, a cleanup or a cancel got there while we scanned
        return _refused(ctx, run, e.message, actor, deleted=deleted)
    namespace = display_namespace(run.source_namespace)
    for batch_id in batch_ids:
        ctx.dispatcher.copy_batch(batch_id, job_id=run.job_id, run_id=run_id, namespace=namespace)
    # No batches (or all already done by fast workers): exactly one caller wins "copied" and asks for verification.
    if jobs_batches.maybe_mark_copied(ctx.db, run_id) and spec.auto_verify:
        ctx.dispatcher.verify_namespace(run_id, job_id=run.job_id, namespace=namespace)
    log.info(
        "sync of run %s: %d new, %d changed, %d deleted in source",
        run_id,
        delta.new_count,
        delta.changed_count,
        delta.stale_count,
    )
    return {
        "run_id": run_id,
        "namespace": run.source_namespace,
        "action": "synced",
        "batches": len(batch_ids),
        **counts,
    }


def sync_runs(ctx: WorkerContext, run_ids: Sequence[int], *, threads: int, **options: Any) -> Iterator[dict[str, Any]]:
    """``sync_run(ctx, run_id, **options)`` for each of ``run_ids``, up to ``threads`` at once (the command's
    ``sync_threads``): each scan waits on store round trips, so a job of many namespaces need not wait them out one
    after the other. Yields the results in ``run_ids``' order, each once it and those before it are done; an error
    is raised in that order too, after the scans already running have ended, and the ones not started never start.
    """
    with ThreadPoolExecutor(max(1, min(threads, len(run_ids))), thread_name_prefix="nsmigrate-sync") as pool:
        futures = [pool.submit(sync_run, ctx, run_id, **options) for run_id in run_ids]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _scan(ctx: WorkerContext, run: NamespaceRun, spec: JobSpec, source: Store, target: Store) -> tuple[Delta, int]:
    """What the sync must copy and what it may delete, and how many ids the source lists now."""
    route = run_route_context(spec, source.name, run)
    tolerance = spec.verify.tolerance
    compare = fields_comparer(spec)  # a text job: judged by text and fields, not by values
    namespaces = [run.target_namespace] if run.target_namespace is not None else list(run.target_namespaces or [])
    # Read once the reads show what was written before now: the source's listing (a Pinecone listing lags, and a
    # record the application wrote just before a final sync would be left behind), and a document index's fetch.
    for store, names, side in ((source, [run.source_namespace], "source"), (target, namespaces, "target")):
        if store.capabilities.fetch_lags or (side == "source" and store.capabilities.reads_lag):
            for ns in names:
                freshness.require_reads_now(store, ns, spec.verify.freshness_timeout_s, side=side, again="sync")
    ids = list_all_ids(source, run.source_namespace)
    delta = Delta()
    present: set[str] = set()  # source ids the target holds (fetch does not lag, or was awaited)
    for chunk in chunks(ids, FETCH_MAX_IDS):
        records = source.fetch(run.source_namespace, chunk)
        if spec.text_from is not None:  # records without text are never written; verification reports them
            records = split_by_text(records, spec.text_from).with_text
        by_ns, _unroutable = route_source(records, route)  # plan_delta reports the unroutable ones
        found = {ns: target.fetch(ns, routed) for ns, routed in by_ns.items()}
        present.update(r.id for records_found in found.values() for r in records_found)
        delta.add(plan_delta(records, found, route, tolerance, compare))
    # Ids this run copied before that the source no longer lists: still in a target namespace it wrote? No batch row
    # names what Pinecone copied (a conversion, an import, a collection), but its target namespace was new, made by
    # the job: every id there is one the job wrote.
    written = set(jobs_sync_rollback.written_ids(ctx.db, run.id))
    if spec.strategy in ("collection", "convert", "import") and run.target_namespace is not None:
        written |= _ids_pinecone_copied(spec, target, run.target_namespace, present)
    gone = sorted(written - set(ids))
    for chunk in chunks(gone, FETCH_MAX_IDS):
        delta.add(plan_delta([], {ns: target.fetch(ns, chunk) for ns in namespaces}, route, tolerance, compare))
    return delta, len(ids)


def _ids_pinecone_copied(spec: JobSpec, target: Store, ns: str, present: set[str]) -> set[str]:
    """Every id of a target namespace Pinecone made, listed once its lagging reads show what it copied: at
    least every source id that fetch found there (at most ``verify.freshness_timeout_s``; a listing still behind
    then names fewer ids deleted in the source, and verification judges what is left)."""
    listed: set[str] = set()

    def shows() -> bool:
        listed.clear()
        listed.update(list_all_ids(target, ns))
        return present <= listed

    freshness.await_reads(target, ns, lsn=None, shows=shows, timeout_s=spec.verify.freshness_timeout_s)
    return listed


def _vanished(run: NamespaceRun, what: str) -> str:
    """The refusal of deletes propagated from a source namespace that lists no ids: ``what`` they would do."""
    return (
        f"source namespace {display_namespace(run.source_namespace)!r} lists no ids now (it vanished, was emptied, "
        f"or the spec reaches another store): --propagate-deletes {what} deleted. Pass --allow-vanished-source if "
        "the source was emptied on purpose"
    )


def _delete_stale(
    ctx: WorkerContext, run: NamespaceRun, source: Store, target: Store, delta: Delta, *, allow_vanished_source: bool
) -> tuple[int, int, str | None]:
    """Delete the stale ids the source still does not hold: ``(deleted, kept, why it stopped or None)``. Before each
    delete the run is read again: an id a cleanup deleted from the source (its copy proved) has its only copy in the
    target, and a cleanup another operator started while this sync scanned would lose it (``propagate_refusal``).
    And the source is counted: one that vanished since its listing began (dropped by another operator after the
    first page) made every id after that page look deleted, and is refused as at the start."""

    def refusal() -> str | None:
        why = jobs_sync_rollback.propagate_refusal(ctx.db, run.id)
        if why is None and not allow_vanished_source and not source.count(run.source_namespace):
            why = _vanished(run, "stopped: the ids it had not deleted yet were not")
        return why

    deleted = kept = 0
    for ns, ids in delta.stale.items():
        with target.written_lsns() as answered:
            d, k, stopped = delete_absent(
                source,
                run.source_namespace,
                target,
                ns,
                ids,
                refusal,
                partial(_other_sources_copies, ctx, run, ns, source),
            )
        deleted, kept = deleted + d, kept + k
        if d:
            _await_deletes(ctx, run, target, ns, set(ids), k, answered.get(ns))
        if stopped is not None:
            return deleted, kept, stopped
    return deleted, kept, None


def _other_sources_copies(
    ctx: WorkerContext, run: NamespaceRun, target_namespace: str, source: Store, absent: list[str]
) -> set[str]:
    """Of ``absent`` (ids of ``target_namespace`` this run's source lacks now), those another source namespace that
    writes there too holds now (a merge, a routing, a job run again): their copies are that namespace's, not stale.
    Asked right before each delete, under its hold, after ``propagate_refusal``, which refuses outright where such a
    namespace is another store's (unreadable here) or lost ids to a cleanup."""
    spared: set[str] = set()
    for other in jobs_sync_rollback.other_writers(ctx.db, run.id, target_namespace):
        if other.same_source and len(spared) < len(absent):
            left = [i for i in absent if i not in spared]
            spared.update(
                r.id for chunk in chunks(left, FETCH_MAX_IDS) for r in source.fetch(other.source_namespace, chunk)
            )
    if spared:
        log.info("sync of run %s keeps %d ids of %r: other sources' copies", run.id, len(spared), target_namespace)
    return spared


def _await_deletes(
    ctx: WorkerContext, run: NamespaceRun, target: Store, ns: str, stale: set[str], kept: int, lsn: int | None
) -> None:
    """Wait, at most ``verify.freshness_timeout_s``, until the target's lagging reads of ``ns`` no longer show the
    stale ids just deleted (only the ``kept`` ones, written back to the source, remain): the verification that
    follows lists the namespace, and a listing still showing a deleted id would judge it an extra. Reads still behind
    then are logged; that verification judges what they show. ``lsn``: the highest its deletes were answered."""
    spec = jobs_and_runs.job_spec(ctx.db, run.job_id)
    if spec.target.kind != "pinecone":
        return
    wait = freshness.await_reads(
        target,
        ns,
        lsn=lsn,
        shows=lambda: len(stale.intersection(list_all_ids(target, ns))) <= kept,
        timeout_s=spec.verify.freshness_timeout_s,
    )
    if wait.reason is not None:
        log.warning("sync of run %s: %s", run.id, wait.reason)

"""Cleanup: delete a verified source namespace, and only then.

Refused (with a ``cleanup_refused`` audit event and a reason) unless all of these hold:

1. the job spec allows it (``cleanup.mode`` is ``manual`` or ``auto``);
2. deleting the source cannot delete the migrated data: when the source namespace is one of the run's target
   namespaces, source and target must be proven two stores (``workers.stores.identity``: by identity, not spelling);
3. the run is ``verified`` (``jobs.start_cleanup`` decides, under a row lock, so two cleanups cannot both run);
4. the source is unchanged since verification: its ids are listed again and their count and fingerprint must equal
   the ones the verification report stored. A changed source sends the run to ``verify_failed``: what was verified
   is no longer what would be deleted.

The default namespace ``""`` cannot be dropped in Pinecone, so it is emptied by deleting the ids that were just
listed (≤ 1,000 per request); an id written after that listing survives, and so do the ids its routing dropped
(``routing.unresolved: drop-with-report``: never copied, their only copy is the source). Any other namespace is
deleted whole (``delete_namespace``; the Pinecone store falls back to ``delete_all`` where the namespaces endpoint is
absent), so writers must have moved to the target before cleanup runs. Every successful cleanup writes a
``source_deleted`` event with what was deleted.

Known limits: the fingerprint covers ids, not contents, so a vector *updated in place* after verification is not
noticed; and a delete of the default namespace interrupted half-way leaves a changed source, which the next attempt
refuses as a changed source (finish it by hand).
"""

from __future__ import annotations

import logging
from typing import Any

from orchestrator import jobs
from orchestrator.errors import NsmigrateError, StateError
from orchestrator.limits import DELETE_MAX_IDS, FETCH_MAX_IDS
from orchestrator.models import NamespaceRun, RunState
from orchestrator.records import DEFAULT_NAMESPACE, display_namespace
from orchestrator.routing import dropped_ids, route_context
from orchestrator.spec import JobSpec
from orchestrator.verification import fingerprint
from workers.context import WorkerContext
from workers.stores.identity import one_store_problem
from workers.verifying import chunks, list_all_ids

log = logging.getLogger(__name__)

SOURCE_CHANGED = "source changed since verification; re-run sync + verify"


def _result(run: NamespaceRun, action: str, count: int, reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": run.id, "namespace": run.source_namespace, "action": action, "count": count}
    if reason is not None:
        out["reason"] = reason
    return out


def _refuse(ctx: WorkerContext, run: NamespaceRun, reason: str, actor: str, *, dry_run: bool) -> dict[str, Any]:
    """A refusal that changes no state: audit it and say why."""
    jobs.record_event(
        ctx.db,
        "cleanup_refused",
        actor,
        run.job_id,
        run.id,
        namespace=run.source_namespace,
        reason=reason,
        dry_run=dry_run,
    )
    log.warning("cleanup of run %s refused: %s", run.id, reason)
    return _result(run, "refused", 0, reason)


def policy_problem(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun) -> str | None:
    """Why the spec or the run's shape forbids deleting this source namespace, or None."""
    if spec.cleanup.mode == "never":
        return "the job spec's cleanup.mode is `never`; set it to `manual` to allow `nsmigrate cleanup`"
    targets = set(run.target_namespaces or [])
    if run.target_namespace is not None:
        targets.add(run.target_namespace)
    if run.source_namespace not in targets:
        return None
    one_store = one_store_problem(spec, ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate))
    if one_store is not None:
        return (
            f"{one_store}, and namespace {display_namespace(run.source_namespace)!r} is also a target: deleting it "
            "would delete the migrated data"
        )
    return None


def source_problem(report: dict[str, Any] | None, ids: list[str]) -> str | None:
    """Why the source as listed now (``ids``) is not what verification passed, or None."""
    if not report or not report.get("passed"):
        return "the run has no passing verification report; run `nsmigrate verify` first"
    if not report.get("source_fingerprint"):
        return "the verification report has no source fingerprint; re-run verify"
    if len(ids) != report.get("source_count") or fingerprint(ids) != report["source_fingerprint"]:
        return (
            f"{SOURCE_CHANGED} (verified {report.get('source_count')} ids, "
            f"fingerprint {report['source_fingerprint']}; now {len(ids)} ids, {fingerprint(ids)})"
        )
    return None


def cleanup_run(ctx: WorkerContext, run_id: int, *, dry_run: bool = False, actor: str | None = None) -> dict[str, Any]:
    """Delete the source namespace of a verified run, or say why not.

    Parameters:
        run_id: the namespace run.
        dry_run: only report what would be deleted: nothing is deleted and the run's state does not change.
        actor: who asked, for the audit log (default: this worker).

    Returns:
        ``{"run_id", "namespace", "action": "deleted" | "would_delete" | "refused" | "failed", "count", "reason"?}``;
        ``count`` is how many vectors were (or would be) deleted. ``failed`` means a store error interrupted the
        delete: the run is back to ``verified`` and the reason holds the error.
    """
    actor = actor or ctx.worker_name
    run = jobs.get_run(ctx.db, run_id)
    spec = jobs.job_spec(ctx.db, run.job_id)
    try:
        problem = policy_problem(ctx, spec, run)
        if problem is not None:
            return _refuse(ctx, run, problem, actor, dry_run=dry_run)
        if dry_run:
            return _dry_run(ctx, run, spec, actor)
        return _delete(ctx, run, spec, actor)
    finally:
        if not dry_run:
            # Cleaned and refused runs are final (or back to verified); the job may be complete now.
            jobs.maybe_finish_job(ctx.db, run.job_id)


def _dropped(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun, ids: list[str]) -> set[str]:
    """The ids of a routed run that its routing drops (``unresolved: drop-with-report``), read from the source now:
    they were never copied, so they are never deleted."""
    if run.target_namespace is not None or spec.routing.unresolved != "drop-with-report":
        return set()
    source = ctx.guarded(spec.source, spec.rate)
    route = route_context(spec, source.name, run.source_namespace, None, twins=run.routing_table)
    return {
        i for chunk in chunks(ids, FETCH_MAX_IDS) for i in dropped_ids(source.fetch(run.source_namespace, chunk), route)
    }


def _dry_run(ctx: WorkerContext, run: NamespaceRun, spec: JobSpec, actor: str) -> dict[str, Any]:
    if run.state != RunState.VERIFIED:
        return _refuse(ctx, run, f"the run is {run.state}, not verified", actor, dry_run=True)
    source = ctx.guarded(spec.source, spec.rate)
    ids = list_all_ids(source, run.source_namespace)
    problem = source_problem(run.verification, ids)
    if problem is not None:
        return _refuse(ctx, run, problem, actor, dry_run=True)
    return _result(run, "would_delete", len(ids) - len(_dropped(ctx, spec, run, ids)))


def _delete(ctx: WorkerContext, run: NamespaceRun, spec: JobSpec, actor: str) -> dict[str, Any]:
    if run.state != RunState.VERIFIED:
        return _refuse(
            ctx, run, f"the run is {run.state}, not verified; run `nsmigrate verify` first", actor, dry_run=False
        )
    try:
        run = jobs.start_cleanup(ctx.db, run.id)  # verified → cleaning, under a row lock
    except StateError as e:
        # Another cleanup or verify got there since we read the run; the refusal is audited here.
        return _refuse(ctx, run, e.message, actor, dry_run=False)
    source = ctx.guarded(spec.source, spec.rate)
    ns = run.source_namespace
    try:
        ids = list_all_ids(source, ns)
    except NsmigrateError as e:
        reason = f"could not re-list the source to check it is unchanged: {e}"
        jobs.abort_cleanup(ctx.db, run.id, reason, actor, back_to=RunState.VERIFIED)
        return _result(run, "refused", 0, reason)
    problem = source_problem(run.verification, ids)
    if problem is not None:
        changed = problem.startswith(SOURCE_CHANGED)
        jobs.abort_cleanup(
            ctx.db, run.id, problem, actor, back_to=RunState.VERIFY_FAILED if changed else RunState.VERIFIED
        )
        return _result(run, "refused", 0, problem)
    method = "delete_ids" if ns == DEFAULT_NAMESPACE else "delete_namespace"
    kept: set[str] = set()
    try:
        if spec.source.kind == "pgvector" and spec.source.documented:
            # Seed 004's move: the source table is renamed to a backup, never dropped.
            method = f"renamed_to:{ctx.store(spec.source).retire_namespace(ns)}"  # type: ignore[attr-defined]
        elif ns == DEFAULT_NAMESPACE:
            # Pinecone cannot drop the default namespace: delete exactly what was verified and copied, by id.
            kept = _dropped(ctx, spec, run, ids)
            for chunk in chunks([i for i in ids if i not in kept], DELETE_MAX_IDS):
                source.delete(ns, chunk)
        else:
            source.delete_namespace(ns)
    except NsmigrateError as e:
        reason = f"delete failed: {e}; run cleanup again"
        jobs.abort_cleanup(ctx.db, run.id, reason, actor, back_to=RunState.VERIFIED)
        return _result(run, "failed", 0, reason)
    detail = {
        "deleted_count": len(ids) - len(kept),
        "fingerprint": fingerprint(ids),
        "dry_run": False,
        "method": method,
    }
    if kept:
        detail["kept_dropped_count"] = len(kept)
    jobs.finish_cleanup(ctx.db, run.id, detail, actor)
    log.info("deleted source namespace %r of run %s (%d vectors)", display_namespace(ns), run.id, len(ids) - len(kept))
    return _result(run, "deleted", len(ids) - len(kept))

"""Cleanup: delete a verified source namespace, and only what has an equal copy in the target now.

Refused (with a ``cleanup_refused`` audit event and a reason) unless all of these hold:

0. the job was not cancelled nor rolled back (``jobs_and_runs.why_stopped``; asked again under the job's row lock as the
   run becomes ``cleaning``): however a cleanup is started (the command, ``cleanup.mode: auto`` after a verdict, a
   task queued before the cancel), nothing is deleted for a cancelled job;
1. the job spec allows it (``cleanup.mode`` is ``manual`` or ``auto``) and its verification checks ids and counts
   (a verification that checks nothing passes whatever the target holds);
2. deleting the source cannot delete the migrated data: when the source namespace is one of the run's target
   namespaces, source and target must be proven two stores (``workers.stores.identity``: by identity, not spelling);
3. the run is ``verified``, or a cleanup of it stopped part-way (``jobs_verdicts.cleanable``;
``jobs_verdicts.start_cleanup`` decides
   under a row lock, so two cleanups cannot both run); under cut-over (``nsmigrate cutover set``), also synced since
   and reads 100 % new for long enough (``orchestrator.cutover.rules.cleanup_gate``); and no namespace alias of the
   source resolves to the namespace (``workers.steps.alias_guard``: its readers would find it empty), asked again once
   the run is cleaning;
4. the source is unchanged since verification: its ids are listed again and their count and fingerprint must equal
   the ones the verification report stored. A changed source sends the run to ``verify_failed``. (Not for a cleanup
   taken up after it stopped part-way: its source lacks what it deleted; 5. alone decides there.)
5. every id has an equal copy in the target *now* (``workers.steps.proving``: both sides fetched, the copy's routing and
   verification's comparison): the verdict is a reason to try, never the proof. One id without it — the target
   deleted or written since, the source vector updated in place — and nothing is deleted: the run goes to
   ``verify_failed`` with the refused ids in its report and the event, and ``sync`` repairs it.

Then the source is deleted by id, each chunk of ≤ 1,000 ids proved once more right before its delete, so an id
whose copy went away in between is kept, and so is an id the routing drops (``routing.unresolved:
drop-with-report``: never copied, the source holds its only copy) or the erasure ledger held back (an erased
creator's: never copied; their erasure, not a cleanup, deletes it). A chunk refused in this second pass leaves the
run ``verify_failed`` with what was deleted and what was kept. The source is listed once more: an id in it that is
not one kept on purpose was written while it was deleted (new, or deleted and written again), and without an equal
copy in the target it sends the run to ``verify_failed`` too, its deletions counted, for ``sync`` to copy it (a
cleaned run is never synced: it would be stranded in the source). For a Pinecone source that listing must be shown
complete to drop the namespace (its reads' LSN, then a probe write answered with the next one: a lagging listing
hides a write for as long as reads lag; ``freshness.complete_listing``). A namespace left empty is then dropped
(``delete_namespace``; an id written in the instant between the probe and the drop would go with it, so writers must
have moved to the target); one whose listing cannot be shown complete (a pod index, which tells no LSN) is left
empty instead. A ``schema: documented`` pgvector source is renamed to a backup instead, once proved. Every successful
cleanup writes a ``source_deleted`` event with what was deleted. Proving costs one more fetch of both sides per id
than a plain delete (two passes: the first keeps a refusal from leaving a half-deleted namespace), except where the
ids fit one chunk: proved once, right before a delete that takes all of them or none.

A cleanup holds its run's cleanup lock from its first check to its end, kept fresh while it lives. One whose worker
died (killed, its host lost) leaves the run ``cleaning`` with part of its source deleted; its redelivered task (or
``nsmigrate cleanup``) waits out that lock (``cleanup_lock_ttl_s``) and takes the run up as a cleanup stopped part-way
(``cleanup_taken_up``): every id left proved, the source's fingerprint no longer asked.

Under a cut-over its applications follow (``DualWriteIndex``), the cleanup publishes the run's stage as it starts
deleting and once it is cleaned (``published.cleanup_stage``): from then on a dual write the new index refuses is
raised to the application, which retries it, instead of filed for a sync that can no longer follow. The last listing
waits until every application follows the start and every write begun before it landed
(``published.ROLLOUT_MAX_AGE_S`` + ``WRITE_UNDER_WAY_S``), so a write filed for sync reaches the source before it.

`nsmigrate cancel` stops a cleanup under way before its next chunk (a rollback may follow, deleting the copies this
cleanup proves); the run stays cancelled with what it deleted counted, or, when its cleanup never said (its host
lost), marked as one whose source may be deleted (``NamespaceRun.source_may_be_deleted``).

A delete stopped part-way (a store error, a chunk refused in the second pass) records how many ids went
(``NamespaceRun.deleted_by_cleanup``), a chunk whose delete got no answer included (``Proof.maybe_deleted``). Their
copies are the only ones now: ``sync --propagate-deletes`` refuses the run, and its verification cannot pass (the
source lacks them), so ``nsmigrate cleanup`` takes it up again from either verdict, proving every id left; ``sync``
first repairs the ids a refusal named. Before each delete, the originals holding a key the enrichment writes, with
its value, are recorded (``HeldMetadata``): their copies cannot show it was theirs; a rollback restores it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover.rollout import cleanup_refusal
from nsmigrate.orchestrator.errors import NsmigrateError, StateError, StopAsked, StoreError
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.messaging.task_names import lock_key
from nsmigrate.orchestrator.models import CLEANUP_WORKER_LOST, NamespaceRun, RunState
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import DEFAULT_NAMESPACE
from nsmigrate.orchestrator.routing.route import run_route_context
from nsmigrate.orchestrator.spec.jobspec import DELETION_MAX_TOLERANCE, JobSpec
from nsmigrate.orchestrator.tenancy.erasure import held_back_ids
from nsmigrate.orchestrator.verification.comparisons import fingerprint
from nsmigrate.orchestrator.verification.proof import Proof, failed_report, refusal
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import freshness, next_steps
from nsmigrate.workers.steps.alias_guard import alias_refusal
from nsmigrate.workers.steps.proving import PROOF_CHUNK_IDS, delete_proven
from nsmigrate.workers.steps.verifying import list_all_ids
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.stores.guarded import exclusive_hold
from nsmigrate.workers.stores.identity import one_store_problem
from nsmigrate.workers.transfer import lock_keeper

log = logging.getLogger(__name__)

#: The cleanup method of a documented pgvector source, followed by the backup its table was renamed to (a rollback
#: renames it back: ``workers.steps.rollback``).
RETIRED_TO = "renamed_to:"

SOURCE_CHANGED = "source changed since verification; re-run sync + verify"

#: The action of a cleanup that found another one of the same run under way, and left the run to it.
UNDER_WAY = "under_way"
#: The action of a cleanup of a run cleaned before it: nothing to do.
CLEANED_ALREADY = "cleaned_already"


def _result(run: NamespaceRun, action: str, count: int, reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": run.id, "namespace": run.source_namespace, "action": action, "count": count}
    if reason is not None:
        out["reason"] = reason
    return out


def _refuse(ctx: WorkerContext, run: NamespaceRun, reason: str, actor: str, *, dry_run: bool) -> dict[str, Any]:
    """A refusal that changes no state: audit it and say why."""
    detail = {"namespace": run.source_namespace, "reason": reason, "dry_run": dry_run}
    jobs_and_runs.record_event(ctx.db, "cleanup_refused", actor, run.job_id, run.id, **detail)
    # Info, not a warning: whoever asked reports the refusal (the command's line per namespace, the task's result),
    # and a command has no logging set up, so Python would print a warning to its terminal a second time.
    log.info("cleanup of run %s refused: %s", run.id, reason)
    return _result(run, "refused", 0, reason)


def policy_problem(spec: JobSpec) -> str | None:
    """Why the job's spec forbids any cleanup, or None (asks no store)."""
    if spec.cleanup.mode == "never":
        return "the job spec's cleanup.mode is `never`; set it to `manual` to allow `nsmigrate cleanup`"
    return unchecked_verification(spec)


def shape_problem(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun, *, prove: bool = True) -> str | None:
    """Why deleting this source namespace could delete the migrated data (it is also a target, and source and
    target are not proven two stores), or None. ``prove=False`` (a dry run) writes no identity marker: the cleanup
    itself proves two stores apart before it deletes."""
    targets = set(run.target_namespaces or [])
    if run.target_namespace is not None:
        targets.add(run.target_namespace)
    if run.source_namespace not in targets:
        return None
    source, target = ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate)
    one_store = one_store_problem(
        spec, source, target, marker=prove, marker_timeout_s=ctx.settings.identity_marker_timeout_s, job_id=run.job_id
    )
    if one_store is not None:
        return (
            f"{one_store}, and namespace {display_namespace(run.source_namespace)!r} is also a target: deleting it "
            "would delete the migrated data"
        )
    return None


def crossing_problem(ctx: WorkerContext, run: NamespaceRun, spec: JobSpec) -> str | None:
    """Why another job's cleanup under way forbids this one, or None: it deletes the namespace this run's copies
    are in, or proves its deletions against this run's source, in the same store (by identity; a store whose
    identity cannot be had counts as the same)."""
    for other in jobs_verdicts.crossing_cleanups(ctx.db, run):
        theirs = jobs_and_runs.job_spec(ctx.db, other.job_id)
        if other.source_namespace in jobs_verdicts.target_namespaces_of(run) and _same_store(
            ctx, (theirs.source, theirs.rate), (spec.target, spec.rate)
        ):
            what = f"deletes namespace {display_namespace(other.source_namespace)!r}, where this run's copies are"
        elif _same_store(ctx, (theirs.target, theirs.rate), (spec.source, spec.rate)):
            what = f"proves its deletions against this run's source {display_namespace(run.source_namespace)!r}"
        else:
            continue
        return (
            f"job {other.job_id}'s cleanup of namespace {display_namespace(other.source_namespace)!r} is under way "
            f"and {what}: deleting here too could delete the only copy; nothing is deleted — let that cleanup "
            f"finish, then run `nsmigrate cleanup {run.job_id}` again (it proves each id against what is left)"
        )
    return None


def _same_store(ctx: WorkerContext, one: tuple[Any, Any], other: tuple[Any, Any]) -> bool:
    try:
        return ctx.guarded(*one).budget_key == ctx.guarded(*other).budget_key
    except NsmigrateError:
        return True  # not established: the refusal is the safe side


def alias_problem(ctx: WorkerContext, spec: JobSpec, run: NamespaceRun) -> str | None:
    """Why the source namespace must stay: namespace aliases of the source serve it (``workers.steps.alias_guard``)."""
    source = ctx.guarded(spec.source, spec.rate)
    then = f"run `nsmigrate cleanup {run.job_id}` again"
    copy = "its routed copies" if run.target_namespace is None else repr(display_namespace(run.target_namespace))
    instead = f"the verified copy {copy}, if it is in the same index"
    if spec.cutover.aliases is not None:  # the job's own aliases: the last rollout step repoints them all
        instead = f"`nsmigrate cutover set {run.job_id} --reads new --percent 100` repoints the job's aliases"
    return alias_refusal(source, [run.source_namespace], "cleanup", then, instead)


def unchecked_verification(spec: JobSpec) -> str | None:
    """Why the job's verification cannot justify a deletion (it would not prove an equal copy: ids and counts not
    checked, or values compared too loosely), or None. A new spec is refused at plan time; this refuses the cleanup
    or rollback of a job written before that rule."""
    off = spec.cleanup_unchecked
    if not off:
        return None
    return (
        f"the job's verification does not prove what a deletion relies on ({', '.join(off)}): a target that lost "
        "vectors or holds other values would pass it; nothing is deleted — verify the copy another way, or copy "
        "again with a spec that checks ids and counts within a tolerance of at most "
        f"{DELETION_MAX_TOLERANCE:g}"
    )


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


def cleanup_run(
    ctx: WorkerContext,
    run_id: int,
    *,
    dry_run: bool = False,
    actor: str | None = None,
    decommission_now: bool = False,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Delete the source namespace of a verified run, or say why not.

    Parameters:
        run_id: the namespace run.
        dry_run: only report what would be deleted: nothing is deleted and the run's state does not change.
        actor: who asked, for the audit log (default: this worker).
        decommission_now: under cut-over, do not wait for reads to have been 100 % new for
            ``cutover.decommission_after_s`` (``orchestrator.cutover.rules.cleanup_gate``; the sync it needs still
            counts).
        stop: asked between two chunks of ids (an operator's Ctrl-C in `nsmigrate cleanup`): True stops the delete
            there, as a store error does, with every id deleted so far counted.

    A cleanup holds the run's cleanup lock from its first check to its end (``cleanup_lock``). One that finds the
    run ``cleaning`` waits for that lock: a live cleanup keeps it, so the run is left to it; the lock of one whose
    worker died expires, and the run is taken up (``jobs_verdicts.take_up_lost_cleanup``) as a cleanup stopped
    part-way, every id left proved.

    Returns:
        ``{"run_id", "namespace", "action": "deleted" | "would_delete" | "refused" | "failed" | "stopped" |
        "under_way" | "cleaned_already", "count", "reason"?}``; ``count`` is how many vectors were (or would be)
        deleted. ``failed`` means a store error interrupted the delete, ``stopped`` that ``stop`` did: the run is back
        to ``verified`` and the reason says why; `cleanup` takes it up again. ``under_way``: another cleanup of the run
        holds it.
    """
    actor = actor or ctx.worker_name
    run = jobs_and_runs.get_run(ctx.db, run_id)
    if dry_run or run.state == RunState.CLEANED:
        return _cleanup(ctx, run, actor, dry_run=dry_run, decommission_now=decommission_now, stop=stop)
    with cleanup_lock(ctx, run_id, wait=run.state == RunState.CLEANING) as held:
        if not held:  # left to that one: its own result says how it ended
            reason = "another cleanup of this namespace is under way (it holds the run's cleanup lock)"
            return {**_refuse(ctx, run, reason, actor, dry_run=False), "action": UNDER_WAY}
        if run.state == RunState.CLEANING:
            run = jobs_verdicts.take_up_lost_cleanup(ctx.db, run_id, actor)
        return _cleanup(ctx, run, actor, dry_run=False, decommission_now=decommission_now, stop=stop)


@contextlib.contextmanager
def cleanup_lock(ctx: WorkerContext, run_id: int, *, wait: bool) -> Iterator[bool]:
    """Hold the run's cleanup lock (True), or find it taken (False): kept fresh while this cleanup lives, gone
    ``cleanup_lock_ttl_s`` after its worker died. ``wait``: that long, for the lock of a cleanup that may be dead."""
    key, ttl_s = lock_key(f"cleanup:{run_id}"), ctx.settings.cleanup_lock_ttl_s
    with lock_keeper.held_while_alive(ctx.redis, key, ttl_s, f"the cleanup lock of run {run_id}", wait=wait) as held:
        yield held


def _cleanup(
    ctx: WorkerContext,
    run: NamespaceRun,
    actor: str,
    *,
    dry_run: bool,
    decommission_now: bool,
    stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    if run.state == RunState.CLEANED:  # a cleanup sent twice (a lost message's, sent again), or asked again
        return _result(run, CLEANED_ALREADY, 0, "its source was deleted by an earlier cleanup")
    spec = jobs_and_runs.job_spec(ctx.db, run.job_id)
    try:
        # The job, the spec, then the run's state, before any store is asked anything. A cancelled job's verified
        # runs keep their verdicts, but nothing is deleted for it (``jobs_verdicts.start_cleanup`` asks again under a
        # lock).
        stopped = jobs_and_runs.why_stopped(ctx.db, run.job_id)
        # What the applications sent of their dual writes, filed first: the cut-over's gate reads the failed ones.
        if not dry_run:
            published.file_writes(ctx.db, ctx.redis, run.job_id)
        problem = f"{stopped}; nothing is deleted" if stopped is not None else policy_problem(spec)
        if problem is None and not jobs_verdicts.cleanable(run):
            problem = f"the run is {run.state}, not verified; run `nsmigrate verify` first"
        problem = (
            problem
            or shape_problem(ctx, spec, run, prove=not dry_run)
            or cleanup_refusal(
                ctx.db, run, spec.cutover.decommission_after_s, override=decommission_now, redis=ctx.redis
            )
            or alias_problem(ctx, spec, run)
        )
        if problem is not None:
            return _refuse(ctx, run, problem, actor, dry_run=dry_run)
        if dry_run:
            return _dry_run(ctx, run, spec, actor)
        return _delete(ctx, run, spec, actor, decommission_now=decommission_now, stop=stop)
    finally:
        if not dry_run:
            # Cleaned and refused runs are final (or back to verified); the job may be complete now, and a command
            # waiting for its cleanups (`run --wait` under `cleanup.mode: auto`) reads it at once.
            jobs_and_runs.maybe_finish_job(ctx.db, run.job_id)
            next_steps.run_settled(ctx, run.job_id, run.id)
            _tell_applications(ctx, run.job_id)


def _proof(
    ctx: WorkerContext,
    run: NamespaceRun,
    spec: JobSpec,
    source: Store,
    ids: list[str],
    *,
    delete: bool,
    total: Proof | None = None,
    stop: Callable[[], bool] | None = None,
    whole_chunks: bool = False,
) -> Proof:
    """Prove (and with ``delete``, delete) the source ids of ``run`` whose copy equals them now (into ``total``;
    ``whole_chunks``: see ``delete_proven``)."""
    route = run_route_context(spec, source.name, run)
    target = ctx.guarded(spec.target, spec.rate)
    erasures = jobs_erasure_ledger.erasure_subjects(ctx.db)  # their records were never copied: kept, not refused
    return delete_proven(
        source,
        run.source_namespace,
        target,
        ids,
        route,
        spec,
        delete_from="source" if delete else None,
        total=total,
        stop=stop,
        held=lambda records: held_back_ids(erasures, records, route),
        whole_chunks=whole_chunks,
        record_held=lambda ids, held: jobs_sync_rollback.record_held_metadata(ctx.db, run.id, ids, held),
    )


def _dry_run(ctx: WorkerContext, run: NamespaceRun, spec: JobSpec, actor: str) -> dict[str, Any]:
    source = ctx.guarded(spec.source, spec.rate)
    ids = list_all_ids(source, run.source_namespace)
    problem = _unchanged_problem(run, ids)
    if problem is not None:
        return _refuse(ctx, run, problem, actor, dry_run=True)
    proof = _proof(ctx, run, spec, source, ids, delete=False)
    if proof.refused_count:
        return _refuse(ctx, run, refusal(proof, "they would not be deleted"), actor, dry_run=True)
    return _result(run, "would_delete", len(proof.proven))


def _unchanged_problem(run: NamespaceRun, ids: list[str]) -> str | None:
    """``source_problem``, except for a cleanup taken up after it stopped part-way: its source lacks the ids it
    already deleted, so no fingerprint can match; every id left is proved against its copy instead."""
    return None if run.cleanup_stopped_part_way else source_problem(run.verification, ids)


def _delete(
    ctx: WorkerContext,
    run: NamespaceRun,
    spec: JobSpec,
    actor: str,
    *,
    decommission_now: bool,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    source, target = ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate)
    # Another job's cleanup found cleaning here is refused under the namespaces' locks, which that one held to
    # start too: of two cleanups whose namespaces cross (a cycle), the second one to start is refused whole.
    places = [(source, run.source_namespace), *((target, ns) for ns in sorted(jobs_verdicts.target_namespaces_of(run)))]
    try:
        with exclusive_hold(places):
            crossing = crossing_problem(ctx, run, spec)
            if crossing is not None:
                return _refuse(ctx, run, crossing, actor, dry_run=False)
            # verified → cleaning, under a row lock; the run as it is then, not as read before the checks: another
            # cleanup may have stopped part-way since, and what it deleted must stay counted.
            run, verdict = jobs_verdicts.start_cleanup(ctx.db, run.id)
    except StateError as e:
        # Another cleanup or verify got there since we read the run; the refusal is audited here.
        return _refuse(ctx, run, e.message, actor, dry_run=False)
    except NsmigrateError as e:  # the namespaces' locks could not be had
        return _refuse(ctx, run, f"{e.message}; run cleanup again", actor, dry_run=False)
    # The cut-over's gate again, now that the run is cleaning: a `cutover set` that sent reads back to the source
    # since the first ask has committed (it and `start_cleanup` share the job's row lock), and none can follow.
    gate = cleanup_refusal(ctx.db, run, spec.cutover.decommission_after_s, override=decommission_now, redis=ctx.redis)
    gate = gate or alias_problem(ctx, spec, run)  # an alias made since the first ask
    if gate is not None:
        jobs_verdicts.abort_cleanup(ctx.db, run.id, gate, actor, back_to=verdict)
        return _result(run, "refused", 0, gate)
    earlier = run.deleted_by_cleanup  # deleted by a cleanup of this run that stopped part-way
    try:
        told_at = published.publish_if_followed_at(ctx.db, ctx.redis, run.job_id)
    except Exception as e:  # Redis: the applications' writes would not learn that no sync can follow them
        reason = (
            f"could not publish the cleanup's start to the job's applications ({type(e).__name__}); run cleanup again"
        )
        jobs_verdicts.abort_cleanup(ctx.db, run.id, reason, actor, back_to=verdict)
        return _result(run, "refused", 0, reason)

    def cancelled() -> bool:
        # `nsmigrate cancel` stops the runs of its job, this one too: once cancelled, a rollback may delete the copies
        # this cleanup proves, so it deletes no further chunk (asked before each: one read of the job table).
        return jobs_and_runs.get_run(ctx.db, run.id).state == RunState.CANCELLED

    def stopping() -> bool:
        return (stop is not None and stop()) or cancelled()

    ns = run.source_namespace
    retiring = spec.source.kind == "pgvector" and spec.source.documented  # seed 004's move: renamed, never dropped
    try:
        # Taken before the ids are listed and proved: a row written from now on keeps the table from being renamed.
        versions = ctx.store(spec.source).table_version(ns) if retiring else None  # type: ignore[attr-defined]
        ids = list_all_ids(source, ns)
    except NsmigrateError as e:
        reason = f"could not re-list the source to check it is unchanged: {e}"
        jobs_verdicts.abort_cleanup(ctx.db, run.id, reason, actor, back_to=verdict)
        return _result(run, "refused", 0, reason)
    problem = _unchanged_problem(run, ids)
    if problem is not None:
        changed = problem.startswith(SOURCE_CHANGED)
        jobs_verdicts.abort_cleanup(
            ctx.db, run.id, problem, actor, back_to=RunState.VERIFY_FAILED if changed else RunState.VERIFIED
        )
        return _result(run, "refused", 0, problem)
    method = "delete_ids"
    left_in_place: str | None = None
    deleting = Proof()  # what the second pass deleted so far, also when a store error stops it
    try:
        # 1. every id proved before any is deleted: a refusal leaves the namespace whole, for sync to repair. Ids of
        # one chunk are proved once, right before their delete, which then takes all of them or none.
        _fetch_current(source, ns, spec)
        one_chunk = not retiring and len(ids) <= PROOF_CHUNK_IDS
        if not one_chunk:
            proof = _proof(ctx, run, spec, source, ids, delete=False, stop=stopping)
            if proof.refused_count:
                return _refused_by_id(ctx, run, proof, actor, deleted=0, earlier=earlier)
        if retiring:
            try:
                retired = ctx.store(spec.source).retire_namespace(ns, unchanged_from=versions)  # type: ignore[attr-defined]
            except StateError as e:  # a row written since the proof began has no proven copy: nothing renamed
                reason = f"{SOURCE_CHANGED}: {e.message}"
                jobs_verdicts.abort_cleanup(ctx.db, run.id, reason, actor, back_to=RunState.VERIFY_FAILED)
                return _result(run, "refused", 0, reason)
            method = f"{RETIRED_TO}{retired}"
            deleted = len(proof.proven)
        else:
            # 2. deleted by id, each chunk proved again right before its delete.
            if not one_chunk:
                _fetch_current(source, ns, spec)
            with source.written_lsns() as deletes_answered:
                proof = _proof(
                    ctx, run, spec, source, ids, delete=True, total=deleting, stop=stopping, whole_chunks=one_chunk
                )
            deleted = len(proof.proven)
            if proof.refused_count:
                return _refused_by_id(ctx, run, proof, actor, deleted=deleted, earlier=earlier)
            # 3. What the source holds now, but for what it kept on purpose (ids its routing drops), was written
            # while it was deleted: a new id, or one deleted and written again. Without an equal copy it would be
            # stranded there (a cleaned run is not synced): the run goes back to verify_failed for sync instead.
            kept = set(ids).difference(proof.proven)
            published.await_writers(told_at)
            left, complete = _listed_after(source, ns, proof.proven, spec, deletes_answered.get(ns))
            late = _proof(ctx, run, spec, source, [i for i in left if i not in kept], delete=False)
            if late.refused_count:
                during = f"{late.refused_count} ids were written to the source during the cleanup"
                return _refused_by_id(ctx, run, late, actor, deleted=deleted, earlier=earlier, lead=during)
            if ns != DEFAULT_NAMESPACE and complete and not left and source.delete_namespace_if_empty(ns):
                # Pinecone cannot drop the default namespace; any other one, now empty, is dropped (a pgvector table
                # only if still empty once locked: a row written since the listing has no copy).
                method = "delete_namespace"
            elif ns != DEFAULT_NAMESPACE and not complete and not left:
                left_in_place = freshness.LEFT_IN_PLACE
    except NsmigrateError as e:
        stopped = isinstance(e, StopAsked)
        # A delete whose answer was lost may have been applied: counted, its ids' copies may be the only ones now.
        so_far = earlier + len(deleting.proven) + len(deleting.maybe_deleted)
        if stopped and cancelled():
            reason = f"stopped: job {run.job_id} was cancelled after this cleanup deleted {so_far} ids"
        elif stopped:
            reason = f"stopped by Ctrl-C after deleting {so_far} ids; run cleanup again"
        else:
            unanswered = len(deleting.maybe_deleted)
            counted = f" ({unanswered} ids whose delete got no answer are counted as deleted)" if unanswered else ""
            reason = f"delete failed: {e}{counted}; run cleanup again"
        # Recorded when some ids went: their copies are now the only ones (``sync --propagate-deletes`` refuses).
        partial = {"deleted_count": so_far} if so_far else None
        jobs_verdicts.abort_cleanup(ctx.db, run.id, reason, actor, back_to=verdict, detail=partial)
        return _result(run, "stopped" if stopped else "failed", len(deleting.proven), reason)
    detail = {
        "deleted_count": earlier + deleted,
        "fingerprint": fingerprint(ids),
        "dry_run": False,
        "method": method,
    }
    if left_in_place:
        detail["namespace_left"] = left_in_place
    if (run.cleanup or {}).get(CLEANUP_WORKER_LOST):
        detail[CLEANUP_WORKER_LOST] = True  # the count is this cleanup's: what the dead one deleted is unknown
    jobs_verdicts.finish_cleanup(ctx.db, run.id, detail, actor)
    log.info("deleted source namespace %r of run %s (%d vectors)", display_namespace(ns), run.id, deleted)
    return _result(run, "deleted", deleted)


def _tell_applications(ctx: WorkerContext, job_id: int) -> None:
    """Publish the job's layout again when applications follow it: a run cleaned, or back to a verdict after a
    refusal or a stop (its writes filed for sync again)."""
    try:
        published.publish_if_followed(ctx.db, ctx.redis, job_id)
    except Exception as e:  # until the next publication they raise what the new index refuses, never lose it
        log.warning("could not publish job %s's runs to its applications: %s", job_id, type(e).__name__)


def _fetch_current(source: Store, ns: str, spec: JobSpec) -> None:
    """A source whose fetch lags (a document index): its reads awaited to every write answered before the proof, so
    the proof compares what the source holds, not an older version of it (``freshness.reads_now``)."""
    if source.capabilities.fetch_lags:
        freshness.reads_now(source, ns, spec.verify.freshness_timeout_s, side="source")


def _listed_after(source: Store, ns: str, deleted: list[str], spec: JobSpec, lsn: int | None) -> tuple[list[str], bool]:
    """The source namespace listed once its lagging reads reflect this cleanup's deletes
    (``workers.steps.freshness``: by ``lsn``, the highest its deletes were answered, else until the listing shows
    none of them), so that what it lists was written by someone else, and an empty listing means empty. Reads still
    behind after ``verify.freshness_timeout_s`` stop the cleanup (what it deleted is counted; `cleanup` again proves
    the rest): nothing is concluded, nor dropped, from a read that had not caught up. Also returns whether the listing
    is complete (``freshness.complete_listing``), the one the namespace may be dropped on."""
    gone = set(deleted)
    listed: list[str] = []
    probe = freshness.PageProbe(source, ns)  # the read that shows the deletes is then a small namespace's listing

    def shows() -> bool:
        listed[:] = list_all_ids(source, ns)
        return gone.isdisjoint(listed)

    wait = freshness.await_reads(
        source,
        ns,
        lsn=lsn,
        shows=shows if gone and spec.source.kind == "pinecone" else None,
        timeout_s=spec.verify.freshness_timeout_s,
        side="source",
        probe=probe if source.capabilities.enumeration == "list" else None,
    )
    if wait.reason is not None:
        raise StoreError(wait.reason, hint="run `nsmigrate cleanup` again once the index has caught up")
    if spec.source.kind == "pinecone":
        polled = listed if wait.by == "polling" else None
        return freshness.complete_listing(source, ns, spec.verify.freshness_timeout_s, polled, first=probe.whole(wait))
    return list_all_ids(source, ns), True  # pgvector: reads do not lag, and its drop looks at the table itself


def _refused_by_id(
    ctx: WorkerContext, run: NamespaceRun, proof: Proof, actor: str, *, deleted: int, earlier: int, lead: str = ""
) -> dict[str, Any]:
    """Ids without an equal copy now: kept, named in the event and the run's report; the run → ``verify_failed``,
    which ``sync`` repairs (it copies them again), then ``verify`` and ``cleanup`` as usual. ``lead``: what the
    reason starts with (how those ids came to be there)."""
    what = "nothing was deleted" if not deleted else f"they were kept ({deleted} proven ids were deleted)"
    if earlier + deleted:
        # Part of the source is gone: verification cannot pass any more, cleanup proves what is left instead.
        then = f"then `nsmigrate cleanup {run.job_id}` again to delete the rest"
    else:
        then = "then verify and cleanup"
    reason = (lead and f"{lead}: ") + f"{refusal(proof, what)}; run `nsmigrate sync {run.job_id}` to copy them, {then}"
    jobs_verdicts.abort_cleanup(
        ctx.db,
        run.id,
        reason,
        actor,
        back_to=RunState.VERIFY_FAILED,
        report=failed_report(run.verification, f"cleanup refused: {reason}"),
        detail={**proof.to_json(), "deleted_count": earlier + deleted},
    )
    log.info("cleanup of run %s refused %d ids without an equal copy", run.id, proof.refused_count)  # see _refuse
    return {**_result(run, "refused", deleted, reason), "refused_ids": proof.to_json()["refused_ids"]}

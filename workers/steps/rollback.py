"""Rollback of a migrate job: put the data back in the original namespaces, prove it is there, then remove the new
namespaces — in that order, and nothing deleted unless every original checked out.

The job's own mapping says what to undo: each forward run's source namespace is an original; its fixed target (or,
for a routed run, the ``target_namespaces`` it wrote) holds the copies; its done batches list the ids it wrote.

1. **judge** the originals as they are (``orchestrator.verification.delta.plan_restore``, chunks of ≤ 1,000 ids): an
   original that exists must be what the forward copy made its target from (same values; ``expected_metadata(original)``
   = target metadata). Any that differ → refused, nothing written.
2. **restore** the originals that are missing (cleanup deleted them): rebuilt from the target without the enrichment
   keys (``delta.restore_record``) but what its cleanup found them holding there (``HeldMetadata``), and upserted into
   the original namespace. An original that still exists is never overwritten, so a rollback before cleanup copies
   nothing.
3. **verify** every original again; anything missing or different → refused, nothing deleted.
4. **delete** the targets: the forward runs are claimed (``jobs_sync_rollback.claim_forward_runs``: unchanged since
   step 1, then cancelled, so no cleanup/sync of the forward job can follow), then the ids this job wrote are deleted
   from each target namespace, each chunk proved right before its delete (``workers.steps.proving``: the original
   exists and its copy equals it *now*, in the namespace deleted from; an id whose original changed, routes elsewhere
   or went away since step 3 is kept and the rollback ends refused, naming it). A namespace that held nothing but this
   job's ids and is empty afterwards is dropped, a Pinecone one only on a listing shown complete
   (``freshness.complete_listing``: a lagging listing hides an application's write for as long as reads lag, and the
   drop would take its only copy; a pod's is left in place); others' ids are kept (reported).

While a namespace alias of the target resolves to one of the copies, the rollback is refused before anything is done
(its readers would find the namespace emptied: ``workers.steps.alias_guard``), and asked again right before step 4.

It is a job of kind ``rollback`` (``parent_job_id`` = the forward job) with one run per original, so ``status`` and
``events`` show it. Every step is idempotent and judged from the stores, so an interrupted or refused rollback is
simply run again: restored originals are found equal, deleted targets are found gone.

It runs in the calling process (the CLI, like ``cleanup``), not as Celery tasks: it is a rare, operator-driven act
whose every step must be seen, and whose copy-back volume is at most what the migration moved. Requests still go
through ``ctx.guarded`` (fleet-wide rate budgets per scope, retries).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.errors import NsmigrateError, StateError, StoreError
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import DEFAULT_NAMESPACE, Record
from nsmigrate.orchestrator.routing.route import RouteContext, run_route_context
from nsmigrate.orchestrator.spec.jobspec import DELETION_MAX_TOLERANCE, JobSpec
from nsmigrate.orchestrator.tenancy.erasure import erased_in
from nsmigrate.orchestrator.verification.delta import RestoreCheck, namespace_disposal, plan_restore, route_source
from nsmigrate.orchestrator.verification.proof import Proof, refusal
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.steps.alias_guard import alias_refusal
from nsmigrate.workers.steps.cleaning import RETIRED_TO
from nsmigrate.workers.steps.proving import delete_proven
from nsmigrate.workers.steps.verifying import chunks, list_all_ids
from nsmigrate.workers.stores.identity import one_store_problem
from nsmigrate.workers.transfer.chunking import sized_chunks

log = logging.getLogger(__name__)


def _targets_of(run: NamespaceRun) -> list[str]:
    return [run.target_namespace] if run.target_namespace is not None else sorted(run.target_namespaces or [])


class _Rollback:
    def __init__(self, ctx: WorkerContext, forward_job_id: int, actor: str) -> None:
        self.ctx, self.forward_job_id, self.actor = ctx, forward_job_id, actor
        self.spec: JobSpec = jobs_and_runs.job_spec(ctx.db, forward_job_id)
        self.source = ctx.guarded(self.spec.source, self.spec.rate)  # where the originals live
        self.target = ctx.guarded(self.spec.target, self.spec.rate)  # where the copies live
        self.reinstated: dict[int, str] = {}  # forward run id → the backup table renamed back (``_reinstate``)

    # -- I/O helpers -------------------------------------------------------------------------------------------------

    def _write_back(self, run: NamespaceRun, records: list[Record]) -> None:
        """Upsert restored originals, unless one is the data of a creator an erasure is erasing or erased: written
        back, it would outlive the receipt that says it is gone. Asked of the job table now, after the run was marked
        restoring (``jobs_sync_rollback.rollback_restoring``), which the erasure's places ask about before they
        delete."""
        erasures = jobs_erasure_ledger.erasure_subjects(self.ctx.db)
        found = erased_in(erasures, [((run.creator_id, run.twin_id), records)]) if erasures else None
        if found is not None:
            erasure, subject, ids = found
            jobs_erasure_ledger.record_held_back(
                self.ctx.db, [found], job=self.forward_job_id, namespace=run.source_namespace, refused="rollback"
            )
            raise StateError(
                f"{len(ids)} original(s) of {subject.label} in namespace {display_namespace(run.source_namespace)!r} "
                f"would be written back, but erasure job {erasure} erases their data: a rollback never writes it "
                "back; nothing was restored or deleted",
                hint=f"wait for erasure job {erasure} to finish, then run the rollback again: it restores what is "
                "left to restore and names what cannot come back",
                job_id=self.forward_job_id,
                erasure=erasure,
            )
        if self._reinstate(run):
            present = {r.id for r in self.source.fetch(run.source_namespace, [r.id for r in records])}
            records = [r for r in records if r.id not in present]
        for chunk, size in sized_chunks(records):
            self.source.upsert(run.source_namespace, chunk, nbytes=size)

    def _reinstate(self, run: NamespaceRun) -> bool:
        """Whether the original table of ``run`` came back whole: the forward cleanup of a documented pgvector source
        renamed it to a backup (seed 004's move, ``renamed_to:``), and it is renamed back while its namespace has no
        table, with its indexes' documented names. Every column, row number, default and index is then as it was,
        which records written into a new table of the layout could not give (a column of the user's own would land
        in ``metadata``, each row a new number, the indexes missing)."""
        method = str((run.cleanup or {}).get("method", ""))
        source = self.spec.source
        if not method.startswith(RETIRED_TO) or not (source.kind == "pgvector" and source.documented):
            return False
        backup = method.removeprefix(RETIRED_TO)
        if self.ctx.store(self.spec.source).reinstate_namespace(run.source_namespace, backup):  # type: ignore[attr-defined]
            self.reinstated[run.id] = backup
            log.info("rollback of job %s: table %s renamed back", self.forward_job_id, backup)
        return run.id in self.reinstated

    def _route(self, run: NamespaceRun) -> RouteContext:
        return run_route_context(self.spec, self.source.name, run)

    # -- steps -------------------------------------------------------------------------------------------------------

    def check(self, run: NamespaceRun, *, restore: bool) -> RestoreCheck:
        """Judge (and with ``restore``, write back the missing) originals of one forward run, chunk by chunk."""
        route = self._route(run)
        namespaces = _targets_of(run)
        total = RestoreCheck()
        for chunk in chunks(jobs_sync_rollback.written_ids(self.ctx.db, run.id), FETCH_MAX_IDS):
            originals = {r.id: r for r in self.source.fetch(run.source_namespace, chunk)}
            routed, _ = route_source(list(originals.values()), route)
            targets = self._copies(namespaces, chunk, {i: ns for ns, ids in routed.items() for i in ids})
            held = jobs_sync_rollback.held_metadata(self.ctx.db, run.id, [i for i in chunk if i not in originals])
            found = plan_restore(chunk, originals, targets, route, self.spec.verify.tolerance, held)
            if restore and found.to_restore:
                self._write_back(run, found.to_restore)
            total.add(found)
        return total

    def _copies(
        self, namespaces: list[str], chunk: Sequence[str], home: dict[str, str]
    ) -> dict[str, list[tuple[str, Record]]]:
        """Id → each (target namespace, copy) of ``chunk`` in the run's namespaces. An id whose original routes to a
        namespace (``home``) is looked for there, and elsewhere only when not found there; one without (its original
        gone, or unroutable) in every namespace: a record re-routed since its copy, then synced, has a copy in two."""
        targets: dict[str, list[tuple[str, Record]]] = {}

        def look(ns: str, ids: list[str]) -> None:
            for record in self.target.fetch(ns, ids) if ids else []:
                targets.setdefault(record.id, []).append((ns, record))

        for ns in namespaces:
            look(ns, [i for i in chunk if home.get(i, ns) == ns])
        astray = [i for i in chunk if i in home and i not in targets]
        for ns in namespaces if astray else []:
            look(ns, [i for i in astray if home[i] != ns])
        return targets

    def _await_reads(self, ns: str, by_run: dict[int, set[str]]) -> None:
        """Wait until the target's lagging reads of ``ns`` reflect the copies (``workers.steps.freshness``: by the LSN
        the copy recorded, else until the listing holds every copy fetch found): the listing decides what this job
        wrote there, and a copy not listed yet would be kept, the rollback called done. Still behind after
        ``verify.freshness_timeout_s``: the rollback stops there, for running again."""
        if self.spec.target.kind != "pinecone":
            return
        lsns = [lsn for run_id in by_run if (lsn := freshness.written(self.ctx.redis, run_id).get(ns)) is not None]
        found: set[str] = set().union(*by_run.values())

        def shows() -> bool:
            return found <= set(list_all_ids(self.target, ns))

        wait = freshness.await_reads(
            self.target,
            ns,
            lsn=max(lsns, default=None),
            shows=shows if found else None,
            timeout_s=self.spec.verify.freshness_timeout_s,
        )
        if wait.reason is not None:
            raise StoreError(wait.reason, hint="run the rollback again once the index has caught up")

    def _listed_last(self, ns: str) -> tuple[list[str], bool]:
        """The emptied target namespace listed, and whether it may be dropped on that listing: a Pinecone one only on
        a listing shown complete (``freshness.complete_listing``): a lagging listing hides an application's write
        (dual writes, a cut-over) for as long as reads lag, and the drop would delete its only copy."""
        if self.spec.target.kind != "pinecone":
            return list_all_ids(self.target, ns), True  # pgvector: its drop looks at the locked table itself
        return freshness.complete_listing(
            self.target, ns, self.spec.verify.freshness_timeout_s, None, side="target", again="rollback"
        )

    def delete_targets(self, runs: list[NamespaceRun], checks: dict[int, RestoreCheck]) -> dict[str, dict[str, Any]]:
        """Remove this job's ids from each target namespace of ``runs``, only those whose original equals them now;
        a namespace that held only this job's ids and is then empty is dropped."""
        written_here: dict[str, dict[int, set[str]]] = {}  # target namespace → forward run → ids it wrote there
        for run in runs:
            for ns in _targets_of(run):
                written_here.setdefault(ns, {})
            for ns, found in checks[run.id].found_in.items():
                written_here.setdefault(ns, {}).setdefault(run.id, set()).update(found)
        by_id = {run.id: run for run in runs}
        done: dict[str, dict[str, Any]] = {}
        for ns, by_run in sorted(written_here.items()):
            self._await_reads(ns, by_run)
            listed = list_all_ids(self.target, ns)
            whole, delete_ids, kept = namespace_disposal(listed, set().union(*by_run.values()))
            deletable = set(delete_ids)
            proof = Proof()
            for run_id, ids in sorted(by_run.items()):
                run = by_id[run_id]
                mine = sorted(ids & deletable)
                proof.add(
                    delete_proven(
                        self.source,
                        run.source_namespace,
                        self.target,
                        mine,
                        self._route(run),
                        self.spec,
                        delete_from="target",
                        target_namespace=ns,
                    )
                )
            method, left_in_place = "delete_ids", None
            # Pinecone cannot drop the default namespace, and a namespace others wrote into is not ours to drop.
            if whole and listed and ns != DEFAULT_NAMESPACE and not proof.refused_count:
                left, complete = self._listed_last(ns)
                kept = sorted(set(kept).union(left).difference(proof.proven))  # others' writes since the first listing
                if complete and not left and self.target.delete_namespace_if_empty(ns):
                    method = "delete_namespace"
                elif not complete and set(left) <= set(proof.proven):  # a listing not shown complete may lag
                    left_in_place = freshness.LEFT_IN_PLACE
            done[ns] = {
                "method": method,
                "deleted": len(proof.proven),
                "kept": len(kept),
                "kept_examples": kept[:10],
                "refused_count": proof.refused_count,
                "refused": proof.refused[:10],
            }
            if left_in_place:
                done[ns]["namespace_left"] = left_in_place
            if proof.refused_count:
                done[ns]["reason"] = refusal(proof, "their copies were kept")
            log.info(
                "rollback of job %s: %s %r (%d deleted, %d kept, %d refused)",
                self.forward_job_id,
                method,
                display_namespace(ns),
                len(proof.proven),
                len(kept),
                proof.refused_count,
            )
        return done


def _tell_applications(ctx: WorkerContext, forward_job_id: int) -> None:
    """Publish the job's layout again for the applications that follow it (``published.layout_of``: a restored
    source is written on both sides again). Raises ``StateError`` when Redis cannot take it: nothing is removed."""
    try:
        told_at = published.publish_if_followed_at(ctx.db, ctx.redis, forward_job_id)
    except Exception as e:
        raise StateError(
            f"could not tell job {forward_job_id}'s applications that its originals are back ({type(e).__name__}): "
            "they would write the copies only; the originals are restored and verified, nothing was removed",
            job_id=forward_job_id,
        ) from e
    published.await_writers(told_at)  # every application follows it, and no write begun before is under way


def _rollout_problem(ctx: WorkerContext, forward_job_id: int) -> str | None:
    """Why the copies must stay: the job's rollout sends the applications' reads to them (``cutover set``)."""
    percent = rollout_rows.rollout_of(ctx.db, forward_job_id).percent
    if not percent:
        return None
    return (
        f"reads of job {forward_job_id} are {percent} % new: the applications read the copies the rollback would "
        f"remove; the originals are restored and verified, so `nsmigrate cutover set {forward_job_id} --reads old` "
        "can send the reads back to them; then run the rollback again"
    )


def _alias_problem(rb: _Rollback, runs: list[NamespaceRun]) -> str | None:
    """Why the copies must stay: namespace aliases of the target serve them (``workers.steps.alias_guard``)."""
    targets = {ns for r in runs for ns in _targets_of(r)}
    then = f"run `nsmigrate rollback {rb.forward_job_id}` again"
    instead = "the original namespace, if it is in the same index"
    if rb.spec.cutover.aliases is not None:  # the job's own aliases: one command points them all back
        instead = f"`nsmigrate cutover set {rb.forward_job_id} --reads old` points the job's aliases back"
    return alias_refusal(rb.target, targets, "the rollback", then, instead)


def _run_result(run: NamespaceRun, check: RestoreCheck, restored: int = 0) -> dict[str, Any]:
    return {
        "namespace": run.source_namespace,
        "passed": check.passed,
        "summary": check.summary,
        "restored": restored,
        "written": check.written,
    }


def rollback_job(
    ctx: WorkerContext, forward_job_id: int, *, dry_run: bool = False, actor: str | None = None
) -> dict[str, Any]:
    """Undo migrate job ``forward_job_id`` (see the module docstring for the steps and guarantees).

    Parameters:
        forward_job_id: the migration to undo.
        dry_run: only judge the originals and say what would be restored and deleted; nothing is written, and no
            rollback job is recorded.
        actor: who asked, for the audit log (default: this worker).

    Returns:
        ``{"forward_job_id", "rollback_job_id", "action": "rolled_back" | "already_rolled_back" | "refused" |
        "failed" | "dry_run", "reason"?, "runs": [{"namespace", "passed", "summary", "restored", "written"}],
        "namespaces": {target namespace: {"method", "deleted", "kept", …}}}``.

    Raises:
        NotFound: no job ``forward_job_id``.
        WrongJobKind: the job is not a migrate job.
        StateError: the job is still running, wrote text, compares values within a tolerance too loose to prove a
            copy equal, or namespace aliases serve its copies (nothing is done; exit code 1).
    """
    actor = actor or ctx.worker_name
    # Before its spec is read: another kind of job (an erasure) has no migrate spec to read.
    jobs_sync_rollback.refuse_unless_migrate(jobs_and_runs.find_job(ctx.db, forward_job_id))
    rb = _Rollback(ctx, forward_job_id, actor)
    if rb.spec.text_from is not None:
        # Its targets hold text records or new embeddings, not the originals: nothing to rebuild them from or to
        # check them against, and writing the target's vectors back would put another model's values in the source.
        raise StateError(
            f"job {forward_job_id} wrote text (integrated target or reembed): its targets hold no original vectors "
            "to restore or compare",
            hint="the source is intact unless it was cleaned; delete the job's target namespaces yourself",
            job_id=forward_job_id,
        )
    tolerance = rb.spec.verify.tolerance
    if tolerance > DELETION_MAX_TOLERANCE:
        # Its check of each copy against its original would count copies whose values differ as equal.
        raise StateError(
            f"job {forward_job_id} compares values within verify.tolerance {tolerance:g}, above "
            f"{DELETION_MAX_TOLERANCE:g}: a copy the application changed since could pass as equal to its original "
            "and be deleted",
            hint="compare the copies with their originals yourself and delete the job's target namespaces by hand",
            job_id=forward_job_id,
        )
    forward_runs = jobs_and_runs.runs_of(ctx.db, forward_job_id)
    unrecorded = sorted(r.source_namespace for r in forward_runs if r.source_may_be_deleted)
    if rb.spec.strategy in ("convert", "import") and unrecorded:
        # Pinecone wrote those copies (a conversion, a bulk import): no batch row names their ids, which is what a
        # rollback restores from, so it would restore none and report the job rolled back.
        raise StateError(
            f"job {forward_job_id} (strategy {rb.spec.strategy}) was copied by Pinecone, and a cleanup deleted source "
            f"ids of {len(unrecorded)} namespace(s) ({', '.join(map(repr, unrecorded[:5]))}): the job table names "
            "none of their copies' ids, so a rollback cannot restore them; nothing was restored or deleted",
            hint="restore the sources from the job's backup (`nsmigrate import`), or copy the target namespaces "
            "back with a job of their own",
            job_id=forward_job_id,
        )
    originals = {r.source_namespace for r in forward_runs}
    clash = sorted(ns for r in forward_runs for ns in _targets_of(r) if ns in originals)
    spec = rb.spec
    one_store = (
        one_store_problem(
            spec,
            ctx.guarded(spec.source, spec.rate),
            ctx.guarded(spec.target, spec.rate),
            marker_timeout_s=ctx.settings.identity_marker_timeout_s,
        )
        if clash
        else None
    )
    if one_store is not None:
        raise StateError(
            f"target namespace {clash[0]!r} is also an original namespace of job {forward_job_id} and {one_store}: "
            "removing it would remove an original",
            hint="roll this job back by hand",
            job_id=forward_job_id,
        )
    # The job's own aliases are asked once the originals are back (step 4): only then can `cutover set --reads old`
    # point them there, even after a cleanup.
    served = None if spec.cutover.aliases is not None else _alias_problem(rb, forward_runs)
    if served is not None:
        raise StateError(served, hint="repoint or delete those aliases first", job_id=forward_job_id)
    out: dict[str, Any] = {"forward_job_id": forward_job_id, "rollback_job_id": None, "runs": [], "namespaces": {}}
    if dry_run:
        checks = {r.id: rb.check(r, restore=False) for r in forward_runs}
        out["runs"] = [_run_result(r, checks[r.id]) for r in forward_runs]
        blocking = [c for c in checks.values() if c.mismatch_count or c.unrestorable_count]
        out["action"] = "refused" if blocking else "dry_run"
        if blocking:
            out["reason"] = "; ".join(blocking[0].reasons())
        else:  # where the real one would stop: restored and verified, nothing removed
            out["stops_before_delete"] = _alias_problem(rb, forward_runs) or _rollout_problem(ctx, forward_job_id)
        return out

    rollback_id, done = jobs_sync_rollback.open_rollback(ctx.db, forward_job_id, actor)
    out["rollback_job_id"] = rollback_id
    if done:
        out["action"] = "already_rolled_back"
        return out
    mine = {r.source_namespace: r for r in jobs_and_runs.runs_of(ctx.db, rollback_id)}
    todo = [r for r in forward_runs if mine[r.source_namespace].state != RunState.CLEANED]
    expected = {r.id: r.state for r in forward_runs}
    try:
        # 1. judge the originals as they are: any that differ → nothing is written at all.
        checks = {r.id: rb.check(r, restore=False) for r in todo}
        blocking = [c for c in checks.values() if c.mismatch_count or c.unrestorable_count]
        if blocking:
            return _refuse(ctx, rb, out, todo, mine, checks, blocking[0])
        # 2. write back the missing originals.
        restored: dict[int, int] = {}
        for r in todo:
            if checks[r.id].restore_count:
                jobs_sync_rollback.rollback_restoring(ctx.db, mine[r.source_namespace].id)
                restored[r.id] = rb.check(r, restore=True).restore_count
                if r.id in rb.reinstated:  # every original missing in step 1 came back with its table
                    restored[r.id] = checks[r.id].restore_count
                jobs_sync_rollback.rollback_restored(ctx.db, mine[r.source_namespace].id, restored[r.id], actor)
        # The originals are back: applications that follow the job write them again (a cleaned source was written
        # on the new side only) from before the check below, so it sees what they wrote meanwhile.
        _tell_applications(ctx, forward_job_id)
        # 3. verify every original again.
        checks = {r.id: rb.check(r, restore=False) for r in todo}
        for r in todo:
            c = checks[r.id]
            jobs_sync_rollback.rollback_checked(
                ctx.db, mine[r.source_namespace].id, c.to_json(), c.passed, actor, written=c.written
            )
        out["runs"] = [_run_result(r, checks[r.id], restored.get(r.id, 0)) for r in todo]
        if not all(c.passed for c in checks.values()):
            failed = next(c for c in checks.values() if not c.passed)
            return _refuse(ctx, rb, out, todo, mine, checks, failed, record=False)
        # 4. only now: claim the forward job and remove the targets (none an alias made since serves, nor any share
        # of the applications' reads through their DualWriteIndex).
        served = _alias_problem(rb, todo) or _rollout_problem(ctx, forward_job_id)
        if served is not None:
            raise StateError(served, job_id=forward_job_id)
        jobs_sync_rollback.claim_forward_runs(ctx.db, rollback_id, expected, actor)
        removed = rb.delete_targets(todo, checks)
        for r in todo:
            detail: dict[str, Any] = {
                "restored": restored.get(r.id, 0),
                "namespaces": {ns: removed[ns] for ns in _targets_of(r) if ns in removed},
            }
            if not any(d["refused_count"] for d in detail["namespaces"].values()):
                jobs_sync_rollback.rollback_run_done(ctx.db, mine[r.source_namespace].id, detail, actor)
        refused = {ns: d for ns, d in removed.items() if d["refused_count"]}
        if refused:
            ns, d = next(iter(sorted(refused.items())))
            reason = (
                f"target namespace {display_namespace(ns)!r}: {d['reason']}; the originals changed after they were "
                "verified: decide by hand, then run the rollback again"
            )
            jobs_sync_rollback.finish_rollback(ctx.db, rollback_id, actor, passed=False, reason=reason)
            out.update(action="refused", reason=reason, namespaces=removed)
            return out
        jobs_sync_rollback.finish_rollback(ctx.db, rollback_id, actor, passed=True)
    except NsmigrateError as e:
        reason = f"{type(e).__name__}: {e}"
        log.info("rollback of job %s stopped: %s", forward_job_id, reason)  # the caller reports it (cleaning._refuse)
        jobs_sync_rollback.finish_rollback(ctx.db, rollback_id, actor, passed=False, reason=reason)
        out.update(
            action="failed" if not isinstance(e, StateError) else "refused",
            reason=f"{reason}; run the rollback again once the cause is fixed",
        )
        return out
    out["action"] = "rolled_back"
    out["namespaces"] = removed
    return out


def _refuse(
    ctx: WorkerContext,
    rb: _Rollback,
    out: dict[str, Any],
    todo: list[NamespaceRun],
    mine: dict[str, NamespaceRun],
    checks: dict[int, RestoreCheck],
    failed: RestoreCheck,
    *,
    record: bool = True,
) -> dict[str, Any]:
    """Refuse the rollback before anything is deleted; with ``record``, store every run's report first."""
    if record:
        for r in todo:
            c = checks[r.id]
            jobs_sync_rollback.rollback_checked(
                ctx.db, mine[r.source_namespace].id, c.to_json(), c.passed, rb.actor, written=c.written
            )
        out["runs"] = [_run_result(r, checks[r.id]) for r in todo]
    reason = f"the originals could not be verified: {'; '.join(failed.reasons())}; nothing was deleted"
    jobs_sync_rollback.finish_rollback(ctx.db, out["rollback_job_id"], rb.actor, passed=False, reason=reason)
    out.update(action="refused", reason=reason)
    log.info("rollback of job %s refused: %s", rb.forward_job_id, reason)  # the caller reports it (cleaning._refuse)
    return out

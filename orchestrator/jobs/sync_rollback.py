"""Bookkeeping of sync (copy a finished run's new and changed ids again) and rollback (restore the originals, then
remove what a migration wrote). The store work lives in ``workers.steps.syncing`` and ``workers.steps.rollback``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.errors import StateError, WrongJobKind
from nsmigrate.orchestrator.jobs.database import Database, _get_job, _get_run, _move_run, add_event
from nsmigrate.orchestrator.jobs.jobs_and_runs import stopped_reason
from nsmigrate.orchestrator.jobs.lifecycle import ROLLBACK_READY_STATES, SYNCABLE_RUN_STATES
from nsmigrate.orchestrator.jobs.verdicts import _cleaned, _record_judgement
from nsmigrate.orchestrator.models import (
    Batch,
    Event,
    HeldMetadata,
    Job,
    JobKind,
    JobState,
    NamespaceRun,
    RunState,
)


def written_ids(db: Database, run_id: int) -> list[str]:
    """Every id the run's batches may have written — those of every batch that ran at least once (the first copy's
    and every sync's; a failed batch may have written some chunks) — each once, in batch order."""
    with db.transaction() as s:
        rows = s.scalars(sa.select(Batch.ids).where(Batch.run_id == run_id, Batch.attempts > 0).order_by(Batch.seq))
        return list(dict.fromkeys(i for ids in rows for i in ids))


def record_held_metadata(db: Database, run_id: int, ids: Sequence[str], held: Mapping[str, Mapping[str, Any]]) -> None:
    """Record, before a cleanup deletes ``ids``, what those in ``held`` hold under keys the enrichment writes (id →
    values), and that the others hold nothing there: a row an earlier cleanup left of one of them (its delete did not
    happen, and the record was written again since) no longer applies."""
    with db.transaction() as s:
        holding_nothing = [i for i in ids if i not in held]
        if holding_nothing:
            s.execute(
                sa.delete(HeldMetadata).where(
                    HeldMetadata.run_id == run_id, HeldMetadata.record_id.in_(holding_nothing)
                )
            )
        if held:
            rows = [{"run_id": run_id, "record_id": id_, "held": dict(values)} for id_, values in held.items()]
            insert = pg_insert(HeldMetadata).values(rows)
            key = [HeldMetadata.run_id, HeldMetadata.record_id]
            s.execute(insert.on_conflict_do_update(index_elements=key, set_={"held": insert.excluded.held}))


def held_metadata(db: Database, run_id: int, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What a cleanup of ``run_id`` recorded of ``ids`` (``record_held_metadata``): id → key → the original's value."""
    if not ids:
        return {}
    where = (HeldMetadata.run_id == run_id, HeldMetadata.record_id.in_(ids))
    with db.transaction() as s:
        return {
            record_id: held
            for record_id, held in s.execute(sa.select(HeldMetadata.record_id, HeldMetadata.held).where(*where))
        }


def _sync_refusal(s: Session, run: NamespaceRun) -> str | None:
    job = s.get(Job, run.job_id)
    assert job is not None
    if job.kind != JobKind.MIGRATE:
        return f"job {job.id} is a {job.kind} job; only a migrate job can be synced"
    stopped = stopped_reason(s, job.id, job.state)
    if stopped is not None:
        return stopped
    if run.state == RunState.CLEANED:
        return (
            "its source namespace was deleted by cleanup: there is nothing left to sync from "
            "(writers must already be on the target)"
        )
    if run.state not in SYNCABLE_RUN_STATES:
        return (
            f"the run is {run.state}; sync runs once its copy finished (copied, verified or verify_failed): "
            "wait for it, or `nsmigrate retry` its failed batches"
        )
    return None


def sync_refusal(db: Database, run_id: int) -> str | None:
    """Why ``run_id`` cannot be synced now, or None."""
    with db.transaction() as s:
        return _sync_refusal(s, _get_run(s, run_id))


def propagate_refusal(db: Database, run_id: int) -> str | None:
    """Why ``sync --propagate-deletes`` may not delete from the target of ``run_id`` the ids its source lacks, or
    None: a cleanup deleted source ids (or is deleting them) whose copies this would delete, so an id missing from the
    source may be one whose target copy is now the only one. That cleanup is the run's own, or another migrate run's
    that writes into one of its target namespaces too (a merge, a routing, a job run again with ``--new``: an id
    absent here may be that run's copy). Another source store writing there refuses as well: its ids cannot be read
    to tell its copies from stale ones (``workers.steps.syncing`` spares those of this store's other namespaces).
    Asked again after each read of the source, right before its delete: a cleanup whose deletes that read saw had
    started (``cleaning``, under the run's row lock) before it."""
    with db.transaction() as s:
        run = _get_run(s, run_id)
        if run.state in (RunState.CLEANING, RunState.CLEANED):
            return (
                f"a cleanup of this namespace is {'under way' if run.state == RunState.CLEANING else 'done'}: the ids "
                "it deleted from the source have their only copies in the target, so --propagate-deletes is off here"
            )
        if run.deleted_by_cleanup:
            return (
                f"an earlier cleanup deleted {run.deleted_by_cleanup} of this namespace's source ids: they are gone "
                "from the source on purpose and their copies are the only ones left, so --propagate-deletes is off here"
            )
        if run.source_may_be_deleted:
            return (
                "a cleanup of this namespace stopped part-way (its job cancelled, or its worker lost) and may have "
                "deleted source ids: their copies may be the only ones left, so --propagate-deletes is off here"
            )
        # One statement for all of its target namespaces: a routed run may write hundreds, asked before each delete.
        for other in _other_writers(s, run, _target_names(run)):
            if other.source_may_be_deleted and other.source_namespace == run.source_namespace:
                return (
                    f"a cleanup of job {other.job_id} deleted (or is deleting) this source namespace's ids, and "
                    "their copies in the target are the ones this job wrote too: they may be the only ones left, "
                    "so --propagate-deletes is off here"
                )
            if other.source_may_be_deleted:
                return (
                    f"a cleanup of source namespace {other.source_namespace!r} (job {other.job_id}), which writes "
                    f"into target namespace {other.shared!r} too, deleted (or is deleting) its ids: an id this "
                    "source lacks may be its copy, now the only one, so --propagate-deletes is off here"
                )
            if not other.same_source:
                return (
                    f"job {other.job_id} writes into target namespace {other.shared!r} too, from another "
                    "source store: an id this source lacks may be its copy, so --propagate-deletes is off here"
                )
        return None


@dataclass(frozen=True)
class OtherWriter:
    """Another migrate run that writes a target namespace a run writes (a merge, a routing, another job)."""

    job_id: int
    source_namespace: str
    #: The first of the run's target namespaces it writes too.
    shared: str
    #: Its source is the same store as the run's, so ``source_namespace`` can be read with the run's source.
    same_source: bool
    #: A cleanup deleted (or may have deleted) its source ids: a copy it wrote may be the only one left.
    source_may_be_deleted: bool


def other_writers(db: Database, run_id: int, target_namespace: str) -> list[OtherWriter]:
    """The other migrate runs, of any job into the same target store, that write ``target_namespace`` too."""
    with db.transaction() as s:
        return _other_writers(s, _get_run(s, run_id), [target_namespace])


def _other_writers(s: Session, run: NamespaceRun, namespaces: Sequence[str]) -> list[OtherWriter]:
    """The other migrate runs into ``run``'s target store that write one of ``namespaces`` too."""
    from nsmigrate.orchestrator.spec.store_identity import key_of_json

    if not namespaces:
        return []
    spec = s.scalar(sa.select(Job.spec).where(Job.id == run.job_id)) or {}
    source, target = key_of_json(spec.get("source")), key_of_json(spec.get("target"))
    rows = s.execute(
        sa.select(NamespaceRun, Job.spec)
        .join(Job, Job.id == NamespaceRun.job_id)
        .where(
            NamespaceRun.id != run.id,
            Job.kind == JobKind.MIGRATE,
            sa.or_(
                NamespaceRun.target_namespace.in_(namespaces),
                NamespaceRun.target_namespaces.op("?|")(sa.cast(list(namespaces), ARRAY(sa.Text))),
            ),
        )
        .order_by(NamespaceRun.id)
    )
    writers = []
    for other, other_spec in rows:
        # The statement matched either column; which one a run writes is the other's choice (``_target_names``).
        theirs = set(_target_names(other))
        shared = [ns for ns in namespaces if ns in theirs]
        if shared and key_of_json((other_spec or {}).get("target")) == target:
            writers.append(
                OtherWriter(
                    other.job_id,
                    other.source_namespace,
                    shared[0],
                    key_of_json((other_spec or {}).get("source")) == source,
                    other.source_may_be_deleted or bool(other.deleted_by_cleanup),
                )
            )
    return writers


def _target_names(run: NamespaceRun) -> list[str]:
    return [run.target_namespace] if run.target_namespace is not None else list(run.target_namespaces or [])


def start_sync(db: Database, run_id: int, id_batches: Sequence[Sequence[str]], actor: str, **detail: Any) -> list[int]:
    """copied/verified/verify_failed → copying, with one new batch per group of ids a sync found new or changed, and
    the ``sync`` audit event carrying ``detail`` (its counts) — one transaction. The last batch to finish marks the
    run copied and verification follows, exactly as after the first copy; with no batches the caller marks it
    copied at once (``maybe_mark_copied``). The job is running again until its runs are final.

    Raises:
        StateError: the run cannot be synced (cleaned, still copying, cancelled; another sync got there first).
    """
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        refusal = _sync_refusal(s, run)
        if refusal is not None:
            raise StateError(
                f"cannot sync namespace {run.source_namespace!r}: {refusal}", job_id=run.job_id, run_id=run.id
            )
        new = [Batch(run_id=run_id, seq=run.batches_total + n, ids=list(ids)) for n, ids in enumerate(id_batches)]
        s.add_all(new)
        run.batches_total += len(new)
        run.listed += sum(len(b.ids) for b in new)
        _move_run(run, RunState.COPYING)
        s.execute(sa.update(Job).where(Job.id == run.job_id).values(state=JobState.RUNNING))
        s.flush()
        add_event(s, "sync", actor, run.job_id, run.id, namespace=run.source_namespace, batches=len(new), **detail)
        return [b.id for b in new]


def refuse_unless_migrate(forward: Job) -> None:
    """Raise ``WrongJobKind`` unless ``forward`` is a migrate job: only a migration can be rolled back."""
    if forward.kind != JobKind.MIGRATE:
        raise WrongJobKind(
            f"job {forward.id} is a {forward.kind} job; only a migrate job can be rolled back",
            hint="give the id of the migration to undo",
            job_id=forward.id,
        )


def open_rollback(db: Database, forward_job_id: int, actor: str) -> tuple[int, bool]:
    """The rollback job (kind ``rollback``, ``parent_job_id`` = the forward job) to work on, and whether an earlier
    rollback already completed. The newest rollback job is taken up again unless all its runs are ``cleaned`` (a
    refused or interrupted rollback resumes in place); otherwise a new one is written with one run per forward run
    (same ``source_namespace``: the original it restores; ``target_namespaces``: the namespaces it removes).

    Raises:
        WrongJobKind: the job is not a migrate job.
        StateError: one of its runs is still listing, copying, verifying or cleaning (cancel it or wait first).
    """
    with db.transaction() as s:
        forward = _get_job(s, forward_job_id, lock=True)
        refuse_unless_migrate(forward)
        runs = list(
            s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == forward.id).order_by(NamespaceRun.id))
        )
        busy = [r for r in runs if r.state not in ROLLBACK_READY_STATES]
        if busy:
            raise StateError(
                f"job {forward.id} is still working: namespace {busy[0].source_namespace!r} is {busy[0].state}"
                + (f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""),
                hint=f"wait for it, or `nsmigrate cancel {forward.id}`, then roll back",
                job_id=forward.id,
            )
        existing = s.scalars(
            sa.select(Job)
            .where(Job.parent_job_id == forward.id, Job.kind == JobKind.ROLLBACK)
            .order_by(Job.id.desc())
            .limit(1)
        ).one_or_none()
        if existing is not None:
            states = set(s.scalars(sa.select(NamespaceRun.state).where(NamespaceRun.job_id == existing.id)))
            if states <= {RunState.CLEANED}:
                return existing.id, True
            existing.state = JobState.RUNNING
            add_event(s, "rollback_resumed", actor, existing.id, forward_job_id=forward.id)
            return existing.id, False
        job = Job(
            name=f"{forward.name}.rollback"[:64],
            kind=JobKind.ROLLBACK,
            spec=forward.spec,
            state=JobState.RUNNING,
            parent_job_id=forward.id,
        )
        s.add(job)
        s.flush()
        for r in runs:
            targets = [r.target_namespace] if r.target_namespace is not None else list(r.target_namespaces or [])
            s.add(
                NamespaceRun(
                    job_id=job.id,
                    source_store=r.target_store,
                    source_namespace=r.source_namespace,
                    target_store=r.source_store,
                    target_namespace=r.source_namespace,
                    creator_id=r.creator_id,
                    twin_id=r.twin_id,
                    target_namespaces=targets,
                    listing_done=True,
                )
            )
        add_event(
            s, "job_created", actor, job.id, kind=str(JobKind.ROLLBACK), forward_job_id=forward.id, namespaces=len(runs)
        )
        add_event(s, "rollback_started", actor, forward.id, rollback_job_id=job.id)
        return job.id, False


def rollback_checked(
    db: Database, run_id: int, report: dict[str, Any], passed: bool, actor: str, *, written: int
) -> None:
    """A rollback run's originals were judged: verified (they match the targets) or verify_failed (nothing will be
    deleted), with the report and the number of ids the forward run wrote."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        run.source_count = written
        _record_judgement(s, run, report, passed, actor, ("originals_verified", "originals_refused"))


def rollback_restoring(db: Database, run_id: int) -> None:
    """A rollback run starts writing missing originals back (copying)."""
    with db.transaction() as s:
        _move_run(_get_run(s, run_id, lock=True), RunState.COPYING)


def rollback_restored(db: Database, run_id: int, restored: int, actor: str) -> None:
    """copying → copied: ``restored`` originals were written back from the targets."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        _move_run(run, RunState.COPIED)
        run.copied += restored
        add_event(s, "originals_restored", actor, run.job_id, run.id, namespace=run.source_namespace, count=restored)


def claim_forward_runs(db: Database, rollback_job_id: int, expected: dict[int, str], actor: str) -> None:
    """Right before a rollback deletes anything: every forward run must still be in the state it was in when the
    originals were verified (``expected``: run id → state); then they all become cancelled, with the forward job, so
    no cleanup, sync or verify of the forward job can run against a rolled-back migration. Rollback runs → cleaning.

    Raises:
        StateError: a forward run changed meanwhile (e.g. a cleanup or sync ran), or a `cutover set` sent reads to
            the copies since the rollback asked; nothing is claimed.
    """
    with db.transaction() as s:
        rollback = s.get(Job, rollback_job_id)
        assert rollback is not None and rollback.parent_job_id is not None
        # The forward job's row lock, which `cutover set` takes to record a step (``cutover.rollout``): a step that
        # committed first is seen here; one after finds the job cancelled and is refused.
        s.scalars(sa.select(Job.id).where(Job.id == rollback.parent_job_id).with_for_update()).one()
        step = s.execute(
            sa.select(Event.detail)
            .where(Event.job_id == rollback.parent_job_id, Event.action == "cutover_set")
            .order_by(Event.id.desc())
            .limit(1)
        ).scalar()
        if step and step.get("percent"):
            raise StateError(
                f"reads of job {rollback.parent_job_id} moved to {step['percent']} % new while the rollback checked: "
                "the applications read the copies it would remove; nothing was deleted",
                hint=f"`nsmigrate cutover set {rollback.parent_job_id} --reads old`, then run the rollback again",
                job_id=rollback.parent_job_id,
            )
        runs = list(
            s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == rollback.parent_job_id).with_for_update())
        )
        changed = [r for r in runs if r.state != expected.get(r.id, r.state)]
        if changed:
            raise StateError(
                f"namespace {changed[0].source_namespace!r} of job {rollback.parent_job_id} changed while the rollback "
                f"checked it (now {changed[0].state}); nothing was deleted",
                hint="run the rollback again",
                job_id=rollback.parent_job_id,
            )
        for r in runs:
            _move_run(r, RunState.CANCELLED)
        s.execute(sa.update(Job).where(Job.id == rollback.parent_job_id).values(state=JobState.CANCELLED))
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == rollback_job_id, NamespaceRun.state != RunState.CLEANED)
            .values(state=RunState.CLEANING)
        )
        add_event(s, "rolled_back", actor, rollback.parent_job_id, rollback_job_id=rollback_job_id)


def rollback_run_done(db: Database, run_id: int, detail: dict[str, Any], actor: str) -> None:
    """cleaning → cleaned: the run's target namespaces (or its ids in them) are gone; ``detail`` says what went."""
    _cleaned(db, run_id, detail, actor, "targets_deleted")


def finish_rollback(db: Database, rollback_job_id: int, actor: str, *, passed: bool, reason: str = "") -> None:
    """The rollback job is finished: completed, or refused/failed with ``reason`` (its runs say where)."""
    with db.transaction() as s:
        job = s.get(Job, rollback_job_id)
        assert job is not None
        job.state = JobState.FINISHED
        add_event(
            s,
            "rollback_finished" if passed else "rollback_refused",
            actor,
            job.id,
            forward_job_id=job.parent_job_id,
            reason=reason or None,
        )

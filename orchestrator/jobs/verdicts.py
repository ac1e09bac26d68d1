"""Verification and cleanup transitions of a namespace run: verifying → verified/verify_failed, verified → cleaning
→ cleaned (or back, with the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.errors import StateError
from orchestrator.jobs.database import Database, _event, _get_run, _is_rollback_run, _move_run
from orchestrator.jobs.lifecycle import VERIFIABLE_RUN_STATES, states_that_may_move_to
from orchestrator.models import Job, JobKind, NamespaceRun, RunState


def start_verify(db: Database, run_id: int, *, judged_too: bool = True) -> tuple[NamespaceRun, Neighbours] | None:
    """copied (``judged_too``: or verified, verify_failed) or verifying → verifying: the run as it is now and what
    verifying it needs to know of its job (``Neighbours``), read in the same transaction. None when it cannot be
    verified: another state, or a rollback job's run (it names an original as its source; rollback verifies it
    itself). ``judged_too=False`` keeps a verdict already recorded (a grouped verification sent again).

    One UPDATE … RETURNING moves and reads the run: a job of 12,000 small namespaces verifies 12,000 times."""
    from_states = [*VERIFIABLE_RUN_STATES, RunState.VERIFYING] if judged_too else [RunState.COPIED, RunState.VERIFYING]
    rollback = sa.exists().where(Job.id == NamespaceRun.job_id, Job.kind == JobKind.ROLLBACK)
    move = (
        sa.update(NamespaceRun)
        .where(NamespaceRun.id == run_id, NamespaceRun.state.in_(from_states), ~rollback)
        .values(state=RunState.VERIFYING)
        .returning(NamespaceRun)
    )
    with db.transaction() as s:
        run = s.scalars(move, execution_options={"synchronize_session": False}).one_or_none()
        if run is None:
            _get_run(s, run_id)  # NotFound when there is no such run
            return None
        return run, _neighbours(s, db, run)


def finish_verify(db: Database, run_id: int, report: dict[str, Any], passed: bool, actor: str) -> None:
    """verifying → verified/verify_failed with its report and the audit event, in two statements (``start_verify``
    says why). StateError when the run moved meanwhile (cancelled) to a state a verdict cannot follow."""
    to_state = RunState.VERIFIED if passed else RunState.VERIFY_FAILED
    judge = (
        sa.update(NamespaceRun)
        .where(NamespaceRun.id == run_id, NamespaceRun.state.in_(states_that_may_move_to(to_state)))
        .values(state=to_state, verification=report)
        .returning(NamespaceRun.job_id, NamespaceRun.source_namespace)
    )
    with db.transaction() as s:
        judged = s.execute(judge, execution_options={"synchronize_session": False}).one_or_none()
        if judged is None:
            _move_run(_get_run(s, run_id), to_state)  # raises: NotFound, or StateError naming both states
            raise AssertionError(f"run {run_id} may move to {to_state} yet was not moved")  # pragma: no cover
        job_id, namespace = judged
        action = "verified" if passed else "verify_failed"
        _event(s, action, actor, job_id, run_id, namespace=namespace, summary=report.get("summary"))


def _record_judgement(
    s: Session, run: NamespaceRun, report: dict[str, Any], passed: bool, actor: str, actions: tuple[str, str]
) -> None:
    """verified / verify_failed with its report and an audit event (``actions``: the event names for pass, fail)."""
    _move_run(run, RunState.VERIFIED if passed else RunState.VERIFY_FAILED)
    run.verification = report
    _event(
        s,
        actions[0] if passed else actions[1],
        actor,
        run.job_id,
        run.id,
        namespace=run.source_namespace,
        summary=report.get("summary"),
    )


def start_cleanup(db: Database, run_id: int) -> NamespaceRun:
    """verified → cleaning, or StateError saying why not. The caller re-checks the source fingerprint first."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if _is_rollback_run(s, run):
            # Its "source" is a restored original: cleanup must never delete it.
            raise StateError(
                f"run {run.id} belongs to a rollback job: there is no source to clean up",
                hint="cleanup acts on migrate jobs only",
                job_id=run.job_id,
                run_id=run.id,
            )
        if run.state != RunState.VERIFIED:
            # No event here: it would roll back with the raise; callers (workers.cleaning) record the refusal.
            raise StateError(
                f"refusing to delete source namespace {run.source_namespace!r}: its run is {run.state}, not verified",
                hint="run `nsmigrate verify JOB` first; only a verified namespace can be cleaned up",
                job_id=run.job_id,
                run_id=run.id,
            )
        _move_run(run, RunState.CLEANING)
        return run


def finish_cleanup(db: Database, run_id: int, detail: dict[str, Any], actor: str) -> None:
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        _move_run(run, RunState.CLEANED)
        run.cleanup = detail
        _event(s, "source_deleted", actor, run.job_id, run.id, namespace=run.source_namespace, **detail)


def abort_cleanup(db: Database, run_id: int, reason: str, actor: str, back_to: RunState) -> None:
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        _move_run(run, back_to)
        _event(s, "cleanup_refused", actor, run.job_id, run.id, namespace=run.source_namespace, reason=reason)


@dataclass(frozen=True)
class Neighbours:
    """What verifying one run needs to know of the rest of its job, read without loading the job's runs (a job of
    12,000 namespaces would load them once per verification)."""

    #: The other runs that write (or may still write) into the run's fixed target namespace: those with the same
    #: fixed target and every routed run (its targets are known only once it copied). Empty for a routed run.
    writers: list[NamespaceRun]
    #: Runs in the job.
    runs: int
    #: The lowest run id among the twin runs of the run's creator (None without a creator and a twin).
    first_twin_run: int | None


def _neighbours(s: Session, db: Database, run: NamespaceRun) -> Neighbours:
    """Indexed reads (``ix_runs_job_target``, ``ix_runs_job_creator``): a job of 12,000 runs is never scanned."""
    writers: list[NamespaceRun] = []
    if run.target_namespace is not None:
        writers = list(
            s.scalars(
                sa.select(NamespaceRun).where(
                    NamespaceRun.job_id == run.job_id,
                    NamespaceRun.id != run.id,
                    sa.or_(
                        NamespaceRun.target_namespace == run.target_namespace,
                        NamespaceRun.target_namespace.is_(None),
                    ),
                )
            )
        )
    first_twin = None
    if run.creator_id is not None and run.twin_id is not None:
        first_twin = s.scalar(
            sa.select(sa.func.min(NamespaceRun.id)).where(
                NamespaceRun.job_id == run.job_id,
                NamespaceRun.creator_id == run.creator_id,
                NamespaceRun.twin_id.is_not(None),
            )
        )
    return Neighbours(writers, _run_count(s, db, run.job_id), first_twin)


def _run_count(s: Session, db: Database, job_id: int) -> int:
    """Runs in the job, counted once per process: a job's runs are written with it and never added to."""
    count = db._run_counts.get(job_id)
    if count is None:
        count = s.scalar(sa.select(sa.func.count()).where(NamespaceRun.job_id == job_id)) or 0
        db._run_counts[job_id] = count
    return count

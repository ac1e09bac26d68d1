"""Verification and cleanup transitions of a namespace run: verifying → verified/verify_failed, verified → cleaning
→ cleaned (or back, with the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.errors import StateError
from orchestrator.jobs.database import Database, _event, _get_run, _is_rollback_run, _move_run
from orchestrator.jobs.lifecycle import VERIFIABLE_RUN_STATES
from orchestrator.models import NamespaceRun, RunState


def start_verify(db: Database, run_id: int) -> NamespaceRun | None:
    """copied/verified/verify_failed → verifying; the run as it is now, or None when it cannot be verified. Never
    for a rollback job's runs: they name an original as their source, and rollback verifies them itself."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if run.state not in (*VERIFIABLE_RUN_STATES, RunState.VERIFYING):
            return None
        if _is_rollback_run(s, run):
            return None
        _move_run(run, RunState.VERIFYING)
        return run


def finish_verify(db: Database, run_id: int, report: dict[str, Any], passed: bool, actor: str) -> None:
    with db.transaction() as s:
        _record_judgement(s, _get_run(s, run_id, lock=True), report, passed, actor, ("verified", "verify_failed"))


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


def neighbours(db: Database, run: NamespaceRun) -> Neighbours:
    with db.transaction() as s:
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
        runs = s.scalar(sa.select(sa.func.count()).where(NamespaceRun.job_id == run.job_id)) or 0
        first_twin = None
        if run.creator_id is not None and run.twin_id is not None:
            first_twin = s.scalar(
                sa.select(sa.func.min(NamespaceRun.id)).where(
                    NamespaceRun.job_id == run.job_id,
                    NamespaceRun.creator_id == run.creator_id,
                    NamespaceRun.twin_id.is_not(None),
                )
            )
    return Neighbours(writers, int(runs), first_twin)

"""Verification and cleanup transitions of a namespace run: verifying → verified/verify_failed, verified → cleaning
→ cleaned (or back, with the reason)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.errors import StateError
from orchestrator.jobs.database import Database, _event, _get_run, _is_rollback_run, _move_run
from orchestrator.jobs.lifecycle import VERIFIABLE_RUN_STATES
from orchestrator.models import NamespaceRun, RunState


def start_verify(db: Database, run_id: int) -> bool:
    """copied/verified/verify_failed → verifying. Never for a rollback job's runs: they name an original as their
    source, and rollback verifies them itself."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if run.state not in (*VERIFIABLE_RUN_STATES, RunState.VERIFYING):
            return False
        if _is_rollback_run(s, run):
            return False
        _move_run(run, RunState.VERIFYING)
        return True


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

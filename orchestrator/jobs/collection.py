"""The job table's side of a ``strategy: collection`` or ``strategy: import`` job (and, through
``orchestrator.jobs.conversion``, ``strategy: convert``): its phase (``jobs.phase``, see ``CollectionPhase``,
``ImportPhase`` and ``ConvertPhase``) and its namespace runs, which wait in ``copying`` while Pinecone makes the
collection and the index (or workers write the import files and Pinecone imports them), become ``copied`` with the
counts the index reports, and are then verified like any run. Each change is one transaction with its audit event,
named after the strategy (``collection_restored``, ``import_imported``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.errors import NotFound, StopAsked
from nsmigrate.orchestrator.jobs.database import Database, _get_job, _move_run, add_event, default_actor
from nsmigrate.orchestrator.jobs.lifecycle import LISTABLE_RUN_STATES, check_phase_transition
from nsmigrate.orchestrator.models import CollectionPhase, Event, Job, JobState, NamespaceRun, RunState
from nsmigrate.orchestrator.states import UNSTOPPABLE_PHASES, ConvertPhase, ImportPhase, phase_name, strategy_of_phase


def _runs(s: Session, job_id: int, *states: RunState) -> list[NamespaceRun]:
    stmt = sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id, NamespaceRun.state.in_(states))
    return list(s.scalars(stmt.order_by(NamespaceRun.id).with_for_update()))


def job_phase(db: Database, job_id: int) -> str | None:
    """The job's phase (None: not started, or a job of strategy fleet)."""
    with db.transaction() as s:
        return s.scalar(sa.select(Job.phase).where(Job.id == job_id))


def enter_phase(
    db: Database, job_id: int, phase: CollectionPhase | ImportPhase | ConvertPhase | str, **detail: Any
) -> bool:
    """Move the job to ``phase`` with an audit event ``<strategy>_<phase>`` carrying ``detail``, and its unfinished
    runs to ``copying`` (also when it is in that phase already: a retried job's runs). False when the phase was
    already ``phase`` (no event written). A phase with its progress (``importing 42%``) is written as it is; only a
    change of phase writes an event.

    Raises:
        StateError: ``lifecycle.COLLECTION_PHASE_TRANSITIONS`` forbids the move.
        StopAsked: the job was cancelled, and ``phase`` is one nothing would stop (``UNSTOPPABLE_PHASES``): the step
            must not start it.
    """
    with db.transaction() as s:
        job = _get_job(s, job_id, lock=True)  # under the lock `cancel_job` takes: one of the two comes first
        if job.state == JobState.CANCELLED and phase_name(phase) in UNSTOPPABLE_PHASES and job.phase != phase:
            raise StopAsked(f"job {job_id} was cancelled: {phase_name(phase)} is not started")
        for run in _runs(s, job_id, *LISTABLE_RUN_STATES):
            _move_run(run, RunState.COPYING)
        if job.phase == phase:
            return False
        check_phase_transition(job_id, job.phase, phase)
        moved = phase_name(job.phase) != phase_name(phase)
        job.phase = str(phase)
        if moved:
            add_event(s, f"{strategy_of_phase(phase)}_{phase_name(phase)}", default_actor(), job_id, **detail)
        return moved


def collection_restored(
    db: Database,
    job_id: int,
    counts: Mapping[str, int],
    *,
    phase: CollectionPhase | ImportPhase | ConvertPhase = CollectionPhase.RESTORED,
    **detail: Any,
) -> list[int]:
    """The index made from the collection is ready (or the import completed: ``phase`` ``imported``): the job's
    runs become ``copied`` with the vector counts the index reports per target namespace, and the job ``phase``.
    Returns the runs to verify (none if it was done before)."""
    with db.transaction() as s:
        job = _get_job(s, job_id, lock=True)
        check_phase_transition(job_id, job.phase, phase)
        job.phase = phase
        restored = []
        for run in _runs(s, job_id, *LISTABLE_RUN_STATES):
            _move_run(run, RunState.COPYING)
            _move_run(run, RunState.COPIED)
            count = int(counts.get(_written_into(run), 0))
            run.listed = run.copied = count
            run.listing_done, run.last_error = True, None
            run.target_namespaces = [_written_into(run)]
            restored.append(run.id)
        event = f"{strategy_of_phase(phase)}_{phase}"
        add_event(s, event, default_actor(), job_id, namespaces=len(restored), **detail)
        return restored


def collection_failed(db: Database, job_id: int, error: str, strategy: str = "collection") -> int:
    """A step failed for good: the job's unfinished runs end ``list_failed`` with the error (so `status` shows it and
    waits end); the phase stays, and `nsmigrate retry` goes on from it. Returns how many runs it stopped."""
    with db.transaction() as s:
        job = _get_job(s, job_id, lock=True)
        runs = _runs(s, job_id, *LISTABLE_RUN_STATES)
        for run in runs:
            _move_run(run, RunState.LIST_FAILED)
            run.last_error = error[:2000]
        add_event(s, f"{strategy}_failed", default_actor(), job_id, phase=job.phase, error=error)
        return len(runs)


def files_written(db: Database, job_id: int, run_id: int, records: int, **detail: Any) -> None:
    """``strategy: import``: the run's import files are written, ``records`` of them (its ``listed`` and
    ``copied``; ``listing_done`` marks it written, so a step taken again skips it)."""
    with db.transaction() as s:
        run = s.get(NamespaceRun, run_id, with_for_update=True)
        if run is None or run.job_id != job_id:
            raise NotFound(f"namespace run {run_id} of job {job_id} does not exist", job_id=job_id)
        run.listed = run.copied = records
        run.listing_done = True
        add_event(s, "import_files_written", default_actor(), job_id, run_id, records=records, **detail)


def latest_detail(db: Database, job_id: int, action: str) -> dict[str, Any] | None:
    """The detail of the job's latest audit event ``action`` (None: there is none)."""
    with db.transaction() as s:
        stmt = sa.select(Event.detail).where(Event.job_id == job_id, Event.action == action)
        return s.scalar(stmt.order_by(Event.id.desc()).limit(1))


def _written_into(run: NamespaceRun) -> str:
    """The namespace a run of a whole-index strategy wrote: its target, the default namespace ``""`` included."""
    return run.source_namespace if run.target_namespace is None else run.target_namespace

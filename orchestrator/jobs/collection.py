"""The job table's side of a ``strategy: collection`` job: its phase (``jobs.phase``, see ``CollectionPhase``) and its
namespace runs, which wait in ``copying`` while Pinecone makes the collection and the index, become ``copied`` with
the counts of the restored index, and are then verified like any run. Each change is one transaction with its audit
event. The phase moves, the hand-over to verification and a failed step are shared with ``strategy: convert``
(``orchestrator.jobs.conversion``): each phase names its strategy (``states.PHASE_STRATEGIES``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.jobs.database import Database, _move_run, add_event, default_actor
from nsmigrate.orchestrator.jobs.lifecycle import LISTABLE_RUN_STATES, check_phase_transition
from nsmigrate.orchestrator.models import CollectionPhase, ConvertPhase, Job, NamespaceRun, RunState
from nsmigrate.orchestrator.states import PHASE_STRATEGIES


def _job(s: Session, job_id: int) -> Job:
    job = s.scalars(sa.select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return job


def _runs(s: Session, job_id: int, *states: RunState) -> list[NamespaceRun]:
    stmt = sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id, NamespaceRun.state.in_(states))
    return list(s.scalars(stmt.order_by(NamespaceRun.id).with_for_update()))


def job_phase(db: Database, job_id: int) -> str | None:
    """The job's collection or convert phase (None: not started, or a job of strategy fleet)."""
    with db.transaction() as s:
        return s.scalar(sa.select(Job.phase).where(Job.id == job_id))


def enter_phase(db: Database, job_id: int, phase: CollectionPhase | ConvertPhase, **detail: Any) -> bool:
    """Move the job to ``phase`` with an audit event ``<strategy>_<phase>`` carrying ``detail``, and its unfinished
    runs to ``copying`` (also when it is in that phase already: a retried job's runs). False when the phase was
    already ``phase`` (no event written).

    Raises:
        StateError: ``lifecycle.COLLECTION_PHASE_TRANSITIONS`` forbids the move.
    """
    with db.transaction() as s:
        job = _job(s, job_id)
        for run in _runs(s, job_id, *LISTABLE_RUN_STATES):
            _move_run(run, RunState.COPYING)
        if job.phase == phase:
            return False
        check_phase_transition(job_id, job.phase, phase)
        job.phase = phase
        add_event(s, f"{PHASE_STRATEGIES[phase]}_{phase}", default_actor(), job_id, **detail)
        return True


def collection_restored(db: Database, job_id: int, counts: Mapping[str, int], **detail: Any) -> list[int]:
    """The index made from the collection is ready: the job's runs become ``copied`` with the vector counts the
    index reports per namespace, and the job ``restored``. Returns the runs to verify (none if it was done before)."""
    return copies_made(db, job_id, CollectionPhase.RESTORED, counts, **detail)


def copies_made(
    db: Database, job_id: int, phase: CollectionPhase | ConvertPhase, counts: Mapping[str, int], **detail: Any
) -> list[int]:
    """Pinecone's copy is done: the job moves to ``phase`` and its unfinished runs become ``copied`` with the counts
    ``counts`` gives per source namespace (an audit event ``<strategy>_<phase>`` carries ``detail``). Returns the
    runs it moved."""
    with db.transaction() as s:
        job = _job(s, job_id)
        check_phase_transition(job_id, job.phase, phase)
        job.phase = phase
        restored = []
        for run in _runs(s, job_id, *LISTABLE_RUN_STATES):
            _move_run(run, RunState.COPYING)
            _move_run(run, RunState.COPIED)
            count = int(counts.get(run.source_namespace, 0))
            run.listed = run.copied = count
            run.listing_done, run.last_error = True, None
            run.target_namespaces = [run.target_namespace or run.source_namespace]
            restored.append(run.id)
        event = f"{PHASE_STRATEGIES[phase]}_{phase}"
        add_event(s, event, default_actor(), job_id, namespaces=len(restored), **detail)
        return restored


def step_failed(db: Database, job_id: int, error: str, strategy: str = "collection") -> int:
    """A step failed for good: the job's unfinished runs end ``list_failed`` with the error (so `status` shows it and
    waits end); the phase stays, and `nsmigrate retry` goes on from it. Returns how many runs it stopped. An audit
    event ``<strategy>_failed`` carries the error."""
    with db.transaction() as s:
        job = _job(s, job_id)
        runs = _runs(s, job_id, *LISTABLE_RUN_STATES)
        for run in runs:
            _move_run(run, RunState.LIST_FAILED)
            run.last_error = error[:2000]
        add_event(s, f"{strategy}_failed", default_actor(), job_id, phase=job.phase, error=error)
        return len(runs)

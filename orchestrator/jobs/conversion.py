"""The job table's side of a ``strategy: convert`` job: its phase (``jobs.phase``, see ``ConvertPhase``) and its
namespace runs, which wait in ``copying`` while Pinecone converts the index, their ``copied`` counts following the
conversion's progress; then ``copied`` with the counts of the new index, synced and verified like any run. The phase
moves and a failed step are the collection strategy's (``orchestrator.jobs.collection``); each change is one
transaction with its audit event. The phase carries the conversion's progress while it runs (``converting 42%``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs.collection import collection_failed, collection_restored, enter_phase
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import ConvertPhase, NamespaceRun, RunState


def converting(db: Database, job_id: int, percent: float | None = None, **detail: Any) -> bool:
    """The job enters (or stays in) ``converting``, with Pinecone's ``percent`` done when known (``converting 42%``),
    its unfinished runs ``copying``; an event ``convert_converting`` carries ``detail`` when the phase changed. False
    when it was converting already."""
    phase = ConvertPhase.CONVERTING if percent is None else f"{ConvertPhase.CONVERTING} {math.floor(percent):d}%"
    return enter_phase(db, job_id, phase, **detail)


def conversion_progress(db: Database, job_id: int, share: float) -> int:
    """Show Pinecone's progress (``share`` of the records converted, 0 to 1) on the runs waiting for it: each
    ``copying`` run's ``copied`` is that share of its planned count (the conversion reports the index as a whole).
    Returns how many runs it touched; no event (progress is polled, not an act)."""
    share = min(1.0, max(0.0, share))
    with db.transaction() as s:
        runs = s.scalars(
            sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.COPYING)
        ).all()
        for run in runs:
            run.copied = math.floor(run.source_count * share)
        return len(runs)


def converted(db: Database, job_id: int, counts: Mapping[str, int], **detail: Any) -> list[int]:
    """The new document index is ready: the job is ``converted``, its runs ``copied`` with ``counts`` per namespace
    (event ``convert_converted`` with ``detail``). Returns the runs to sync and verify (none if done before)."""
    return collection_restored(db, job_id, counts, phase=ConvertPhase.CONVERTED, **detail)


def conversion_failed(db: Database, job_id: int, error: str) -> int:
    """A step failed for good: the runs end ``list_failed`` with ``error`` (event ``convert_failed``)."""
    return collection_failed(db, job_id, error, strategy="convert")

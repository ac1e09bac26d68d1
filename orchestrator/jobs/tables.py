"""The job table's tables for Core statements, and the statements that the listing and the batch transitions share
(built once: see ``pages``)."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from orchestrator.jobs.lifecycle import ACTIVE_BATCH_STATES
from orchestrator.models import Batch, BatchState, Job, NamespaceRun, RunState

_runs, _batches = cast(sa.Table, NamespaceRun.__table__), cast(sa.Table, Batch.__table__)
_jobs = cast(sa.Table, Job.__table__)
_in_flight_of_run = (
    sa.select(sa.func.count())
    .where(_batches.c.run_id == _runs.c.id, _batches.c.state.in_(ACTIVE_BATCH_STATES))
    .scalar_subquery()
)


_MARK_COPIED = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.state == RunState.COPYING,
        _runs.c.listing_done.is_(True),
        ~sa.exists().where(_batches.c.run_id == _runs.c.id, _batches.c.state != BatchState.DONE),
    )
    .values(state=RunState.COPIED.value)
)


def _mark_copied(s: Session, run_id: int) -> bool:
    result = cast(CursorResult[Any], s.connection().execute(_MARK_COPIED, {"run_id": run_id}))
    return bool(result.rowcount)

"""The job table's tables for Core statements, and the statements that the listing and the batch transitions share
(built once: see ``pages``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs.lifecycle import ACTIVE_BATCH_STATES
from nsmigrate.orchestrator.models import Batch, BatchState, Event, Job, NamespaceRun, RunState

_runs, _batches = cast(sa.Table, NamespaceRun.__table__), cast(sa.Table, Batch.__table__)
_jobs = cast(sa.Table, Job.__table__)
_events = cast(sa.Table, Event.__table__)
#: When a job row was made: with its id, what a process keeps of a job is known by (``jobs_and_runs.job_spec``). A job
#: table re-created or restored under a running process starts its ids over, and its job 1 is not the job 1 read before.
_JOB_CREATED = sa.select(_jobs.c.created_at).where(_jobs.c.id == sa.bindparam("job_id"))
#: The same, of a run's job, as a column of a statement on the run (no round trip of its own).
_JOB_CREATED_OF_RUN = (
    sa.select(_jobs.c.created_at).where(_jobs.c.id == _runs.c.job_id).scalar_subquery().label("job_created_at")
)


def one_of(column: sa.ColumnElement[Any], states: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column IN ('queued', 'running')``: fixed states written into the statement's text. ``column.in_(states)``
    makes an expanding parameter, which SQLAlchemy renders into the statement again at every execution (its
    post-compile step: 8 % of a copy worker's interpreter time on a job of many small namespaces)."""
    return column.in_(_inline(states))


def none_of(column: sa.ColumnElement[Any], states: Iterable[str]) -> sa.ColumnElement[bool]:
    """``column NOT IN (…)`` as ``one_of`` writes it."""
    return column.not_in(_inline(states))


def _inline(states: Iterable[str]) -> list[sa.ColumnElement[Any]]:
    named = list(states)
    for state in named:
        if not re.fullmatch(r"[a-z_]+", state):
            raise ValueError(f"not a state name: {state!r}")  # only the product's own states are written inline
    return [sa.literal_column(f"'{state}'") for state in named]


_in_flight_of_run = (
    sa.select(sa.func.count())
    .where(_batches.c.run_id == _runs.c.id, one_of(_batches.c.state, ACTIVE_BATCH_STATES))
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


def _event_per_run(changed: sa.CTE, action: Any, detail: Any) -> sa.Insert:
    """An audit event for each run a DML CTE (returning the run's ``id`` and ``job_id``) changed, in the same
    statement as the change (one round trip, atomic: no event without its change). ``actor`` and ``now`` are bound."""
    return (
        sa.insert(_events)
        .from_select(
            ["job_id", "run_id", "actor", "action", "detail", "at"],
            sa.select(
                changed.c.job_id,
                changed.c.id,
                sa.bindparam("actor", type_=_events.c.actor.type),
                action,
                detail,
                sa.bindparam("now", type_=_events.c.at.type),
            ),
        )
        .add_cte(changed)
        .returning(_events.c.id)
    )

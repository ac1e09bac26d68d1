"""Runs whose work stalled because a message was lost: what the fleet sends again by itself (``launch.resend_stalled``).

The job table is the truth and Redis only carries the messages, and a message can be lost where Redis cannot give it
back: kombu's Redis transport takes a message off its queue (BRPOP) before it records it as unacknowledged, so a
worker killed in between (kill -9, the OOM killer, a lost machine) takes it along; a Redis restart loses every queue.
Nothing else would send that work again: a batch stays ``queued``, a run ``pending`` or ``listing``, for ever.

A run counts as stalled when it has work to come and nothing has happened to it for longer than the visibility
timeout, the time after which Redis redelivers a message whose worker died: its row unchanged and none of its batches
created, started or finished since. Claiming it touches the row, so one sweeper claims it, once per timeout.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from orchestrator.jobs.database import Database
from orchestrator.jobs.lifecycle import ACTIVE_BATCH_STATES, LISTABLE_RUN_STATES
from orchestrator.models import Batch, BatchState, Job, JobKind, JobState, NamespaceRun, RunState, utcnow


def claim_stalled_runs(db: Database, idle_s: float) -> dict[int, list[int]]:
    """Runs of running copy jobs that have work to come and saw no change for ``idle_s``: {job id: run ids}. Each
    is touched (``updated_at``), so it is claimed again only after another ``idle_s`` without progress."""
    now = utcnow()
    since = now - timedelta(seconds=idle_s)
    batches_of_run = Batch.run_id == NamespaceRun.id
    recent_batch = sa.exists().where(
        batches_of_run,
        sa.or_(Batch.created_at >= since, Batch.started_at >= since, Batch.finished_at >= since),
    )
    active_batch = sa.exists().where(batches_of_run, Batch.state.in_(ACTIVE_BATCH_STATES))
    unfinished_batch = sa.exists().where(batches_of_run, Batch.state != BatchState.DONE)
    work_to_come = sa.or_(
        NamespaceRun.state.in_(LISTABLE_RUN_STATES) & ~NamespaceRun.listing_done,  # a lister
        NamespaceRun.state.in_(LISTABLE_RUN_STATES) & active_batch,  # copies
        (NamespaceRun.state == RunState.COPYING) & NamespaceRun.listing_done & ~unfinished_batch,  # marking it copied
        # verification, when the spec asks for it after the copy (or somebody asked for it)
        (NamespaceRun.state == RunState.COPIED) & sa.func.coalesce(Job.spec["auto_verify"].as_boolean(), True),
        NamespaceRun.state == RunState.VERIFYING,
    )
    with db.single_statement() as conn:
        claimed = conn.execute(
            sa.update(NamespaceRun)
            .where(
                NamespaceRun.job_id == Job.id,
                Job.state == JobState.RUNNING,
                Job.kind == JobKind.MIGRATE,
                # a collection job's steps wait on Pinecone; `nsmigrate resume` takes one up
                sa.func.coalesce(Job.spec["strategy"].as_string(), "") != "collection",
                NamespaceRun.updated_at < since,
                ~recent_batch,
                work_to_come,
            )
            .values(updated_at=now)
            .returning(NamespaceRun.job_id, NamespaceRun.id)
        ).all()
    out: dict[int, list[int]] = {}
    for job_id, run_id in claimed:
        out.setdefault(int(job_id), []).append(int(run_id))
    return out

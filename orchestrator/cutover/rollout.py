"""A job's cut-over in the job table. The audit log is where it lives: each ``cutover set`` is a ``cutover_set``
event (the newest is the rollout), a dual write the new store missed is a ``dual_write_failed`` event (for ``sync``
and the cleanup gate), a load check's report is a ``cutover_check`` event. One record, so what the applications
read, what ``status`` shows and what the audit says cannot disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.cutover.rails import StepHistory, skipped_steps, step_refusal
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, Rollout, cleanup_gate, rollout_from
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs.database import Database, add_event
from nsmigrate.orchestrator.messaging.task_names import cutover_key
from nsmigrate.orchestrator.models import Event, Job, NamespaceRun, utcnow
from nsmigrate.orchestrator.records.namespaces import shown_namespaces
from nsmigrate.orchestrator.spec.jobspec import Cutover
from nsmigrate.orchestrator.states import JobKind, RunState

SET, WRITE_FAILED, CHECKED = "cutover_set", "dual_write_failed", "cutover_check"
#: ``cutover publish``: from then on the job's applications may follow it, reading the source until reads are 100 % new.
PUBLISHED = "cutover_published"
#: A breach seen while a step was live: it restarts the step's soak (``orchestrator.cutover.rails``).
BREACH = "cutover_breach"
#: A rollback claimed the job, right before it removes the copies (``jobs.sync_rollback.claim_forward_runs``).
ROLLED_BACK = "rolled_back"
#: Aliases ``cutover aliases`` created or repointed (a cut-over inside one index).
ALIASES = "cutover_aliases"
#: One window of what the reads saw, per side (``cutover watch``: its own reads and the applications').
READS = "cutover_reads"


def set_rollout(
    db: Database,
    job_id: int,
    percent: int,
    actor: str,
    *,
    rails: Cutover | None = None,
    forced: bool = False,
    **detail: Any,
) -> Rollout:
    """Record that ``percent`` of the job's namespaces now read the new store; returns the rollout as it is now.
    ``rails``: the job's ``cutover`` limits, when the move must keep to the rails (``orchestrator.cutover.rails``;
    ``forced``: ``--force``); ``detail``: more to keep in the ``cutover_set`` event (the reason, the aliases).

    Raises:
        StateError: the rails refuse the step; or ``percent`` is below 100 while a cleanup is deleting, or has
            deleted, a source namespace of the job: some reads would go back to a source that is gone (nothing is
            recorded).
    """
    with db.transaction() as s:
        s.scalars(sa.select(Job.id).where(Job.id == job_id).with_for_update()).one()  # one setter at a time
        problem = _refusal(s, job_id, percent, rails, forced, utcnow())
        if problem is not None:
            raise StateError(problem, job_id=job_id)
        previous = _percents(s, job_id)
        before = previous[-1][0] if previous else 0
        skipped = skipped_steps(before, percent)  # only a forced step skips one: recorded with its reason
        add_event(s, SET, actor, job_id, percent=percent, previous=before, skipped=skipped, **detail)
    return rollout_of(db, job_id)


def refusal(db: Database, job_id: int, percent: int, rails: Cutover | None, *, forced: bool = False) -> str | None:
    """Why ``set_rollout`` would refuse to move reads to ``percent`` now, or None: asked before anything outside
    the job table moves (an alias cut-over repoints aliases first, then records the step)."""
    with db.transaction() as s:
        return _refusal(s, job_id, percent, rails, forced, utcnow())


def _refusal(s: Any, job_id: int, percent: int, rails: Cutover | None, forced: bool, now: datetime) -> str | None:
    rolled_back = sa.select(Event.id).where(Event.job_id == job_id, Event.action == ROLLED_BACK).limit(1)
    if percent > 0 and s.scalar(rolled_back) is not None:
        # A rollback claims the job under this lock before it removes the copies (``claim_forward_runs``).
        return f"job {job_id} was rolled back: its copies are removed, or being removed; nothing was changed"
    if percent < ROLLOUT_STEPS[-1]:
        # Under the job's row lock, which `start_cleanup` shares: a cleanup starting now waits for this set.
        runs = s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id))
        deleted = [r.source_namespace for r in runs if r.source_may_be_deleted]
        if deleted:
            restored = restored_by_rollback(s, job_id)
            deleted = [ns for ns in deleted if ns not in restored]
        if deleted:
            return (
                f"reads of job {job_id} cannot go back to its source: a cleanup is deleting or deleted source "
                f"namespace {shown_namespaces(deleted)}, so the application would read vectors that are gone; "
                "nothing was changed (reads stay 100 % new; `nsmigrate rollback` restores the originals if the "
                "target must go)"
            )
    if rails is None:
        return None
    problem = step_refusal(job_id, percent, _history(s, job_id), rails, now, forced=forced)
    return f"{problem}; nothing was changed" if problem is not None else None


def restored_sources(db: Database, job_id: int) -> set[str]:
    """``restored_by_rollback`` in a transaction of its own."""
    with db.transaction() as s:
        return restored_by_rollback(s, job_id)


def restored_by_rollback(s: Any, job_id: int, *, verified: bool = True) -> set[str]:
    """The source namespaces of ``job_id`` that its newest rollback wrote back and verified equal to their copies
    (``workers.steps.rollback``): reads may go back to them, as the rollback asks before it removes the copies.
    ``verified`` False: those it wrote back, verified or not yet (they are there again: writes go to them too)."""
    newest = s.scalars(
        sa.select(Job.id)
        .where(Job.parent_job_id == job_id, Job.kind == JobKind.ROLLBACK)
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    if newest is None:
        return set()
    judged = [RunState.VERIFIED, RunState.CLEANING, RunState.CLEANED]
    if not verified:
        judged += [RunState.COPIED, RunState.VERIFYING, RunState.VERIFY_FAILED]
    return set(
        s.scalars(
            sa.select(NamespaceRun.source_namespace).where(
                NamespaceRun.job_id == newest, NamespaceRun.state.in_(judged)
            )
        )
    )


def _history(s: Any, job_id: int) -> StepHistory:
    """The rails' view of the job's audit log: the newest step, the newest check, the newest breach since."""

    def newest(action: str) -> Any:
        query = sa.select(Event.detail, Event.at).where(Event.job_id == job_id, Event.action == action)
        return s.execute(query.order_by(Event.id.desc()).limit(1)).first()

    step, check = newest(SET), newest(CHECKED)
    set_at = step[1] if step is not None else None
    breaches = []
    if set_at is not None:  # a failed check or a breach event while the step was live restarts its soak
        since = s.execute(
            sa.select(Event.action, Event.detail, Event.at).where(
                Event.job_id == job_id, Event.at >= set_at, Event.action.in_((CHECKED, BREACH))
            )
        )
        breaches = [at for action, detail, at in since if action == BREACH or not (detail or {}).get("passed")]
    return StepHistory(
        percent=int(step[0]["percent"]) if step is not None else 0,
        set_at=set_at,
        check_at=check[1] if check is not None else None,
        check_passed=bool(check[0].get("passed")) if check is not None else False,
        breach_at=max(breaches, default=None),
    )


def rollout_of(db: Database, job_id: int) -> Rollout:
    """The job's rollout: its newest ``cutover_set``, when it began and since when it has been 100 % new."""
    with db.transaction() as s:
        return rollout_from(_percents(s, job_id))


def percents_of(db: Database, job_id: int) -> list[int]:
    """The percentages of the job's ``cutover set`` steps, oldest first."""
    with db.transaction() as s:
        return [percent for percent, _ in _percents(s, job_id)]


def record_breach(db: Database, job_id: int, actor: str, **evidence: Any) -> None:
    """Keep a breach seen while a step was live, with its evidence (``cutover watch``): the step's soak restarts."""
    with db.transaction() as s:
        add_event(s, BREACH, actor, job_id, **evidence)


def record_reads(db: Database, job_id: int, actor: str, **figures: Any) -> None:
    """Keep one window of what the reads of a live step saw (``cutover watch``): `status` and the job page show the
    newest."""
    with db.transaction() as s:
        add_event(s, READS, actor, job_id, **figures)


def _percents(s: Any, job_id: int) -> list[tuple[int, datetime]]:
    rows = s.execute(
        sa.select(Event.detail, Event.at).where(Event.job_id == job_id, Event.action == SET).order_by(Event.id)
    )
    return [(int(detail["percent"]), at) for detail, at in rows]


def record_write_failure(
    db: Database, job_id: int, run_id: int | None, namespace: str, operation: str, ids: list[str], error: str
) -> None:
    """A write the old store took and the new one did not: ``sync`` copies it (or, a delete, propagates it), and
    cleanup of the namespace waits for that sync."""
    record = {"namespace": namespace, "operation": operation, "ids": ids, "error": error}
    with db.transaction() as s:
        add_event(s, WRITE_FAILED, "dual-writer", job_id, run_id, **record)


def passing_since(db: Database, job_id: int) -> dict[int, tuple[int, datetime]]:
    """Each of the job's runs whose copy passed a verification → (the id, the time) of the ``verified`` event that
    began its current streak of passes: the first after its last ``verify_failed``."""
    of_job = (Event.job_id == job_id, Event.run_id.is_not(None))
    failed = (
        sa.select(Event.run_id, sa.func.max(Event.id).label("last"))
        .where(*of_job, Event.action == "verify_failed")
        .group_by(Event.run_id)
        .subquery()
    )
    first = (
        sa.select(Event.run_id, sa.func.min(Event.id), sa.func.min(Event.at))
        .outerjoin(failed, failed.c.run_id == Event.run_id)
        .where(*of_job, Event.action == "verified", sa.or_(failed.c.last.is_(None), Event.id > failed.c.last))
        .group_by(Event.run_id)
    )
    with db.transaction() as s:
        rows = s.execute(first).all()
    return {run_id: (event_id, at) for run_id, event_id, at in rows if run_id is not None}


def last_event_at(db: Database, run_id: int, action: str) -> datetime | None:
    """When the newest ``action`` event of a namespace run was written (None: never)."""
    with db.transaction() as s:
        return s.scalar(sa.select(sa.func.max(Event.at)).where(Event.run_id == run_id, Event.action == action))


def record_aliases(
    db: Database, job_id: int, actor: str, targets: dict[str, str], created: list[str], repointed: list[str]
) -> None:
    """Keep what ``cutover aliases`` created or repointed (a ``cutover set`` keeps its aliases in its own event)."""
    with db.transaction() as s:
        add_event(s, ALIASES, actor, job_id, aliases=targets, created=created, repointed=repointed)


def record_check(db: Database, job_id: int, report: dict[str, Any], actor: str) -> None:
    """Keep a ``cutover check`` report in the audit log."""
    with db.transaction() as s:
        add_event(s, CHECKED, actor, job_id, **report)


def last_check(db: Database, job_id: int) -> dict[str, Any] | None:
    """The newest ``cutover check`` report of the job."""
    with db.transaction() as s:
        return s.scalar(
            sa.select(Event.detail)
            .where(Event.job_id == job_id, Event.action == CHECKED)
            .order_by(Event.id.desc())
            .limit(1)
        )


def record_published(db: Database, job_id: int, actor: str) -> None:
    """Keep that the job's cut-over was published for its applications (``cutover publish``), before it is: a cleanup
    then keeps the source they read until reads are 100 % new, even if Redis, where they follow it, lost it."""
    with db.transaction() as s:
        add_event(s, PUBLISHED, actor, job_id)


def cleanup_refusal(
    db: Database, run: NamespaceRun, decommission_after_s: float, *, override: bool, redis: Any = None
) -> str | None:
    """Why the cut-over keeps ``run``'s source now (``cutover.cleanup_gate``), or None. ``redis``: the fleet's, where
    a layout published before its publication was recorded says its applications follow the job too."""
    followed = redis is not None and bool(redis.exists(cutover_key(run.job_id, "layout")))
    with db.transaction() as s:
        published = s.scalar(sa.select(Event.id).where(Event.job_id == run.job_id, Event.action == PUBLISHED).limit(1))
    return cleanup_gate(
        rollout_of(db, run.job_id),
        decommission_after_s,
        utcnow(),
        last_sync_at=last_event_at(db, run.id, "sync"),
        last_write_failure_at=last_event_at(db, run.id, WRITE_FAILED),
        override=override,
        followed=followed or published is not None,
    )

"""Verification and cleanup transitions of a namespace run: verifying → verified/verify_failed, verified → cleaning
→ cleaned (or back, with the reason)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs.database import Database, _get_run, _is_rollback_run, _move_run, add_event
from nsmigrate.orchestrator.jobs.jobs_and_runs import _refuse_stopped
from nsmigrate.orchestrator.jobs.lifecycle import (
    AWAITING_VERDICT_RUN_STATES,
    check_run_transition,
    states_that_may_move_to,
)
from nsmigrate.orchestrator.jobs.tables import _JOB_CREATED_OF_RUN, _event_per_run, _events, _jobs, _runs
from nsmigrate.orchestrator.models import (
    CANCELLED_WHILE_CLEANING,
    CLEANUP_WORKER_LOST,
    Event,
    Job,
    JobKind,
    NamespaceRun,
    RunState,
    utcnow,
)
from nsmigrate.orchestrator.states import COPY_DONE_RUN_STATES

# A verification's transitions are Core statements built once on the tables, like the lister's and the copy's
# (``pages``): a job of 12,000 small namespaces verifies 12,000 times, and the ORM's unit of work cost a
# verification more CPU than its five store requests.
# Moves the runs to verifying and returns them, except those in another state or of a rollback job.
_START_VERIFY = (
    sa.update(_runs)
    .where(
        _runs.c.id.in_(sa.bindparam("run_ids", expanding=True)),
        _runs.c.state.in_(sa.bindparam("from_states", expanding=True)),
        ~sa.exists().where(_jobs.c.id == _runs.c.job_id, _jobs.c.kind == JobKind.ROLLBACK.value),
    )
    .values(
        state=RunState.VERIFYING.value,
        updated_at=sa.bindparam("now"),
        # A verification started again beside one under way (a redelivery, the sweep) continues its entry.
        verifying_since=sa.case(
            (_runs.c.state == RunState.VERIFYING.value, sa.func.coalesce(_runs.c.verifying_since, sa.bindparam("now"))),
            else_=sa.bindparam("now"),
        ),
    )
    .returning(*_runs.c, _JOB_CREATED_OF_RUN)
)
# The runs writing into any of some fixed target namespaces: those targets, or routed (``ix_runs_job_target``).
_WRITERS = sa.select(*_runs.c).where(
    _runs.c.job_id == sa.bindparam("job_id"),
    sa.or_(_runs.c.target_namespace.in_(sa.bindparam("targets", expanding=True)), _runs.c.target_namespace.is_(None)),
)
_FIRST_TWIN_RUNS = (
    sa.select(_runs.c.creator_id, sa.func.min(_runs.c.id))
    .where(
        _runs.c.job_id == sa.bindparam("job_id"),
        _runs.c.creator_id.in_(sa.bindparam("creators", expanding=True)),
        _runs.c.twin_id.is_not(None),
    )
    .group_by(_runs.c.creator_id)
)
_RUN_COUNT = sa.select(sa.func.count()).where(_runs.c.job_id == sa.bindparam("job_id"))
# The verdict and its audit event in one statement (so one round trip, and atomic): no event without the verdict. Only
# on the run as its verification found it (``verifying`` since that entry: ``verifying_since``): a sync or a cleanup
# since has moved it on, and this verdict judged what it no longer is; of two started on one entry, the first wins.
_judged = (
    sa.update(_runs)
    .where(
        _runs.c.id == sa.bindparam("run_id"),
        _runs.c.state == RunState.VERIFYING.value,
        _runs.c.verifying_since == sa.bindparam("started_at"),
    )
    .values(state=sa.bindparam("to_state"), verification=sa.bindparam("report"), updated_at=sa.bindparam("now"))
    .returning(_runs.c.id, _runs.c.job_id)
    .cte("judged")
)
_FINISH_VERIFY = _event_per_run(
    _judged,
    sa.bindparam("action", type_=_events.c.action.type),
    sa.bindparam("detail", type_=_events.c.detail.type),
)


def start_verify(db: Database, run_id: int, *, judged_too: bool = True) -> tuple[NamespaceRun, Neighbours] | None:
    """copied (``judged_too``: or verified, verify_failed) or verifying → verifying: the run as it is now and what
    verifying it needs to know of its job (``Neighbours``). None when it cannot be verified: another state, or a
    rollback job's run (it names an original as its source; rollback verifies it itself). ``judged_too=False``
    keeps a verdict already recorded (a grouped verification sent again).

    Raises:
        NotFound: there is no such run.
    """
    started = start_verifications(db, [run_id], judged_too=judged_too)
    if started:
        return started[0]
    with db.transaction() as s:
        _get_run(s, run_id)  # NotFound when there is no such run
    return None


def start_verifications(
    db: Database, run_ids: Sequence[int], *, judged_too: bool = True
) -> list[tuple[NamespaceRun, Neighbours]]:
    """``start_verify`` for several runs at once (small namespaces of a job, copied by one task), in the order given,
    with one statement to move them all and one each for their targets' writers and their creators' first twin
    runs. Left out: a run that cannot be verified, and an id that names no run."""
    from_states = states_that_may_move_to(RunState.VERIFYING) if judged_too else AWAITING_VERDICT_RUN_STATES
    params = {"run_ids": list(run_ids), "from_states": [str(v) for v in from_states], "now": utcnow()}
    with db.single_statement() as conn:
        moved: dict[int, NamespaceRun] = {}
        created: dict[int, datetime] = {}  # job id → its creation: with the id, what its run count is kept by
        for row in conn.execute(_START_VERIFY, params):
            fields = dict(row._mapping)
            created[row.job_id] = fields.pop("job_created_at")
            moved[row.id] = NamespaceRun(**fields)
        runs = [moved[run_id] for run_id in dict.fromkeys(run_ids) if run_id in moved]
        return [
            (run, neighbours)
            for job_runs in _by_job(runs)
            for run, neighbours in _neighbours(conn, db, job_runs, created[job_runs[0].job_id])
        ]


def finish_verify(
    db: Database,
    run_id: int,
    namespace: str,
    report: dict[str, Any],
    passed: bool,
    actor: str,
    *,
    started_at: datetime,
) -> None:
    """verifying → verified/verify_failed with its report and the audit event (one statement), on the run still in
    the ``verifying`` it entered at ``started_at`` (``start_verify``'s ``verifying_since``). StateError when the run
    moved since: cancelled, verified by another verification of that entry, synced or being cleaned up."""
    to_state = RunState.VERIFIED if passed else RunState.VERIFY_FAILED
    params = {
        "run_id": run_id,
        "started_at": started_at,
        "to_state": to_state.value,
        "report": report,
        "now": utcnow(),
        "actor": actor,
        "action": "verified" if passed else "verify_failed",
        "detail": {"namespace": namespace, "summary": report.get("summary")},
    }
    with db.single_statement() as conn:
        if conn.execute(_FINISH_VERIFY, params).first() is not None:
            return
    with db.transaction() as s:  # not judged: say why, changing nothing
        run = _get_run(s, run_id)  # NotFound
        check_run_transition(run.id, run.state, to_state, job_id=run.job_id, namespace=run.source_namespace)
    raise StateError(
        f"namespace run {run_id} moved on since this verification started (it is {run.state} now: verified by one "
        "started again, synced or being cleaned up); its verdict would judge what the run no longer is, and nothing "
        "was recorded",
        hint="`nsmigrate verify JOB` verifies it again",
        run_id=run_id,
    )


def _record_judgement(
    s: Session, run: NamespaceRun, report: dict[str, Any], passed: bool, actor: str, actions: tuple[str, str]
) -> None:
    """verified / verify_failed with its report and an audit event (``actions``: the event names for pass, fail)."""
    _move_run(run, RunState.VERIFIED if passed else RunState.VERIFY_FAILED)
    run.verification = report
    add_event(
        s,
        actions[0] if passed else actions[1],
        actor,
        run.job_id,
        run.id,
        namespace=run.source_namespace,
        summary=report.get("summary"),
    )


def cleanable(run: NamespaceRun) -> bool:
    """Whether a cleanup may act on ``run``: verified, or any verdict once a cleanup deleted part of its source
    (the rest must be taken up: its verification can no longer pass, the source lacks the ids already deleted)."""
    return run.state == RunState.VERIFIED or (run.state == RunState.VERIFY_FAILED and run.cleanup_stopped_part_way)


def start_cleanup(db: Database, run_id: int) -> tuple[NamespaceRun, RunState]:
    """verified → cleaning (or verify_failed → cleaning, taking up a cleanup that stopped part-way), or StateError
    saying why not. The caller re-checks the source fingerprint first, or, taking one up, proves every id.

    Returns:
        The run as locked (its ``deleted_by_cleanup`` as it is now: another cleanup may have stopped part-way since
        the caller read it) and the verdict it had, where a refusal or an interruption leaves it."""
    with db.transaction() as s:
        # The job's row first (shared): a `cutover set` (which locks it) either commits before this, and the cleanup's
        # gate, asked again once the run is cleaning, sees it; or waits, and sees the run cleaning (``set_rollout``).
        # A cancelled (or rolled back) job's runs are never cleaned up, whatever their verdicts: under the same lock,
        # a `cancel` either came first and is seen here, or waits and then stops this cleanup before its next chunk.
        _refuse_stopped(s, _get_run(s, run_id).job_id, "cleanup")
        run = _get_run(s, run_id, lock=True)
        if _is_rollback_run(s, run):
            # Its "source" is a restored original: cleanup must never delete it.
            raise StateError(
                f"run {run.id} belongs to a rollback job: there is no source to clean up",
                hint="cleanup acts on migrate jobs only",
                job_id=run.job_id,
                run_id=run.id,
            )
        if not cleanable(run):
            # No event here: it would roll back with the raise; callers (workers.steps.cleaning) record the refusal.
            raise StateError(
                f"refusing to delete source namespace {run.source_namespace!r}: its run is {run.state}, not verified",
                hint="run `nsmigrate verify JOB` first; only a verified namespace can be cleaned up",
                job_id=run.job_id,
                run_id=run.id,
            )
        verdict = RunState(run.state)
        _move_run(run, RunState.CLEANING)
        return run, verdict


def auto_cleanup_owed() -> sa.ColumnElement[bool]:
    """Of a run (``NamespaceRun``) of a job (``Job``, joined): the cleanup its spec's ``cleanup.mode: auto`` sends
    after a verdict is owed. Verified and not refused since (a refused cleanup waits for an operator; each passing
    verdict sends a cleanup again, after ``sync`` repaired a refusal, say), or ``cleaning``: the task sent again waits
    for the cleanup lock, so a live cleanup keeps the run and a dead one's is taken up."""
    verdict = aliased(Event)
    verified_since = sa.exists().where(
        verdict.job_id == Event.job_id,
        verdict.run_id == Event.run_id,
        verdict.action == "verified",
        verdict.id > Event.id,
    )
    refused = sa.exists().where(
        Event.job_id == NamespaceRun.job_id,
        Event.run_id == NamespaceRun.id,
        Event.action == "cleanup_refused",
        ~verified_since,
    )
    auto = (Job.kind == JobKind.MIGRATE) & (Job.spec[("cleanup", "mode")].as_string() == "auto")
    return auto & (((NamespaceRun.state == RunState.VERIFIED) & ~refused) | (NamespaceRun.state == RunState.CLEANING))


def auto_cleanups_owed(db: Database, job_id: int) -> list[int]:
    """The runs of ``job_id`` whose automatic cleanup is owed (``auto_cleanup_owed``)."""
    with db.transaction() as s:
        owed = sa.select(NamespaceRun.id).join(Job, NamespaceRun.job_id == Job.id).where(Job.id == job_id)
        return list(s.scalars(owed.where(auto_cleanup_owed()).order_by(NamespaceRun.id)))


def take_up_lost_cleanup(db: Database, run_id: int, actor: str) -> NamespaceRun:
    """A run left ``cleaning`` by a cleanup whose worker died (the caller holds the run's cleanup lock, which that
    cleanup no longer refreshes): back to ``verify_failed``, marked ``CLEANUP_WORKER_LOST`` with a
    ``cleanup_taken_up`` event, so a cleanup takes it up as one stopped part-way (every id left proved; the source
    may lack ids the dead one deleted). A run no longer cleaning (that cleanup ended after all) is left as it is.
    Returns the run as it is then."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        # A rollback's runs clean too (its copies), under no cleanup lock: never one of those.
        if run.state == RunState.CLEANING and not _is_rollback_run(s, run):
            _move_run(run, RunState.VERIFY_FAILED)
            run.cleanup = {**(run.cleanup or {}), CLEANUP_WORKER_LOST: True}
            reason = "the cleanup under way stopped with its worker (its lock expired): taken up, every id left proved"
            add_event(s, "cleanup_taken_up", actor, run.job_id, run.id, namespace=run.source_namespace, reason=reason)
        return run


def target_namespaces_of(run: NamespaceRun) -> set[str]:
    """Where ``run``'s copies are: its fixed target namespace, and every namespace it wrote (routed: several)."""
    targets = set(run.target_namespaces or [])
    if run.target_namespace is not None:
        targets.add(run.target_namespace)
    return targets


def crossing_cleanups(db: Database, run: NamespaceRun) -> list[NamespaceRun]:
    """The runs of other jobs being cleaned now whose namespaces cross ``run``'s: their source (which they delete)
    is one of ``run``'s target namespaces, or one of their target namespaces (against which they prove what they
    delete) is ``run``'s source. Matched by name: the caller compares the stores."""
    targets = target_namespaces_of(run)
    with db.transaction() as s:
        cleaning = s.scalars(
            sa.select(NamespaceRun).where(NamespaceRun.state == RunState.CLEANING, NamespaceRun.job_id != run.job_id)
        ).all()
    return [
        other
        for other in cleaning
        if other.source_namespace in targets or run.source_namespace in target_namespaces_of(other)
    ]


def finish_cleanup(db: Database, run_id: int, detail: dict[str, Any], actor: str) -> None:
    _cleaned(db, run_id, detail, actor, "source_deleted")


def _cleaned(db: Database, run_id: int, detail: dict[str, Any], actor: str, action: str) -> None:
    """cleaning → cleaned, with ``detail`` (what went) kept on the run and in its ``action`` event."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        _move_run(run, RunState.CLEANED)
        run.cleanup = detail
        add_event(s, action, actor, run.job_id, run.id, namespace=run.source_namespace, **detail)


def abort_cleanup(
    db: Database,
    run_id: int,
    reason: str,
    actor: str,
    back_to: RunState,
    *,
    report: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """cleaning → ``back_to`` with a ``cleanup_refused`` event. A refusal by id passes ``report`` (the run's
    verification report, failed with the reason, so ``status`` and ``report`` show it) and ``detail`` (what was
    proved, deleted and refused: in the event and in the run's cleanup field). A run whose job was cancelled
    meanwhile stays cancelled, and what it deleted is known again: the cancel's mark that it may have deleted
    (``CANCELLED_WHILE_CLEANING``) gives way to the cleanup's own count."""
    with db.transaction() as s:
        run = _get_run(s, run_id, lock=True)
        if run.state == RunState.CANCELLED:
            known = {k: v for k, v in (run.cleanup or {}).items() if k != CANCELLED_WHILE_CLEANING}
            run.cleanup = {**known, **(detail or {})}
        else:
            _move_run(run, back_to)
            if detail is not None:
                # A dead cleanup's mark stays: how many ids it deleted is still unknown.
                lost = {CLEANUP_WORKER_LOST: True} if (run.cleanup or {}).get(CLEANUP_WORKER_LOST) else {}
                run.cleanup = {**lost, **detail}
        if report is not None:
            run.verification = report
        extra = detail or {}
        add_event(
            s, "cleanup_refused", actor, run.job_id, run.id, namespace=run.source_namespace, reason=reason, **extra
        )


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


def target_is_shared(run: NamespaceRun, others: Sequence[NamespaceRun]) -> bool:
    """Whether another run of the job writes (or may still write) into ``run``'s fixed target namespace.

    A routed run's targets are only known once it copied (``target_namespaces``: what its finished batches wrote);
    until then it may write anywhere, so it counts as sharing: while it lists or copies, and also while its lister
    failed for good (its batches still finish; a retry lists again), still checking, or cancelled with batches (a
    retry of the failed ones copies again). Conservative on purpose: a shared target only loses the count and extras
    checks, an unshared one judged wrongly would fail (or pass) on another run's data.
    """
    ns = run.target_namespace
    for other in others:
        if other.id == run.id:
            continue
        if other.target_namespace == ns or ns in (other.target_namespaces or []):
            return True
        if other.target_namespace is None and other.state not in COPY_DONE_RUN_STATES and _may_write(other):
            return True
    return False


def _may_write(run: NamespaceRun) -> bool:
    """Whether a run not yet copied wrote or may still write: all but one cancelled before it recorded a batch
    (refused by its own checks), which never wrote and never will."""
    return run.state != RunState.CANCELLED or bool(run.batches_total)


def _by_job(runs: list[NamespaceRun]) -> list[list[NamespaceRun]]:
    by_job: dict[int, list[NamespaceRun]] = {}
    for run in runs:
        by_job.setdefault(run.job_id, []).append(run)
    return list(by_job.values())


def _neighbours(
    conn: sa.Connection, db: Database, runs: list[NamespaceRun], job_created_at: datetime
) -> list[tuple[NamespaceRun, Neighbours]]:
    """The ``Neighbours`` of runs of one job (made at ``job_created_at``), from indexed reads (``ix_runs_job_target``,
    ``ix_runs_job_creator``): a job of 12,000 runs is never scanned."""
    job_id = runs[0].job_id
    targets = sorted({run.target_namespace for run in runs if run.target_namespace is not None})
    writers: list[NamespaceRun] = []
    if targets:
        writers = [
            NamespaceRun(**row._mapping) for row in conn.execute(_WRITERS, {"job_id": job_id, "targets": targets})
        ]
    creators = sorted({run.creator_id for run in runs if run.creator_id is not None and run.twin_id is not None})
    first_twin: dict[str, int] = {}
    if creators:
        first_twin = dict(conn.execute(_FIRST_TWIN_RUNS, {"job_id": job_id, "creators": creators}).tuples().all())
    # Runs in the job, counted once per process and job (``job_key``): a job's runs are written with it and never
    # added to.
    key = (job_id, job_created_at)
    count = db._run_counts.get(key)
    if count is None:
        count = db._run_counts[key] = int(conn.execute(_RUN_COUNT, {"job_id": job_id}).scalar() or 0)
    return [
        (
            run,
            Neighbours(
                writers=[w for w in writers if w.id != run.id and w.target_namespace in (run.target_namespace, None)]
                if run.target_namespace is not None
                else [],
                runs=count,
                first_twin_run=first_twin.get(run.creator_id)
                if run.creator_id is not None and run.twin_id is not None
                else None,
            ),
        )
        for run in runs
    ]

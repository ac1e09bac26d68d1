"""Which states a job, a namespace run and a batch may move between, and the groups of states the code asks about.

Pure data and one check, no database: every transition function of the job table takes its state conditions from
here (the Core statements put the groups in their WHERE clauses; the ORM transitions call ``check_run_transition``),
and so do the CLI, the launcher and the workers. Staying in the same state is not a transition and always allowed.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.errors import StateError

# The state groups live beside the states, in a module light to import (`nsmigrate run --wait` waits without
# SQLAlchemy); re-exported here.
from orchestrator.states import (  # noqa: F401
    ACTIVE_BATCH_STATES,
    BUSY_RUN_STATES,
    COPY_DONE_RUN_STATES,
    FINAL_RUN_STATES,
    JUDGED_RUN_STATES,
    LIST_FAILABLE_RUN_STATES,
    LISTABLE_RUN_STATES,
    ROLLBACK_READY_STATES,
    SYNCABLE_RUN_STATES,
    VERIFIABLE_RUN_STATES,
    BatchState,
    CollectionPhase,
    JobState,
    RunState,
)

# ------------------------------------------------------------------------------------------ allowed transitions

_JUDGED = frozenset({RunState.VERIFIED, RunState.VERIFY_FAILED})

#: from-state → the states a namespace run may move to. A rollback job's runs take the same table: pending →
#: (copying → copied while originals are written back) → verified/verify_failed → cleaning → cleaned, and a rollback
#: taken up again resumes from any of those.
RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    RunState.CHECKING: frozenset({RunState.PENDING, RunState.CANCELLED}),
    RunState.PENDING: frozenset({RunState.LISTING, RunState.LIST_FAILED, RunState.COPYING, RunState.CANCELLED})
    | _JUDGED,
    RunState.LISTING: frozenset({RunState.COPYING, RunState.LIST_FAILED, RunState.CANCELLED}),
    # A lister that failed for good stays there (its batches still finish) until `nsmigrate retry` lists again.
    RunState.LIST_FAILED: frozenset({RunState.LISTING, RunState.CANCELLED}),
    RunState.COPYING: frozenset({RunState.COPIED, RunState.LIST_FAILED, RunState.CANCELLED}) | _JUDGED,
    RunState.COPIED: frozenset({RunState.VERIFYING, RunState.COPYING, RunState.CANCELLED}) | _JUDGED,
    RunState.VERIFYING: frozenset({RunState.CANCELLED}) | _JUDGED,
    RunState.VERIFIED: frozenset({RunState.VERIFYING, RunState.COPYING, RunState.CLEANING, RunState.CANCELLED})
    | _JUDGED,
    # A cleanup that stopped part-way is taken up again from either verdict (each id is proved as it goes).
    RunState.VERIFY_FAILED: frozenset({RunState.VERIFYING, RunState.COPYING, RunState.CLEANING, RunState.CANCELLED})
    | _JUDGED,
    # A cleanup refused or interrupted goes back to verified (or verify_failed: the source changed); a rollback
    # taken up again after its deletes started judges and restores its originals anew.
    RunState.CLEANING: frozenset({RunState.CLEANED, RunState.COPYING, RunState.CANCELLED}) | _JUDGED,
    # A rollback claims its forward runs, cleaned ones included.
    RunState.CLEANED: frozenset({RunState.CANCELLED}),
    # `nsmigrate retry` of a cancelled run's failed batches copies again; a cleanup under way when its job was
    # cancelled still records the deletion it made.
    RunState.CANCELLED: frozenset({RunState.COPYING, RunState.CLEANED}),
}

#: from-state → the states a batch may move to, as the copy statements (``batches``) apply them: ``nsmigrate
#: retry`` re-queues a failed batch, a redelivered copy task restarts a running or failed one, and the task of a
#: batch re-queued meanwhile may still end it.
BATCH_TRANSITIONS: Mapping[BatchState, frozenset[BatchState]] = {
    BatchState.QUEUED: frozenset({BatchState.RUNNING, BatchState.DONE, BatchState.FAILED}),
    BatchState.RUNNING: frozenset({BatchState.DONE, BatchState.FAILED}),
    BatchState.FAILED: frozenset({BatchState.QUEUED, BatchState.RUNNING, BatchState.DONE}),
    BatchState.DONE: frozenset(),
}

#: from-state → the states a job may move to: a sync, or a rollback taken up again, makes a finished (or cancelled
#: rollback) job run again; a rollback cancels the migration it undoes.
JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.RUNNING: frozenset({JobState.FINISHED, JobState.CANCELLED}),
    JobState.FINISHED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.CANCELLED: frozenset({JobState.RUNNING}),
}


#: from-phase → the phases a `strategy: collection` job may move to (None: not started). A step that fails leaves the
#: phase as it is (its runs end ``list_failed``), so a retry goes on from there.
COLLECTION_PHASE_TRANSITIONS: Mapping[CollectionPhase | None, frozenset[CollectionPhase]] = {
    None: frozenset({CollectionPhase.COLLECTING}),
    CollectionPhase.COLLECTING: frozenset({CollectionPhase.RESTORING}),
    CollectionPhase.RESTORING: frozenset({CollectionPhase.RESTORED}),
    CollectionPhase.RESTORED: frozenset(),
}


def check_phase_transition(job_id: int, from_phase: str | None, to_phase: str) -> None:
    """Raise ``StateError`` naming the job and both phases when a collection job may not move so.

    Raises:
        StateError: the move is not in ``COLLECTION_PHASE_TRANSITIONS``.
    """
    if from_phase == to_phase:
        return
    current = CollectionPhase(from_phase) if from_phase is not None else None
    if CollectionPhase(to_phase) not in COLLECTION_PHASE_TRANSITIONS[current]:
        raise StateError(
            f"collection job {job_id} cannot move from {from_phase or 'not started'} to {to_phase}",
            hint="`nsmigrate status JOB` shows its phase; something else changed it meanwhile",
            job_id=job_id,
        )


def run_may_move(from_state: str, to_state: str) -> bool:
    """Whether a namespace run in ``from_state`` may move to ``to_state`` (the same state always may)."""
    return from_state == to_state or RunState(to_state) in RUN_TRANSITIONS[RunState(from_state)]


def states_that_may_move_to(to_state: RunState) -> list[RunState]:
    """The states from which a namespace run may move to ``to_state`` (for a Core statement's WHERE clause)."""
    return [state for state in RunState if run_may_move(state, to_state)]


def check_run_transition(
    run_id: int, from_state: str, to_state: str, *, job_id: int | None = None, namespace: str | None = None
) -> None:
    """Raise ``StateError`` naming the run and both states when ``from_state`` → ``to_state`` is not allowed.

    Raises:
        StateError: the transition is not in ``RUN_TRANSITIONS``.
    """
    if not run_may_move(from_state, to_state):
        about = f" (namespace {namespace!r})" if namespace is not None else ""
        raise StateError(
            f"namespace run {run_id}{about} cannot move from {from_state} to {to_state}",
            hint="`nsmigrate status JOB` shows where each namespace is; something else changed it meanwhile",
            job_id=job_id,
            run_id=run_id,
        )

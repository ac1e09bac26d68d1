"""Checks of a move between states against the transition tables (``orchestrator.states``, which holds the tables
and the groups of states built from them; re-exported here). Pure, no database: the ORM transitions call
``check_run_transition``, the Core statements take their state conditions from the groups or from
``states_that_may_move_to``. Staying in the same state is not a transition and always allowed.
"""

from __future__ import annotations

from typing import Any

from nsmigrate.orchestrator.errors import StateError

# The tables and the groups live beside the states, in a module light to import (`nsmigrate run --wait` waits
# without SQLAlchemy); re-exported here.
from nsmigrate.orchestrator.states import (  # noqa: F401
    ACTIVE_BATCH_STATES,
    AWAITING_VERDICT_RUN_STATES,
    BATCH_TRANSITIONS,
    BUSY_RUN_STATES,
    COLLECTION_PHASE_TRANSITIONS,
    CONVERT_PHASE_TRANSITIONS,
    COPY_DONE_RUN_STATES,
    COPY_UNDER_WAY_RUN_STATES,
    FINAL_RUN_STATES,
    IMPORT_PHASE_TRANSITIONS,
    JOB_TRANSITIONS,
    JUDGED_RUN_STATES,
    LIST_FAILABLE_RUN_STATES,
    LISTABLE_RUN_STATES,
    LISTER_MOVES_RUN_STATES,
    OPEN_RUN_STATES,
    PASSED_RUN_STATES,
    ROLLBACK_READY_STATES,
    RUN_TRANSITIONS,
    SYNCABLE_RUN_STATES,
    VERIFIABLE_RUN_STATES,
    BatchState,
    CollectionPhase,
    ConvertPhase,
    ImportPhase,
    JobState,
    RunState,
    may_move_to,
    phase_name,
    strategy_of_phase,
)


def check_phase_transition(job_id: int, from_phase: str | None, to_phase: str) -> None:
    """Raise ``StateError`` naming the job and both phases when a collection, import or convert job may not move so
    (a phase with its progress, ``importing 42%``, is its phase).

    Raises:
        StateError: the move is not in ``COLLECTION_PHASE_TRANSITIONS``, ``IMPORT_PHASE_TRANSITIONS`` or
            ``CONVERT_PHASE_TRANSITIONS``.
    """
    before, after = phase_name(from_phase), phase_name(to_phase)
    if before == after:
        return
    strategy = strategy_of_phase(after)
    tables: dict[str | None, Any] = {
        "import": IMPORT_PHASE_TRANSITIONS,
        "collection": COLLECTION_PHASE_TRANSITIONS,
        "convert": CONVERT_PHASE_TRANSITIONS,
    }
    table = tables.get(strategy, {})
    current = next((phase for phase in table if phase == before), "unknown")  # None (not started) is a key too
    allowed = current != "unknown" and after in table[current]
    if not allowed:
        raise StateError(
            f"{strategy} job {job_id} cannot move from {from_phase or 'not started'} to {to_phase}",
            hint="`nsmigrate status JOB` shows its phase; something else changed it meanwhile",
            job_id=job_id,
        )


def run_may_move(from_state: str, to_state: str) -> bool:
    """Whether a namespace run in ``from_state`` may move to ``to_state`` (the same state always may)."""
    return from_state == to_state or RunState(to_state) in RUN_TRANSITIONS[RunState(from_state)]


def states_that_may_move_to(to_state: RunState) -> list[RunState]:
    """The states from which a namespace run may move to ``to_state`` (for a Core statement's WHERE clause)."""
    return list(may_move_to(RUN_TRANSITIONS, to_state))


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

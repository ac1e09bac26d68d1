"""The job table's states and kinds: plain ``str`` enums (stored as strings, not a database enum); which state may
follow which (the transition tables); and the groups of states the code asks about, built from those tables. Pure
data, in a module of its own so that reading a job (``orchestrator.snapshot``) needs no SQLAlchemy.
``orchestrator.models`` re-exports the enums, ``orchestrator.jobs.lifecycle`` checks moves against the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


class JobKind(StrEnum):
    MIGRATE = "migrate"
    ERASE = "erase"
    ROLLBACK = "rollback"
    SYNC = "sync"
    PGVECTOR = "pgvector"  # one `nsmigrate pgvector` command that changed something: its audit record


class JobState(StrEnum):
    RUNNING = "running"
    CANCELLED = "cancelled"
    FINISHED = "finished"  # every namespace run reached a final state; see the runs for pass/fail


class CollectionPhase(StrEnum):
    """Where a job of strategy ``collection`` is: Pinecone making the collection of the pod index, then the serverless
    index from it; ``restored`` once that index is ready (its namespaces are then verified as runs). A step that
    fails for good leaves the phase as it was and ends the runs ``list_failed`` with the error; ``nsmigrate retry``
    takes the job up again from that phase."""

    COLLECTING = "collecting"
    RESTORING = "restoring"
    RESTORED = "restored"


class ImportPhase(StrEnum):
    """Where a job of strategy ``import`` is: workers writing the import files (``writing``), Pinecone importing them
    (``importing``, shown with its progress: ``importing 42%``), ``imported`` once the import completed (its
    namespaces are then verified as runs). A step that fails for good leaves the phase as it was and ends the runs
    ``list_failed`` with the error; ``nsmigrate retry`` takes the job up again from that phase."""

    WRITING = "writing"
    IMPORTING = "importing"
    IMPORTED = "imported"


class ConvertPhase(StrEnum):
    """Where a job of strategy ``convert`` is: Pinecone converting the serverless source into a new document index
    (``converting``, shown with its progress: ``converting 42%``), then ``converted`` once that index is ready: its
    namespaces are then synced (what was written after the snapshot) and verified as runs. A step that fails for good
    leaves the phase as it was and ends the runs ``list_failed`` with the error; ``nsmigrate retry`` takes the job up
    again from that phase."""

    CONVERTING = "converting"
    CONVERTED = "converted"


#: The phases in which Pinecone makes a job's target and nothing stops it: a conversion, an index restored from a
#: collection (an import can be cancelled: ``workers.steps.bulk_import.cancel_import``). A job is not cancelled in one,
#: nor enters one once cancelled (``jobs_and_runs.cancel_job``, ``collection.enter_phase``).
UNSTOPPABLE_PHASES = (ConvertPhase.CONVERTING, CollectionPhase.RESTORING)


def phase_name(phase: str | None) -> str | None:
    """The phase a job's ``phase`` column names, without the progress it may carry (``importing 42%`` →
    ``importing``)."""
    return phase.split(" ", 1)[0] if phase else None


def strategy_of_phase(phase: str | None) -> str | None:
    """The strategy whose phase this is (``collection``, ``import``, ``convert``), None for none."""
    name = phase_name(phase)
    if name in {p.value for p in ImportPhase}:
        return "import"
    if name in {p.value for p in ConvertPhase}:
        return "convert"
    return "collection" if name in {p.value for p in CollectionPhase} else None


class RunState(StrEnum):
    #: Its own checks (its ids read: collisions in a shared target, id lengths) are still being made while the job's
    #: other namespaces copy; nothing lists or writes it until they pass (then ``pending``) or refuse it
    #: (``cancelled``, with a ``namespace_refused`` event).
    CHECKING = "checking"
    PENDING = "pending"
    LISTING = "listing"
    LIST_FAILED = "list_failed"  # the lister failed for good (``last_error``); `nsmigrate retry` lists again
    COPYING = "copying"
    COPIED = "copied"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"
    CLEANING = "cleaning"
    CLEANED = "cleaned"
    CANCELLED = "cancelled"


class BatchState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PlaceState(StrEnum):
    """A place an erasure deletes from: ``pending → erasing → verified | failed``; a failed place is erased again
    by the next run of the task (``nsmigrate erase --resume JOB``)."""

    PENDING = "pending"
    ERASING = "erasing"
    VERIFIED = "verified"  # deleted, and checked gone
    FAILED = "failed"  # the store refused, or the check found something left (``last_error`` says which)


class PlaceKind(StrEnum):
    NAMESPACE = "namespace"  # a whole namespace of the creator (or twin), or a source namespace of theirs
    RECORDS = "records"  # their vectors in a shared namespace (public, review, the default namespace…)
    BACKUP = "backup"  # a backup directory: files rewritten without their rows, or removed
    TABLE = "table"  # a retired pgvector table (a backup a move or cleanup renamed away): emptied of their rows
    IMPORT_FILES = "import_files"  # an import job's files in object storage (kept or left): removed whole


# ------------------------------------------------------------------------------------------ allowed transitions

_JUDGED = frozenset({RunState.VERIFIED, RunState.VERIFY_FAILED})

#: from-state → the states a namespace run may move to. A rollback job's runs take the same table: pending →
#: (copying → copied while originals are written back) → verified/verify_failed → cleaning → cleaned, and a rollback
#: taken up again resumes from any of those. Staying in the same state is not a move and always allowed.
RUN_TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    # A namespace's own checks passed (its listers are sent) or refused it.
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
    # `nsmigrate retry` of a cancelled run's failed batches copies again, while its job runs (never once the job was
    # cancelled or rolled back: ``jobs.refuse_stopped``); a cleanup under way when its job was cancelled still
    # records the deletion it made.
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

#: from-phase → the phases a `strategy: import` job may move to (None: not started); as for a collection, a failed step
#: leaves the phase as it is.
IMPORT_PHASE_TRANSITIONS: Mapping[ImportPhase | None, frozenset[ImportPhase]] = {
    None: frozenset({ImportPhase.WRITING}),
    ImportPhase.WRITING: frozenset({ImportPhase.IMPORTING}),
    ImportPhase.IMPORTING: frozenset({ImportPhase.IMPORTED}),
    ImportPhase.IMPORTED: frozenset(),
}

#: from-phase → the phases a `strategy: convert` job may move to (None: not started); a failed step stays put.
CONVERT_PHASE_TRANSITIONS: Mapping[ConvertPhase | None, frozenset[ConvertPhase]] = {
    None: frozenset({ConvertPhase.CONVERTING}),
    ConvertPhase.CONVERTING: frozenset({ConvertPhase.CONVERTED}),
    ConvertPhase.CONVERTED: frozenset(),
}

S = TypeVar("S", RunState, BatchState, JobState)


def may_move_to(table: Mapping[S, frozenset[S]], to_state: S) -> tuple[S, ...]:
    """The states of ``table`` that may move to ``to_state``, ``to_state`` itself included (staying is no move): a
    statement moving rows to ``to_state`` takes them from these (in the table's order)."""
    return tuple(state for state, targets in table.items() if state == to_state or to_state in targets)


def _reachable(table: Mapping[S, frozenset[S]], start: S, *, avoiding: frozenset[S]) -> tuple[S, ...]:
    """``start`` and every state reached from it by moves of ``table`` that never enter ``avoiding`` (table order)."""
    seen, todo = {start}, [start]
    while todo:
        for state in table[todo.pop()] - avoiding - seen:
            seen.add(state)
            todo.append(state)
    return tuple(state for state in table if state in seen)


# --------------------------------------------------------------------------------------------- state groups
# Each built from the tables above, so a change of the tables changes them with it (``tests/unit/test_lifecycle.py``
# pins that they are the groups the code was written for).

#: A batch in one of these states still has a copy task to come (or running): it may still fail.
ACTIVE_BATCH_STATES = tuple(s for s in may_move_to(BATCH_TRANSITIONS, BatchState.FAILED) if s != BatchState.FAILED)
#: A run whose lister may fail for good moves from one of these states to ``list_failed``.
LIST_FAILABLE_RUN_STATES = tuple(
    s for s in may_move_to(RUN_TRANSITIONS, RunState.LIST_FAILED) if s != RunState.LIST_FAILED
)
#: A run in one of these states may still list its source namespace (and so write to its target): while its lister
#: may still fail for good.
LISTABLE_RUN_STATES = LIST_FAILABLE_RUN_STATES
#: A lister's page moves a run in one of these states on (to listing, or to copying once a batch is recorded).
LISTER_MOVES_RUN_STATES = tuple(
    s for s in may_move_to(RUN_TRANSITIONS, RunState.LISTING) if s in may_move_to(RUN_TRANSITIONS, RunState.COPYING)
)
#: A run in one of these states finished copying, whatever followed (verification, cleanup): copied, and all it may
#: become without copying again or being cancelled.
COPY_DONE_RUN_STATES = _reachable(
    RUN_TRANSITIONS, RunState.COPIED, avoiding=frozenset({RunState.COPYING, RunState.CANCELLED})
)
#: A run in one of these states may still write into its targets: its copy has not ended (a lister or batches still
#: to come) and was not cancelled.
COPY_UNDER_WAY_RUN_STATES = tuple(s for s in RunState if s not in COPY_DONE_RUN_STATES and s != RunState.CANCELLED)
#: A run in one of these states is being verified or cleaned up: something still happens to it.
BUSY_RUN_STATES = (RunState.VERIFYING, RunState.CLEANING)
#: A run in one of these states was judged by verification (and maybe cleaned up after): done copying, past copied,
#: and nothing under way.
JUDGED_RUN_STATES = tuple(s for s in COPY_DONE_RUN_STATES if s != RunState.COPIED and s not in BUSY_RUN_STATES)
#: A run in one of these states is done: nothing more happens to it unless someone asks (retry, verify, sync).
FINAL_RUN_STATES = (*JUDGED_RUN_STATES, RunState.CANCELLED)
#: A run in one of these states is not done (a job with one is still running).
OPEN_RUN_STATES = tuple(s for s in RunState if s not in FINAL_RUN_STATES)
#: A run in one of these states is to be verified, or being verified, and has no verdict yet.
AWAITING_VERDICT_RUN_STATES = tuple(
    s for s in may_move_to(RUN_TRANSITIONS, RunState.VERIFYING) if s not in JUDGED_RUN_STATES
)
#: A run in one of these states passed verification (a cleaned one before its cleanup): its target may serve reads.
PASSED_RUN_STATES = (RunState.VERIFIED, RunState.CLEANED)
#: A run in one of these states finished copying and may be verified (again).
VERIFIABLE_RUN_STATES = tuple(s for s in may_move_to(RUN_TRANSITIONS, RunState.VERIFYING) if s != RunState.VERIFYING)
#: A run in one of these states finished copying and may be synced (its new and changed ids copied again): the
#: ones that may be verified again.
SYNCABLE_RUN_STATES = VERIFIABLE_RUN_STATES
#: A forward run in one of these states writes nothing any more: a rollback may judge and remove its targets.
ROLLBACK_READY_STATES = (RunState.COPIED, *FINAL_RUN_STATES)

"""The job table's states and kinds: plain ``str`` enums (stored as strings, not a database enum), in a module of
their own so that reading a job (``orchestrator.snapshot``) needs no SQLAlchemy. ``orchestrator.models`` re-exports
them."""

from __future__ import annotations

from enum import StrEnum


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


# --------------------------------------------------------------------------------------------- state groups

#: A batch in one of these states still has a copy task to come (or running).
ACTIVE_BATCH_STATES = (BatchState.QUEUED, BatchState.RUNNING)
#: A run in one of these states is done: nothing more happens to it unless someone asks (retry, verify, sync).
FINAL_RUN_STATES = (RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.CLEANED, RunState.CANCELLED)
#: A run in one of these states finished copying, whatever followed (verification, cleanup).
COPY_DONE_RUN_STATES = (
    RunState.COPIED,
    RunState.VERIFYING,
    RunState.VERIFIED,
    RunState.VERIFY_FAILED,
    RunState.CLEANING,
    RunState.CLEANED,
)
#: A run in one of these states was judged by verification (and maybe cleaned up after).
JUDGED_RUN_STATES = (RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.CLEANED)
#: A run in one of these states is being verified or cleaned up: something still happens to it.
BUSY_RUN_STATES = (RunState.VERIFYING, RunState.CLEANING)
#: A run in one of these states may still list its source namespace (and so write to its target).
LISTABLE_RUN_STATES = (RunState.PENDING, RunState.LISTING, RunState.COPYING)
#: A run whose lister may fail for good moves from one of these states to ``list_failed``.
LIST_FAILABLE_RUN_STATES = LISTABLE_RUN_STATES
#: A run in one of these states finished copying and may be verified (again).
VERIFIABLE_RUN_STATES = (RunState.COPIED, RunState.VERIFIED, RunState.VERIFY_FAILED)
#: A run in one of these states finished copying and may be synced (its new and changed ids copied again).
SYNCABLE_RUN_STATES = (RunState.COPIED, RunState.VERIFIED, RunState.VERIFY_FAILED)
#: A forward run in one of these states writes nothing any more: a rollback may judge and remove its targets.
ROLLBACK_READY_STATES = (
    RunState.COPIED,
    RunState.VERIFIED,
    RunState.VERIFY_FAILED,
    RunState.CLEANED,
    RunState.CANCELLED,
)

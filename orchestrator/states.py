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

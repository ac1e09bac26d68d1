"""Every queue name, task name and Redis key prefix, built in one place.

The orchestrator enqueues tasks by *name* (it never imports ``workers``); the workers register their tasks under the
same names. Redis keys all start with ``nsmigrate:`` so one prefix scan shows everything the fleet keeps there.
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    LIST = "list"
    COPY = "copy"
    VERIFY = "verify"
    CLEANUP = "cleanup"


class TaskName(StrEnum):
    LIST_NAMESPACE = "nsmigrate.list_namespace"
    COPY_BATCH = "nsmigrate.copy_batch"
    COPY_SMALL_NAMESPACES = "nsmigrate.copy_small_namespaces"
    VERIFY_NAMESPACE = "nsmigrate.verify_namespace"
    VERIFY_SMALL_NAMESPACES = "nsmigrate.verify_small_namespaces"
    CLEANUP_NAMESPACE = "nsmigrate.cleanup_namespace"
    COLLECTION_STEP = "nsmigrate.collection_step"
    CONVERT_STEP = "nsmigrate.convert_step"
    IMPORT_STEP = "nsmigrate.import_step"
    ERASE_PLACE = "nsmigrate.erase_place"


# Which queue each task goes to: one pool per queue in production (docker-compose.yml).
TASK_QUEUES: dict[TaskName, Queue] = {
    TaskName.LIST_NAMESPACE: Queue.LIST,
    TaskName.COPY_BATCH: Queue.COPY,
    # Lists and copies: the copy pool, whose processes a job of many small namespaces keeps busy.
    TaskName.COPY_SMALL_NAMESPACES: Queue.COPY,
    TaskName.VERIFY_NAMESPACE: Queue.VERIFY,
    TaskName.VERIFY_SMALL_NAMESPACES: Queue.VERIFY,
    TaskName.CLEANUP_NAMESPACE: Queue.CLEANUP,
    # Control-plane calls and short waits, like a lister's: the queue of the control worker pool.
    TaskName.COLLECTION_STEP: Queue.LIST,
    # Likewise, and the sync scans that follow the conversion (as a lister's, they list and fetch).
    TaskName.CONVERT_STEP: Queue.LIST,
    # Reads the source and writes files, then waits on Pinecone: the copy pool's work.
    TaskName.IMPORT_STEP: Queue.COPY,
    # Deletes data, like cleanup: the same pool.
    TaskName.ERASE_PLACE: Queue.CLEANUP,
}

KEY_PREFIX = "nsmigrate"


def rate_bucket_key(scope: str) -> str:
    """Redis key of the fleet-wide token bucket for one Pinecone rate scope (e.g. ``write:<host>:<namespace>``)."""
    return f"{KEY_PREFIX}:rate:{scope}"


def written_lsn_key(run_id: int) -> str:
    """Redis key of the highest log sequence number of a run's writes, per target namespace
    (``workers.steps.freshness``)."""
    return f"{KEY_PREFIX}:lsn:run:{run_id}"


def job_wake_key(job_id: int) -> str:
    """Redis key of the list a worker pushes a run's id onto when the run settles (copied, or judged), so that a
    command waiting on the job (``cli.wakes``) reads its progress at once instead of at its next poll."""
    return f"{KEY_PREFIX}:job:{job_id}:settled"


def lock_key(name: str) -> str:
    return f"{KEY_PREFIX}:lock:{name}"


#: The fleet's planner (``workers.fleet.plan_server``): its heartbeat, and the list of specs handed to it.
PLANNER_KEY = f"{KEY_PREFIX}:planner"
SUBMISSIONS_KEY = f"{KEY_PREFIX}:submissions"


def submission_reply_key(token: str) -> str:
    """Redis key of the planner's answer to one submission."""
    return f"{KEY_PREFIX}:submission:{token}:reply"


def submission_taken_key(token: str) -> str:
    """Redis key marking one submission as being planned (kept alive while it is)."""
    return f"{KEY_PREFIX}:submission:{token}:taken"


def cutover_key(job_id: int, part: str) -> str:
    """Redis key of one part of a job's published cut-over (``orchestrator.cutover.published``): ``rollout`` (where
    reads go, polled by every application), ``layout`` (its namespaces and spec, read when it changes), and what the
    applications send: ``writes`` (dual writes the new store missed, and writes held back), ``reads`` (their
    measured reads), ``traffic`` (reads per namespace), ``queries`` (sample queries with their filters)."""
    return f"{KEY_PREFIX}:cutover:{job_id}:{part}"


#: The erasure ledger as published for the applications' dual writes: who may not be written.
ERASURE_LEDGER_KEY = f"{KEY_PREFIX}:erasure-ledger"

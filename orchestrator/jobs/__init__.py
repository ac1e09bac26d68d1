"""The job table: every change of state of a job, its namespace runs and their batches, each one transaction (or one
statement), so a task never leaves half a change. Call it as ``from orchestrator import jobs; jobs.start_batch(…)``.

Counters that many workers bump at once (copied, failed) are updated with ``SET x = x + n`` so concurrent batches
cannot lose each other's increments, and "is this namespace copied?" is a single conditional UPDATE so exactly one
finishing batch wins it (and enqueues verification).

Who owns what:

- ``database``: ``Database`` (engine, ``transaction``, ``single_statement``), the acting user, the audit-event and
  run-row helpers every transition shares;
- ``lifecycle``: the state groups (final, active, listable…) and the allowed transitions, one table per kind of row;
- ``jobs_and_runs``: create, find, cancel and finish jobs; their runs and spec; ``record_event``;
- ``pages``: the lister's transitions (``start_listing``, ``add_batches``);
- ``batches``: a copy batch's transitions, what follows a batch, re-queueing for retry and resume;
- ``tables``: the Core tables and the statements ``pages`` and ``batches`` share;
- ``verdicts``: verification and cleanup;
- ``sync_rollback``: sync and rollback bookkeeping;
- ``collection``: the phase and runs of a ``strategy: collection`` job;
- ``erasure``: an erasure job's places (claim, record, finish with its receipt);
- ``status``: read-only views (``job_status`` → ``JobStatus``, ``job_summary`` → ``JobSummary``, ``job_progress``
  → ``JobProgress``, ``verdicts_of``, ``list_jobs``, ``events_of``), each the reader of ``orchestrator.snapshot``
  over the engine (``read_status``).
"""

from orchestrator.jobs.batches import (
    BatchWork,
    after_batch,
    compile_task_statements,
    fail_batch,
    finish_batch,
    maybe_mark_copied,
    requeue_failed,
    run_of_batch,
    start_batch,
    unfinished_work,
)
from orchestrator.jobs.collection import collection_failed, collection_restored, enter_phase, job_phase
from orchestrator.jobs.database import Database, default_actor
from orchestrator.jobs.erasure import (
    add_erased_ids,
    claim_place,
    create_erasure,
    erased_ids,
    erasure_receipt,
    fail_place,
    finish_place,
    known_runs,
    maybe_finish_erasure,
    places_of,
    retry_places,
)
from orchestrator.jobs.jobs_and_runs import (
    ROWS_PER_INSERT,
    cancel_job,
    create_action_job,
    create_job,
    find_job,
    finish_action_job,
    get_run,
    is_collection_job,
    job_spec,
    latest_unfinished_job,
    maybe_finish_job,
    record_event,
    runs_in_state,
    runs_of,
    runs_to_list,
)
from orchestrator.jobs.lifecycle import (
    ACTIVE_BATCH_STATES,
    BATCH_TRANSITIONS,
    BUSY_RUN_STATES,
    COPY_DONE_RUN_STATES,
    FINAL_RUN_STATES,
    JOB_TRANSITIONS,
    JUDGED_RUN_STATES,
    LIST_FAILABLE_RUN_STATES,
    LISTABLE_RUN_STATES,
    ROLLBACK_READY_STATES,
    RUN_TRANSITIONS,
    SYNCABLE_RUN_STATES,
    VERIFIABLE_RUN_STATES,
    check_run_transition,
    run_may_move,
)
from orchestrator.jobs.pages import (
    Listing,
    Recorded,
    add_batches,
    fail_listing,
    queued_batches,
    requeue_failed_listers,
    start_listing,
)
from orchestrator.jobs.status import (
    BatchCounts,
    JobProgress,
    JobStatus,
    JobSummary,
    RunStatus,
    RunVerdict,
    Totals,
    events_of,
    job_progress,
    job_status,
    job_summary,
    list_jobs,
    read_status,
    sync_totals,
    verdicts_of,
)
from orchestrator.jobs.sync_rollback import (
    claim_forward_runs,
    finish_rollback,
    open_rollback,
    rollback_checked,
    rollback_restored,
    rollback_restoring,
    rollback_run_done,
    start_sync,
    sync_refusal,
    written_ids,
)
from orchestrator.jobs.verdicts import (
    Neighbours,
    abort_cleanup,
    cleanable,
    finish_cleanup,
    finish_verify,
    start_cleanup,
    start_verifications,
    start_verify,
)

__all__ = [
    "ACTIVE_BATCH_STATES",
    "BATCH_TRANSITIONS",
    "BUSY_RUN_STATES",
    "COPY_DONE_RUN_STATES",
    "FINAL_RUN_STATES",
    "JOB_TRANSITIONS",
    "JUDGED_RUN_STATES",
    "LISTABLE_RUN_STATES",
    "LIST_FAILABLE_RUN_STATES",
    "ROLLBACK_READY_STATES",
    "ROWS_PER_INSERT",
    "RUN_TRANSITIONS",
    "SYNCABLE_RUN_STATES",
    "VERIFIABLE_RUN_STATES",
    "BatchCounts",
    "BatchWork",
    "Database",
    "JobProgress",
    "JobStatus",
    "JobSummary",
    "Listing",
    "Neighbours",
    "Recorded",
    "RunStatus",
    "RunVerdict",
    "Totals",
    "abort_cleanup",
    "add_batches",
    "add_erased_ids",
    "after_batch",
    "cancel_job",
    "check_run_transition",
    "claim_forward_runs",
    "claim_place",
    "cleanable",
    "collection_failed",
    "collection_restored",
    "compile_task_statements",
    "create_action_job",
    "create_erasure",
    "create_job",
    "default_actor",
    "enter_phase",
    "erased_ids",
    "erasure_receipt",
    "events_of",
    "fail_batch",
    "fail_listing",
    "fail_place",
    "find_job",
    "finish_action_job",
    "finish_batch",
    "finish_cleanup",
    "finish_place",
    "finish_rollback",
    "finish_verify",
    "get_run",
    "is_collection_job",
    "job_phase",
    "job_progress",
    "job_spec",
    "job_status",
    "job_summary",
    "known_runs",
    "latest_unfinished_job",
    "list_jobs",
    "maybe_finish_erasure",
    "maybe_finish_job",
    "maybe_mark_copied",
    "open_rollback",
    "places_of",
    "queued_batches",
    "read_status",
    "record_event",
    "requeue_failed",
    "requeue_failed_listers",
    "retry_places",
    "rollback_checked",
    "rollback_restored",
    "rollback_restoring",
    "rollback_run_done",
    "run_may_move",
    "run_of_batch",
    "runs_in_state",
    "runs_of",
    "runs_to_list",
    "start_batch",
    "start_cleanup",
    "start_listing",
    "start_sync",
    "start_verifications",
    "start_verify",
    "sync_refusal",
    "sync_totals",
    "unfinished_work",
    "verdicts_of",
    "written_ids",
]

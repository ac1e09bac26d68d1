"""The job table: every change of state of a job, its namespace runs and their batches, each one transaction (or one
statement), so a task never leaves half a change. Each name is imported from the module that defines it
(``from nsmigrate.orchestrator.jobs.batches import finish_batch``); this package re-exports nothing.

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
- ``erasure_ledger``: who was erased, by which job, with its receipt; what every write path asks; lifting a line;
- ``status``: read-only views (``job_status`` → ``JobStatus``, ``job_summary`` → ``JobSummary``, ``job_progress``
  → ``JobProgress``, ``verdicts_of``, ``list_jobs``, ``events_of``), each the reader of ``orchestrator.snapshot``
  over the engine (``read_status``).
"""

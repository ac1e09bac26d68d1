"""The ``nsmigrate`` command line: the composition root above ``orchestrator`` (decides) and ``workers`` (does I/O).

One module per command group, each loaded only when one of its commands runs (see ``cli.main``):

- ``jobs``: status, report, jobs, events, watch (reading the job table)
- ``run``: plan, run (from a spec to a running job)
- ``actions``: retry, resume, cancel, verify, cleanup, sync, rollback
- ``backup``: export, import
- ``erasure``: erase
- ``services``: worker, flower
- ``demo``: demo (the only module that uses the sandbox)

``options`` holds what every command shares (option types, settings, the job table, the error exit), ``fleet`` opens
the broker and the stores, ``render`` draws plans, progress and summaries, and ``waits`` says when a command that
follows a job is done.
"""

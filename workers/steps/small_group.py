"""A group of small namespace runs (``orchestrator.listing.small_namespaces``: one list page and one batch each) listed
and copied by one task, ``small_group_threads`` runs at a time.

Each run takes the steps and states a list task and a copy task would give it, without the message between them:
its one batch is listed and recorded, already started for this worker, under the run's lister lock
(``listing.list_one_batch``), then copied as a copy task copies it (``copying.copy_batch``). Its page is read first,
and its fetch begun, before the lock is taken or a row written (``listing.read_ahead``): reads change nothing, and a
job of many small namespaces then fills each window of its fetch budget without waiting on the job table. Several
runs of a group go at once: one after the other, a run's list waited for the round trips of the runs before it, and a
fleet's first second held a few dozen fetches where its fetch budget allows more (``bench/README.md``). The
verifications of the runs copied go as one task when the group is done, in the group's order
(``next_steps.verifications_grouped``).
Failures stay the run's own: a lister that fails for good ends its run ``list_failed``, a batch that fails ends
``failed``, and the group goes on, then fails as a whole naming them (``GroupFailed``); an outage of the job table or
Redis propagates once the runs under way are done, and Celery sends the whole task again.

A task sent again (redelivered after its worker was killed, or retried after an outage) may find runs its first
delivery left between two steps. Every step is safe to repeat (a page is recorded only from the saved token, a
batch is copied by id), so it first sends, as copy tasks, the batches such a run has ``queued`` or ``running`` (their
copy died with the first delivery) and a ``copied`` run's verification, then goes on as the first delivery did.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from nsmigrate.orchestrator.errors import GroupFailed, TaskFailed
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, listing, next_steps
from nsmigrate.workers.transfer.concurrent_calls import beside, run_parallel


def copy_small_runs(ctx: WorkerContext, run_ids: Sequence[int], *, again: bool = False) -> int:
    """Returns the vectors copied.

    Raises:
        GroupFailed: a run's lister or batch failed for good (recorded in the job table; the other runs went on and
            their verifications were sent); the text names each such namespace with its error.
    """

    # A first delivery reads each run's page ahead of its lock and rows (``listing.read_ahead``); a resent group
    # goes the usual way, waiting out the lock of the delivery that was killed, as a redelivered lister does.
    to_list = {} if again else jobs_pages.runs_to_list(ctx.db, run_ids)

    outcomes: dict[int, int | TaskFailed] = {}

    def copy_run(run_id: int) -> None:
        try:
            ahead = to_list.get(run_id)
            early = None if ahead is None else listing.read_ahead(ctx, run_id, ahead)
            fetching = None
            if ahead is not None and early is not None and early.fetch is not None and early.fetch.slot is not None:
                # Fetched at its slot in another thread while the run is started here: a start slowed by the job
                # table delays only this run's upsert, never its slot, which a late fetch could not use.
                fetching = beside(partial(listing.fetch_at_slot, ctx, ahead, early))
            listed = listing.list_one_batch(ctx, run_id, wait_for_lock=again, early=early)
            if listed is None:
                outcomes[run_id] = 0
                return
            fetched = listed.early if fetching is None else fetching.result()
            outcomes[run_id] = copying.copy_batch(ctx, listed.work.batch_id, started=listed.work, early=fetched)
        except TaskFailed as e:
            outcomes[run_id] = e

    # The runs' verifications: one task when the group is done.
    with next_steps.verifications_grouped(ctx, order=run_ids):
        if again:
            for run_id in run_ids:
                listing.send_what_a_killed_lister_left(ctx, run_id, running_too=True)
        # In threads the worker keeps (a pool a task made started 16 threads, on a busy interpreter one switch
        # interval each, while the job's first window of fetches waited); every run is taken to its end before an
        # outage in one of them is raised.
        run_parallel(copy_run, run_ids, ctx.settings.small_group_threads)
    done = [outcomes[run_id] for run_id in run_ids]
    failures = [outcome for outcome in done if isinstance(outcome, TaskFailed)]
    if failures:
        named = [f"{e.ids.get('namespace')}: {e.message}" for e in failures]
        raise GroupFailed(
            f"{len(failures)} of {len(run_ids)} namespaces failed: " + "; ".join(named), job=failures[0].ids.get("job")
        )
    return sum(outcome for outcome in done if isinstance(outcome, int))

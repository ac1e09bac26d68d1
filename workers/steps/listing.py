"""The lister: pages one source namespace's ids into batch rows and enqueues a copy task per batch.

It stops when ``max_batches_in_flight`` batches are queued or running and is woken again as they finish (see
``workers.steps.next_steps``), so a namespace of millions of ids never becomes millions of messages at once. A
namespace's pages are a chain (each is listed from the token of the one before), so while a batch is recorded and sent
the next one is already being listed, in a second thread. Each batch is written together with the list token after it,
so a lister killed at any point resumes without skipping or repeating ids. A Redis lock keeps one lister per namespace
run: it expires ``lister_lock_ttl_s`` after its lister died (a live lister's is kept fresh by the process's
``lock_keeper``), a resumed lister waits that long for it, and ``jobs_pages.add_batches`` only records pages listed
from the saved token, so even two listers at once (a lock lost with a Redis restart) never batch an id twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from nsmigrate.orchestrator.errors import ListingFailed, NsmigrateError, StateError, failure_text
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.listing import table_batches
from nsmigrate.orchestrator.listing.paging import id_pages
from nsmigrate.orchestrator.listing.prefix_chains import ChainState
from nsmigrate.orchestrator.listing.small_namespaces import list_page_ids
from nsmigrate.orchestrator.messaging.task_names import lock_key
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.workers import tally
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import copying, whole_reads
from nsmigrate.workers.steps.chain_listing import chains_for, list_chains
from nsmigrate.workers.steps.next_steps import advance, lister_wake_key, run_copied, run_settled
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.transfer import lock_keeper, write_fence

log = logging.getLogger(__name__)


@contextlib.contextmanager
def lister_lock(ctx: WorkerContext, run_id: int, *, wait: bool = False) -> Iterator[bool]:
    """Hold the run's lister lock (True), or find it taken (False): ``lock_keeper.held_while_alive``, expiring
    ``lister_lock_ttl_s`` after its lister died. ``wait`` (a resumed or redelivered lister) waits that long for it;
    otherwise a taken lock means "another lister is on it", and a live one rechecks the bound when it stops. Expired
    after all (a refresh failed), ``add_batches``' token check still keeps every id in one batch."""
    key, ttl_s = lock_key(f"list:{run_id}"), ctx.settings.lister_lock_ttl_s
    with lock_keeper.held_while_alive(ctx.redis, key, ttl_s, f"the lister lock of run {run_id}", wait=wait) as held:
        yield held


def list_run(ctx: WorkerContext, run_id: int, *, wait_for_lock: bool = False, again: bool = False) -> None:
    """List one namespace run (``_list_run``). A lister that fails for good — a store refusal, retries used up, a
    bug — ends its run ``list_failed`` with the error instead of leaving it ``listing`` for ever, then raises
    ``ListingFailed``; `nsmigrate retry` lists again from the saved token. An outage of the job table or Redis
    propagates: Celery sends the task again."""
    with _failing_for_good(ctx, run_id):
        _list_run(ctx, run_id, wait_for_lock=wait_for_lock, again=again)


@contextlib.contextmanager
def _failing_for_good(ctx: WorkerContext, run_id: int) -> Iterator[None]:
    """A lister's failure other than an outage ends its run ``list_failed`` and raises ``ListingFailed`` (unless the
    run had moved on meanwhile: then nothing is recorded or raised); an outage propagates."""
    try:
        yield
        return
    except INFRASTRUCTURE_ERRORS:
        raise
    except NsmigrateError as e:
        log.warning("lister of run %s failed for good: %s", run_id, e)
        error = failure_text(e)
    except Exception as e:
        log.exception("lister of run %s failed unexpectedly", run_id)
        error = f"unexpected {type(e).__name__}: {e}"
    if jobs_pages.fail_listing(ctx.db, run_id, error):
        run = jobs_and_runs.get_run(ctx.db, run_id)
        run_settled(ctx, run.job_id, run_id)  # nothing more happens to it until `nsmigrate retry`
        raise ListingFailed(error, job=run.job_id, namespace=display_namespace(run.source_namespace), run=run_id)


def send_what_a_killed_lister_left(ctx: WorkerContext, run_id: int, *, running_too: bool = False) -> None:
    """A lister killed between recording a page and sending what follows it left batches ``queued`` with no
    message, or a run ``copied`` without its verification: send them (duplicates of live messages are harmless).
    Also when listing is done: the last batch may be the one that was never sent. ``running_too``: the killed task
    copied its batches itself (``workers.steps.small_group``), so a ``running`` one has no message of its own either."""
    previous = jobs_and_runs.get_run(ctx.db, run_id)
    for batch_id in jobs_pages.queued_batches(ctx.db, run_id, running_too=running_too):
        ctx.dispatcher.copy_batch(
            batch_id, job_id=previous.job_id, run_id=run_id, namespace=display_namespace(previous.source_namespace)
        )
    if previous.state == RunState.COPIED:  # maybe by this lister's last page, before it sent the verification
        spec = jobs_and_runs.job_spec(ctx.db, previous.job_id)
        run_copied(ctx, run_id, previous.job_id, previous.source_namespace, spec)


#: A small run whose fetch slot is further off than this is started (locked, its batch recorded) this long before the
#: slot, so only its upsert and finish follow its fetch; a nearer one fetches first. Starting took 0.1-0.2 s when many
#: runs of a busy worker started at once (``bench/README.md``).
START_BEFORE_SLOT_S = 0.5


class Listed(NamedTuple):
    """A small run's one batch, recorded and started for this worker, and its fetch when it began before."""

    work: jobs_batches.BatchWork
    early: copying.EarlyFetch | None


@dataclass(frozen=True)
class EarlyRead:
    """A small run's one page listed, and its fetch begun, before its lock was taken or its rows written
    (``read_ahead``)."""

    listed_from: str | None
    ids: list[str]
    next_token: str | None
    fetch: copying.EarlyFetch | None


def read_ahead(ctx: WorkerContext, run_id: int, ahead: jobs_pages.Listing) -> EarlyRead | None:
    """List a small run's one page from where ``ahead`` (``jobs_pages.runs_to_list``) says, before the run is locked
    or started, and begin its fetch when its copy goes through this worker (``copying.fetches_through_worker``).

    Reads change nothing, so they need no lock. With the ``whole_reads`` setting, a namespace listed whole in that
    page is read by one query (``whole_reads``: from the namespace's query budget, not the index's fetches) when the
    query finds every id. Otherwise the fetch takes its slot in the fetch budget now: due at once (a job's first
    window), the records are fetched before the run is started, so the window fills without waiting for
    job-table statements; further off, the run is started ``START_BEFORE_SLOT_S`` before its slot while its records
    are fetched at the slot (``fetch_at_slot``, in another thread), so a job's last fetches are followed only by their
    upserts and finishes (``bench/README.md``). ``list_one_batch`` records the page only if the run's token is still
    the one it was listed from. None when a read failed: the run goes the usual way, whose own reads fail it as they
    always did."""
    spec = jobs_and_runs.job_spec(ctx.db, ahead.job_id, ahead.job_created_at)
    source = ctx.guarded(spec.source, spec.rate)
    try:
        ids, token = _list_batch(source, ahead.source_namespace, ahead.list_token, spec)
        fetch = None
        through_worker = copying.fetches_through_worker(spec)
        whole = ahead.list_token is None and token is None  # the whole namespace in one page
        if whole and through_worker and ctx.settings.whole_reads:
            records = whole_reads.read_by_query(source, ahead.source_namespace, ids)
            fetch = None if records is None else copying.EarlyFetch(records=records)
        if fetch is None and ids and len(ids) <= FETCH_MAX_IDS and through_worker:
            slot = source.reserve_read()
            if slot is None or slot.ahead_s() <= START_BEFORE_SLOT_S:
                fetch = copying.EarlyFetch(records=source.fetch(ahead.source_namespace, ids, reserved=slot))
            else:
                # Started just before its slot, not now: a job's first window of fetches is not kept waiting by
                # the starts of the runs whose slots come after it.
                source.wait_before(slot, START_BEFORE_SLOT_S)
                fetch = copying.EarlyFetch(slot=slot)
    except Exception as e:
        log.info("run %s: reading ahead failed (%s); it is listed under its lock", run_id, e)
        return None
    return EarlyRead(ahead.list_token, ids, token, fetch)


def fetch_at_slot(ctx: WorkerContext, ahead: jobs_pages.Listing, read: EarlyRead) -> copying.EarlyFetch | None:
    """The records of a page read ahead (``read_ahead``), fetched at the slot taken for them (a slot this thread
    woke too late for is replaced by one of its own, as for any fetch). None when the fetch failed: the copy then
    fetches them itself and fails as a copy fails."""
    assert read.fetch is not None and read.fetch.slot is not None
    spec = jobs_and_runs.job_spec(ctx.db, ahead.job_id, ahead.job_created_at)
    try:
        records = ctx.guarded(spec.source, spec.rate).fetch(ahead.source_namespace, read.ids, reserved=read.fetch.slot)
    except Exception as e:
        log.info("namespace %r: fetching ahead failed (%s); its copy fetches", ahead.source_namespace, e)
        return None
    return copying.EarlyFetch(records=records)


def list_one_batch(
    ctx: WorkerContext, run_id: int, *, wait_for_lock: bool = False, early: EarlyRead | None = None
) -> Listed | None:
    """List a small run's one batch (``orchestrator.listing.small_namespaces``) under its lock, as ``list_run`` lists
    the first, and record it already started for this worker (``jobs_batches.record_and_claim_batch``): its work, for
    the caller to copy (no copy task is sent). None when there is nothing to copy: the lock is taken (another lister
    is on it), listing is done or cancelled, another lister recorded the page first, or the namespace is empty (the
    run is ``copied`` and its verification sent). A lister that fails for good ends its run ``list_failed`` and raises
    ``ListingFailed``, as in ``list_run``. A namespace that grew since it was planned has more pages: the batch is
    recorded with the token after it, and its copy's finish wakes a lister for the rest (``flow.advance``). ``early``:
    the page read ahead (``read_ahead``): recorded, in the statement that starts the run, if the run is still at the
    token it was listed from and may still be listed; an empty one is listed again, as usual."""
    with _failing_for_good(ctx, run_id):
        return _list_one_batch(ctx, run_id, wait_for_lock=wait_for_lock, early=early)
    return None


def _list_one_batch(ctx: WorkerContext, run_id: int, *, wait_for_lock: bool, early: EarlyRead | None) -> Listed | None:
    with lister_lock(ctx, run_id, wait=wait_for_lock) as held:
        if not held:
            return None
        try:
            if early is not None and early.ids:
                # Recorded from the token it was listed from, while the run may still be listed: the statement is
                # the run's start too. A run moved on meanwhile is its other lister's to carry on.
                work = write_fence.started_after_the_mark(
                    ctx.redis,
                    lambda: jobs_batches.record_and_claim_batch(
                        ctx.db,
                        run_id,
                        early.ids,
                        early.next_token,
                        listed_from=early.listed_from,
                        worker=ctx.worker_name,
                        listing_started=False,
                    )[1],
                )
                return None if work is None else Listed(work, early.fetch)
            run = jobs_pages.start_listing(ctx.db, run_id)
            if run is None:
                return None
            spec = jobs_and_runs.job_spec(ctx.db, run.job_id, run.job_created_at)
            # A small namespace is never cut into prefix chains (``chains_for``): its token is a plain list token.
            source = ctx.guarded(spec.source, spec.rate)
            ids, token = _list_batch(source, run.source_namespace, run.list_token, spec)
            if ids:
                work = write_fence.started_after_the_mark(
                    ctx.redis,
                    lambda: jobs_batches.record_and_claim_batch(
                        ctx.db, run_id, ids, token, listed_from=run.list_token, worker=ctx.worker_name
                    )[1],
                )
                return None if work is None else Listed(work, None)
            recorded = jobs_pages.add_batches(
                ctx.db, run_id, [], token, listing_done=token is None, listed_from=run.list_token
            )
        except StateError as e:
            log.info("lister of run %s stops: %s", run_id, e)
            return None
    if recorded.copied:  # an empty namespace
        run_copied(ctx, run_id, run.job_id, run.source_namespace, spec)
    return None


def _list_batch(
    source: GuardedStore, namespace: str, token: str | None, spec: JobSpec, size: int | None = None
) -> tuple[list[str], str | None]:
    """The ids of one batch of at most ``size`` (``spec.batch_size``) listed from ``token``, and the token after them
    (None: the namespace ends)."""
    ids: list[str] = []
    pages = id_pages(source, namespace, token=token, max_ids=size or spec.batch_size, page_ids=list_page_ids(spec))
    for page in pages:
        ids.extend(page.ids)
        token = page.next_token
    return ids, token or None


def _list_run(ctx: WorkerContext, run_id: int, *, wait_for_lock: bool = False, again: bool = False) -> None:
    """``wait_for_lock``: see ``lister_lock``. ``again``: this task ran before and was killed (redelivered) or hit
    an outage (retried); it may have recorded batches without sending their copy tasks, so the run's ``queued``
    batches are sent again (a duplicate copy task is harmless)."""
    ctx.redis.delete(lister_wake_key(run_id))
    if again:
        # Before the lock, not under it: the lock may be held (for longer than we wait) by a wake-up lister that
        # only sends the batches it records itself, and nobody else would ever send the ones the killed run left.
        send_what_a_killed_lister_left(ctx, run_id)
    # A redelivered lister waits too: the visibility timeout counts from delivery, not from its worker's death, so
    # it can arrive while the dead lister's lock still stands, and it goes on listing from the saved token.
    with lister_lock(ctx, run_id, wait=wait_for_lock or again) as held:
        if not held:
            return
        run = jobs_pages.start_listing(ctx.db, run_id)
        if run is None:
            return
        in_flight = run.in_flight
        spec = jobs_and_runs.job_spec(ctx.db, run.job_id, run.job_created_at)
        source = ctx.guarded(spec.source, spec.rate)
        # A large namespace is listed as several prefix chains (workers.steps.chain_listing); its state is the token.
        chains = ChainState.decode(run.list_token)
        if chains is None and run.list_token is None:
            chains = chains_for(source, run.source_namespace, run.source_count, spec.max_list_chains)
        if chains is not None:
            at_bound = list_chains(
                ctx, run_id, run.job_id, run.source_namespace, in_flight, spec, source, chains, run.list_token
            )
        else:
            at_bound = _list_one_chain(ctx, run_id, run, spec, source)
        if not at_bound:
            return
    # Stopped at the bound. Batches that finished since it was counted found this lister still running and woke
    # nobody: look again, and keep listing (through a wake-up) if there is room now.
    advance(ctx, run_id, run.job_id, run.source_namespace, spec)


def _list_one_chain(
    ctx: WorkerContext, run_id: int, run: jobs_pages.Listing, spec: JobSpec, source: GuardedStore
) -> bool:
    """List the namespace as one chain from the run's token, a batch ahead. Returns True when it stopped at the bound
    of batches in flight, False when there is nothing more for this lister to do."""
    in_flight = run.in_flight
    size = table_batches.batch_ids(spec, run.source_count)

    def list_batch(token: str | None) -> tuple[list[str], str | None]:
        return _list_batch(source, run.source_namespace, token, spec, size)

    token = run.list_token
    next_batch: Future[tuple[list[str], str | None]] | None = None
    # Waits for a batch listed ahead before the lock is let go, whatever ends the loop.
    counts = tally.current()
    with ThreadPoolExecutor(1, "nsmigrate-list-ahead", initializer=tally.adopt, initargs=(counts,)) as ahead:
        while in_flight < spec.max_batches_in_flight:
            listed_from = token
            ids, token = next_batch.result() if next_batch is not None else list_batch(token)
            done = token is None
            # A namespace's pages are a chain (each needs the token before it): list the next batch while this
            # one is recorded and sent, so those round trips are not links of the chain. Only with room for
            # it under the bound, so the loop goes on to take it.
            next_batch = (
                ahead.submit(list_batch, token) if not done and in_flight + 1 < spec.max_batches_in_flight else None
            )
            try:
                recorded = jobs_pages.add_batches(
                    ctx.db, run_id, [ids] if ids else [], token, listing_done=done, listed_from=listed_from
                )
            except StateError as e:
                log.info("lister of run %s stops: %s", run_id, e)
                return False  # another lister is ahead of us and carries on
            for batch_id in recorded.batch_ids:
                ctx.dispatcher.copy_batch(
                    batch_id, job_id=run.job_id, run_id=run_id, namespace=display_namespace(run.source_namespace)
                )
            if recorded.copied:  # the last page added nothing and every batch was done already (or none)
                run_copied(ctx, run_id, run.job_id, run.source_namespace, spec)
            if done or recorded.cancelled:
                return False  # the run's last batch to finish moves it on
            in_flight = recorded.in_flight
    return True

"""The lister of a large namespace: several prefix chains at once (``orchestrator.listing.prefix_chains``).

One chain lists ~2,000 ids/s at 50 ms a request; a namespace of ``SPLIT_MIN_IDS`` or more whose store lists by
prefix is cut into several prefixes per chain wanted, and the spec's ``max_list_chains`` chains (at most
``MAX_CHAINS``) list them at once, each a batch ahead, all under the fleet's list budget. Batches are recorded one
at a time, each with the whole listing's state after it (``ChainState`` in the run's ``list_token``), so a lister
killed at any point resumes every chain from what was recorded: no id is skipped or batched twice, as with one
chain. The rest chain — ids outside every prefix — is decided on once every prefix chain is done, from the
namespace's count.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.listing.prefix_chains import Chain, ChainState, chain_batch, split_prefixes, wanted_chains
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import IdPage
from nsmigrate.orchestrator.spec.jobspec import MAX_CHAINS, JobSpec
from nsmigrate.workers import tally
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.next_steps import run_copied
from nsmigrate.workers.stores.guarded import GuardedStore

log = logging.getLogger(__name__)


def chains_for(store: GuardedStore, namespace: str, count: int, most: int) -> ChainState | None:
    """The chains (at most ``most``) a fresh listing of ``namespace`` (``count`` ids at plan time) is cut into, or
    None: listed as one chain (small, ``most`` 1, or a store that cannot list by prefix)."""
    want = wanted_chains(count, most)
    if want <= 1 or not store.capabilities.lists_by_prefix:
        return None

    def page_of(prefix: str, token: str | None, limit: int) -> IdPage:
        return store.list_ids_by_prefix(namespace, prefix, limit=limit, token=token)

    counts = tally.current()
    with ThreadPoolExecutor(MAX_CHAINS, "nsmigrate-probe", initializer=tally.adopt, initargs=(counts,)) as pool:
        prefixes = split_prefixes(page_of, want, lambda thunks: list(pool.map(lambda t: t(), thunks)))
    return ChainState.fresh(prefixes) if len(prefixes) > 1 else None


def list_chains(
    ctx: WorkerContext,
    run_id: int,
    job_id: int,
    namespace: str,
    in_flight: int,
    spec: JobSpec,
    source: GuardedStore,
    state: ChainState,
    saved: str | None,
) -> bool:
    """List the open chains of ``state`` (``saved``: the token the run holds now) into batches until the namespace
    is listed, the job is cancelled, or ``spec.max_batches_in_flight`` is reached. Returns True when it stopped at
    that bound (the caller arranges to be woken), False when there is nothing more for this lister to do."""

    def page_of(prefix: str, token: str | None, limit: int) -> IdPage:
        return source.list_ids_by_prefix(namespace, prefix, limit=limit, token=token)

    bound = spec.max_batches_in_flight
    threads = spec.max_list_chains  # ≤ MAX_CHAINS, each one request at a time
    shown = display_namespace(namespace)
    counts = tally.current()
    with ThreadPoolExecutor(threads, "nsmigrate-chain", initializer=tally.adopt, initargs=(counts,)) as pool:
        running: dict[Future[tuple[list[str], str | None]], Chain] = {}

        def start_what_fits() -> None:
            busy = {c.prefix if not c.rest else None for c in running.values()}
            for chain in state.open_chains:
                if len(running) >= threads or in_flight + len(running) >= bound:
                    return
                if (chain.prefix if not chain.rest else None) not in busy:
                    running[pool.submit(chain_batch, page_of, state, chain, spec.batch_size)] = chain

        def record(new: ChainState, id_batches: list[list[str]]) -> jobs_pages.Recorded:
            nonlocal saved, state
            recorded = jobs_pages.add_batches(
                ctx.db, run_id, id_batches, new.encode(), listing_done=new.finished, listed_from=saved
            )
            saved, state = new.encode(), new
            for batch_id in recorded.batch_ids:
                ctx.dispatcher.copy_batch(batch_id, job_id=job_id, run_id=run_id, namespace=shown)
            if recorded.copied:
                run_copied(ctx, run_id, job_id, namespace, spec)
            return recorded

        start_what_fits()
        try:
            while True:
                if not running:
                    if state.open_chains:
                        return True  # at the bound: woken again as batches finish
                    # Every prefix chain is done: is anything outside them? (Once; the rest chain then runs.)
                    recorded = record(state.decided(source.count(namespace)), [])
                    if state.finished or recorded.cancelled:
                        return False
                    in_flight = recorded.in_flight
                    start_what_fits()
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                # Every batch that came in together is recorded in one round trip, with the state after all of them.
                new, id_batches = state, []
                for future in finished:
                    chain = running.pop(future)
                    ids, token = future.result()
                    new = new.advanced(chain, token, len(ids))
                    if ids:
                        id_batches.append(ids)
                recorded = record(new, id_batches)
                if state.finished or recorded.cancelled:
                    return False
                in_flight = recorded.in_flight
                start_what_fits()
        except StateError as e:
            log.info("lister of run %s stops: %s", run_id, e)
            return False  # another lister is ahead of us and carries on
        finally:
            for future in running:
                future.cancel()

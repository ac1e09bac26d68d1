"""The lister: pages one source namespace's ids into batch rows and enqueues a copy task per batch.

It stops when ``max_batches_in_flight`` batches are queued or running and is woken again as they finish (see
``workers.flow``), so a namespace of millions of ids never becomes millions of messages at once. Each batch is
written together with the list token after it, so a lister killed at any point resumes without skipping or
repeating ids. A Redis lock keeps one lister per namespace run.
"""

from __future__ import annotations

from orchestrator import jobs
from orchestrator.names import lock_key
from orchestrator.records import display_namespace
from workers.context import WorkerContext
from workers.flow import advance, lister_wake_key
from workers.ratelimit import list_scope

PAGE_LIMIT = 100  # Pinecone's maximum page size for list


def list_run(ctx: WorkerContext, run_id: int) -> None:
    ctx.redis.delete(lister_wake_key(run_id))
    lock = ctx.redis.lock(lock_key(f"list:{run_id}"), timeout=600)
    if not lock.acquire(blocking=False):
        return  # another lister is on this run; it rechecks the bound when it stops
    try:
        run = jobs.start_listing(ctx.db, run_id)
        if run is None:
            return
        spec = jobs.job_spec(ctx.db, run.job_id)
        source = ctx.store(spec.source)
        token = run.list_token
        done = False
        while jobs.active_batches(ctx.db, run_id) < spec.max_batches_in_flight:
            ids: list[str] = []
            while len(ids) < spec.batch_size:
                limit = min(PAGE_LIMIT, spec.batch_size - len(ids))
                page = ctx.call(lambda t=token, n=limit: source.list_ids(run.source_namespace, limit=n, token=t),
                                scope=list_scope(source.name), rate_per_s=spec.rate.list_rps)
                ids.extend(page.ids)
                token = page.next_token
                if not token:
                    done = True
                    break
            batch_ids = jobs.add_batches(ctx.db, run_id, [ids] if ids else [], token, listing_done=done)
            for batch_id in batch_ids:
                ctx.dispatcher.copy_batch(batch_id, job_id=run.job_id, run_id=run_id,
                                          namespace=display_namespace(run.source_namespace))
            if done or jobs.is_cancelled(ctx.db, run_id):
                break
    finally:
        lock.release()
    # Batches may all have finished while we listed (or there were none): let the run move on, or keep listing.
    advance(ctx, run_id, run.job_id, run.source_namespace, spec)

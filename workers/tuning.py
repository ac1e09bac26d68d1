"""Process-level tuning of a worker, in one place; each item says why in one line. What each one was measured to
gain is in ``bench/README.md`` ("Measurements behind the tuning"), next to the command that measures it.

- **Event flushing** (``Consumer``): a threads worker publishes its task events on a timer, not after each task.
- **Warm-up** (``warm_up``): connections for every task slot, compiled job-table statements and, in a copy worker,
  a faulted-in heap, all before the first task.
- **SDK priming** (``preload_sdk``): the Pinecone SDK's lazy imports and msgspec's decoding information, built once
  in the worker's main process.
- **Memory** (``tune_memory``, see ``workers.memory``): freed memory kept for the next batch, one heap for all
  threads.

Nothing here changes what a task does; each item only moves work out of a worker's first tasks or off its event loop.
"""

from __future__ import annotations

import contextlib
import logging

from celery.worker.consumer import Consumer as CeleryConsumer

from orchestrator.jobs import compile_task_statements
from workers.context import get_context, task_slots
from workers.memory import keep_freed_memory, prefault_heap

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------- event flushing

#: How often a threads worker publishes the task events it has buffered (for Flower): at most this late.
EVENT_FLUSH_S = 0.1


class Consumer(CeleryConsumer):
    """Celery's consumer, but a threads worker publishes its task events every ``EVENT_FLUSH_S`` instead of in the
    event loop's next turn after each one. Why: that loop's one thread also takes every message and sends every ack,
    and each of those Redis round trips waits for the interpreter lock behind the task threads, so per-turn event
    publishes held the loop a large share of its time in a busy worker."""

    events_on_timer = False  # set by `workers.app._thread_pool_ready`

    def on_send_event_buffered(self) -> None:
        if not self.events_on_timer:
            super().on_send_event_buffered()


# --------------------------------------------------------------------------------------------------------- warm-up

#: Heap a copy worker touches per task slot before its first task (see ``prefault_heap``): about what one batch
#: holds at once.
BATCH_HEAP_MB = 8


def warm_up(*, copies_batches: bool = False) -> None:
    """Open this process's connections before its first task: one job-table connection, one Redis connection and
    one task producer (a broker connection) per task slot; compile the job table statements of every task; and with
    ``copies_batches``, fault in ``BATCH_HEAP_MB`` of heap per task slot. Why: a new worker's first tasks then run as
    fast as the rest. Best effort: a service that is down now is reached (and retried) by the task."""
    try:
        ctx = get_context()
        slots = task_slots()
        with contextlib.ExitStack() as held:  # all at once: the pools keep them for the tasks
            for _ in range(slots):
                held.enter_context(ctx.db.engine.connect())
            redis_pool = ctx.redis.connection_pool
            for conn in [redis_pool.get_connection() for _ in range(slots)]:  # each connected on the way out
                held.callback(redis_pool.release, conn)
            producers = ctx.dispatcher.app.producer_pool
            for _ in range(min(slots, producers.limit or slots)):  # never wait on a pool smaller than the slots
                producer = producers.acquire(block=True)
                producer.connection.ensure_connection(max_retries=1)
                held.callback(producer.release)
        # Why: SQLAlchemy compiles a statement on its first use, which a first task would otherwise pay for.
        compile_task_statements(ctx.db)
    except Exception as e:  # warming up must never stop a worker from starting
        log.info("worker warm-up skipped (%s: %s); connections open on the first task", type(e).__name__, e)
    if copies_batches:
        prefault_heap(BATCH_HEAP_MB * task_slots())


# ------------------------------------------------------------------------------------------------------ SDK priming


def preload_sdk() -> None:
    """Build (and drop) one client without connecting, so that the modules the SDK imports on first use are loaded
    in the calling process, then prime the decoding of its response types (``prime_sdk_decoding``). Called in a
    worker's main process before its pool runs a task. Why: every prefork child inherits the loaded modules instead
    of importing them during its first task, and no thread builds msgspec's decoding information."""
    # Imported here: importing workers.app must not load the SDK (its import changes how threads share the heap).
    from pinecone import Index

    from workers.stores.pinecone import prime_sdk_decoding

    try:
        Index(host="http://127.0.0.1:1", api_key="preload", ssl_verify=False).close()
    except Exception as e:  # only an optimisation
        log.debug("could not preload the Pinecone SDK: %s", e)
    prime_sdk_decoding()


# ----------------------------------------------------------------------------------------------------------- memory


def tune_memory() -> None:
    """Keep freed memory for the next batch, in one heap for all threads (``workers.memory.keep_freed_memory``).
    Why: a batch's first touch of a fresh page is a page fault, dear inside VMs. Call it in the worker's main process
    before the pool starts its threads or children (which inherit the settings)."""
    if not keep_freed_memory():
        log.info("not glibc: freed memory goes back to the OS as the C library decides")

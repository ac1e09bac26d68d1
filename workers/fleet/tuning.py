"""Process-level tuning of a worker, in one place; each item says why in one line. What each one was measured to
gain is in ``bench/README.md`` ("Measurements behind the tuning"), next to the command that measures it.

- **The threads pool's event loop** (``ThreadPool``, ``Consumer``): while tasks run, the loop wakes every
  ``THREAD_POOL_TICK_S`` (the next message is fetched soon after a thread ends) and buffered task events are
  published every ``EVENT_FLUSH_S``, not after each task; an idle pool stops both timers, and its loop sleeps.
- **Warm-up** (``warm_up``): connections for every task slot (task queues declared on each producer) and compiled
  job-table statements, before the first task.
- **SDK priming** (``preload_sdk``): the Pinecone SDK's lazy imports and msgspec's decoding information, built once
  in the worker's main process.

Nothing here changes what a task does; each item only moves work out of a worker's first tasks or off its event loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from celery.concurrency.thread import TaskPool as CeleryThreadPool
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.asynchronous import Hub

from nsmigrate.orchestrator.jobs.batches import compile_task_statements
from nsmigrate.orchestrator.messaging.task_names import TASK_QUEUES
from nsmigrate.orchestrator.settings import task_slots
from nsmigrate.workers.context import get_context

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ the threads pool's loop

#: How often a threads worker's event loop wakes up on its own while tasks run (see ``ThreadPool``).
THREAD_POOL_TICK_S = 0.02
#: How often a threads worker publishes the task events it has buffered (for Flower) while tasks run: at most this late.
EVENT_FLUSH_S = 0.1


def _nothing() -> None:
    """Nothing: waking the worker's event loop is the point."""


class ThreadPool(CeleryThreadPool):
    """Celery's threads pool, but while tasks run the worker's event loop wakes every ``THREAD_POOL_TICK_S`` and the
    buffered task events are published every ``EVENT_FLUSH_S`` (``tick_while_busy``); an idle pool stops both.

    Why the tick: with prefetch 1 the consumer stops fetching while every thread is busy, and a thread that finishes
    does not wake the loop (a prefork child does, through its pipe): the next message would wait for the loop's next
    timer, up to seconds (celery/celery#6941). Why only while busy: with no task running nothing is waited for, and
    the two timers were most of an idle worker's CPU (bench/README.md: Idle processes)."""

    hub: Hub | None = None
    _flush_events: Callable[[], None] = _nothing
    _running = 0  # tasks applied and not yet ended (counted in the loop's thread)
    _timers: tuple[Any, ...] = ()

    def tick_while_busy(self, hub: Hub, flush_events: Callable[[], None]) -> None:
        self.hub = hub
        self._flush_events = flush_events

    def on_apply(self, *args: Any, **kwargs: Any) -> Any:
        result = super().on_apply(*args, **kwargs)
        hub = self.hub
        if hub is not None:  # in the loop's thread
            self._running += 1
            if not self._timers:
                self._timers = (
                    hub.timer.call_repeatedly(THREAD_POOL_TICK_S, _nothing),
                    hub.timer.call_repeatedly(EVENT_FLUSH_S, self._flush_events),
                )
            # In the task's thread once it ended: `call_soon` hands it to the loop's thread, waking it.
            result.f.add_done_callback(lambda _: hub.call_soon(self._task_ended))
        return result

    def _task_ended(self) -> None:
        self._running -= 1
        if self._running == 0 and self._timers:
            for timer in self._timers:
                timer.cancel()
            self._timers = ()
            self._flush_events()  # the last task's events, which no timer publishes now


class Consumer(CeleryConsumer):
    """Celery's consumer, but a threads worker publishes its task events on a timer while tasks run (``ThreadPool``)
    instead of in the event loop's next turn after each one. Why: that loop's one thread also takes every message
    and sends every ack, and each of those Redis round trips waits for the interpreter lock behind the task threads,
    so per-turn event publishes held the loop a large share of its time in a busy worker."""

    events_on_timer = False  # set by `workers.fleet.app._thread_pool_ready`

    def on_send_event_buffered(self) -> None:
        if not self.events_on_timer:
            super().on_send_event_buffered()


# --------------------------------------------------------------------------------------------------------- warm-up


def warm_up() -> None:
    """Open this process's connections before its first task: one job-table connection, one Redis connection and
    one task producer (a broker connection, the task queues declared on it) per task slot; compile the job table
    statements of every task. Why: a new worker's first tasks then run as fast as the rest. Best effort: a service
    that is down now is reached (and retried) by the task."""
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
            queues = [ctx.dispatcher.app.amqp.queues[q.value] for q in sorted(set(TASK_QUEUES.values()))]
            for _ in range(min(slots, producers.limit or slots)):  # never wait on a pool smaller than the slots
                producer = producers.acquire(block=True)
                producer.connection.ensure_connection(max_retries=1)
                # Why: a producer declares a queue (a Redis round trip) on its first publish to it.
                for queue in queues:
                    producer.maybe_declare(queue)
                held.callback(producer.release)
        # Why: SQLAlchemy compiles a statement on its first use, which a first task would otherwise pay for.
        compile_task_statements(ctx.db)
    except Exception as e:  # warming up must never stop a worker from starting
        log.info("worker warm-up skipped (%s: %s); connections open on the first task", type(e).__name__, e)


# ------------------------------------------------------------------------------------------------------ SDK priming


def preload_sdk() -> None:
    """Build (and drop) one client without connecting, so that the modules the SDK imports on first use are loaded
    in the calling process, then prime the decoding of its response types (``prime_sdk_decoding``). Called in a
    worker's main process before its pool runs a task. Why: every prefork child inherits the loaded modules instead
    of importing them during its first task, and no thread builds msgspec's decoding information."""
    # Imported here: importing workers.fleet.app must not load the SDK (only a worker's main process preloads it).
    from pinecone import Index

    from nsmigrate.workers.stores.pinecone.access import prime_sdk_decoding

    try:
        Index(host="http://127.0.0.1:1", api_key="preload", ssl_verify=False).close()
    except Exception as e:  # only an optimisation
        log.debug("could not preload the Pinecone SDK: %s", e)
    prime_sdk_decoding()

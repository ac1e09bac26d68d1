"""The Celery application of the worker fleet: tasks registered under the names in ``orchestrator.names``.

Start workers with ``nsmigrate worker --queues copy`` (one pool per queue in production, see docker-compose.yml).
Configuration is applied by ``configure(settings)`` at the entry point, not at import.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_init, worker_process_init, worker_ready
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import STOP_CONDITIONS

from orchestrator.dispatch import celery_config
from orchestrator.names import Queue
from orchestrator.settings import Settings
from workers.context import reset_context, task_slots, warm_up
from workers.memory import keep_freed_memory, prefault_heap

app = Celery("nsmigrate", include=["workers.tasks"])

log = logging.getLogger(__name__)


def configure(settings: Settings) -> Celery:
    app.conf.update(celery_config(settings), worker_consumer=f"{__name__}:Consumer")
    return app


#: How often a threads worker publishes the task events it has buffered (for Flower): at most this late.
EVENT_FLUSH_S = 0.1
#: For this long after losing the broker, any error escaping the consumer reconnects it instead of exiting.
BROKER_TEARDOWN_S = 120.0


class Consumer(CeleryConsumer):
    """Celery's consumer, but a threads worker publishes its task events every ``EVENT_FLUSH_S`` instead of in the
    event loop's next turn after each one. That loop's one thread also takes every message and sends every ack, and
    each of those Redis round trips waits for the interpreter lock behind the task threads: in a busy list worker,
    per-turn event publishes (one every ~17 ms) held the loop about a quarter of its time. With one per 100 ms the
    seed bench's warm fleet was ~7 % faster over 10 interleaved pairs (fresh workers: +1 %)."""

    events_on_timer = False  # set by `_thread_pool_ready`
    #: `time.monotonic()` when the broker connection was last lost, None before that.
    broker_lost_at: float | None = None

    def on_send_event_buffered(self) -> None:
        if not self.events_on_timer:
            super().on_send_event_buffered()

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        self.broker_lost_at = time.monotonic()
        super().on_connection_error_after_connected(exc)

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        self.broker_lost_at = time.monotonic()
        super().on_connection_error_before_connected(exc)

    def start(self) -> None:
        """Celery's consumer loop, which also reconnects when something other than a connection error escapes it
        soon after the broker was lost: kombu tearing down a dead Redis connection's channels can raise e.g.
        ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (celery/kombu#582), which Celery treats
        as unrecoverable and exits the worker. Later errors are bugs and still stop the worker."""
        while True:
            try:
                super().start()
                return
            except Exception as exc:
                lost_at = self.broker_lost_at
                if (
                    lost_at is None
                    or time.monotonic() - lost_at > BROKER_TEARDOWN_S
                    or self.blueprint.state in STOP_CONDITIONS
                ):
                    raise
                log.warning("consumer: %r while recovering from a lost broker; reconnecting", exc, exc_info=True)
                self.broker_lost_at = time.monotonic()
                if self.connection:
                    self.on_connection_error_after_connected(exc)
                self.on_close()
                self._cancel_connection_timer_entries()
                self.blueprint.restart(self)


@worker_init.connect
def _tune_memory(**_: object) -> None:
    # In the worker's main process before the pool starts its threads or children (which inherit the settings).
    if not keep_freed_memory():
        log.info("not glibc: freed memory goes back to the OS as the C library decides")


#: Heap a copy worker touches per task slot before its first task (see ``prefault_heap``): about what one batch
#: holds at once. On the seed bench (batches of up to 200 × 3072 values, 8 threads) a fresh copy worker's first
#: batches otherwise faulted in ~12,000 pages (~45 MB).
BATCH_HEAP_MB = 8


def _warm_up_for_tasks() -> None:
    """Connections for every task slot and, where batches are copied, their memory."""
    warm_up()
    if Queue.COPY.value in app.amqp.queues.consume_from:
        prefault_heap(BATCH_HEAP_MB * task_slots())


@worker_process_init.connect
def _fresh_resources_after_fork(**_: object) -> None:
    reset_context()
    _warm_up_for_tasks()


#: How often a threads worker's event loop wakes up on its own (see `_thread_pool_ready`).
THREAD_POOL_TICK_S = 0.02


@worker_ready.connect
def _thread_pool_ready(sender: Any = None, **_: object) -> None:
    if isinstance(getattr(sender, "pool", None), PreforkPool):
        return  # a prefork pool's children warm up in `_fresh_resources_after_fork`
    # A threads pool runs its tasks in this process, which forks nothing: warm up now, off the event loop's thread,
    # so a slow or unreachable service delays no message (tasks retry their own connections).
    threading.Thread(target=_warm_up_for_tasks, name="nsmigrate-warm-up", daemon=True).start()
    # With prefetch 1 the consumer stops fetching while every thread is busy, and a thread that finishes does not
    # wake the event loop (a prefork child does, through its pipe): the next message waited up to the loop's next
    # timer, ~1-2 s. A short no-op timer bounds that wait (celery/celery#6941).
    sender.timer.call_repeatedly(THREAD_POOL_TICK_S, _tick)
    if isinstance(sender, Consumer):
        sender.events_on_timer = True
        sender.timer.call_repeatedly(EVENT_FLUSH_S, sender._flush_events)


def _tick() -> None:
    """Nothing: waking the worker's event loop is the point."""

"""The Celery application of the worker fleet: tasks registered under the names in ``orchestrator.names``.

Start workers with ``nsmigrate worker --queues copy`` (one pool per queue in production, see docker-compose.yml).
Configuration is applied by ``configure(settings)`` at the entry point, not at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any

from celery import Celery
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_init, worker_process_init, worker_ready

from orchestrator.dispatch import celery_config
from orchestrator.names import Queue
from orchestrator.settings import Settings
from workers.context import reset_context, task_slots, warm_up

app = Celery("nsmigrate", include=["workers.tasks"])

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def configure(settings: Settings) -> Celery:
    app.conf.update(celery_config(settings))
    return app


def keep_freed_memory() -> bool:
    """Have glibc keep memory a worker frees for its next batch instead of handing it back to the OS at once.

    A copy batch allocates tens of MB (the fetched JSON, the upsert bodies) and frees them when it ends. By default
    glibc serves many of them with fresh ``mmap``s and trims the heap on ``free``, so batches keep touching new pages,
    and each first touch is a page fault (dear inside VMs). On the bench's 20,000 × 1536 copy this cut the copy
    workers' page faults from ~160,000 to ~115,000 on fresh workers and from ~28,000 to ~2,000 on warm ones: 0.3–0.5
    CPU-s, ~8 % of their CPU. Up to 256 MB of freed memory is kept per process: a 500 × 1536 batch is ~8.5 MB of
    JSON, which a copy holds about three times over (response, values, upsert bodies).

    All the process's threads share one heap (arena). By default glibc gives each thread of a threads worker its
    own, so each thread faulted in memory for its own first batches and no batch reused what another thread's batch
    freed: with one arena, the seed bench's warm copy workers faulted ~100–500 pages per job instead of ~2,000–8,000.
    Python threads allocate while holding the interpreter lock, so they hardly contend for the arena's lock.

    Returns False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    settings = ((_M_TRIM_THRESHOLD, 256 << 20), (_M_MMAP_THRESHOLD, 32 << 20), (_M_ARENA_MAX, 1))
    return all([bool(mallopt(param, value)) for param, value in settings])


@worker_init.connect
def _tune_memory(**_: object) -> None:
    # In the worker's main process before the pool starts its threads or children (which inherit the settings).
    if not keep_freed_memory():
        log.info("not glibc: freed memory goes back to the OS as the C library decides")


#: Heap a copy worker touches per task slot before its first task (see ``prefault_heap``): about what one batch
#: holds at once. On the seed bench (batches of up to 200 × 3072 values, 8 threads) a fresh copy worker's first
#: batches otherwise faulted in ~12,000 pages (~45 MB).
BATCH_HEAP_MB = 8


def prefault_heap(mb: int) -> None:
    """Touch ``mb`` MiB of heap and free it again. ``keep_freed_memory`` keeps it, so the first batches find their
    memory faulted in instead of paying a page fault per 4 KiB. Call it in the process that runs the tasks: after a
    fork, a parent's pages would be copied, a fault each, on the child's first write."""
    # 1 MiB buffers come from the heap (under the mmap threshold); writing every byte faults every page in.
    touched = [b"\x01" * (1 << 20) for _ in range(mb)]
    del touched


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


def _tick() -> None:
    """Nothing: waking the worker's event loop is the point."""

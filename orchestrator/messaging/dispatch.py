"""Enqueueing tasks by *name* on their Redis queues (the orchestrator never imports the workers).

Only ids travel through Redis. Task kwargs carry readable context for Flower and logs, the job (and batch) and
namespace first, so that Flower's task list shows them where it cuts the text short; never vectors or secrets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from celery import Celery
from kombu import transport as kombu_transport
from kombu.transport import TRANSPORT_ALIASES

from nsmigrate.orchestrator.messaging.task_names import TASK_QUEUES, Queue, TaskName
from nsmigrate.orchestrator.settings import Settings, task_slots

log = logging.getLogger(__name__)


def producer_pool_limit() -> int:
    """Broker connections a process keeps for sending: one per task slot, at least Celery's 10, so that no task
    waits for one. The same for every Celery app of a process: kombu keeps one limit per process, and an app with a
    smaller ``broker_pool_limit`` that sends for the first time resizes every pool down, which fails ("Can't shrink
    pool when in use") while another thread sends; a worker's plan server once failed a job's planning that way.
    Connections are opened only when needed: a process sending from one thread opens one."""
    return max(10, task_slots())


#: kombu's Redis transport with its clients made once (``redis_transport``), named so that loading the configuration
#: imports nothing.
_REDIS_TRANSPORT = "nsmigrate.orchestrator.messaging.redis_transport:Transport"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration shared by the producer side and the workers, so both agree on queues and delivery."""
    # A redis:// broker goes through ``redis_transport``; other schemes (rediss, sentinel, sockets) keep kombu's own,
    # which reads its settings from the scheme.
    if settings.redis_url.split("://", 1)[0] == "redis":
        # By its URL's scheme, not by `broker_transport`: kombu then still names the broker `redis://…` in what it
        # logs (`Cannot connect to redis://…`), where an operator looks for it.
        TRANSPORT_ALIASES["redis"] = _REDIS_TRANSPORT
        kombu_transport._transport_cache.pop("redis", None)  # a scheme resolved before in this process
    return {
        "broker_url": settings.redis_url,
        "broker_pool_limit": producer_pool_limit(),
        "broker_connection_retry_on_startup": True,
        # A worker outlives a Redis outage of any length: it keeps reconnecting (Celery gives up after 100 tries).
        "broker_connection_max_retries": None,
        # Tasks running when the broker connection drops finish and record their result in the job table (the
        # truth); their acks are lost, and Redis may redeliver them, which is harmless. Cancelling them instead
        # (Celery 6's default) would throw finished work away. After a Redis restart, `nsmigrate resume`.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # A task is acknowledged after it ran: a killed worker's batch is redelivered (batches are idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task that raised (its work failed for good and is recorded: ``orchestrator.errors.TaskFailed``) is
        # acknowledged, not redelivered: it ends FAILURE once, and `nsmigrate retry` re-runs its work.
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # Redis redelivers an unacked task after this; it must exceed the longest batch (retries included).
        # Kombu only looks for such tasks every `unacked_restore_interval` × `unacked_restore_throttle` seconds
        # (10 × 10 by default), which would add up to 100 s to every recovery after a killed worker: sweep every
        # interval instead, and often enough for the visibility timeout (one ZRANGE per worker per sweep).
        # Each sweep holds a Redis mutex for its ZRANGE and restores; a worker killed while holding it blocks every
        # worker's sweep until it expires (kombu: 300 s), longer than a short visibility timeout itself.
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 5)),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(1, min(300, settings.visibility_timeout_s)),
        },
        "task_default_queue": Queue.COPY.value,
        "task_create_missing_queues": True,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Flower and `celery events` need task events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
    }


def _closed_kombu_channel(error: AttributeError) -> bool:
    """The error is kombu reaching through a channel whose connection is gone, not a bug of ours."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}kombu{os.sep}" in frames[-1].filename and "'NoneType'" in str(error)


class Dispatcher:
    """Sends tasks by name. Cheap to build; one per process."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        if app is None:
            app = Celery("nsmigrate-dispatch", set_as_current=False)
            app.conf.update(celery_config(settings))
        self.app = app
        self._together = threading.local()  # the producer of this thread's `together` block, if any

    def send(self, task: TaskName, *, countdown_s: float | None = None, **kwargs: Any) -> None:
        """``countdown_s``: the task runs that many seconds later at the earliest (held by the worker that got it)."""
        producer = getattr(self._together, "producer", None)
        queue = TASK_QUEUES[task].value
        options: dict[str, Any] = {
            "kwargs": kwargs,
            "queue": queue,
            "countdown": countdown_s,
            "argsrepr": "()",
            "kwargsrepr": self._shown(kwargs),
        }
        try:
            self.app.send_task(task.value, producer=producer, **options)
        except AttributeError as e:
            if producer is not None or not _closed_kombu_channel(e):
                raise
            # kombu 5.7 can publish through a pooled channel that a broker reconnect closed under it (its
            # `connection` is None). A connection of its own sends the task; with Redis still away that raises
            # kombu's OperationalError, which a worker retries as an outage (workers.retry.INFRASTRUCTURE_ERRORS).
            log.warning("resending %s on a new broker connection: the pooled one was closed (%s)", task.value, e)
            with self.app.connection_for_write() as connection:
                self.app.send_task(task.value, connection=connection, **options)

    def _shown(self, kwargs: dict[str, Any]) -> str:
        """The task's arguments as Flower shows them: ids and namespace names only, so a plain ``repr`` cut to
        Celery's limit says what Celery's ``saferepr`` would, at a twentieth of its CPU (a launch sends thousands)."""
        text, most = repr(kwargs), self.app.amqp.kwargsrepr_maxsize
        return text if len(text) <= most else text[: most - 3] + "..."

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Tasks this thread sends inside the block reach Redis together when it ends, in one round trip (kombu's
        publish batch) instead of two each (the message and its task-sent event): a launch sends one lister per
        namespace. If the block raises, none of them is sent.

        kombu sends a batch once, without the reconnect-and-retry of a single publish, so this is for commands with
        fresh connections (launch, resume, retry, verify), not for workers, whose pooled connections may predate a
        Redis restart."""
        with self.app.producer_or_acquire() as producer, producer.batch():
            self._together.producer = producer
            try:
                yield
            finally:
                del self._together.producer

    def list_namespace(self, run_id: int, *, job_id: int, namespace: str, wait_for_lock: bool = False) -> None:
        """``wait_for_lock`` (resume): if another lister holds the run's lock, wait until it is released or has
        expired (its lister was killed) instead of leaving the run to it."""
        extra = {"wait_for_lock": True} if wait_for_lock else {}
        self.send(TaskName.LIST_NAMESPACE, job_id=job_id, namespace=namespace, run_id=run_id, **extra)

    def copy_batch(self, batch_id: int, *, job_id: int, run_id: int, namespace: str) -> None:
        self.send(TaskName.COPY_BATCH, job_id=job_id, batch_id=batch_id, namespace=namespace, run_id=run_id)

    def copy_small_namespaces(self, run_ids: list[int], *, job_id: int, namespaces: list[str]) -> None:
        """List and copy these small namespace runs in one task (``orchestrator.listing.small_namespaces``)."""
        self.send(TaskName.COPY_SMALL_NAMESPACES, job_id=job_id, namespaces=namespaces, run_ids=run_ids)

    def verify_namespace(self, run_id: int, *, job_id: int, namespace: str) -> None:
        self.send(TaskName.VERIFY_NAMESPACE, job_id=job_id, namespace=namespace, run_id=run_id)

    def verify_small_namespaces(
        self, run_ids: list[int], *, job_id: int, namespaces: list[str], rejudge: bool = False
    ) -> None:
        """Verify these small namespace runs in one task: copied by one task (``workers.steps.next_steps``), or asked
        for again by `nsmigrate verify` (``rejudge``: runs that have a verdict are judged again)."""
        extra = {"rejudge": True} if rejudge else {}
        self.send(TaskName.VERIFY_SMALL_NAMESPACES, job_id=job_id, namespaces=namespaces, run_ids=run_ids, **extra)

    def cleanup_namespace(self, run_id: int, *, job_id: int, namespace: str) -> None:
        self.send(TaskName.CLEANUP_NAMESPACE, job_id=job_id, namespace=namespace, run_id=run_id)

    def erase_place(self, place_id: int, *, job_id: int, place: str) -> None:
        """One place of an erasure job (``place``: what it is, for Flower and logs)."""
        self.send(TaskName.ERASE_PLACE, job_id=job_id, place=place, place_id=place_id)

    def collection_step(self, job_id: int, **step: Any) -> None:
        """The next step of a `strategy: collection` job (``_step``)."""
        self._step(TaskName.COLLECTION_STEP, job_id, **step)

    def import_step(self, job_id: int, **step: Any) -> None:
        """The next step of a `strategy: import` job (``_step``)."""
        self._step(TaskName.IMPORT_STEP, job_id, **step)

    def convert_step(self, job_id: int, **step: Any) -> None:
        """The next step of a `strategy: convert` job (``_step``)."""
        self._step(TaskName.CONVERT_STEP, job_id, **step)

    def _step(
        self,
        task: TaskName,
        job_id: int,
        *,
        polls: int = 0,
        countdown_s: float | None = None,
        failing_since: float | None = None,
        chain: str | None = None,
    ) -> None:
        """``polls``: how many times the job's step found Pinecone still busy; ``failing_since``: epoch time from which
        the control plane has failed on end (None: it answered last); ``chain``: the chain of steps it continues
        (``workers.steps.step_chain``; None: a new one, which the job's older chain gives way to)."""
        kwargs: dict[str, Any] = {} if failing_since is None else {"failing_since": failing_since}
        if chain is not None:
            kwargs["chain"] = chain
        self.send(task, countdown_s=countdown_s, job_id=job_id, polls=polls, **kwargs)

    def close(self) -> None:
        self.app.close()


def send_strategy_step(dispatcher: Dispatcher, strategy: str, job_id: int) -> None:
    """The next step of a job whose strategy steps through Pinecone's part (``collection``, ``import``, ``convert``)."""
    steps = {"import": dispatcher.import_step, "convert": dispatcher.convert_step}
    steps.get(strategy, dispatcher.collection_step)(job_id)

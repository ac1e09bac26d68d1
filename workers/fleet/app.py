"""The Celery application of the worker fleet: tasks registered under the names in
``orchestrator.messaging.task_names``.

Start workers with ``nsmigrate worker --queues copy`` (one pool per queue in production, see docker-compose.yml).
Configuration is applied by ``configure(settings)`` at the entry point, not at import.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import celeryd_after_setup, worker_process_init, worker_ready
from celery.worker.consumer.consumer import STOP_CONDITIONS

from nsmigrate.orchestrator.messaging.dispatch import celery_config
from nsmigrate.orchestrator.recovery import start_sweeping
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.workers import broker_credentials
from nsmigrate.workers.context import reset_context
from nsmigrate.workers.fleet.plan_server import start_planning
from nsmigrate.workers.fleet.tuning import Consumer as TunedConsumer
from nsmigrate.workers.fleet.tuning import ThreadPool, warm_up

app = Celery("nsmigrate", include=["nsmigrate.workers.fleet.tasks"])

log = logging.getLogger(__name__)


#: What `configure` was given: the worker's settings, and whether it runs the fleet's planner.
_settings: Settings | None = None
_planner = False


def configure(settings: Settings, *, planner: bool = False) -> Celery:
    """Apply ``settings``; ``planner``: this worker also plans the jobs commands hand it
    (``workers.fleet.plan_server``)."""
    global _settings, _planner
    _settings = settings
    _planner = planner
    app.conf.update(celery_config(settings), worker_consumer=f"{__name__}:Consumer")
    return app


#: For this long after losing the broker, any error escaping the consumer reconnects it instead of exiting.
BROKER_TEARDOWN_S = 120.0


class Consumer(TunedConsumer):
    """The worker's consumer: ``workers.fleet.tuning.Consumer``, which also reconnects when something other than a
    connection error escapes Celery's consumer loop soon after the broker was lost. Kombu tearing down a dead Redis
    connection's channels can raise e.g. ``AttributeError: 'NoneType' object has no attribute 'hostname'``
    (celery/kombu#582), which Celery treats as unrecoverable: it stops the worker. Later errors are bugs and still
    stop the worker.

    It stops the worker (exit code 2) when Redis refuses its credentials, e.g. after the password was changed
    (kombu would retry them for ever), or a command its ACL user lacks the permission for
    (``workers.broker_credentials``)."""

    #: `time.monotonic()` when the broker connection was last lost, None before that.
    broker_lost_at: float | None = None

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        self.broker_lost_at = time.monotonic()
        super().on_connection_error_after_connected(exc)

    def on_connection_error_before_connected(self, exc: BaseException) -> None:
        self.broker_lost_at = time.monotonic()
        super().on_connection_error_before_connected(exc)

    def ensure_connected(self, conn: Any) -> Any:
        # Celery's connection retry loop (kombu's ``ensure_connection``) calls an error handler at each failed attempt:
        # a refused password stops the worker there instead of being retried.
        retry = conn.ensure_connection

        def ensure_connection(errback: Any, *args: Any, **kwargs: Any) -> Any:
            def on_error(exc: BaseException, interval: float) -> None:
                if broker_credentials.is_refusal(exc):
                    log.critical("%s", broker_credentials.refusal(str(self.app.conf.broker_url), exc))
                    raise broker_credentials.RefusedCredentials() from exc
                errback(exc, interval)

            return retry(on_error, *args, **kwargs)

        conn.ensure_connection = ensure_connection
        return super().ensure_connected(conn)

    def start(self) -> None:
        while True:
            try:
                super().start()
                return
            except Exception as exc:
                if broker_credentials.is_refusal(exc):  # e.g. NOPERM for BRPOP: Celery would die with a traceback
                    log.critical("%s", broker_credentials.refusal(str(self.app.conf.broker_url), exc))
                    raise broker_credentials.RefusedCredentials() from exc
                lost_at = self.broker_lost_at
                if (
                    lost_at is None
                    or time.monotonic() - lost_at > BROKER_TEARDOWN_S
                    or self.blueprint.state in STOP_CONDITIONS
                ):
                    raise
                log.warning("consumer: %r while recovering from a lost broker; reconnecting", exc, exc_info=True)
                # Celery's own path for a lost connection (celery.worker.consumer.Consumer.start).
                self.broker_lost_at = time.monotonic()
                if self.connection:
                    self.on_connection_error_after_connected(exc)
                self.on_close()
                # A private Celery method: pyproject.toml pins the Celery minor it was tested with.
                self._cancel_connection_timer_entries()
                self.blueprint.restart(self)


def _warm_up_for_tasks() -> None:
    """Connections for every task slot."""
    warm_up()


@celeryd_after_setup.connect
def _freeze_what_is_loaded(**_: object) -> None:
    # Right before the pool starts (a prefork pool forks its children next): the objects loaded so far (modules,
    # tasks, the SDK's decoders) stay out of every later garbage collection. A child's first full collection would
    # otherwise touch, and so copy, every page it shares with the main process.
    gc.freeze()


@worker_process_init.connect
def _fresh_resources_after_fork(**_: object) -> None:
    reset_context()
    _warm_up_for_tasks()


@worker_ready.connect
def _sweep_for_stalled_runs(**_: object) -> None:
    # In the worker's main process once its pool runs (a prefork pool has forked its children by then).
    if _settings is not None:
        start_sweeping(_settings)


@worker_ready.connect
def _serve_submissions(sender: Any = None, **_: object) -> None:
    if _settings is not None and _planner:
        start_planning(_settings, getattr(sender, "hostname", None) or "a worker")


@worker_ready.connect
def _thread_pool_ready(sender: Any = None, **_: object) -> None:
    if isinstance(getattr(sender, "pool", None), PreforkPool):
        return  # a prefork pool's children warm up in `_fresh_resources_after_fork`
    # A threads pool runs its tasks in this process, which forks nothing: warm up now, off the event loop's thread,
    # so a slow or unreachable service delays no message (tasks retry their own connections).
    threading.Thread(target=_warm_up_for_tasks, name="nsmigrate-warm-up", daemon=True).start()
    if isinstance(sender.pool, ThreadPool) and isinstance(sender, TunedConsumer):
        sender.events_on_timer = True
        # `_flush_events` is private to Celery's consumer: pyproject.toml pins the Celery minor it was tested with.
        sender.pool.tick_while_busy(sender.hub, sender._flush_events)

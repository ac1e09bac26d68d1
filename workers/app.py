"""The Celery application of the worker fleet: tasks registered under the names in ``orchestrator.names``.

Start workers with ``nsmigrate worker --queues copy`` (one pool per queue in production, see docker-compose.yml).
Configuration is applied by ``configure(settings)`` at the entry point, not at import.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from orchestrator.dispatch import celery_config
from orchestrator.settings import Settings
from workers.context import reset_context, warm_up

app = Celery("nsmigrate", include=["workers.tasks"])


def configure(settings: Settings) -> Celery:
    app.conf.update(celery_config(settings))
    return app


@worker_process_init.connect
def _fresh_resources_after_fork(**_: object) -> None:
    reset_context()
    warm_up()

"""What makes Celery re-send a whole task: ``INFRASTRUCTURE_ERRORS``, the job table or Redis could not be reached.

One store request is retried by ``orchestrator.retry_policy`` (through ``workers.stores.guarded``); a task that could
not reach the job table or Redis changed nothing (every job table change is one transaction), so ``workers.fleet.tasks``
re-sends it after a backoff. Which layer retries what: ``workers.stores.guarded``'s docstring.
"""

from __future__ import annotations

import kombu.exceptions
import redis
import sqlalchemy as sa

#: The job table or Redis could not be reached: retrying the whole task later helps (see the module docstring).
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,  # no pooled connection came free in time: transient, like an outage
    redis.ConnectionError,
    redis.TimeoutError,
    kombu.exceptions.OperationalError,  # a task could not be sent: kombu's publish retries ran out
)

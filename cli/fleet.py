"""Opening what the fleet runs on, for the commands that act: the broker (checked before anything is written) and the
stores. Loads Celery and the store SDKs, so the commands that only read the job table never import this module."""

from __future__ import annotations

import functools
from typing import Any

import redis

from nsmigrate.cli.options import check_redis_credentials, fail, settings
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.redaction import redact_url, scrub
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.workers import broker_credentials
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.stores import open_retrying_store


def open_store(spec: Any) -> Any:
    """A store whose calls retry, reading only the keys the operator's settings allow: the CLI is the composition
    root, the orchestrator core only receives this function."""
    return open_retrying_store(spec, _settings())


def open_control(spec: Any) -> Any:
    """The Pinecone control plane of a store spec's project (index creation, collections)."""
    from nsmigrate.workers.stores.pinecone.control import PineconeControl  # the SDK's control plane, only where needed

    return PineconeControl(spec, allowed_key_vars=_settings().allowed_key_vars)


@functools.cache
def _settings() -> Settings:
    """The settings the store openers need (allowed key variables, one-off retries), read once per command; the URLs
    of the job table and Redis that ``--database-url``/``--redis-url`` override play no part here."""
    return settings(None, None)


def worker_context(settings: Settings) -> WorkerContext:
    """A worker's context for a command that runs a worker's step itself (cleanup, sync, rollback), once Redis (its
    rate budgets) accepted the URL's password: a refused one is one clear error at once, not every store request
    retried and then reported as Redis out of reach."""
    check_redis_credentials(settings.redis_url)
    return WorkerContext(settings)


def dispatcher(settings: Settings) -> Dispatcher:
    """A Dispatcher whose broker answered: checked before anything is written, so an unreachable Redis, or one that
    refuses the URL's password or a command the fleet sends, gives one clear error instead of a traceback and a job
    row whose tasks were never enqueued."""
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5).ping()
    except broker_credentials.REFUSALS as e:
        raise fail(broker_credentials.refusal(settings.redis_url, e)) from e
    except (redis.RedisError, ValueError, OSError) as e:
        detail = scrub((str(e).splitlines() or [""])[0][:200], settings.redis_url)
        raise fail(
            f"cannot reach Redis at {redact_url(settings.redis_url)}: {type(e).__name__}: {detail} — set "
            "NSMIGRATE_REDIS_URL or --redis-url to a reachable Redis"
        ) from e
    problem = broker_credentials.check(settings.redis_url)  # an ACL user lacking a command the fleet sends
    if problem is not None:
        raise fail(problem)
    return Dispatcher(settings)

"""Redis refusing nsmigrate's credentials: a setting to fix, not a fault to wait out.

A wrong password (``WRONGPASS``), none where Redis requires one (``NOAUTH``), an unknown ACL user: retrying cannot
help, so a worker stops with one line saying which setting to fix (``refusal``, ``RefusedCredentials``) and the
commands refuse to start. redis-py counts these as connection errors, and kombu and Celery retry every connection
error for ever: left to them, a worker with a wrong password waited silently. A Redis that is down is a fault to
wait out: that stays retried.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from celery.exceptions import WorkerShutdown

from orchestrator.redaction import redact_url, scrub

#: What redis-py raises when Redis refuses the credentials it was given (or their absence).
REFUSALS = (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError)


class RefusedCredentials(WorkerShutdown):
    """Stops a worker (Celery's own way out of its consumer) with exit code 2: bad input, as every command's
    configuration error (``cli.options.fail``)."""

    def __init__(self) -> None:
        super().__init__(2)


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is Redis refusing the credentials."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, REFUSALS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def refusal(url: str, exc: BaseException) -> str:
    """One line saying that Redis at ``url`` refused its credentials (``exc``: Redis's answer) and what to set; the
    URL's secrets hidden."""
    if urlsplit(url).password is None:
        wrong = "requires a password and the URL gives none"
    else:
        wrong = f"refused the password ({scrub((str(exc).splitlines() or [''])[0][:200], url)})"
    return (
        f"NSMIGRATE_REDIS_URL: Redis at {redact_url(url)} {wrong} — set the user and password Redis expects in "
        "NSMIGRATE_REDIS_URL (or --redis-url), e.g. redis://[user]:PASSWORD@host:6379/0"
    )


def check(url: str) -> str | None:
    """``refusal`` when Redis at ``url`` refuses the URL's credentials; None when it accepts them, and when it cannot
    be reached (down: the caller waits for it as before)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except REFUSALS as e:
        return refusal(url, e)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    return None

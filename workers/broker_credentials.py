"""Redis refusing nsmigrate's credentials: a setting to fix, not a fault to wait out.

A wrong password (``WRONGPASS``), none where Redis requires one (``NOAUTH``), an unknown ACL user, an ACL user
without the permission for a command, key or channel the fleet uses (``NOPERM``): retrying cannot help, so a worker
stops with one line saying which setting to fix (``refusal``, ``RefusedCredentials``) and the commands refuse to
start. redis-py counts the first three as connection errors, and kombu and Celery retry every connection error for
ever: left to them, a worker with a wrong password waited silently (and one without a permission died with a
traceback). A Redis that is down is a fault to wait out: that stays retried.

``check`` asks for every command of ``FLEET_COMMANDS`` inside a transaction it discards: Redis checks a command's
ACL permissions when it is queued, so a missing one is found before anything is written, and nothing is.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import redis
from celery.exceptions import WorkerShutdown

from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY, SUBMISSIONS_KEY, Queue, lock_key, rate_bucket_key
from nsmigrate.orchestrator.redaction import redact_url, scrub

#: What redis-py raises when Redis refuses the credentials it was given (or their absence), or a command to them.
REFUSALS = (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError, redis.exceptions.NoPermissionError)

#: The commands the fleet sends (kombu's Redis transport, Celery's events and remote control, nsmigrate's rate
#: budgets, locks and planner hand-off), each with a key or channel of the kind it is sent for.
FLEET_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("PING",),
    ("LPUSH", Queue.COPY.value, "probe"),
    ("RPUSH", SUBMISSIONS_KEY, "probe"),
    ("BRPOP", Queue.COPY.value, "1"),
    ("BLPOP", SUBMISSIONS_KEY, "1"),
    ("LREM", SUBMISSIONS_KEY, "1", "probe"),
    ("LLEN", Queue.COPY.value),
    ("SADD", f"_kombu.binding.{Queue.COPY.value}", "probe"),
    ("SMEMBERS", f"_kombu.binding.{Queue.COPY.value}"),
    ("ZADD", "unacked_index", "0", "probe"),
    ("ZREM", "unacked_index", "probe"),
    ("HSET", "unacked", "probe", "probe"),
    ("HGET", "unacked", "probe"),
    ("HDEL", "unacked", "probe"),
    ("SET", lock_key("probe"), "probe", "NX", "PX", "1"),
    ("GET", PLANNER_KEY),
    ("EXISTS", PLANNER_KEY),
    ("DEL", lock_key("probe")),
    ("PEXPIRE", lock_key("probe"), "1"),
    ("EVALSHA", "0" * 40, "1", rate_bucket_key("probe")),
    ("EVAL", "return 0", "1", rate_bucket_key("probe")),
    ("PUBLISH", "celeryev", "probe"),
    ("PSUBSCRIBE", "celeryev*"),
)


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


def _no_permission(exc: BaseException) -> redis.exceptions.NoPermissionError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis.exceptions.NoPermissionError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def missing_permission(answer: str, command: tuple[str, ...] | None = None) -> str:
    """What a ``NOPERM`` answer says the user may not do, e.g. ``run BRPOP``, ``run LPUSH on key 'copy'``;
    ``command``: the command it answered, when known (Redis names no key or channel)."""
    named = re.search(r"run the '([^']+)' command", answer)
    if named:
        return f"run {named.group(1).upper()}"
    kind = "channel" if "channel" in answer else "key"
    if command is not None and len(command) > 1:
        argument = command[3] if command[0] == "EVALSHA" or command[0] == "EVAL" else command[1]
        return f"run {command[0]} on {kind} {argument!r}"
    return f"access the {kind}s it uses"


def refusal(url: str, exc: BaseException, command: tuple[str, ...] | None = None) -> str:
    """One line saying that Redis at ``url`` refused its credentials, or ``command`` to them (``exc``: Redis's
    answer), and what to set; the URL's secrets hidden."""
    denied = _no_permission(exc)
    if denied is not None:
        answer = scrub((str(denied).splitlines() or [""])[0][:200], url)
        user = urlsplit(url).username or "default"
        return (
            f"NSMIGRATE_REDIS_URL: Redis at {redact_url(url)} does not let ACL user {user!r} "
            f"{missing_permission(answer, command)} ({answer}), which the fleet needs — grant it (e.g. ACL SETUSER "
            f"{user} +@all ~* &*) or set NSMIGRATE_REDIS_URL (or --redis-url) to a user that has it"
        )
    if urlsplit(url).password is None:
        wrong = "requires a password and the URL gives none"
    else:
        wrong = f"refused the password ({scrub((str(exc).splitlines() or [''])[0][:200], url)})"
    return (
        f"NSMIGRATE_REDIS_URL: Redis at {redact_url(url)} {wrong} — set the user and password Redis expects in "
        "NSMIGRATE_REDIS_URL (or --redis-url), e.g. redis://[user]:PASSWORD@host:6379/0"
    )


def check(url: str) -> str | None:
    """``refusal`` when Redis at ``url`` refuses the URL's credentials or one of ``FLEET_COMMANDS`` to them, and what
    is wrong with ``url`` when redis-py cannot read it; None when Redis accepts them all, and when it cannot be
    reached (down: the caller waits for it as before)."""
    client: redis.Redis | None = None
    try:
        # Inside the try: redis-py's error about a URL it cannot read may quote a piece of its password.
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        refused = _refused_command(client)
    except REFUSALS as e:
        return refusal(url, e)
    except (redis.RedisError, OSError):
        return None
    except (ValueError, TypeError) as e:
        return (
            f"NSMIGRATE_REDIS_URL: redis-py cannot read the URL {redact_url(url)} ({type(e).__name__}: "
            f"{scrub((str(e).splitlines() or [''])[0][:200], url)}) — set NSMIGRATE_REDIS_URL (or --redis-url) to a "
            "URL like redis://[user]:PASSWORD@host:6379/0, the password's special characters percent-encoded"
        )
    finally:
        if client is not None:
            client.close()
    return None if refused is None else refusal(url, refused[1], refused[0])


def _refused_command(client: redis.Redis) -> tuple[tuple[str, ...], redis.exceptions.NoPermissionError] | None:
    """The first of ``FLEET_COMMANDS`` Redis refuses the client's user, and its answer; the commands are queued in a
    transaction that is discarded, so none of them runs."""
    connection = client.connection_pool.get_connection()
    refused: tuple[tuple[str, ...], redis.exceptions.NoPermissionError] | None = None
    try:
        connection.send_command("MULTI")
        connection.read_response()
        for command in FLEET_COMMANDS:
            connection.send_command(*command)
            try:
                connection.read_response()
            except redis.exceptions.NoPermissionError as e:
                refused = refused or (command, e)
        connection.send_command("DISCARD")
        connection.read_response()
    finally:
        client.connection_pool.release(connection)
    return refused

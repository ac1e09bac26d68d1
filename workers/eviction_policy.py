"""Redis's ``maxmemory-policy``: the fleet's Redis must never evict a key.

Full under any other policy, Redis drops keys to make room, silently: a queue's list (the tasks waiting), the
``unacked`` hash (what brings back a dead worker's tasks), a lock, a rate budget. A job would then wait for ever for
batches nobody sends any more. So a worker refuses to start on a Redis whose policy is not ``noeviction`` (Redis's
default), and warns when Redis does not say (``CONFIG`` disabled or not allowed, as on some managed services).
"""

from __future__ import annotations

import redis

from nsmigrate.orchestrator.redaction import redact_url

#: The one policy under which Redis refuses a write rather than drop a key.
KEEPS_EVERY_KEY = "noeviction"


def check(url: str) -> tuple[str | None, str | None]:
    """(refusal, warning) for the Redis at ``url``: a refusal when its policy evicts, a warning when it does not say
    which; neither when it keeps every key, or cannot be reached (down: the worker waits for it as before)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    where = redact_url(url)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError as e:  # CONFIG renamed, disabled or not granted to this user
        return None, (
            f"Redis at {where} does not say its maxmemory-policy ({str(e)[:120]}): make sure it is {KEEPS_EVERY_KEY}, "
            "or a full Redis drops queued tasks silently"
        )
    except (redis.RedisError, OSError):
        return None, None
    finally:
        client.close()
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy in (None, KEEPS_EVERY_KEY):
        return None, None
    return (
        f"Redis at {where} has maxmemory-policy {policy}: once full it drops keys, queued tasks among them, and a job "
        f"waits for ever for them — set it to {KEEPS_EVERY_KEY} (CONFIG SET maxmemory-policy {KEEPS_EVERY_KEY}, and "
        "in redis.conf) and give it the memory the queues need"
    ), None

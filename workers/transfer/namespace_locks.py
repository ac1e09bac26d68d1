"""Fleet-wide locks on one namespace of one store (Redis): a deletion is serialised with every other deletion and
every write of the namespaces it touches, whichever job asks.

A prove-and-delete chunk (``workers.steps.proving``) holds its namespaces *exclusively* — the one it deletes from and
the ones its proof reads the copies from — from the fetches that prove it to its delete, so no other job's deletion can
take a proof's copy away before the delete it justified; a cleanup's start holds them while it looks for another
job's cleanup of one of them (``workers.steps.cleaning``). A write or delete through ``GuardedStore`` holds its
namespace for the one request (a write *shared*: writes go side by side, never inside a chunk's proof and delete). A
namespace is keyed by its store's identity (``GuardedStore.budget_key``: an index by its data-plane host, whatever the
spelling), not by the label a spec gave it.

Every namespace a holder needs is taken in one atomic script, or none is (no order to keep, no deadlock); an
exclusive waiter marks them wanted, so new writers wait behind it. A hold expires ``ttl_s`` after it was last
refreshed, so a holder that died frees its namespaces; an exclusive holder refreshes from a heartbeat thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from nsmigrate.orchestrator.errors import PermanentError, RetryableError
from nsmigrate.orchestrator.messaging.task_names import lock_key
from nsmigrate.workers import broker_credentials

#: How often a waiter asks again, in seconds: a chunk holds its namespaces for a fetch of each side and a delete.
POLL_S = 0.02

# KEYS: the namespaces' base keys. ARGV: token, ttl ms, wanted ms. Granted only if none is held exclusively by another
# holder nor shared by a live writer; otherwise each is marked wanted (new writers wait) and nothing is taken.
_EXCLUSIVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token, ttl, wanted = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local free = true
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key .. ':x')
  redis.call('ZREMRANGEBYSCORE', key .. ':s', '-inf', now)
  if (holder and holder ~= token) or redis.call('ZCARD', key .. ':s') > 0 then
    free = false
  end
end
for _, key in ipairs(KEYS) do
  if free then
    redis.call('SET', key .. ':x', token, 'PX', ttl)
    redis.call('DEL', key .. ':w')
  else
    redis.call('SET', key .. ':w', token, 'PX', wanted)
  end
end
if free then return 1 end
return 0
"""

# KEYS: one base key, and a key to read as the hold is granted (optional). ARGV: token, ttl ms. Granted unless held
# exclusively or wanted by an exclusive waiter: 1, or the read key's value when it has one; 0 when not granted.
_SHARED_LUA = """
local key = KEYS[1]
if redis.call('EXISTS', key .. ':x') == 1 or redis.call('EXISTS', key .. ':w') == 1 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', key .. ':s', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', key .. ':s', tonumber(ARGV[2]))
if KEYS[2] then
  return redis.call('GET', KEYS[2]) or 1
end
return 1
"""

# KEYS: one base key. ARGV: token, ttl ms. A shared hold kept past one request: refreshed while it is still held.
_SHARED_KEEP_LUA = """
local key = KEYS[1] .. ':s'
if redis.call('ZSCORE', key, ARGV[1]) then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2]))
end
return 1
"""

# KEYS: base keys. ARGV: token, ttl ms (0: release). Only the holder's own holds are refreshed or released.
_EXCLUSIVE_KEEP_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key .. ':x') == ARGV[1] then
    if tonumber(ARGV[2]) > 0 then
      redis.call('PEXPIRE', key .. ':x', tonumber(ARGV[2]))
    else
      redis.call('DEL', key .. ':x')
    end
  end
end
return 1
"""


def namespace_key(identity: str, namespace: str) -> str:
    """The lock of ``namespace`` in the store whose identity is ``identity`` (hashed: a namespace may be 512 bytes of
    anything)."""
    digest = hashlib.sha256(f"{identity}\0{namespace}".encode()).hexdigest()[:32]
    return lock_key(f"ns:{digest}")


class NamespaceLocks:
    """Exclusive and shared holds of namespaces, fleet-wide.

    Parameters:
        client: the fleet's Redis.
        ttl_s: a hold expires this long after it was last refreshed (its holder died).
        wait_s: how long a holder waits for its namespaces before it gives up (``RetryableError``).
    """

    def __init__(self, client: redis.Redis, *, ttl_s: float, wait_s: float) -> None:
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._wait_s = wait_s
        self._exclusive = client.register_script(_EXCLUSIVE_LUA)
        self._shared = client.register_script(_SHARED_LUA)
        self._keep = client.register_script(_EXCLUSIVE_KEEP_LUA)
        self._keep_shared = client.register_script(_SHARED_KEEP_LUA)
        self._zrem = client.zrem
        self._held = threading.local()  # the keys this thread holds exclusively

    def _mine(self) -> set[str]:
        held: set[str] | None = getattr(self._held, "keys", None)
        if held is None:
            held = self._held.keys = set()
        return held

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except broker_credentials.REFUSALS as e:
            raise PermanentError(
                f"namespace locks: Redis refused the credentials of NSMIGRATE_REDIS_URL, or this command to them ({e})"
            ) from e
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise RetryableError(f"could not reach Redis to lock {what}: {e}") from e

    def _wait(self, what: str, take: Any) -> None:
        deadline = time.monotonic() + self._wait_s
        while not take():
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"{what} stayed locked by another deletion or write for {self._wait_s:g} s "
                    "(NSMIGRATE_NAMESPACE_LOCK_WAIT_S)"
                )
            time.sleep(POLL_S)

    @contextmanager
    def exclusive(self, keys: Iterable[str], what: str) -> Iterator[None]:
        """Hold every namespace of ``keys`` (``namespace_key``) alone: no other deletion and no write of any of them
        until the block ends. A namespace this thread holds already is not asked for again. ``what``: the
        namespaces in words, for the message when the wait gives up."""
        mine = self._mine()
        wanted = sorted(set(keys) - mine)
        if not wanted:
            yield
            return
        token = uuid.uuid4().hex
        ttl, poll_ms = self._ttl_ms, max(1, round(POLL_S * 1000))

        def take() -> bool:
            return bool(self._call(what, self._exclusive, keys=wanted, args=[token, ttl, poll_ms * 10]))

        self._wait(what, take)
        mine.update(wanted)
        try:
            with self._heartbeat(lambda: self._keep(keys=wanted, args=[token, ttl])):
                yield
        finally:
            mine.difference_update(wanted)
            with contextlib.suppress(redis.RedisError):  # else it expires within the ttl
                self._keep(keys=wanted, args=[token, 0])

    @contextmanager
    def _heartbeat(self, refresh: Any) -> Iterator[None]:
        """``refresh`` a hold every third of its ttl from a thread of its own, while the block runs."""
        stopped = threading.Event()

        def keep_fresh() -> None:
            while not stopped.wait(self._ttl_ms / 3000):
                try:
                    refresh()
                except redis.RedisError:
                    continue  # the next beat tries again; the hold outlives one missed beat

        heartbeat = threading.Thread(target=keep_fresh, name="namespace-lock", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stopped.set()
            heartbeat.join()

    @contextmanager
    def shared(self, key: str, what: str, *, read: str | None = None, kept: bool = False) -> Iterator[str | None]:
        """Hold one namespace beside other writers, for one write request (not inside another thread's exclusive
        hold of it); ``kept``: for longer (a statement that copies a batch inside Postgres), refreshed as an
        exclusive hold is, so it never expires under a live holder. Yields the value Redis key ``read`` had as the
        hold was granted, in the same call (None: no such key, none asked, or a namespace this thread holds alone
        already)."""
        if key in self._mine():
            yield None
            return
        token = uuid.uuid4().hex
        keys = [key] if read is None else [key, read]
        granted: list[Any] = []

        def take() -> bool:
            granted.append(self._call(what, self._shared, keys=keys, args=[token, self._ttl_ms]))
            return granted[-1] != 0

        self._wait(what, take)
        try:
            mark = granted[-1].decode() if isinstance(granted[-1], bytes) else None
            if kept:
                with self._heartbeat(lambda: self._keep_shared(keys=[key], args=[token, self._ttl_ms])):
                    yield mark
            else:
                yield mark
        finally:
            with contextlib.suppress(redis.RedisError):  # else it expires within the ttl
                self._zrem(f"{key}:s", token)

"""A fleet-wide rate budget in Redis, shared by every worker process and thread.

Pinecone's limits are per second *as the server counts them*, and a fleet of workers on many machines has no common
clock, so every decision is made inside Redis by one atomic Lua script that reads Redis ``TIME``:

- **Requests** (``acquire``): a sliding-window log in a sorted set per scope, of which no ``1 s + guard_s`` window
  may hold more than ``floor(rate)`` admissions. A request that fits is admitted now. One that does not *reserves*
  the first moment it fits (when the admission it would otherwise exceed leaves the window): the script enters it
  in the log at that moment and the caller sleeps until then and goes, without asking again. So a busy scope is a
  queue served in order, one script call per request, not a crowd of sleepers waking to ask again. The guard
  (``rate_guard_s``, 100 ms) absorbs network jitter between admission and the request reaching Pinecone, so the
  fleet never puts more than ``rate`` requests into *any* 1-second window. A rate below 1 means "one request every
  1/rate s".
- **Amounts** (``acquire_amount``: an upsert's bytes, the records a delete names): a sliding-window log too, each
  entry weighing its amount, of which no ``1 s + guard_s`` window may hold more than ``floor(rate)``, as Pinecone
  counts its upsert size and deleted records per second. An amount that does not fit reserves, in order, the first
  moment it does. An upsert asks for its bytes and its request slot in one call (``acquire_write``): its slot comes
  no sooner than its bytes.

Keys are ``orchestrator.messaging.task_names.rate_bucket_key(scope)`` and expire once idle. A scope names what the
service limits: the store's identity (``workers.stores.guarded.GuardedStore.budget_key``: an index by its data-plane
host, whatever label or spelling a spec gave it), and the kind of request. Scopes are built here:
``read_scope`` (fetch, per source index), ``list_scope`` (list, per source index), ``stats_scope`` (counts and
the index's description, per index), ``write_scope`` (upsert/delete, per target namespace; its upserts' bytes in
``bytes_scope_of`` it), ``delete_scope`` (the records deletes name, per index), ``embed_scope`` (embedding tokens of
an integrated target index, ``acquire_tokens``: a token bucket, as models count tokens a minute).
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from nsmigrate.orchestrator.errors import PermanentError, RetryableError
from nsmigrate.orchestrator.messaging.task_names import rate_bucket_key
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.workers import broker_credentials

#: Extra seconds every admission stays in the window: admission → request on the wire jitter must not let two
#: windows' worth of requests land in one server second (the ``rate_guard_s`` setting's default).
DEFAULT_GUARD_S = DEFAULTS.rate_guard_s

# Admits ``cost`` requests now when they fit the window; else answers when they will fit and, with ``reserve``, enters
# them in the log at that moment (the caller then sleeps until it). Ranks, not insertion order, decide: the
# (count + cost - limit)-th oldest entry is the one that must leave the window first, so any window ending at or
# after the reserved moment holds at most ``limit`` entries, reservations included. A request is admitted now only
# when the log, reservations included, has room for it. A write's slot may lie later than the window needs
# (``_WRITE_LUA``: not before its bytes), so the key's expiry is set from the log's latest entry, not the call's own:
# it outlives every entry's window.
_SLIDING_WINDOW_LUA = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local member = ARGV[4]
local reserve = ARGV[5] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_us)
local count = redis.call('ZCARD', key)
local at = now
if count + cost > limit then
  local nth = count + cost - limit - 1
  local entry = redis.call('ZRANGE', key, nth, nth, 'WITHSCORES')
  at = math.max(now + 1, tonumber(entry[2]) + window_us)
  if not reserve then
    return {0, now, at - now}
  end
end
for i = 1, cost do
  redis.call('ZADD', key, at, member .. ':' .. i)
end
local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, math.ceil((tonumber(latest[2]) - now + window_us) / 1000) + 1000)
return {1, at, at - now}
"""

# Takes ``cost`` from the token bucket ``bucket`` (``rate`` a second, ``burst`` at most) at Redis time ``t`` and sets
# ``wait_us`` to how long the debt takes to refill (0: none).
_BUCKET_STEP = """
local now_s = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', bucket, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now_s
end
tokens = math.min(burst, tokens + math.max(0, now_s - ts) * rate) - cost
redis.call('HSET', bucket, 'tokens', string.format('%.3f', tokens), 'ts', string.format('%.6f', now_s))
redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) / rate * 1000) + 1000)
if tokens < 0 then wait_us = math.ceil(-tokens / rate * 1000000) end
"""

_TOKEN_BUCKET_LUA = (
    """
local bucket = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local wait_us = 0
"""
    + _BUCKET_STEP
    + """
return {wait_us}
"""
)

# Moves ``amount_at`` (``now`` before) to the first moment, no sooner than the latest slot of the weighted log
# ``amounts`` (entries ``member:amount`` scored by their slot), at which ``amount`` fits under ``amount_limit`` with
# every entry still in the window (an amount over it alone takes a window of its own). Every entry of the log not yet
# passed over is counted, wherever its slot, so no window holding the new entry can hold more. No sooner than the
# latest slot: amounts are served in order, so a small one never goes ahead of a large one waiting for its window.
# ``_AMOUNT_ENTRY`` enters the amount at ``amount_slot``, which may be later still.
_AMOUNT_STEP = """
redis.call('ZREMRANGEBYSCORE', amounts, '-inf', now - amount_window_us)
local entries = redis.call('ZRANGE', amounts, 0, -1, 'WITHSCORES')
if #entries > 0 then amount_at = math.max(now, tonumber(entries[#entries])) end
local weights, total = {}, 0
for i = 1, #entries, 2 do
  weights[i] = tonumber(string.match(entries[i], ':(%d+)$'))
  total = total + weights[i]
end
local over = total + math.min(amount, amount_limit) - amount_limit
local i = 1
while over > 0 and i < #entries do
  over = over - weights[i]
  amount_at = math.max(amount_at, tonumber(entries[i + 1]) + amount_window_us)
  i = i + 2
end
"""
_AMOUNT_ENTRY = """
redis.call('ZADD', amounts, amount_slot, member .. ':' .. amount)
redis.call('PEXPIRE', amounts, math.ceil((amount_slot - now + amount_window_us) / 1000) + 1000)
"""

_AMOUNT_LUA = (
    """
local amounts = KEYS[1]
local amount_limit = tonumber(ARGV[1])
local amount_window_us = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local member = ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local amount_at = now
"""
    + _AMOUNT_STEP
    + """
local amount_slot = amount_at
"""
    + _AMOUNT_ENTRY
    + """
return {amount_at - now}
"""
)

# An upsert's two budgets in one call: its bytes reserved as ``_AMOUNT_LUA`` reserves them and its slot in the window
# reserved as ``_SLIDING_WINDOW_LUA`` reserves one, but no sooner than the bytes allow; both entered at that slot, and
# the caller sleeps once, until it. An entry placed later than the window needs keeps every window within ``limit``.
_WRITE_LUA = (
    """
local key, amounts = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local member = ARGV[3]
local amount_limit = tonumber(ARGV[4])
local amount_window_us = tonumber(ARGV[5])
local amount = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local amount_at = now
if amount > 0 then
"""
    + _AMOUNT_STEP
    + """
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_us)
local count = redis.call('ZCARD', key)
local at = now
if count + 1 > limit then
  local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  at = math.max(now + 1, tonumber(entry[2]) + window_us)
end
at = math.max(at, amount_at)
redis.call('ZADD', key, at, member .. ':1')
local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, math.ceil((tonumber(latest[2]) - now + window_us) / 1000) + 1000)
if amount > 0 then
  local amount_slot = at
"""
    + _AMOUNT_ENTRY
    + """
end
return {at, at - now}
"""
)


def read_scope(store_key: str) -> str:
    """Scope of fetch requests to one source index (Pinecone: 100 req/s per index)."""
    return f"read:{store_key}"


def query_scope(store_key: str, namespace: str) -> str:
    """Scope of query requests to one namespace (Pinecone: 100 req/s per namespace, serverless)."""
    return f"query:{store_key}:{namespace}"


def list_scope(store_key: str) -> str:
    """Scope of list requests to one source index (Pinecone: 200 req/s per index)."""
    return f"list:{store_key}"


def stats_scope(store_key: str) -> str:
    """Scope of count requests to one index: ``describe_index_stats`` (Pinecone: 100 req/s per index, a limit of its
    own) and ``describe_namespace``, held to the same limit."""
    return f"stats:{store_key}"


def write_scope(store_key: str, namespace: str) -> str:
    """Scope of upsert/delete requests to one target namespace (Pinecone: 100 req/s and 50 MB/s per namespace)."""
    return f"write:{store_key}:{namespace}"


def bytes_scope_of(scope: str) -> str:
    """The scope of the bytes of ``scope``'s requests (a write scope's upsert size)."""
    return f"bytes:{scope}"


def amount_key(scope: str) -> str:
    """The Redis key of ``scope``'s weighted log (``acquire_amount``): apart from a request log's, and from the token
    buckets the byte budgets once were, whose keys of the same scope may still be there."""
    return rate_bucket_key(f"amounts:{scope}")


def delete_scope(store_key: str) -> str:
    """Scope of the records deleted from one index (Pinecone: 5,000 a second per index, beside the requests)."""
    return f"delete:{store_key}"


def _check_reservation(rate_name: str, rate: float, cost_name: str, cost: int) -> None:
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"{rate_name} must be a positive finite number, got {rate}")
    if cost < 0:
        raise ValueError(f"{cost_name} must be ≥ 0, got {cost}")


def embed_scope(store_key: str) -> str:
    """Scope of the embedding tokens an integrated index's model takes (Pinecone: tokens per minute per model)."""
    return f"embed:{store_key}"


def window_for(rate_per_s: float, guard_s: float = DEFAULT_GUARD_S) -> tuple[int, float]:
    """``(limit, window_s)``: at most ``limit`` admissions in any ``window_s`` keeps every 1 s window ≤ ``rate_per_s``.

    ``rate_per_s ≥ 1`` → ``floor(rate)`` per ``1 s + guard``; ``rate_per_s < 1`` → one per ``1/rate s + guard``.
    """
    if not rate_per_s > 0 or math.isinf(rate_per_s):
        raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s}")
    window_s = max(1.0, 1.0 / rate_per_s)
    limit = max(1, math.floor(rate_per_s * window_s + 1e-9))
    return limit, window_s + guard_s


@dataclass(frozen=True)
class Admission:
    """A granted request: how long the caller slept for it and the Redis server time of its slot in the window."""

    waited_s: float
    server_time_s: float


@dataclass(frozen=True)
class Reservation:
    """A slot entered in a scope's window for a request still to be sent (``RateLimiter.reserve``): the request goes
    no sooner than ``due`` (``time.monotonic()``), and its caller may do other work until then."""

    due: float
    server_time_s: float
    #: The window's key and the slot's entry in it, taken out again when the slot goes by unused (``wait_for``).
    key: str = ""
    entry: str = ""

    def ahead_s(self) -> float:
        """Seconds until the slot (0 when it is due)."""
        return max(0.0, self.due - time.monotonic())


class RateLimiter:
    """Blocking, fleet-wide request and byte budgets per scope (see the module docstring).

    Parameters:
        redis_client: a ``redis.Redis``; create it in the worker process (after fork).
        sleep: how to wait; tests may inject a recorder.
        guard_s: seconds added to the 1 s window (see ``DEFAULT_GUARD_S``).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        sleep: Callable[[float], None] = time.sleep,
        *,
        guard_s: float = DEFAULT_GUARD_S,
    ) -> None:
        self._sleep = sleep
        self._guard_s = guard_s
        self._redis = redis_client
        self._window_script = redis_client.register_script(_SLIDING_WINDOW_LUA)
        self._bucket_script = redis_client.register_script(_TOKEN_BUCKET_LUA)
        self._amount_script = redis_client.register_script(_AMOUNT_LUA)
        self._write_script = redis_client.register_script(_WRITE_LUA)

    def _run(self, script: Any, key: str | list[str], args: list[Any], scope: str) -> list[int]:
        try:
            return [int(x) for x in script(keys=[key] if isinstance(key, str) else key, args=args)]
        except broker_credentials.REFUSALS as e:  # a connection error to redis-py, but retrying it cannot help
            raise PermanentError(
                f"rate limiter: Redis refused the credentials of NSMIGRATE_REDIS_URL, or this command to them ({e}): "
                "set the password Redis expects, and an ACL user allowed the fleet's commands (EVALSHA, EVAL)"
            ) from e
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise RetryableError(f"rate limiter could not reach Redis: {e}", scope=scope) from e

    def _window(
        self, scope: str, rate_per_s: float, cost: float, *, reserve: bool, member: str | None = None
    ) -> tuple[bool, float, float]:
        """One script call: ``(admitted, server time of the slot or of now, seconds until the slot)``; ``member``:
        the name its entries are made from (``member:1`` …), a new one when None."""
        limit, window_s = window_for(rate_per_s, self._guard_s)
        entries = max(1, math.ceil(cost - 1e-9))
        if entries > limit:
            raise ValueError(f"cost {cost} can never be admitted at {rate_per_s}/s (at most {limit} per window)")
        admitted, at_us, wait_us = self._run(
            self._window_script,
            rate_bucket_key(scope),
            [limit, round(window_s * 1_000_000), entries, member or uuid.uuid4().hex, int(reserve)],
            scope,
        )
        return bool(admitted), at_us / 1_000_000, wait_us / 1_000_000

    def try_acquire(self, scope: str, rate_per_s: float, cost: float = 1.0) -> tuple[bool, float, float]:
        """One non-blocking attempt that reserves nothing: ``(admitted, server_time_s, retry_in_s)``.

        Raises:
            ValueError: the rate is not positive, or ``cost`` exceeds what one window can ever admit.
            RetryableError: Redis is unreachable.
        """
        return self._window(scope, rate_per_s, cost, reserve=False)

    def admit(self, scope: str, rate_per_s: float, cost: float = 1.0) -> Admission:
        """Admitted now, or at the first moment ``cost`` requests fit, reserved and slept until; returns the
        ``Admission`` (time slept, server time of the slot)."""
        _, at_s, wait_s = self._window(scope, rate_per_s, cost, reserve=True)
        if wait_s > 0:
            self._sleep(wait_s)
        return Admission(waited_s=wait_s, server_time_s=at_s)

    def reserve(self, scope: str, rate_per_s: float) -> Reservation:
        """One request's slot, entered in ``scope``'s window as ``admit`` enters it, without sleeping: the caller
        sends the request at the slot (``wait_for``) and may use the wait. A slot never used stays in the window: a
        request the budget allowed and nobody sent, unless ``wait_for`` finds it gone by and takes it out."""
        member = uuid.uuid4().hex
        _, at_s, wait_s = self._window(scope, rate_per_s, 1, reserve=True, member=member)
        return Reservation(
            due=time.monotonic() + wait_s, server_time_s=at_s, key=rate_bucket_key(scope), entry=f"{member}:1"
        )

    def wait_for(self, reservation: Reservation) -> float | None:
        """Sleep until ``reservation`` is due; the seconds slept, or None when it went by more than half the guard
        ago: sent now, the request could share a server second with the requests a window after it, so it must take
        a slot of its own. The slot it let pass is taken out of the window first: no request went on it, and left
        there it would hold back another request of its window (a thread starved of the interpreter for a moment
        then cost the budget one request, and its own a window's wait)."""
        late_s = time.monotonic() - reservation.due
        if late_s > self._guard_s / 2:
            if reservation.entry:
                with contextlib.suppress(redis.RedisError):  # best effort: the entry leaves with its window anyway
                    self._redis.zrem(reservation.key, reservation.entry)
            return None
        wait_s = max(0.0, -late_s)
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s

    def acquire(self, scope: str, rate_per_s: float, cost: float = 1.0) -> float:
        """Block until ``cost`` requests fit in ``scope``'s budget of ``rate_per_s``; returns the seconds waited.

        Raises:
            ValueError: bad rate, or a cost larger than one window admits.
            RetryableError: Redis is unreachable.
        """
        return self.admit(scope, rate_per_s, cost).waited_s

    def acquire_amount(self, scope: str, per_s: float, amount: int) -> float:
        """Reserve ``amount`` of ``scope``'s budget of ``per_s`` a second (bytes, records), so that no window of
        ``1 s + guard`` holds more than ``floor(per_s)``; sleep until it fits and return the seconds waited. An amount
        over a window's worth takes a window alone.

        Raises:
            ValueError: ``per_s`` not positive or ``amount`` negative.
            RetryableError: Redis is unreachable.
        """
        _check_reservation("per_s", per_s, "amount", amount)
        if not amount:
            return 0.0
        key = amount_key(scope)
        args = [*self._amount_window(per_s), amount, uuid.uuid4().hex]
        (wait_us,) = self._run(self._amount_script, key, args, scope)
        return self._slept(wait_us)

    def acquire_bytes(self, scope: str, mb_per_s: float, nbytes: int) -> float:
        """``acquire_amount`` of ``nbytes`` at ``mb_per_s`` (10^6 bytes a second)."""
        _check_reservation("mb_per_s", mb_per_s, "nbytes", nbytes)
        return self.acquire_amount(bytes_scope_of(scope), mb_per_s * 1_000_000, nbytes)

    def _amount_window(self, per_s: float) -> tuple[int, int]:
        """An amount budget's (limit, window in µs): ``floor(per_s)`` in ``1 s + guard``."""
        return max(1, math.floor(per_s)), round((1.0 + self._guard_s) * 1_000_000)

    def _slept(self, wait_us: int) -> float:
        """Sleep the ``wait_us`` a script answered, if any; the seconds slept."""
        if wait_us <= 0:
            return 0.0
        delay = wait_us / 1_000_000
        self._sleep(delay)
        return delay

    def acquire_write(self, scope: str, rate_per_s: float, bytes_scope: str, mb_per_s: float, nbytes: int) -> float:
        """``acquire_bytes(bytes_scope, mb_per_s, nbytes)`` and then ``acquire(scope, rate_per_s)``, in one script call:
        the request's slot in ``scope``'s window is reserved no sooner than its bytes are available, and the caller
        sleeps once, until the slot. An upsert's first attempt: one Redis round trip where two were. Returns the
        seconds waited.

        Raises:
            ValueError: a rate not positive, or ``nbytes`` negative.
            RetryableError: Redis is unreachable (nothing was reserved).
        """
        _check_reservation("mb_per_s", mb_per_s, "nbytes", nbytes)
        limit, window_s = window_for(rate_per_s, self._guard_s)
        keys = [rate_bucket_key(scope), amount_key(bytes_scope_of(bytes_scope))]
        amounts = self._amount_window(mb_per_s * 1_000_000)
        args = [limit, round(window_s * 1_000_000), uuid.uuid4().hex, *amounts, nbytes]
        _, wait_us = self._run(self._write_script, keys, args, scope)
        return self._slept(wait_us)

    def acquire_tokens(self, scope: str, per_min: float, tokens: int) -> float:
        """Reserve ``tokens`` of ``scope``'s ``per_min`` budget (embedding tokens per minute) like ``acquire_bytes``:
        a bucket refilled at ``per_min / 60`` a second, one second's worth of burst. Returns the seconds waited.

        Raises:
            ValueError: ``per_min`` not positive or ``tokens`` negative.
            RetryableError: Redis is unreachable.
        """
        _check_reservation("per_min", per_min, "tokens", tokens)
        return self._reserve(f"tokens:{scope}", per_min / 60, tokens) if tokens else 0.0

    def _reserve(self, key: str, rate: float, cost: int) -> float:
        """Take ``cost`` from the token bucket ``key`` (rate per second, one second of burst); sleep off any debt."""
        (wait_us,) = self._run(self._bucket_script, rate_bucket_key(key), [rate, rate, cost], key)
        return self._slept(wait_us)

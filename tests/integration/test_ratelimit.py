"""The fleet-wide limiter against real Redis: admissions in the order asked, never more than the rate in a window (as
Redis's clock sees them), budgets per scope; processes and threads together: tests/fleet/test_ratelimit_processes.py."""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
import uuid

import pytest
import redis

from nsmigrate.orchestrator.messaging.task_names import rate_bucket_key
from nsmigrate.workers.transfer.ratelimit import (
    DEFAULT_GUARD_S,
    RateLimiter,
    amount_key,
    bytes_scope_of,
    list_scope,
    read_scope,
    window_for,
    write_scope,
)
from nsmigrate_sandbox.pinecone_server import _Window
from nsmigrate_sandbox.services import RedisServer
from tests.timing import assert_timing

SCOPE = write_scope("contract-index", "creator_a_twin_b")


def max_in_any_window(times: list[float], window_s: float = 1.0) -> int:
    """The most admissions inside any closed interval of ``window_s`` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats")["cmdstat_evalsha"]["calls"])


def test_a_full_window_reserves_the_first_slot_that_fits_so_each_request_asks_once(redis_url: str) -> None:
    """A request beyond the rate is not sent back to ask again: it reserves the first moment it fits and sleeps
    until then. One script call per request, slots in the order asked, never more than the rate in a window."""
    client = redis.Redis.from_url(redis_url)
    sleeps: list[float] = []
    limiter = RateLimiter(client, sleep=sleeps.append)  # slept on paper: the slots are Redis's, not ours
    scope = f"reserve-{uuid.uuid4().hex}"
    limiter.try_acquire(f"{scope}-warm", 1)  # the script loaded: one EVALSHA per call from here
    rate = 4
    limit, window_s = window_for(rate)

    before = evalsha_calls(client)
    admissions = [limiter.admit(scope, rate) for _ in range(3 * limit)]

    assert evalsha_calls(client) - before == 3 * limit
    slots = [a.server_time_s for a in admissions]
    assert slots == sorted(slots)
    assert min(later - first for first, later in zip(slots, slots[limit:], strict=False)) >= window_s - 1e-6
    assert max_in_any_window(slots) <= rate
    assert [a.waited_s > 0 for a in admissions] == [False] * limit + [True] * (2 * limit)
    assert sleeps == [a.waited_s for a in admissions[limit:]]
    # A non-blocking attempt reserves nothing: the window is still full, and asking did not make it fuller.
    admitted, _, retry_in_s = limiter.try_acquire(scope, rate)
    assert not admitted and retry_in_s > 0
    assert client.zcard(rate_bucket_key(scope)) == 3 * limit


def server_refusals(arrivals: list[float], limit: int) -> int:
    """How many of ``arrivals`` the sandbox server's limiter (its own class, on a fake clock) answers with 429."""
    window = _Window()
    return sum(window.admit(t, limit) is not None for t in sorted(arrivals))


def test_the_server_refuses_only_requests_delayed_by_more_than_the_guard(redis_url: str) -> None:
    """The fleet limiter and the server's limiter agree at the limit: whatever the phase of the two clocks, the
    server sees at most ``rate`` per second unless a request reaches it later than its ``rate``-th successor by
    more than the guard. (The 429 once seen with the fleet budget equal to the server's limit was such a delay on a
    loaded machine, not an overshoot of the limiter.)"""
    rate = 10
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    admitted = [limiter.admit(SCOPE, rate).server_time_s for _ in range(4 * rate)]  # Redis's clock

    limit, window_s = window_for(rate)
    spans = [later - first for first, later in zip(admitted, admitted[limit:], strict=False)]
    assert min(spans) >= window_s - 1e-6  # any `limit` consecutive admissions span the guarded window
    assert server_refusals([t + 0.3 for t in admitted], limit) == 0  # any common delay (clock offset, latency)
    jitter = random.Random(7)
    assert server_refusals([t + jitter.uniform(0, DEFAULT_GUARD_S) for t in admitted], limit) == 0

    # The converse, on the schedule the limiter keeps on an idle machine (a burst of `limit` per guarded window;
    # on a loaded one the real admissions spread out, and a delay no longer brings `limit` others into one second):
    # the first request, delayed past the guard, reaches the server 0.99 s before its `limit`-th successor.
    idle = [(i // limit) * window_s + (i % limit) * 1e-3 for i in range(4 * limit)]
    late = list(idle)
    late[0] = idle[limit] - 1.0 + 0.01
    assert late[0] - idle[0] > DEFAULT_GUARD_S
    assert server_refusals(idle, limit) == 0
    assert server_refusals(late, limit) >= 1


@pytest.mark.parametrize(("rate", "limit", "window_s"), [(100, 100, 1), (2.5, 2, 1), (1, 1, 1), (0.5, 1, 2)])
def test_window_for_rates(rate: float, limit: int, window_s: float) -> None:
    assert DEFAULT_GUARD_S == 0.1  # the rate_guard_s setting's default
    assert window_for(rate) == (limit, pytest.approx(window_s + DEFAULT_GUARD_S))


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_bad_rates_are_refused(rate: float, redis_url: str) -> None:
    with pytest.raises(ValueError):
        RateLimiter(redis.Redis.from_url(redis_url)).acquire("s", rate)


@pytest.mark.timing
def test_sleeps_exactly_what_redis_says_and_reports_it(redis_url: str) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    limiter = RateLimiter(redis.Redis.from_url(redis_url), sleep=sleep)

    waited = [limiter.acquire("fractional", 2.0) for _ in range(3)]

    assert waited[:2] == [0.0, 0.0]
    assert waited[2] == pytest.approx(sum(sleeps))
    assert waited[2] < 1.2  # the oldest admission leaves the 1.05 s window
    # Time spent between the calls shortens the wait: a slow machine waits less.
    assert_timing(waited[2] > 0.9, f"waited {waited[2]:.3f} s (bound: more than 0.9 s)")


def test_cost_counts_several_requests_and_too_large_a_cost_is_refused(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url), sleep=lambda _s: None)

    assert limiter.try_acquire("c", 10, cost=8)[0]
    assert not limiter.try_acquire("c", 10, cost=3)[0]
    assert limiter.try_acquire("c", 10, cost=2)[0]
    with pytest.raises(ValueError):
        limiter.acquire("c", 10, cost=11)


def test_scopes_are_independent_and_their_keys_expire(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, sleep=lambda _s: None)

    assert limiter.try_acquire(read_scope("idx"), 1)[0]
    assert limiter.try_acquire(list_scope("idx"), 1)[0]
    assert limiter.try_acquire(write_scope("idx", "ns"), 1)[0]
    assert not limiter.try_acquire(read_scope("idx"), 1)[0]

    keys = client.keys("nsmigrate:rate:*")
    assert len(keys) == 3
    assert all(0 < client.pttl(k) <= 2_100 for k in keys)


def weighed(client: redis.Redis, scope: str) -> list[tuple[int, float]]:
    """``scope``'s weighted log: (amount, slot in µs of Redis time) of each entry, oldest first."""
    entries = client.zrange(amount_key(scope), 0, -1, withscores=True)
    return [(int(member.rsplit(b":", 1)[1]), score) for member, score in entries]


@pytest.mark.timing
def test_byte_budget_reserves_and_makes_later_callers_wait(redis_url: str) -> None:
    """At 1 MB/s no window of 1 s + guard holds more than 1,000,000 bytes, as Pinecone counts upsert size a second:
    600 KB goes now, 600 KB more once the first has left the window, 1 MB once the second has."""
    client = redis.Redis.from_url(redis_url)
    sleeps: list[float] = []
    limiter = RateLimiter(client, sleep=sleeps.append)
    window_us = (1 + DEFAULT_GUARD_S) * 1e6

    assert limiter.acquire_bytes("w", 1.0, 600_000) == 0.0
    assert limiter.acquire_bytes("w", 1.0, 0) == 0.0
    second = limiter.acquire_bytes("w", 1.0, 600_000)
    third = limiter.acquire_bytes("w", 1.0, 1_000_000)

    log = weighed(client, bytes_scope_of("w"))
    assert [amount for amount, _ in log] == [600_000, 600_000, 1_000_000]  # the zero-byte call entered nothing
    assert [b - a for (_, a), (_, b) in itertools.pairwise(log)] == [window_us, window_us]
    assert sleeps == [second, third] and second <= 1.1 and third <= 2.2  # time passed since: never more
    assert_timing(second >= 1.1 - 0.02, f"the second caller waited {second:.3f} s (bound: 1.1 - 0.02 s)")


def test_unreachable_redis_is_retryable() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from nsmigrate.orchestrator.errors import RetryableError

    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(client)

    with pytest.raises(RetryableError):
        limiter.acquire("s", 10)


def test_redis_refusing_the_password_is_not_retried(password_redis_server: RedisServer) -> None:
    """A wrong password is a connection error to redis-py; retried, each request waited out every attempt before its
    batch failed, and a worker stopping for the same refusal waited for those tasks."""
    from nsmigrate.orchestrator.errors import PermanentError

    limiter = RateLimiter(redis.Redis.from_url(f"redis://:wrong-pw@127.0.0.1:{password_redis_server.port}/0"))

    with pytest.raises(PermanentError, match="NSMIGRATE_REDIS_URL") as refused:
        limiter.acquire("s", 10)

    assert "wrong-pw" not in str(refused.value)


def test_embedding_tokens_are_reserved_per_minute_apart_from_bytes(redis_url: str) -> None:
    """An integrated index's model takes tokens per minute: 600/min is 10 a second with one second of burst; a
    request over it waits its debt off, and the same scope's byte budget is a different bucket."""
    sleeps: list[float] = []
    limiter = RateLimiter(redis.Redis.from_url(redis_url), sleep=sleeps.append)

    assert limiter.acquire_tokens("embed:t", 600, 10) == 0.0  # the burst
    waited = limiter.acquire_tokens("embed:t", 600, 300)  # 300 tokens of debt at 10/s (the sleep is recorded)
    assert 25 < waited <= 30 + 0.02 and sleeps == [waited]
    assert limiter.acquire_tokens("embed:t", 600, 0) == 0.0
    assert limiter.acquire_bytes("embed:t", 1.0, 1_000) == 0.0  # bytes of the same scope: another bucket
    with pytest.raises(ValueError, match="per_min must be a positive"):
        limiter.acquire_tokens("embed:t", 0, 1)


def test_a_write_takes_its_bytes_and_its_slot_in_one_call(redis_url: str) -> None:
    """An upsert's first attempt asks both budgets at once (``acquire_write``): one script call, the bytes entered in
    the log ``acquire_bytes`` enters them in, one entry in the window."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, sleep=lambda _s: pytest.fail("an ample budget made a write wait"))
    scope, bytes_scope = f"write-{uuid.uuid4().hex}", f"bytes-{uuid.uuid4().hex}"
    limiter.acquire_write(f"{scope}-warm", 100, f"{bytes_scope}-warm", 50, 1)  # the script loaded

    before = evalsha_calls(client)
    assert limiter.acquire_write(scope, 100, bytes_scope, 50, 300_000) == 0.0
    assert limiter.acquire_write(scope, 100, bytes_scope, 50, 0) == 0.0  # no bytes: a token only

    assert evalsha_calls(client) - before == 2
    assert client.zcard(rate_bucket_key(scope)) == 2
    assert [amount for amount, _ in weighed(client, bytes_scope_of(bytes_scope))] == [300_000]


def test_a_writes_slot_comes_no_sooner_than_its_bytes_and_outlives_its_window(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    sleeps: list[float] = []
    limiter = RateLimiter(client, sleep=sleeps.append)  # slept on paper: the slots are Redis's
    scope, bytes_scope = f"write-{uuid.uuid4().hex}", f"bytes-{uuid.uuid4().hex}"
    seconds, micros = client.time()
    asked_us = int(seconds) * 1_000_000 + int(micros)

    assert limiter.acquire_write(scope, 100, bytes_scope, 1.0, 600_000) == 0.0  # within the window's 1 MB
    waited = limiter.acquire_write(scope, 100, bytes_scope, 1.0, 1_600_000)  # over 1 MB alone: a window of its own

    assert 1.0 <= waited <= 1.1 and sleeps == [waited]
    slots = [score for _, score in client.zrange(rate_bucket_key(scope), 0, -1, withscores=True)]
    assert slots[1] - asked_us >= 1.1e6  # reserved where the bytes allow it, not where the window would
    # A plain request finds room in the window now, and the write's later slot keeps the log alive past its window.
    assert limiter.acquire(scope, 100) == 0.0
    assert client.pttl(rate_bucket_key(scope)) >= (slots[1] - asked_us) / 1000 + 1_000


def test_writes_never_put_more_than_the_rate_in_a_window(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, sleep=lambda _s: None)
    scope, bytes_scope = f"write-{uuid.uuid4().hex}", f"bytes-{uuid.uuid4().hex}"
    rate = 4
    limit, window_s = window_for(rate)

    for n in range(3 * limit):  # writes and plain requests, some of them waiting for bytes
        if n % 3:
            limiter.acquire_write(scope, rate, bytes_scope, 1.0, 300_000)
        else:
            limiter.acquire(scope, rate)

    slots = [score / 1e6 for _, score in client.zrange(rate_bucket_key(scope), 0, -1, withscores=True)]
    assert len(slots) == 3 * limit
    assert max_in_any_window(slots, window_s - 1e-6) <= limit


def test_amounts_never_put_more_than_the_budget_in_a_window(redis_url: str) -> None:
    """Bytes of random sizes, some over a window's worth alone, asked with a write's request slot or without: in no
    window of 1 s + guard does the log hold more than the budget, unless one amount over it holds the window alone."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, sleep=lambda _s: None)  # slept on paper: every slot stays in the log to be read
    scope, budget = f"amounts-{uuid.uuid4().hex}", 1_000
    rng = random.Random(11)

    # When each caller may go, in the order they asked: between its wait added to the time before the call and to
    # the time after it (the script ran in between, however long this process was held up around it).
    dues: list[tuple[float, float]] = []
    for n in range(80):
        amount = rng.choice([1, rng.randint(1, budget), rng.randint(budget // 2, budget), budget + 500])
        asked = time.monotonic()
        if n % 2:
            wait = limiter.acquire_bytes(scope, budget / 1e6, amount)
        else:
            wait = limiter.acquire_write(f"{scope}-requests", 1_000, scope, budget / 1e6, amount)
        dues.append((asked + wait, time.monotonic() + wait))

    log = weighed(client, bytes_scope_of(scope))
    assert len(log) == 80
    window_us = (1 + DEFAULT_GUARD_S) * 1e6
    for _, end in log:
        held = [amount for amount, slot in log if end - window_us < slot <= end]
        assert sum(held) <= budget or len(held) == 1, (end, held)
    # Served in order: no caller goes before one that asked earlier (its latest possible due before the other's
    # earliest, a millisecond allowed for the clocks' reading).
    assert all(later[1] >= earlier[0] - 0.001 for earlier, later in itertools.pairwise(dues))


def test_a_reserved_slot_is_entered_at_once_and_waited_for_when_the_request_goes(redis_url: str) -> None:
    """``reserve`` takes a slot as ``admit`` would, without sleeping: the caller works meanwhile and sleeps only what
    is left of the wait when the request goes (``wait_for``). The slot counts in the window from the moment it was
    taken, so requests reserved and admitted together still keep the rate."""
    client = redis.Redis.from_url(redis_url)
    sleeps: list[float] = []
    limiter = RateLimiter(client, sleep=sleeps.append)
    scope = f"reserved-{uuid.uuid4().hex}"
    rate = 2
    limit, window_s = window_for(rate)

    now = [limiter.reserve(scope, rate) for _ in range(limit)]
    later = limiter.reserve(scope, rate)

    assert [slot.ahead_s() for slot in now] == [0.0] * limit
    assert later.ahead_s() > window_s - 0.2  # the first slot after the window of the `limit` before it
    assert later.server_time_s - now[0].server_time_s >= window_s - 1e-6
    assert client.zcard(rate_bucket_key(scope)) == limit + 1
    assert sleeps == []  # nothing slept while reserving
    waited = limiter.wait_for(later)
    assert waited is not None and window_s - 0.3 < waited <= window_s
    assert sleeps == [waited]
    assert limiter.wait_for(now[0]) == 0.0  # due: it goes at once


def test_a_reserved_slot_gone_by_more_than_half_the_guard_is_not_used(redis_url: str) -> None:
    """A request sent well after its slot could share a server second with the requests a window after it: it must
    take a slot of its own (None), not go on the one it let pass."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url), sleep=lambda s: None)
    scope = f"gone-by-{uuid.uuid4().hex}"
    slot = limiter.reserve(scope, 10)
    on_time = dataclasses.replace(slot, due=time.monotonic() - DEFAULT_GUARD_S / 4)
    gone_by = dataclasses.replace(slot, due=time.monotonic() - DEFAULT_GUARD_S)

    assert limiter.wait_for(on_time) == 0.0
    assert limiter.wait_for(gone_by) is None


def test_a_slot_gone_by_unused_leaves_the_window_so_the_late_request_goes_now(redis_url: str) -> None:
    """The slot a late request let pass is taken out of the window when it takes a slot of its own: no request went
    on it. Left in, it would hold a full window's last place, and the late request, or another, would wait a whole
    window for one that never counted at the server."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, sleep=lambda s: None)
    scope = f"let-pass-{uuid.uuid4().hex}"
    rate = 2
    limit, _ = window_for(rate)
    slots = [limiter.reserve(scope, rate) for _ in range(limit)]  # the window is full
    assert limiter.try_acquire(scope, rate)[0] is False

    late = dataclasses.replace(slots[-1], due=time.monotonic() - DEFAULT_GUARD_S)
    assert limiter.wait_for(late) is None

    assert client.zcard(rate_bucket_key(scope)) == limit - 1
    again = limiter.reserve(scope, rate)  # the late request's own slot: now, not a window on
    assert again.ahead_s() == 0.0 and client.zcard(rate_bucket_key(scope)) == limit
    assert limiter.try_acquire(scope, rate)[0] is False  # and the window holds no more than its limit

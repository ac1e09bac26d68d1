"""The fleet-wide limiter against real Redis with processes and threads hammering one scope together: never more than
the rate in any 1-second window (as Redis's clock sees the admissions), and still close to the rate."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest
import redis

from nsmigrate.workers.transfer.ratelimit import RateLimiter
from tests.integration.test_ratelimit import SCOPE, max_in_any_window
from tests.timing import assert_timing

RATE = 25
DURATION_S = 2.5


def hammer(redis_url: str, start_at: float, end_at: float, out: list[float] | Any) -> None:
    """Acquire as fast as the limiter allows from ``start_at`` until ``end_at`` (Redis time); report admission
    times (Redis time). ``out`` is a list (threads) or a multiprocessing queue (processes)."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client)

    def server_now() -> float:
        seconds, micros = client.time()
        return seconds + micros / 1e6

    while server_now() < start_at:
        time.sleep(0.005)
    admitted: list[float] = []
    while True:
        admission = limiter.admit(SCOPE, RATE)
        admitted.append(admission.server_time_s)
        if admission.server_time_s >= end_at:
            break
    client.close()
    if isinstance(out, list):
        out.extend(admitted)
    else:
        out.put(admitted)


@pytest.mark.timing
def test_threads_and_processes_together_stay_under_the_rate(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now_s, now_us = client.time()
    # Processes take a moment to spawn; everyone starts together on the Redis clock.
    start_at = now_s + now_us / 1e6 + 1.5
    end_at = start_at + DURATION_S

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=hammer, args=(redis_url, start_at, end_at, queue)) for _ in range(2)]
    for p in processes:
        p.start()
    thread_times: list[float] = []
    threads = [threading.Thread(target=hammer, args=(redis_url, start_at, end_at, thread_times)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    process_times = [queue.get(timeout=20) for _ in processes]
    for p in processes:
        p.join(timeout=20)
        assert p.exitcode == 0

    times = thread_times + [t for per_process in process_times for t in per_process]
    assert all(per_process for per_process in process_times), "every process got admissions"

    print(f"admissions={len(times)} max_in_1s={max_in_any_window(times)} processes={[len(p) for p in process_times]}")
    assert max_in_any_window(times) <= RATE
    in_run = [t for t in times if start_at <= t < end_at]
    assert_timing(
        len(in_run) >= 0.8 * RATE * DURATION_S,
        f"{len(in_run)} admissions in {DURATION_S} s (bound: at least {0.8 * RATE * DURATION_S:.0f})",
    )

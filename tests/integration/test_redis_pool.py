"""A worker's Redis client (``orchestrator.connections.redis_pool``), on a real Redis: its task threads take idle
connections without the pool's lock, every command of many threads at once is answered on a connection of its own,
and a connection the server dropped is made again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.connections.redis_pool import ConvoyFreePool, worker_redis


class CountingLock:
    """The pool's lock, counting how often it is taken."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.taken = 0

    def __enter__(self) -> Any:
        self.taken += 1
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._lock.__exit__(*exc)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        self.taken += 1
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self._lock.release()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis_lib.Redis]:
    made = worker_redis(redis_url)
    yield made
    made.connection_pool.disconnect()


def test_idle_connections_are_taken_and_returned_without_the_pools_lock(client: redis_lib.Redis) -> None:
    pool = client.connection_pool
    assert isinstance(pool, ConvoyFreePool)
    client.set("nsmigrate:test:pool", 0)  # the first connection is made under the lock
    counting = CountingLock(pool._lock)
    pool._lock = counting

    for n in range(100):
        client.incr("nsmigrate:test:pool")
        with client.pipeline(transaction=False) as pipe:
            pipe.get("nsmigrate:test:pool").expire("nsmigrate:test:pool", 60)
            assert int(pipe.execute()[0]) == n + 1

    assert counting.taken == 0
    assert (len(pool._available_connections), len(pool._in_use_connections)) == (1, 0)


def test_threads_at_once_each_get_a_connection_of_their_own_and_every_answer(client: redis_lib.Redis) -> None:
    threads, commands = 24, 200
    start = threading.Barrier(threads)
    answers: dict[int, list[int]] = {}

    def work(n: int) -> None:
        key = f"nsmigrate:test:pool:{n}"
        client.delete(key)
        start.wait()
        answers[n] = [int(client.incr(key)) for _ in range(commands)]
        client.delete(key)

    running = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=60)

    # each thread's counter counted only its own increments: no answer went to another thread's command
    assert answers == {n: list(range(1, commands + 1)) for n in range(threads)}
    pool = client.connection_pool
    assert pool._in_use_connections == set()
    assert 1 < len(pool._available_connections) <= threads
    assert len(set(map(id, pool._available_connections))) == len(pool._available_connections)


def test_a_connection_the_server_dropped_is_made_again(client: redis_lib.Redis, redis_url: str) -> None:
    client.set("nsmigrate:test:pool", "before")
    [held] = client.connection_pool._available_connections
    admin = redis_lib.Redis.from_url(redis_url)
    try:
        killed = admin.client_kill_filter(_id=client.client_id())
    finally:
        admin.close()
    assert killed == 1

    assert client.get("nsmigrate:test:pool") == b"before"  # redis-py's retry, on a new socket of the same connection
    assert client.connection_pool._available_connections == [held]
    client.delete("nsmigrate:test:pool")

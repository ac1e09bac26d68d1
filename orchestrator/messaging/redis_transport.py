"""kombu's Redis transport with one client object per connection pool: what the fleet's Celery apps talk to Redis
through (``dispatch.celery_config``, for a ``redis://`` broker URL).

kombu builds a new ``redis.Redis`` for each command it sends outside a worker's consumer loop: each message a worker
takes (``QoS.append``) and acknowledges, each task sent (``Channel._put``) and each event published
(``Channel._put_fanout``). Building one copies redis-py's table of response callbacks, ~110 µs of CPU, so the list
worker paid two for every task it sent and a copy worker three for every batch it copied (bench/README.md,
"Measurements behind the tuning"). A client holds no connection of its own (its pool lends one to each command), so
one client serves every thread of the process; a channel keeps its own, made again when its pool is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, its clients made once per connection pool."""

    _client_of_pool: tuple[Any, Any] | None = None  # (the pool, a client of it)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        made = self._client_of_pool
        if made is None or made[0] is not pool:
            made = self._client_of_pool = (pool, self._create_client())
        yield made[1]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport, its channels ``Channel``."""

    Channel = Channel

"""A worker process's Redis connections, handed to its task threads without a lock.

redis-py's ``ConnectionPool`` takes its lock twice for every command (checkout and return). In a worker whose task
threads all talk to Redis (rate budgets, namespace locks, lister locks, wake-ups), a thread woken with that lock
then waits for the interpreter lock while holding it, and every other thread that needs Redis queues behind it: a
lock convoy (55 % of a copy worker's py-spy samples waited there on a job of many small namespaces). Taking an idle
connection off the pool's list and putting it back are each one operation the interpreter does atomically, so
``ConvoyFreePool`` does them without the lock; making a new connection, and anything after a fork, still go
through redis-py's own locked path.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from redis.connection import ConnectionPool


class ConvoyFreePool(ConnectionPool):
    """redis-py's pool, its idle connections taken and returned without its lock (see the module's docstring), and
    checked as redis-py checks them. A pool with client-side caching keeps redis-py's path."""

    def _lock_free(self) -> bool:
        return self.pid == os.getpid() and self.cache is None

    def get_connection(self, command_name: str | None = None, *keys: Any, **options: Any) -> Any:
        if not self._lock_free():
            return super().get_connection(command_name, *keys, **options)
        try:
            connection = self._available_connections.pop()
        except IndexError:  # none idle: make one, counted under the lock
            return super().get_connection(command_name, *keys, **options)
        self._in_use_connections.add(connection)
        # Checked as redis-py checks it: connected, not closed by the server (``can_read`` raises), and (unless
        # maintenance notifications may arrive unasked) nothing left unread by an earlier command cut short.
        unread_is_stale = not self.maint_notifications_enabled()
        try:
            connection.connect()
            try:
                if connection.can_read() and unread_is_stale:
                    raise redis.ConnectionError("Connection has data")
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                connection.disconnect()
                connection.connect()
                if connection.can_read() and unread_is_stale:
                    raise redis.ConnectionError("Connection not ready") from None
        except BaseException:
            self.release(connection)
            raise
        return connection

    def release(self, connection: Any) -> None:
        if not self._lock_free() or connection.pid != self.pid:
            super().release(connection)
            return
        try:
            self._in_use_connections.remove(connection)
        except KeyError:  # not this pool's (redis-py ignores it too)
            return
        if connection.should_reconnect():
            connection.disconnect()
        self._available_connections.append(connection)
        # What redis-py's event for a released connection does by default, without its dispatcher's lock.
        connection.re_auth()


def worker_redis(url: str) -> redis.Redis:
    """The Redis client a worker process's task threads share (``ConvoyFreePool``)."""
    return redis.Redis(connection_pool=ConvoyFreePool.from_url(url))

"""A pooled connection is found dead before a statement runs on it, with no round trip at a checkout in steady use
(``orchestrator.connections.liveness``), on a real Postgres: its backend ended by the server, a connection kept
idle past the ping threshold, a closed driver connection."""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from nsmigrate.orchestrator.connections.database_urls import engine_of, sqlalchemy_url
from nsmigrate.orchestrator.connections.liveness import find_dead_connections, server_has_spoken


class Watched:
    def __init__(self, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engine = engine
        self.pings = 0
        self.replaced: list[BaseException | None] = []
        real_ping = engine.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            self.pings += 1
            return real_ping(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
        event.listen(engine, "invalidate", lambda _conn, _record, error: self.replaced.append(error))

    def backend_pid(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.text("SELECT pg_backend_pid()")))


@pytest.fixture
def pooled(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    engine = engine_of(database_url, "TEST_DATABASE_URL", pool_size=1, max_overflow=0)
    try:
        yield Watched(engine, monkeypatch)
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pooled: Watched) -> None:
    first = pooled.backend_pid()
    assert [pooled.backend_pid() for _ in range(5)] == [first] * 5  # one pooled connection, used again and again
    assert (pooled.pings, pooled.replaced) == (0, [])


def test_a_backend_the_server_ended_is_replaced_before_the_next_statement(
    pooled: Watched, postgres_admin: sa.Engine
) -> None:
    ended = pooled.backend_pid()
    with postgres_admin.connect() as admin:
        assert admin.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": ended}) is True

    assert pooled.backend_pid() != ended  # no error: replaced at checkout
    assert len(pooled.replaced) == 1 and isinstance(pooled.replaced[0], sa.exc.DisconnectionError)
    assert pooled.pings == 0  # its socket said so


def test_a_connection_idle_past_the_threshold_is_pinged_and_kept(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = find_dead_connections(sa.create_engine(sqlalchemy_url(database_url)), ping_after_idle_s=0.0)
    try:
        watched = Watched(engine, monkeypatch)
        first = watched.backend_pid()
        assert watched.pings == 0  # a new connection is not pinged
        assert [watched.backend_pid(), watched.backend_pid()] == [first, first]
        assert (watched.pings, watched.replaced) == (2, [])
    finally:
        engine.dispose()


def test_without_poll_a_server_ended_connection_is_still_found_by_select(
    pooled: Watched, postgres_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``select.poll`` does not exist (Windows), ``select.select`` looks at the socket instead."""
    monkeypatch.delattr(select, "poll")
    with pooled.engine.connect() as conn:
        dbapi_connection = conn.connection.dbapi_connection
        pid = conn.scalar(sa.text("SELECT pg_backend_pid()"))
        assert server_has_spoken(dbapi_connection) is False
        with postgres_admin.connect() as admin:
            assert admin.scalar(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}) is True
        assert server_has_spoken(dbapi_connection) is True
        conn.invalidate()


def test_a_closed_or_socketless_driver_connection_counts_as_ended(pooled: Watched) -> None:
    with pooled.engine.connect() as conn:
        dbapi_connection = conn.connection.dbapi_connection
        assert server_has_spoken(dbapi_connection) is False  # idle: nothing waiting on its socket

    class Closed:
        closed = True

    class NoSocket:
        closed = False

        def fileno(self) -> int:
            raise OSError("no socket")

    assert server_has_spoken(Closed()) is True
    assert server_has_spoken(NoSocket()) is True
    assert server_has_spoken(object()) is False  # a driver without a socket (SQLite): nothing to look at

"""Finding a pooled database connection dead before a statement runs on it, without a round trip per checkout.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: as many round trips again as the job table's
own statements (each transition of a batch is one statement). A connection its server ended (a restart, a failover,
an idle or admin kill) has the server's last message, or the end of its stream, waiting on its socket: a poll with
no timeout sees that without a round trip. A connection that sat in the pool for ``PING_AFTER_IDLE_S`` or more is
pinged as well, for a server host that went away without a word (its socket hears of that only when written to):
a host is away longer than that, so a connection kept through its absence sat idle at least as long.

A connection found dead is replaced by the pool before the caller's statement runs, as with ``pool_pre_ping``.
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

#: A pooled connection unused for this long is pinged at its next checkout; one in steady use only has its socket
#: looked at. Any outage that leaves no word on the socket lasts longer (a host restarting, a failover).
PING_AFTER_IDLE_S = 2.0

_CHECKED_IN_AT = "nsmigrate_checked_in_at"  # in a connection's info, which the pool clears when it replaces it


def find_dead_connections(engine: sa.Engine, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> sa.Engine:
    """``engine``, whose pool now replaces a dead connection at checkout (instead of ``pool_pre_ping``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None and dbapi_connection is not None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in_at = record.info.pop(_CHECKED_IN_AT, None)
        if checked_in_at is None:
            return  # just connected
        if server_has_spoken(dbapi_connection):
            raise exc.DisconnectionError("the server ended this pooled connection while it was idle")
        idle_s = time.monotonic() - checked_in_at
        if idle_s >= ping_after_idle_s:
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as e:  # any failure: the pool opens a new connection instead
                raise exc.DisconnectionError(f"a pooled connection idle for {idle_s:.0f} s failed its ping") from e

    return engine


def server_has_spoken(dbapi_connection: Any) -> bool:
    """Whether an idle connection is closed or has bytes waiting: between statements a server says nothing unless it
    is ending the session (a FATAL message, then the end of the stream)."""
    if getattr(dbapi_connection, "closed", False):
        return True
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:  # a driver without a socket (SQLite): nothing to look at
        return False
    try:
        fd = fileno()
    except Exception:  # the driver says it has no socket any more
        return True
    if not hasattr(select, "poll"):  # Windows: select() takes a socket of any number there (one at a time here)
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))

"""Checking out a pooled Postgres connection without a round trip when it is surely alive.

SQLAlchemy's ``pool_pre_ping`` sends a ping on every checkout: one more round trip for every transaction, and on a
busy worker each round trip also waits for the interpreter lock behind the task threads. Instead a connection is
pinged only when it may be dead:

- the server has sent something to an idle connection: a Postgres that shuts down or a backend that is terminated
  says goodbye before it closes, and the socket turns readable (seen with a ``select`` that does not wait);
- it sat unused for ``IDLE_PING_S``: a firewall or proxy may have dropped it without a word.

A failed ping makes the pool replace the connection (and, as ``pool_pre_ping`` does, every connection that is as
old), so a restarted Postgres costs no task an error. A server that goes away while a connection is in use fails
that statement, as it would with ``pool_pre_ping``; the task is retried (``workers.retry``).
"""

from __future__ import annotations

import select
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

#: A connection unused for this long is pinged before it is handed out.
IDLE_PING_S = 10.0


def ping_when_in_doubt(engine: sa.Engine) -> None:
    """Install the checkout check on ``engine``'s pool (instead of ``pool_pre_ping``)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_since(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None:
            return  # fresh from connect
        if not _server_spoke(dbapi_connection) and time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as e:
            # Like pool_pre_ping's failure: replace this connection and every pooled one as old.
            raise exc.InvalidatePoolError(f"a pooled Postgres connection is gone ({type(e).__name__})") from e


def _server_spoke(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has something to read (or is closed): a server's goodbye."""
    try:
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError):
        return True  # no usable socket: let the ping decide
    return bool(readable)

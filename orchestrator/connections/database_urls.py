"""Engines of the database URLs a spec names by environment variable (a pgvector store, an id catalogue, a sources
table): the one place such a URL becomes an engine, so a value that is not a URL is refused the same way everywhere.

The value is never shown: a variable pointed at the wrong place may hold a password or a key.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.connections.liveness import find_dead_connections
from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.redaction import password_problem, scrub


def sqlalchemy_url(url: str) -> str:
    """``url`` with psycopg 3 as its driver: a bare postgresql:// URL would select psycopg2, which nsmigrate does not
    ship."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def engine_of(url: str, env_var: str, **options: Any) -> sa.Engine:
    """An engine of ``url`` (read from ``env_var``), whose pool replaces a dead connection as it is checked out
    (``liveness``); raises ``SpecError`` naming ``env_var`` when it is not a database URL SQLAlchemy can read."""
    hint = (
        "set it to a URL like postgresql+psycopg://user:password@host:5432/dbname (quote a password's special "
        "characters, e.g. @ as %40)"
    )
    problem = password_problem(url)  # SQLAlchemy would take the password's tail for the host
    if problem is not None:
        raise SpecError(
            f"environment variable {env_var} does not hold a database URL SQLAlchemy can read: {problem}", hint=hint
        )
    try:
        return find_dead_connections(sa.create_engine(sqlalchemy_url(url), **options))
    except (sa.exc.ArgumentError, ValueError, TypeError) as e:
        raise SpecError(
            f"environment variable {env_var} does not hold a database URL SQLAlchemy can read ({type(e).__name__})",
            hint=hint,
        ) from None  # not chained: the parser's message quotes parts of the URL


def error_text(e: BaseException, url: str | None) -> str:
    """What to show of a database error ``e`` about ``url``: the driver's first line, ``url``'s secrets hidden
    (``scrub``). SQLAlchemy's own str() carries the statement and its parameters (whole vectors), and the driver's
    line may show parts of the URL (a password's tail as the host)."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    first = (text[0] if text else type(orig).__name__)[:500]
    return scrub(first, url) if url else first


class KeptEngines:
    """Engines kept from one use to the next by a long-lived process that opens its stores anew for each piece of
    work (the fleet's planner, for each plan): a new engine connects and runs SQLAlchemy's first-connect checks, ~10
    ms a database here and more over TLS, on the user's clock of every job. One engine a URL; one unused for
    ``idle_s`` is disposed by ``prune`` (the planner calls it as it waits), so a planner does not gather pools of
    databases it no longer plans for. Only connections are kept: what a store learns of its tables is read again by
    each store."""

    def __init__(self, idle_s: float = 300.0) -> None:
        self._idle_s = idle_s
        self._engines: dict[str, tuple[sa.Engine, float]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, env_var: str, **options: Any) -> sa.Engine:
        """The kept engine of ``url`` (made by ``engine_of`` with ``options`` the first time)."""
        with self._lock:
            engine = self._engines[url][0] if url in self._engines else engine_of(url, env_var, **options)
            self._engines[url] = (engine, time.monotonic())
            return engine

    def prune(self) -> None:
        """Dispose of the engines unused for ``idle_s``."""
        now = time.monotonic()
        with self._lock:
            for url, (engine, used) in list(self._engines.items()):
                if now - used > self._idle_s:
                    engine.dispose()
                    del self._engines[url]

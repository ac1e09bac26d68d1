"""Engines of the database URLs a spec names by environment variable (a pgvector store, an id catalogue, a sources
table): the one place such a URL becomes an engine, so a value that is not a URL is refused the same way everywhere.

The value is never shown: a variable pointed at the wrong place may hold a password or a key.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.errors import SpecError


def sqlalchemy_url(url: str) -> str:
    """``url`` with psycopg 3 as its driver: a bare postgresql:// URL would select psycopg2, which nsmigrate does not
    ship."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def engine_of(url: str, env_var: str, **options: Any) -> sa.Engine:
    """An engine of ``url`` (read from ``env_var``); raises ``SpecError`` naming ``env_var`` when it is not a
    database URL SQLAlchemy can read."""
    try:
        return sa.create_engine(sqlalchemy_url(url), **options)
    except (sa.exc.ArgumentError, ValueError, TypeError) as e:
        raise SpecError(
            f"environment variable {env_var} does not hold a database URL SQLAlchemy can read ({type(e).__name__})",
            hint="set it to a URL like postgresql+psycopg://user:password@host:5432/dbname (quote a password's "
            "special characters, e.g. @ as %40)",
        ) from None  # not chained: the parser's message quotes parts of the URL

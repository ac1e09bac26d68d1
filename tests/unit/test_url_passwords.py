"""A connection URL whose password holds a raw delimiter: refused by the settings, reported by the broker check,
and in no case is a piece of the password shown (``orchestrator.redaction.password_problem``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nsmigrate.orchestrator.settings import Settings
from nsmigrate.workers import broker_credentials

PIECES = ("Xk9", "pQ7zr2")
RAW_REDIS = [f"redis://nsm:Xk9{c}pQ7zr2@127.0.0.1:6379/0" for c in "/?#"]
RAW_DATABASE = "postgresql+psycopg://catalog:Xk9@pQ7zr2@127.0.0.1:5432/app"


@pytest.mark.parametrize(
    ("setting", "url"), [*(("redis_url", url) for url in RAW_REDIS), ("database_url", RAW_DATABASE)]
)
def test_the_settings_refuse_a_password_with_a_raw_delimiter_without_showing_a_piece_of_it(
    setting: str, url: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**{setting: url})

    [error] = refused.value.errors()
    assert error["loc"] == (setting,) and "percent-encode" in error["msg"]
    shown = error["msg"] + str(refused.value)  # what the CLI shows, and a traceback of a worker's settings
    assert not any(piece in shown for piece in PIECES), shown


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("redis_url", "redis://nsm:Xk9@pQ7zr2@127.0.0.1:6379/0"),  # a raw "@": every Redis client reads it right
        ("redis_url", "redis://nsm:Xk9%2FpQ7zr2@127.0.0.1:6379/0"),
        ("redis_url", "redis://127.0.0.1:6379/0?password=Xk9@pQ7zr2"),
        ("database_url", "postgresql+psycopg://catalog:Xk9%40pQ7zr2@127.0.0.1:5432/app"),
        ("database_url", "postgresql+psycopg://catalog:Xk9/pQ7zr2?#@127.0.0.1:5432/app"),  # SQLAlchemy reads these
        ("database_url", "postgresql+psycopg://app@127.0.0.1/app?application_name=a@b"),
    ],
)
def test_a_url_its_clients_read_as_meant_is_accepted(setting: str, url: str) -> None:
    assert getattr(Settings(**{setting: url}), setting)


@pytest.mark.parametrize("url", RAW_REDIS)
def test_the_broker_check_reports_a_url_redis_py_cannot_read_without_a_piece_of_its_password(url: str) -> None:
    problem = broker_credentials.check(url)  # redis-py refuses it before it connects

    assert problem is not None and "redis-py cannot read the URL" in problem
    assert not any(piece in problem for piece in PIECES), problem

"""An id catalogue or a sources table whose URL's password holds a raw ``@`` (SQLAlchemy and libpq end the password
at it and take the rest for the host): refused before anything connects, and should such a URL reach the driver,
its error is shown without any piece of the password (it goes to a run's last error, its events, the log and
Flower). Real SQLAlchemy and psycopg against 127.0.0.1 on a closed port."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nsmigrate.orchestrator.connections import database_urls
from nsmigrate.orchestrator.errors import NsmigrateError, RetryableError, SpecError
from nsmigrate.orchestrator.spec.jobspec import SourceTable
from nsmigrate.orchestrator.spec.stores import IdCatalogue
from nsmigrate.orchestrator.tenancy.creator_mapping import load_sources
from nsmigrate.workers.stores.enumeration import open_catalogue

PIECES = ("Xk9", "pQ7zr2")
RAW_URL = "postgresql+psycopg://catalog:Xk9@pQ7zr2@127.0.0.1:1/app"  # port 1: nothing listens
ENV = "NSM_TEST_RAW_URL"


def read_catalogue() -> None:
    open_catalogue(IdCatalogue(source="postgres", database_url_env=ENV)).ids_after("alpha", None, 10)


def read_sources() -> None:
    load_sources(SourceTable(source="postgres", database_url_env=ENV))


def shown(error: NsmigrateError) -> str:
    return f"{error} {error.message} {error.hint}"


@pytest.mark.parametrize("read", [read_catalogue, read_sources])
def test_a_raw_at_in_the_password_is_refused_before_connecting_without_a_piece_of_it(
    read: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, RAW_URL)

    with pytest.raises(SpecError) as refused:
        read()

    assert f"environment variable {ENV} does not hold a database URL" in str(refused.value)
    assert "percent-encode" in str(refused.value)
    assert not any(piece in shown(refused.value) for piece in PIECES), shown(refused.value)


@pytest.mark.parametrize(("read", "raised"), [(read_catalogue, RetryableError), (read_sources, SpecError)])
def test_the_drivers_error_about_such_a_url_shows_no_piece_of_the_password(
    read: Callable[[], None], raised: type[NsmigrateError], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, RAW_URL)
    # Without the refusal up front, the URL reaches psycopg, whose error names the password's tail as the host.
    monkeypatch.setattr(database_urls, "password_problem", lambda url: None)

    with pytest.raises(raised) as failed:
        read()

    assert "OperationalError" in str(failed.value)
    assert not any(piece in shown(failed.value) for piece in PIECES), shown(failed.value)

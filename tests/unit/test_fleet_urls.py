"""The URLs a command hands a spec to the fleet with: read from the options or the environment without loading the
settings only when no other setting could be set; otherwise the settings are loaded and checked as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from nsmigrate.cli.handoff import PGVECTOR_URL_ENV, Urls
from nsmigrate.cli.options import fleet_urls
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec

DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"
REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NSMIGRATE_ variable and no .env file, as on a machine that sets none."""
    for name in [k for k in os.environ if k.upper().startswith("NSMIGRATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_options_and_environment_give_the_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSMIGRATE_REDIS_URL", REDIS)

    assert fleet_urls(DATABASE, None) == Urls(DATABASE, REDIS)


def test_an_invalid_setting_still_stops_the_command_before_the_fleet_sees_the_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NSMIGRATE_RETRY_ATTEMPTS", "0")

    with pytest.raises(typer.Exit) as exit_:
        fleet_urls(DATABASE, REDIS)
    assert exit_.value.exit_code == 2


def test_a_url_only_in_the_env_file_is_read_from_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"NSMIGRATE_REDIS_URL={REDIS}\n")

    assert fleet_urls(DATABASE, None) == Urls(DATABASE, REDIS)


def test_a_pgvector_stores_url_is_no_setting_and_leaves_the_settings_unloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PGVECTOR_URL_ENV, "not a url: the settings never read it")
    monkeypatch.setattr("nsmigrate.cli.options.settings", lambda *_: pytest.fail("the settings were loaded"))

    assert fleet_urls(DATABASE, REDIS) == Urls(DATABASE, REDIS)
    assert PgvectorStoreSpec().database_url_env == PGVECTOR_URL_ENV
    assert PGVECTOR_URL_ENV.removeprefix("NSMIGRATE_").lower() not in Settings.model_fields

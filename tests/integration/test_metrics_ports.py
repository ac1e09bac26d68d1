"""`nsmigrate worker --metrics-port` and `nsmigrate metrics --port` on a port already taken: one clear message naming
the option and the port, exit code 2, before anything is served or consumed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "option"),
    [(["worker", "--queues", "copy", "--pool", "threads"], "--metrics-port"), (["metrics"], "--port")],
)
def test_a_taken_port_is_refused_by_name(
    command: list[str], option: str, taken_port: int, database_url: str, redis_url: str
) -> None:
    result = CliRunner().invoke(
        app,
        [*command, option, str(taken_port), "--database-url", database_url]
        + (["--redis-url", redis_url] if command[0] == "worker" else []),
        env={"NSMIGRATE_FLOWER_PASSWORD": "s3cret"},
    )

    assert result.exit_code == 2, result.output
    assert (
        f"{option} {taken_port}: cannot serve on 127.0.0.1" in result.output and "choose a free port" in result.output
    )
    assert "Traceback" not in result.output and "s3cret" not in result.output

"""A store's address that carries a secret in its query string (``?password=…``, ``?api_key=…``) is refused like one
with ``user:password@`` in it, and never shown: not by the refusal, not by any other error, store label or record
nsmigrate writes. `nsmigrate` run in process against a real job table, Redis and the local data plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_cli import Cli, error_of

SECRET = "hunter2"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", 8), IndexSpec("small-dst", 8)]


@pytest.fixture
def cli(database_url: str, redis_url: str, sandbox: PineconeSandbox, tmp_path: Path) -> Cli:
    return Cli(database_url, redis_url, sandbox, tmp_path)


@pytest.mark.parametrize("field", ["host", "control_host"])
@pytest.mark.parametrize("query", [f"?api_key={SECRET}", f"/?password={SECRET}", f"/x?region=eu&token={SECRET}"])
def test_a_store_address_with_a_secret_query_is_refused_without_showing_it(
    cli: Cli, sandbox: PineconeSandbox, field: str, query: str
) -> None:
    address = (sandbox.control_host if field == "control_host" else sandbox.host("small-dst")) + query
    target = {"kind": "pinecone", field: address} | ({"index": "small-dst"} if field == "control_host" else {})
    spec = cli.spec_file(target=target)

    result = cli("plan", spec)

    message = error_of(result)
    assert f"target.{field}: the address holds a secret in its query string" in message
    assert "the key comes from api_key_env" in message
    assert SECRET not in result.output
    cli.assert_nothing_written()


def test_an_address_without_its_scheme_is_refused_without_showing_its_secret(
    cli: Cli, sandbox: PineconeSandbox
) -> None:
    spec = cli.spec_file(target={"kind": "pinecone", "host": f"idx-abc.svc.example.io?api_key={SECRET}"})

    result = cli("plan", spec)

    assert "target.host: 'idx-abc.svc.example.io?api_key=***' needs its scheme" in error_of(result)
    assert SECRET not in result.output
    cli.assert_nothing_written()

"""Issue 27, cases 3, 4 and 10: stores compared by identity, not spelling, and the smaller refusals.

Against real services: the local Pinecone data plane through the real SDK (and a TCP forwarder in front of it, a
second address of one index as a proxy or a DNS alias would give), real Postgres databases for pgvector and the job
table, real Redis.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.spec import PgvectorStoreSpec
from sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_cli import Cli, error_of
from tests.integration.test_verify_cleanup import RecordingDispatcher, copied_job, make_records, make_spec
from workers.context import WorkerContext
from workers.stores.pgvector import PgvectorStore

pytestmark = pytest.mark.integration

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_IDENTITY_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", DIM), IndexSpec("small-dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


@pytest.fixture
def cli(database_url: str, redis_url: str, sandbox: PineconeSandbox, tmp_path: Path) -> Cli:
    return Cli(database_url, redis_url, sandbox, tmp_path)


class _Forward(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.upstream)  # type: ignore[attr-defined]
        with upstream:
            pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            pump.start()
            _copy(self.request, upstream)
            pump.join()


def _copy(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def forwarder(url: str) -> Iterator[str]:
    """A second address (``http://127.0.0.1:OTHER``) of the server at ``url``: what a proxy or an alias gives."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Forward)
    server.daemon_threads = True
    server.upstream = (host, int(port))  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pinecone(host: str) -> dict[str, str]:
    return {"kind": "pinecone", "host": host, "api_key_env": KEY_ENV}


def pgvector(env: str, table: str = "embeddings") -> dict[str, Any]:
    return {
        "kind": "pgvector",
        "layout": "table_per_namespace",
        "database_url_env": env,
        "table": table,
        "dimension": DIM,
    }


def respelled(url: str) -> str:
    """The same database by another spelling: ``localhost`` for ``127.0.0.1`` (or the other way round)."""
    return url.replace("127.0.0.1", "localhost") if "127.0.0.1" in url else url.replace("localhost", "127.0.0.1")


# ------------------------------------------------------------------------- case 3: one store under two spellings


def test_one_index_under_two_spellings_is_refused_at_plan(cli: Cli, sandbox: PineconeSandbox) -> None:
    sandbox.load("small-src", "alpha", [(f"a-{i}", [0.1] * DIM, {}) for i in range(5)])
    host = sandbox.host("small-src")
    assert "127.0.0.1" in host
    spec = cli.spec_file(
        source=pinecone(host),
        target=pinecone(host.replace("127.0.0.1", "localhost") + "/"),
        allow_id_overwrite=True,
    )

    message = error_of(cli("plan", spec, **{KEY_ENV: "k"}))

    assert "'alpha' would be copied onto itself" in message and "same store" in message
    cli.assert_nothing_written()


def test_an_index_name_and_its_host_are_one_store(cli: Cli, sandbox: PineconeSandbox) -> None:
    sandbox.load("small-src", "alpha", [(f"a-{i}", [0.1] * DIM, {}) for i in range(5)])
    by_name = {"kind": "pinecone", "index": "small-src", "control_host": sandbox.control_host, "api_key_env": KEY_ENV}
    spec = cli.spec_file(source=by_name, target=pinecone(sandbox.host("small-src")), allow_id_overwrite=True)

    message = error_of(cli("plan", spec, **{KEY_ENV: "k"}))

    assert "'alpha' would be copied onto itself" in message
    cli.assert_nothing_written()


def test_one_database_under_two_urls_is_refused_at_plan(cli: Cli, database_url: str) -> None:
    env = {"NSMIGRATE_TEST_PG_A": database_url, "NSMIGRATE_TEST_PG_B": respelled(database_url)}
    store = PgvectorStore(PgvectorStoreSpec(**pgvector("NSMIGRATE_TEST_PG_A")), database_url)
    store.upsert("alpha", make_records(3))
    store.close()
    spec = cli.spec_file(
        source=pgvector("NSMIGRATE_TEST_PG_A"), target=pgvector("NSMIGRATE_TEST_PG_B"), allow_id_overwrite=True
    )

    message = error_of(cli("plan", spec, **env))

    assert "'alpha' would be copied onto itself" in message
    cli.assert_nothing_written()


def test_cleanup_refuses_an_index_reached_through_another_address(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two hosts differ in every way a spelling can: only the marker shows they are one index.
    monkeypatch.setenv(KEY_ENV, "k")
    with forwarder(sandbox.host("small-src")) as alias:
        spec = make_spec((pinecone(sandbox.host("small-src")), pinecone(alias)), enrich={"migrated_from": False})
        job = copied_job(ctx, spec, {"alpha": make_records(5)}, copy=False)
        assert job.verify()["passed"]

        result = job.cleanup()

    assert result["action"] == "refused"
    assert "a marker written through" in result["reason"] and "would delete the migrated data" in result["reason"]
    assert sorted(sandbox.service("small-src").store.counts()) == ["alpha"]  # the marker is gone, alpha is whole
    assert job.source.count("alpha") == 5


def test_cleanup_refuses_one_database_under_two_urls(
    ctx: WorkerContext, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSMIGRATE_TEST_PG_A", database_url)
    monkeypatch.setenv("NSMIGRATE_TEST_PG_B", respelled(database_url))
    spec = make_spec(
        (pgvector("NSMIGRATE_TEST_PG_A"), pgvector("NSMIGRATE_TEST_PG_B")), enrich={"migrated_from": False}
    )
    job = copied_job(ctx, spec, {"alpha": make_records(5)}, copy=False)
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result["action"] == "refused" and "same store (pgvector:" in result["reason"]
    assert job.source.count("alpha") == 5

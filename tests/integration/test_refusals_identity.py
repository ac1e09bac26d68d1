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

import httpx
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.errors import ErasureFailed, StateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import erasing
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores import identity, open_retrying_store
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate_sandbox.path_host import PathServer, serve_under_paths
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.services import PostgresServer
from tests.integration.test_cli import Cli, error_of, one_line, run_job
from tests.integration.test_verify_cleanup import RecordingDispatcher, copied_job, make_records, make_spec

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_IDENTITY_PINECONE_KEY"  # a name NSMIGRATE_ALLOWED_KEY_VARS allows by default


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


def test_rollback_refuses_an_index_reached_through_another_address(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rolling back removes the target namespaces: here the target namespace is the original itself.
    monkeypatch.setenv(KEY_ENV, "k")
    with forwarder(sandbox.host("small-src")) as alias:
        spec = make_spec((pinecone(sandbox.host("small-src")), pinecone(alias)), enrich={"migrated_from": False})
        job = copied_job(ctx, spec, {"alpha": make_records(5)}, copy=False)

        with pytest.raises(StateError, match=r"a marker written through .* removing it would remove an original"):
            rollback_job(ctx, job.job_id, actor="tester")

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


# ------------------------------------------------- indexes served under paths of one host and port are two stores


@pytest.fixture
def under_paths(sandbox: PineconeSandbox) -> Iterator[PathServer]:
    """``small-src`` and ``small-dst`` under ``/indexes/…`` of one port, and ``small-src`` again as ``/indexes/twin``
    (one index under two paths, as a server's alias would give)."""
    served = serve_under_paths(sandbox, ["small-src", "small-dst"], aliases={"twin": "small-src"})
    yield served
    served.close()


def test_two_indexes_under_paths_of_one_port_are_two_stores_at_plan(
    cli: Cli, sandbox: PineconeSandbox, under_paths: PathServer
) -> None:
    sandbox.load("small-src", "alpha", [(f"a-{i}", [0.1] * DIM, {}) for i in range(5)])
    spec = cli.spec_file(source=pinecone(under_paths.host("small-src")), target=pinecone(under_paths.host("small-dst")))

    result = cli("plan", spec, **{KEY_ENV: "k"})

    assert result.exit_code == 0, result.output
    assert "alpha" in result.output and "same store" not in result.output
    # One index under two spellings of its path is still one store, refused before anything is written.
    respelled_path = under_paths.host("small-src").replace("/indexes/", "//indexes/./") + "/"
    spec = cli.spec_file(source=pinecone(under_paths.host("small-src")), target=pinecone(respelled_path))
    assert "'alpha' would be copied onto itself" in error_of(cli("plan", spec, **{KEY_ENV: "k"}))
    cli.assert_nothing_written()


def test_cleanup_between_two_indexes_under_paths_proves_them_two_and_deletes(
    ctx: WorkerContext, sandbox: PineconeSandbox, under_paths: PathServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    hosts = (pinecone(under_paths.host("small-src")), pinecone(under_paths.host("small-dst")))
    job = copied_job(ctx, make_spec(hosts), {"alpha": make_records(5)})
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result["action"] == "deleted" and result["count"] == 5, result
    assert sandbox.count("small-src", "alpha") == 0 and sandbox.count("small-dst", "alpha") == 5
    assert sorted(sandbox.service("small-src").store.counts()) == []  # the marker is gone too


@pytest.mark.parametrize("kept_s", [600.0, 0.0])
def test_a_jobs_cleanups_prove_its_two_indexes_apart_once_while_the_proof_stands(
    ctx: WorkerContext,
    sandbox: PineconeSandbox,
    under_paths: PathServer,
    monkeypatch: pytest.MonkeyPatch,
    kept_s: float,
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    monkeypatch.setattr(identity, "PROOF_KEPT_S", kept_s)
    hosts = (pinecone(under_paths.host("small-src")), pinecone(under_paths.host("small-dst")))
    job = copied_job(ctx, make_spec(hosts), {"alpha": make_records(5), "beta": make_records(3, prefix="b")})
    assert job.verify("alpha")["passed"] and job.verify("beta")["passed"]
    markers_before = sandbox.stats("small-src")["requests"].get("upsert", 0)

    results = [job.cleanup("alpha"), job.cleanup("beta")]

    assert [r["action"] for r in results] == ["deleted", "deleted"], results
    assert sandbox.stats("small-src")["requests"]["upsert"] - markers_before == (1 if kept_s else 2)
    assert sorted(sandbox.service("small-src").store.counts()) == []  # the markers are gone too


def test_cleanup_refuses_one_index_under_two_paths(
    ctx: WorkerContext, sandbox: PineconeSandbox, under_paths: PathServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two paths that differ however they are spelled: only the marker shows they are one index.
    monkeypatch.setenv(KEY_ENV, "k")
    hosts = (pinecone(under_paths.host("small-src")), pinecone(under_paths.host("twin")))
    job = copied_job(ctx, make_spec(hosts, enrich={"migrated_from": False}), {"alpha": make_records(5)}, copy=False)
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result["action"] == "refused" and "a marker written through" in result["reason"]
    assert sandbox.count("small-src", "alpha") == 5


# --------------------------------------------------------------- case 4: erasure keys its places by identity


@pytest.fixture
def other_database_url(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    """A second database of the same server (with pgvector), beside ``database_url``."""
    name = database_url.rsplit("/", 1)[1] + "_other"
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_erasure_searches_one_prefix_in_two_databases(
    ctx: WorkerContext, job_table_url: str, other_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = {"NSMIGRATE_TEST_PG_ONE": job_table_url, "NSMIGRATE_TEST_PG_TWO": other_database_url}
    for env, url in urls.items():
        monkeypatch.setenv(env, url)
    legacy = {**pgvector("NSMIGRATE_TEST_PG_ONE", "legacy"), "layout": "single_table"}
    for env in urls:  # two jobs: the same source, a target of the same prefix in each database
        copied_job(
            ctx,
            make_spec((legacy, pgvector(env))),
            {"t1": make_records(3, prefix="t1"), "t10": make_records(2, prefix="t10")},
            targets={"t1": "creator_a.1_twin_t1", "t10": "creator_a.10_twin_t10"},
            pairs={"t1": ("a.1", "t1"), "t10": ("a.10", "t10")},
        )

    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    job_id = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, job_id):
        erasing.erase_place(ctx, place.id)

    receipt = jobs_erasure.erasure_receipt(ctx.db, job_id)
    assert receipt is not None and receipt["verified"]
    assert sorted((p["store"], p["namespace"], p["erased"]) for p in receipt["places"]) == [
        ("pgvector:embeddings ($NSMIGRATE_TEST_PG_ONE)", "creator_a.1_twin_t1", 3),
        ("pgvector:embeddings ($NSMIGRATE_TEST_PG_TWO)", "creator_a.1_twin_t1", 3),
        ("pgvector:legacy", "t1", 3),
    ]
    for env, url in urls.items():  # read back independently of the receipt
        store = PgvectorStore(PgvectorStoreSpec(**pgvector(env)), url)
        assert store.namespaces() == {"creator_a.10_twin_t10": 2}, env
        store.close()


# ------------------------------------------------------------------------------------ case 10: smaller refusals


def started_job(cli: Cli, sandbox: PineconeSandbox) -> int:
    """A copy job written and enqueued (no workers run it), over two namespaces of the source."""
    for ns in ("ns0", "ns1"):
        sandbox.load("small-src", ns, [(f"{ns}-{i}", [0.1] * DIM, {}) for i in range(3)])
    return run_job(cli)


def test_erase_resume_of_a_job_that_is_not_an_erasure_is_refused_and_changes_nothing(
    cli: Cli, sandbox: PineconeSandbox
) -> None:
    job_id = started_job(cli, sandbox)
    assert cli("cancel", str(job_id)).exit_code == 0
    db = jobs_database.Database(cli.database_url)
    before = (jobs_and_runs.find_job(db, job_id).state, len(jobs_status.events_of(db, job_id)))

    message = one_line(error_of(cli("erase", "--resume", str(job_id), "--timeout-s", "5")))

    assert f"job {job_id} is a migrate job, not an erasure" in message and "nsmigrate jobs" in message
    assert (
        (jobs_and_runs.find_job(db, job_id).state, len(jobs_status.events_of(db, job_id)))
        == before
        == ("cancelled", before[1])
    )
    db.dispose()


def test_report_of_a_namespace_the_job_does_not_have_names_it(cli: Cli, sandbox: PineconeSandbox) -> None:
    job_id = started_job(cli, sandbox)

    message = one_line(error_of(cli("report", str(job_id), "--namespace", "missing")))

    assert f"job {job_id} has no namespace 'missing'" in message and "it has 2: ns0, ns1" in message


def test_the_sandbox_admin_endpoints_need_the_key_it_was_started_with() -> None:
    sandbox = PineconeSandbox(indexes=[IndexSpec("guarded", DIM)], api_key="the-key").start()
    try:
        host, control = sandbox.host("guarded"), sandbox.control_host
        for headers, status in (({}, 401), ({"Api-Key": "another"}, 401), ({"Api-Key": "the-key"}, 200)):
            assert httpx.post(f"{host}/_sandbox/faults", json={"error_rate_5xx": 1.0}, headers=headers).status_code == (
                status
            )
            assert httpx.get(f"{host}/_sandbox/stats", headers=headers).status_code == status
            assert httpx.post(f"{host}/_sandbox/reset", headers=headers).status_code == status
            assert httpx.get(f"{control}/_sandbox/hosts", headers=headers).status_code == status
        assert sandbox.faults("guarded").error_rate_5xx == 1.0  # set once: by the request with the key
    finally:
        sandbox.stop()


def test_erase_refuses_while_a_copy_of_the_creator_may_still_write_it(cli: Cli, sandbox: PineconeSandbox) -> None:
    # A copy of creator a.1's twin is enqueued, not done: an erasure now would delete what it finds, then the copy
    # would write a.1's vectors into the target after the places were checked empty, under a receipt saying erased.
    for twin in ("t1", "t10"):
        sandbox.load("small-src", twin, [(f"{twin}-{i}", [0.1] * DIM, {}) for i in range(3)])
    routing = {"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "a.1", "t10": "a.10"}}}
    job_id = run_job(cli, routing=routing)
    db = jobs_database.Database(cli.database_url)

    refused = cli("erase", "--creator", "a.1", "--yes", "--timeout-s", "5")

    assert refused.exit_code == 1, refused.output
    message = one_line(refused.stderr)
    assert f"job {job_id}" in message and "may still write" in message and "nothing was deleted" in message
    assert f"nsmigrate cancel {job_id}" in message
    assert [j["kind"] for j in jobs_status.list_jobs(db)] == ["migrate"]  # no erasure job was written
    assert sandbox.count("small-src", "t1") == 3
    # Once the copy cannot write any more, the erasure plans as usual.
    assert cli("cancel", str(job_id)).exit_code == 0
    planned = cli("erase", "--creator", "a.1", "--dry-run")
    assert planned.exit_code == 0 and "dry run: nothing deleted" in planned.output, planned.output
    db.dispose()


def test_erase_erases_a_backup_where_it_found_it(cli: Cli, sandbox: PineconeSandbox, tmp_path: Path) -> None:
    # A backup directory is on the host that wrote it (`nsmigrate run` or `export`), not on the cleanup workers (the
    # compose deployment mounts none there): a worker reads a directory it cannot see as gone, i.e. erased, and the
    # receipt would say so while every row is still on disk. The command that found it erases it. No worker runs.
    sandbox.load("small-src", "public", [("mine", [0.1] * DIM, {"creator_id": "a.1"}), ("other", [0.2] * DIM, {})])
    exported = cli("export", cli.spec_file(), "--out", str(tmp_path / "exp"))
    assert exported.exit_code == 0, exported.output

    erased = cli(
        "erase",
        "a.1",
        "--backup-dir",
        str(tmp_path / "exp"),
        "--yes",
        "--timeout-s",
        "5",
        "--receipt",
        str(tmp_path / "r"),
    )

    assert erased.exit_code == 0, erased.output
    rows = [r["id"] for f in (tmp_path / "exp").rglob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert rows == ["other"]
    [job] = jobs_status.list_jobs(db := jobs_database.Database(cli.database_url))
    receipt = jobs_erasure.erasure_receipt(db, job["job_id"])
    assert receipt is not None and receipt["verified"] and receipt["backup_rows_erased"] == 1, receipt
    db.dispose()


def test_an_erasure_place_that_breaks_unexpectedly_is_failed_with_its_error(
    cli: Cli, ctx: WorkerContext, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    # A backup file damaged after the plan read it: pyarrow's error is no nsmigrate error. The place must end
    # `failed` with it (so `events`, the receipt and `erase --resume` see it), not stay `erasing` with no reason.
    sandbox.load("small-src", "public", [("mine", [0.1] * DIM, {"creator_id": "a.1"}), ("other", [0.2] * DIM, {})])
    assert cli("export", cli.spec_file(), "--out", str(tmp_path / "exp")).exit_code == 0
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store, backup_dirs=[tmp_path / "exp"])
    job_id = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    [place] = jobs_erasure.places_of(ctx.db, job_id)
    [file] = (tmp_path / "exp").rglob("*.parquet")
    file.write_bytes(file.read_bytes()[:40])

    with pytest.raises(ErasureFailed, match="unexpected ArrowInvalid"):
        erasing.erase_place(ctx, place.id)

    [place] = jobs_erasure.places_of(ctx.db, job_id)
    assert place.state == "failed" and "ArrowInvalid" in (place.last_error or ""), place.last_error
    receipt = jobs_erasure.erasure_receipt(ctx.db, job_id)
    assert receipt is not None and not receipt["verified"], receipt

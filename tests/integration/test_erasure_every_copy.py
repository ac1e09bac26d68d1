"""An erasure searches every copy nsmigrate made, not only namespaces: the application's pgvector tables that a move,
``legacy`` or a cleanup renamed away (``embeddings_backup_*``) and the legacy table once replaced, emptied of the
creator's rows (whole when the table held a namespace of theirs); an export made with `nsmigrate export`; a document
index; and the Pinecone collections its copy jobs made, which it cannot erase inside, named in the receipt with what
to do. The erasure's own code (plan and places), called in process on real services: the job table and pgvector
tables made from the shared DDL (sandbox/application-table.sql) with rows filling every column, the local Pinecone
data plane through the real SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import ErasureFailed
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.seed import application_rows, create_application_table
from tests.integration.test_erasure_and_copies import Dispatcher, a_copy_job, shared_namespace
from tests.integration.test_verify_cleanup import URL_ENV, copied_job, make_records, make_spec

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ERASE_COPIES_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    schema = DocumentSchema(DenseField("embedding", DIM, "cosine"))
    return [IndexSpec("src", DIM), document_index("docs", schema)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


def app_table(conn: sa.Connection, table: str, owners: list[str], seed: int) -> list[str]:
    """``table`` from the application's DDL, one row per owner filling every column (``application_rows``),
    ``metadata`` naming the owner; returns the chunk ids."""
    rows = application_rows(len(owners), DIM, seed=seed)
    for i, (row, owner) in enumerate(zip(rows, owners, strict=True)):
        row["chunk_id"] = f"{table}-{i}"
        row["metadata"] = {"source": "application", "row": i, "creator_id": owner}
    create_application_table(conn, table, DIM, rows)
    return [r["chunk_id"] for r in rows]


def rows_of(pg: sa.Engine, table: str) -> dict[str, str]:
    """chunk id → owner of every row of ``table``."""
    with pg.connect() as conn:
        found = conn.execute(sa.text(f"SELECT chunk_id, metadata->>'creator_id' FROM {table} ORDER BY chunk_id"))
        return dict(found.all())


def erase_all_places(ctx: WorkerContext, creator: str) -> dict[str, Any]:
    """Plan the erasure of ``creator``, run every place as the cleanup workers (and `erase`, for backups) do, and
    return the receipt."""
    plan = erasing.plan_erasure(ctx.db, creator, None, open_retrying_store)
    assert plan.writing == {} and not plan.unreadable, plan
    erase_job = jobs_erasure.create_erasure(ctx.db, f"erase-{creator}", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None
    return receipt


def test_backup_tables_and_the_replaced_legacy_table_are_emptied_of_the_creators_rows(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twin t1 (a.1's) and t10 (a.10's) were copied out of the application's tables and their sources renamed away
    by the cleanup, as was ``public`` (shared); the legacy ``embeddings`` table stays beside ``embeddings_default``."""
    monkeypatch.setenv(URL_ENV, database_url)
    with pg.begin() as conn:
        app_table(conn, "embeddings_t1", ["a.1"] * 3, seed=1)
        app_table(conn, "embeddings_t10", ["a.10"] * 2, seed=2)
        app_table(conn, "embeddings_public", ["a.1", "a.10", "a.1", "a.10"], seed=3)
        app_table(conn, "embeddings", ["a.10", "a.1", "a.10"], seed=4)  # the legacy table, replaced by …
        app_table(conn, "embeddings_default", ["a.10"], seed=5)  # … the default namespace's own
    documented = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
    spec = make_spec(
        ({**documented, "table": "embeddings"}, {**documented, "table": "copies"}),
        enrich={"creator_fields": False, "migrated_from": True},
    )
    source = ctx.store(spec.source)
    data = {ns: source.fetch(ns, source.list_ids(ns).ids) for ns in ("t1", "t10")}
    copied_job(
        ctx, spec, data, targets={"t1": "c_t1", "t10": "c_t10"}, pairs={"t1": ("a.1", "t1"), "t10": ("a.10", "t10")}
    )
    retired = {ns: source.retire_namespace(ns) for ns in ("t1", "t10", "public")}  # as the cleanup leaves them
    assert all(t and t.startswith("embeddings_backup_") for t in retired.values()), retired
    before_t10 = rows_of(pg, str(retired["t10"]))

    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)

    tables = {p["path"]: p["planned"] for p in plan.places if p["kind"] == "table"}
    assert tables == {str(retired["t1"]): 3, str(retired["public"]): 2, "embeddings": 1}, plan.places

    receipt = erase_all_places(ctx, "a.1")

    assert receipt["verified"], receipt
    assert rows_of(pg, str(retired["t1"])) == {}  # a namespace of theirs: emptied whole
    assert set(rows_of(pg, str(retired["public"])).values()) == {"a.10"}  # shared: only theirs went
    assert set(rows_of(pg, "embeddings").values()) == {"a.10"} and len(rows_of(pg, "embeddings")) == 2
    assert rows_of(pg, str(retired["t10"])) == before_t10  # another creator's backup: untouched
    erased = {p["path"]: p["erased"] for p in receipt["places"] if p["kind"] == "table"}
    assert erased == tables and all(p["verified"] for p in receipt["places"])


def test_a_retired_table_renamed_back_since_the_plan_fails_its_place_never_verified_empty(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback renames a retired table back into its namespace, rows and all: the erasure's place found no table,
    read its rows as none and verified it, while the creator's rows were live again where the plan never looked."""
    monkeypatch.setenv(URL_ENV, database_url)
    with pg.begin() as conn:
        app_table(conn, "embeddings_t1", ["a.1"] * 3, seed=1)
        app_table(conn, "embeddings", ["a.10"], seed=4)
    documented = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
    spec = make_spec(({**documented, "table": "embeddings"}, {**documented, "table": "copies"}))
    source = ctx.store(spec.source)
    copied_job(ctx, spec, {"t1": source.fetch("t1", source.list_ids("t1").ids)}, pairs={"t1": ("a.1", "t1")})
    retired = str(source.retire_namespace("t1"))
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    with pg.begin() as conn:  # the rollback, between the plan and the place
        conn.execute(sa.text(f"ALTER TABLE {retired} RENAME TO embeddings_t1"))

    [place] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.kind == "table"]
    with pytest.raises(ErasureFailed, match=f"table {retired} is gone"):
        erasing.erase_place(ctx, place.id)

    assert set(rows_of(pg, "embeddings_t1").values()) == {"a.1"}  # live again: the receipt must not say erased


def test_an_export_made_with_nsmigrate_export_is_found_and_rewritten_without_their_rows(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, job_table_url: str
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-copies-test")
    store = {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": KEY_ENV}
    spec = make_spec((store, store))
    shared_namespace(ctx, spec)  # a.1's m-000…m-002, a.10's o-000…o-002 in `public`
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "archive", "source": store, "target": store}))
    out = tmp_path / "archive"
    exported = CliRunner().invoke(app, ["export", str(spec_file), "--out", str(out), "--database-url", job_table_url])
    assert exported.exit_code == 0, exported.output
    ctx.store(spec.source).delete("public", ["m-000", "m-001", "m-002"])  # the store itself erased already

    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)

    [backup] = [p for p in plan.places if p["kind"] == "backup"]
    assert backup["path"] == str(out.resolve()) and backup["planned"] == 3
    receipt = erase_all_places(ctx, "a.1")
    assert receipt["verified"] and receipt["backup_rows_erased"] == 3, receipt


def test_an_export_with_no_job_table_says_the_erasure_will_not_find_it(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-copies-test")
    store = {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": KEY_ENV}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "archive", "source": store, "target": store}))
    sandbox.load("src", "public", [("v-1", [1.0] * DIM, {"creator_id": "a.1"})])
    gone = "postgresql+psycopg://nobody@127.0.0.1:1/none"

    result = CliRunner().invoke(app, ["export", str(spec_file), "--out", str(tmp_path / "a"), "--database-url", gone])

    assert result.exit_code == 0, result.output
    assert "not recorded" in result.output and "--backup-dir" in " ".join(result.output.split())


def test_a_document_index_is_searched_and_emptied_of_their_documents(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-copies-test")
    source = {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": KEY_ENV}
    docs = {"kind": "pinecone", "index": "docs", "control_host": sandbox.control_host, "api_key_env": KEY_ENV}
    spec = make_spec((source, {**docs, "documents": {}}), enrich={"creator_fields": False, "migrated_from": True})
    shared_namespace(ctx, spec)
    assert copying.copy_batch(ctx, a_copy_job(ctx, spec, "public", "public_copy")) == 6
    # Copied right before the erasure: no namespace listing shows `public_copy` yet; the plan awaits the reads.
    target = ctx.store(spec.target)

    receipt = erase_all_places(ctx, "a.1")

    assert receipt["verified"], receipt
    searched = {(p["store"], p["namespace"]) for p in receipt["places"] if p["kind"] == "records"}
    assert (target.name, "public_copy") in searched, receipt["places"]
    assert target.fetch("public_copy", ["m-000", "m-001", "m-002"]) == []
    assert sorted(r.id for r in target.fetch("public_copy", ["o-000", "o-001", "o-002"])) == ["o-000", "o-001", "o-002"]


def test_collections_its_copy_jobs_made_are_named_as_copies_it_cannot_erase_inside(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-copies-test")
    store = {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": KEY_ENV}
    spec = make_spec((store, store))
    theirs = copied_job(
        ctx,
        spec,
        {"t1": make_records(2, prefix="m")},
        targets={"t1": "creator_a.1_twin_t1"},
        pairs={"t1": ("a.1", "t1")},
    )
    others = copied_job(
        ctx,
        spec,
        {"t10": make_records(2, prefix="o")},
        targets={"t10": "creator_a.10_twin_t10"},
        pairs={"t10": ("a.10", "t10")},
    )
    for job, name in ((theirs, "pod-snapshot-1"), (others, "pod-snapshot-10")):
        jobs_and_runs.record_event(ctx.db, "collection_collecting", "tester", job.job_id, collection=name, source="pod")

    receipt = erase_all_places(ctx, "a.1")

    assert receipt["verified"], receipt
    [note] = receipt["cannot_erase"]
    assert note["name"] == "pod-snapshot-1" and note["made_by_job"] == theirs.job_id
    assert (
        "cannot be erased inside" in note["what_to_do"] and "DELETE /collections/pod-snapshot-1" in note["what_to_do"]
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["export", "--creator", "a.1", "--namespace", "public"], "leave them out"),
        (["export", "--twin", "t1"], "give the spec to export from"),
        (["erase", "--creator", "a.1", "--ledger", "--export-first", "x"], "not with --ledger, --lift or --resume"),
    ],
)
def test_portability_options_that_do_not_go_together_are_refused(
    args: list[str], said: str, job_table_url: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, [*args, "--database-url", job_table_url])

    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()

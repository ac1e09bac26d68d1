"""An erasure searches every copy nsmigrate made, not only namespaces: the application's pgvector tables that a move,
``legacy`` or a cleanup renamed away (``embeddings_backup_*``) and the legacy table once replaced, emptied of the
creator's rows (whole when the table held a namespace of theirs); an export made with `nsmigrate export`; a document
index; and the Pinecone collections its copy jobs made, which it cannot erase inside, named in the receipt with what
to do. The erasure's own code (plan and places), called in process on real services: the job table and pgvector
tables made from the shared DDL (sandbox/application-table.sql) with rows filling every column, the local Pinecone
data plane through the real SDK.
"""

from __future__ import annotations

import contextlib
import json
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
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
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


# A documented namespace of more than 30 characters (at most 50 are allowed) retired by a cleanup or `pgvector move`:
# its backup's name is cut to Postgres's 63 bytes, ``…_creator_alice_smith_t_d6561b01``, which parses as creator
# ``alice_smith_t_d6561b01``. The erasure must never read the namespace from that name.
ALICE_NS = "creator_alice_smith_twin_support01"
BOB_NS = "creator_bob_jones_twin_marketing01"


def retired_long_namespaces(ctx: WorkerContext, pg: sa.Engine, alice_rows_name_her: bool) -> tuple[Any, dict[str, str]]:
    """Alice's twin ``support01`` and Bob's ``marketing01`` in the application's tables (three rows each: Alice's
    naming her and her twin in ``metadata``, or, ``alice_rows_name_her`` False, as the application writes them, naming
    nobody), both retired as a cleanup does; the store's spec and namespace → backup table."""
    with pg.begin() as conn:
        alice = app_table(conn, f"embeddings_{ALICE_NS}", ["alice_smith"] * 3, seed=1)
        app_table(conn, f"embeddings_{BOB_NS}", ["bob_jones"] * 3, seed=2)
        for chunk_id in alice:
            meta = {"creator_id": "alice_smith", "twin_id": "support01"} if alice_rows_name_her else {"row": chunk_id}
            conn.execute(
                sa.text(f"UPDATE embeddings_{ALICE_NS} SET metadata = CAST(:m AS jsonb) WHERE chunk_id = :id"),
                {"m": json.dumps(meta), "id": chunk_id},
            )
        conn.execute(sa.text(f"UPDATE embeddings_{BOB_NS} SET metadata = NULL"))  # rows naming nobody
    spec = store_spec_from_json({"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV})
    store = ctx.store(spec)
    backups = {ns: str(store.retire_namespace(ns)) for ns in (ALICE_NS, BOB_NS)}
    assert backups[ALICE_NS].endswith("_creator_alice_smith_t_d6561b01") and len(backups[ALICE_NS]) == 63, backups
    return spec, backups


def made_before_the_record(pg: sa.Engine, *tables: str) -> None:
    """Backup tables as a cleanup left them before it recorded their namespace on them (no comment)."""
    with pg.begin() as conn:
        for table in tables:
            conn.execute(sa.text(f'COMMENT ON TABLE "{table}" IS NULL'))


def erase_in_store(ctx: WorkerContext, spec: Any, creator: str, twin: str | None) -> tuple[Any, dict[str, Any] | None]:
    """Plan the erasure of ``creator`` (``twin``) with ``spec``'s store named on the command line (`--store`), run
    every place as the cleanup workers do (a place whose check fails is recorded failed), return plan and receipt
    (None: no place found, and `erase` says "nothing to erase")."""
    plan = erasing.plan_erasure(ctx.db, creator, twin, open_retrying_store, extra_stores=[spec])
    assert plan.writing == {} and not plan.unreadable, plan
    if not plan.places:
        return plan, None
    erase_job = jobs_erasure.create_erasure(ctx.db, f"erase-{creator}", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        with contextlib.suppress(ErasureFailed):  # recorded failed: the receipt says so
            erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None
    return plan, receipt


@pytest.mark.parametrize("twin", [None, "support01"], ids=["creator", "twin"])
def test_a_retired_table_of_a_long_namespace_is_emptied_whole_by_the_namespace_its_retirement_recorded(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, twin: str | None
) -> None:
    """A cleanup records the whole namespace on the table it retires: its erasure empties it whole, rows naming
    nobody included, and leaves Bob's alone."""
    monkeypatch.setenv(URL_ENV, database_url)
    spec, backups = retired_long_namespaces(ctx, pg, alice_rows_name_her=False)
    bob_before = rows_of(pg, backups[BOB_NS])

    _, receipt = erase_in_store(ctx, spec, "alice_smith", twin)

    assert receipt is not None and receipt["verified"], receipt
    assert rows_of(pg, backups[ALICE_NS]) == {} and rows_of(pg, backups[BOB_NS]) == bob_before


@pytest.mark.parametrize("twin", [None, "support01"], ids=["creator", "twin"])
def test_a_retired_table_of_a_long_namespace_is_searched_and_emptied_of_the_rows_naming_them(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, twin: str | None
) -> None:
    monkeypatch.setenv(URL_ENV, database_url)
    spec, backups = retired_long_namespaces(ctx, pg, alice_rows_name_her=True)
    bob_before = rows_of(pg, backups[BOB_NS])

    plan, receipt = erase_in_store(ctx, spec, "alice_smith", twin)

    tables = {p["path"]: p["planned"] for p in plan.places if p["kind"] == "table"}
    assert tables == {backups[ALICE_NS]: 3}, plan.places  # Bob's holds none of hers: searched, left alone
    assert rows_of(pg, backups[ALICE_NS]) == {}
    assert receipt is not None and receipt["verified"], receipt
    assert rows_of(pg, backups[BOB_NS]) == bob_before


@pytest.mark.parametrize("twin", [None, "support01"], ids=["creator", "twin"])
def test_a_retired_table_of_a_long_namespace_whose_rows_do_not_name_them_is_never_called_verified(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, twin: str | None
) -> None:
    """Rows the application wrote name nobody: the namespace said whose they were, and the cut name no longer does.
    A table retired before its namespace was recorded on it (a COMMENT, which a rename keeps) is never called
    verified; with the record, it is emptied whole."""
    monkeypatch.setenv(URL_ENV, database_url)
    spec, backups = retired_long_namespaces(ctx, pg, alice_rows_name_her=False)
    made_before_the_record(pg, *backups.values())
    alice_before, bob_before = rows_of(pg, backups[ALICE_NS]), rows_of(pg, backups[BOB_NS])

    _, receipt = erase_in_store(ctx, spec, "alice_smith", twin)

    assert receipt is not None, "nothing to erase: her retired table was not found"
    assert not receipt["verified"], receipt
    [place] = [p for p in receipt["places"] if p["path"] == backups[ALICE_NS]]
    assert not place["verified"] and place["check"]["rows_not_told_apart"] == 3, place
    assert "COMMENT ON TABLE" in place["error"] and "'creator_alice_smith_t'" in place["error"], place
    assert rows_of(pg, backups[ALICE_NS]) == alice_before  # nothing taken on a guess
    assert [p for p in receipt["places"] if p["path"] == backups[BOB_NS]] == []
    _, bobs = erase_in_store(ctx, spec, "bob_jones", None)  # his table is his erasure's question, hers is not
    assert bobs is not None and [p["path"] for p in bobs["places"] if p["kind"] == "table"] == [backups[BOB_NS]], bobs
    assert not bobs["verified"] and rows_of(pg, backups[BOB_NS]) == bob_before

    with pg.begin() as conn:  # the namespace it held, recorded as the failed place says
        conn.execute(sa.text(f"COMMENT ON TABLE \"{backups[ALICE_NS]}\" IS 'nsmigrate namespace: {ALICE_NS}'"))
    _, receipt = erase_in_store(ctx, spec, "alice_smith", twin)

    assert receipt is not None and receipt["verified"], receipt
    assert rows_of(pg, backups[ALICE_NS]) == {}  # hers: emptied whole
    assert rows_of(pg, backups[BOB_NS]) == bob_before


def test_a_retired_long_source_namespace_read_for_them_is_never_called_verified_by_its_cut_name(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy job read a.1's twin t1 out of a long source namespace, whose rows name nobody (the job routed them by
    namespace), and the cleanup retired it: its cut name parses as a hand-made namespace, searched and found without
    a row naming them."""
    monkeypatch.setenv(URL_ENV, database_url)
    source_ns = "twin_0f8fad5b_d9cb_469f_a165_70867728950e"
    with pg.begin() as conn:
        app_table(conn, f"embeddings_{source_ns}", ["a.1"] * 3, seed=1)
        conn.execute(sa.text(f"UPDATE embeddings_{source_ns} SET metadata = NULL"))
    documented = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
    spec = make_spec(
        ({**documented, "table": "embeddings"}, {**documented, "table": "copies"}),
        enrich={"creator_fields": False, "migrated_from": True},
    )
    source = ctx.store(spec.source)
    data = {source_ns: source.fetch(source_ns, source.list_ids(source_ns).ids)}
    copied_job(ctx, spec, data, targets={source_ns: "c_t1"}, pairs={source_ns: ("a.1", "t1")})
    retired = str(source.retire_namespace(source_ns))
    assert len(retired) == 63 and not retired.endswith(source_ns), retired
    made_before_the_record(pg, retired)
    before = rows_of(pg, retired)

    _, receipt = erase_in_store(ctx, spec.source, "a.1", None)

    assert receipt is not None and not receipt["verified"], receipt
    [place] = [p for p in receipt["places"] if p["path"] == retired]
    assert not place["verified"] and source_ns in place["error"], place
    assert rows_of(pg, retired) == before


def test_a_table_pgvector_copy_wrote_is_found_by_an_erasure_that_names_no_store(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, job_table_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nsmigrate pgvector copy` keeps its store (the variable naming its URL) with its job, as a migrate job does:
    an erasure run without --store finds and erases the creator's table it wrote, and says verified only then."""
    monkeypatch.setenv(URL_ENV, database_url)
    with pg.begin() as conn:
        app_table(conn, "embeddings_twin_legacy", ["alice"] * 3, seed=1)
    copied = CliRunner().invoke(
        app,
        [
            "pgvector",
            "copy",
            "twin_legacy",
            "creator_alice_twin_t1",
            "--url-env",
            URL_ENV,
            "--database-url",
            job_table_url,
        ],
    )
    assert copied.exit_code == 0, copied.output

    plan = erasing.plan_erasure(ctx.db, "alice", None, open_retrying_store)

    # Her twin's table whole, and her rows of the table it was copied from (they name her).
    assert sorted(p["namespace"] for p in plan.places) == ["creator_alice_twin_t1", "twin_legacy"], plan.places
    erasure = jobs_erasure.create_erasure(ctx.db, "erase-alice", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erasure):
        erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erasure)
    assert receipt is not None and receipt["verified"], receipt
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('embeddings_creator_alice_twin_t1')")).scalar() is None

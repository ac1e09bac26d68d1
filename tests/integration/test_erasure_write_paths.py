"""Every write path offered an erased creator's records writes none of them, writes the rest, names what it held
back (the job's ``records_held_back`` events, the erasure's ``write_held_back`` events, the run's verification
report), and verifies: the verification expects those records absent. The copy task's, the sync's and the
verification's own code, called in process, on real services (the job table in Postgres, Redis, pgvector tables of
the application's DDL, the local Pinecone data plane through the real SDK: a vector index, a document index, a
re-embedding into another index).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning, copying, syncing, verifying
from nsmigrate.workers.stores.pgvector import retired, table_copies
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.seed import application_rows, create_application_table
from tests.integration.test_erasure_and_copies import (
    SHARED_IDS,
    Dispatcher,
    a_copy_job,
    erased,
    held_back_events,
    shared_namespace,
)
from tests.integration.test_verify_cleanup import URL_ENV, make_records, make_spec
from tests.settling import settle

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ERASE_PATHS_PINECONE_KEY"
THEIRS, OTHERS = SHARED_IDS[:3], SHARED_IDS[3:]  # a.1's three vectors, a.10's three (``shared_namespace``)
PATHS = ["pinecone", "pgvector", "in postgres", "between databases", "re-embedding", "document index"]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    schema = DocumentSchema(DenseField("embedding", DIM, "cosine"))
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM), IndexSpec("re", DIM), document_index("docs", schema)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


def application_public(pg: sa.Engine, table: str, *, rows: bool) -> None:
    """``table`` made from the application's DDL (sandbox/application-table.sql); with ``rows``, six rows filling
    every column (``application_rows``), ``metadata`` naming a.1 as the owner of the first three, a.10 of the
    rest."""
    made = application_rows(6, DIM, seed=44) if rows else []
    for i, row in enumerate(made):
        row["metadata"] = {"source": "application", "row": i, "creator_id": "a.1" if i < 3 else "a.10"}
    with pg.begin() as conn:
        create_application_table(conn, table, DIM, made)


def path_spec(path: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> JobSpec:
    """The spec of a copy of ``public`` along ``path``, its source holding a.1's and a.10's records."""
    plain = {"enrich": {"creator_fields": False, "migrated_from": True}}
    if path in ("pgvector", "in postgres", "between databases"):
        database_url = request.getfixturevalue("database_url")
        monkeypatch.setenv(URL_ENV, database_url)
        monkeypatch.setenv(URL_ENV + "_APART", f"{database_url}?application_name=apart")
    if path == "pgvector":
        common = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
        return make_spec(({**common, "table": "src"}, {**common, "table": "dst"}), **plain)
    if path in ("in postgres", "between databases"):
        pg = request.getfixturevalue("pg")
        application_public(pg, "embeddings_public", rows=True)
        documented = {"kind": "pgvector", "schema": "documented"}
        apart = URL_ENV + ("_APART" if path == "between databases" else "")
        spec = make_spec(
            (
                {**documented, "table": "embeddings", "database_url_env": URL_ENV},
                {**documented, "table": "copies", "database_url_env": apart},
            ),
            **plain,
        )
        assert table_copies.in_database(spec) == (path == "in postgres")
        assert table_copies.between_databases(spec) == (path == "between databases")
        return spec
    sandbox: PineconeSandbox = request.getfixturevalue("sandbox")
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-paths-test")
    source = {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": KEY_ENV}
    by_name = {"kind": "pinecone", "control_host": sandbox.control_host, "api_key_env": KEY_ENV}
    if path == "re-embedding":
        target = {**by_name, "index": "re"}
        return make_spec((source, target), reembed={"embedder": "hashing", "dimension": DIM}, **plain)
    if path == "document index":
        return make_spec((source, {**by_name, "index": "docs", "documents": {}}), **plain)
    return make_spec((source, {"kind": "pinecone", "host": sandbox.host("dst"), "api_key_env": KEY_ENV}), **plain)


def owners(ctx: WorkerContext, spec: JobSpec) -> tuple[list[str], list[str]]:
    """(a.1's ids, a.10's ids) in the source's ``public``."""
    if spec.source.kind == "pgvector" and spec.source.documented:
        records = ctx.store(spec.source).fetch("public", ctx.store(spec.source).list_ids("public").ids)
        by_owner = {o: sorted(r.id for r in records if r.metadata["creator_id"] == o) for o in ("a.1", "a.10")}
        return by_owner["a.1"], by_owner["a.10"]
    shared_namespace(ctx, spec)
    return THEIRS, OTHERS


def copy_job(ctx: WorkerContext, spec: JobSpec, ids: list[str]) -> int:
    """A copy job of ``public`` into ``public_copy`` whose one batch holds ``ids``; returns the batch id."""
    return a_copy_job(ctx, spec, "public", "public_copy", ids)


@pytest.mark.parametrize("path", PATHS)
def test_each_write_path_offered_an_erased_creators_records_writes_none_of_them_and_verifies(
    ctx: WorkerContext, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    spec = path_spec(path, request, monkeypatch)
    theirs, others = owners(ctx, spec)
    batch_id = copy_job(ctx, spec, theirs + others)
    erase_job = erased(ctx, Subject("a.1"))

    written = copying.copy_batch(ctx, batch_id)

    target = ctx.store(spec.target)
    settle(spec.target)  # a document index's fetch lags the copy's writes
    assert written == 3
    assert target.fetch("public_copy", theirs) == []
    assert sorted(r.id for r in target.fetch("public_copy", others)) == others
    run_id = jobs_batches.run_of_batch(ctx.db, batch_id)
    job_id = jobs_and_runs.get_run(ctx.db, run_id).job_id
    [event] = [e["detail"] for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "records_held_back"]
    assert event["ids"] == theirs and event["records"] == 3 and event["erasures"] == [erase_job]
    assert "held back 3 record(s) of creator 'a.1'" in event["reason"] and "erase --lift" in event["reason"]
    [held] = held_back_events(ctx, erase_job)
    assert held["ids"] == theirs and held["job"] == job_id

    report = verifying.verify_run(ctx, run_id)

    assert report["passed"], report
    assert report["held_back_count"] == 3 and report["held_back_ids"] == theirs
    assert "3 of erased creators held back, not written" in report["summary"]


def pinecone_spec(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> JobSpec:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-paths-test")
    source, target = ({"kind": "pinecone", "host": sandbox.host(n), "api_key_env": KEY_ENV} for n in ("src", "dst"))
    return make_spec((source, target), enrich={"creator_fields": False, "migrated_from": True})


def copy_sent_batches(ctx: WorkerContext) -> None:
    """Copy the batches a sync sent to the copy queue, as the copy workers would."""
    for kind, batch, _ in list(ctx.dispatcher.sent):  # type: ignore[attr-defined]
        if kind == "copy":
            copying.copy_batch(ctx, batch)
    ctx.dispatcher.sent.clear()  # type: ignore[attr-defined]


def test_a_sync_after_an_erasure_copies_the_rest_and_holds_theirs_back(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy made before a.1's erasure; the source then gains vectors of a.1 and of a.10, and `sync` copies what
    changed: a.10's new vectors, none of a.1's, and the run verifies."""
    spec = pinecone_spec(sandbox, monkeypatch)
    ctx.store(spec.source).upsert("public", make_records(2, prefix="k", creator_id="a.10"))
    settle(spec.source)  # the application's, written long before
    batch_id = a_copy_job(ctx, spec, "public", "public_copy", ["k-000", "k-001"])
    assert copying.copy_batch(ctx, batch_id) == 2
    run_id = jobs_batches.run_of_batch(ctx.db, batch_id)
    assert verifying.verify_run(ctx, run_id)["passed"]
    erase_job = erased(ctx, Subject("a.1"))
    shared_namespace(ctx, spec)  # a.1's m-000…m-002 and a.10's o-000…o-002, new in the source

    result = syncing.sync_run(ctx, run_id, actor="tester")
    copy_sent_batches(ctx)

    assert result["action"] == "synced" and result["new"] == 6, result
    stored = ctx.store(spec.target)
    assert stored.fetch("public_copy", THEIRS) == []
    assert sorted(r.id for r in stored.fetch("public_copy", OTHERS)) == OTHERS
    assert sum(e["records"] for e in held_back_events(ctx, erase_job)) == 3
    report = verifying.verify_run(ctx, run_id)
    assert report["passed"] and report["held_back_ids"] == THEIRS, report


def test_a_lifted_erasure_lets_the_next_sync_write_their_records(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = pinecone_spec(sandbox, monkeypatch)
    shared_namespace(ctx, spec)
    batch_id = a_copy_job(ctx, spec, "public", "public_copy", SHARED_IDS)
    erased(ctx, Subject("a.1"))
    assert copying.copy_batch(ctx, batch_id) == 3
    run_id = jobs_batches.run_of_batch(ctx.db, batch_id)
    assert verifying.verify_run(ctx, run_id)["passed"]

    jobs_erasure_ledger.lift_erasure(ctx.db, "a.1", None, "a test creator", actor="dpo")
    report = verifying.verify_run(ctx, run_id)

    assert not report["passed"] and report["missing_count"] == 3, report  # expected again: `sync` brings them
    ctx.dispatcher.sent.clear()  # type: ignore[attr-defined]
    assert syncing.sync_run(ctx, run_id, actor="tester")["to_copy"] == 3
    copy_sent_batches(ctx)
    assert sorted(r.id for r in ctx.store(spec.target).fetch("public_copy", THEIRS)) == THEIRS
    assert verifying.verify_run(ctx, run_id)["passed"]


def test_application_rows_of_another_creator_are_copied_whole(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held back by the ledger or not, what is written is the row as it was: every column of a.10's rows."""
    monkeypatch.setenv(URL_ENV, database_url)
    application_public(pg, "embeddings_public", rows=True)
    documented = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
    spec = make_spec(({**documented, "table": "embeddings"}, {**documented, "table": "copies"}))
    source = ctx.store(spec.source)
    records: list[Record] = source.fetch("public", source.list_ids("public").ids)
    theirs = sorted(r.id for r in records if r.metadata["creator_id"] == "a.1")
    erased(ctx, Subject("a.1"))

    copying.copy_batch(ctx, copy_job(ctx, spec, sorted(r.id for r in records)))

    columns = "chunk_id, document_id, collection_name, text, strategy, content_type, path, domain_tags, created_at"
    with pg.connect() as conn:
        copied = conn.execute(sa.text(f"SELECT {columns} FROM copies_public_copy ORDER BY chunk_id")).all()
        original = conn.execute(
            sa.text(f"SELECT {columns} FROM embeddings_public WHERE NOT chunk_id = ANY(:ids) ORDER BY chunk_id"),
            {"ids": theirs},
        ).all()
    assert copied == original and len(copied) == 3


@pytest.mark.parametrize("path", PATHS)
def test_cleanup_deletes_what_was_copied_and_keeps_the_held_back_records_without_refusing(
    ctx: WorkerContext, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The run verified without a.1's records; its cleanup proves and deletes a.10's originals and leaves a.1's in
    the source (no copy to prove them by: their erasure deletes them, not a cleanup), the run cleaned, not refused."""
    spec = path_spec(path, request, monkeypatch)
    theirs, others = owners(ctx, spec)
    batch_id = copy_job(ctx, spec, theirs + others)
    erased(ctx, Subject("a.1"))
    copying.copy_batch(ctx, batch_id)
    run_id = jobs_batches.run_of_batch(ctx.db, batch_id)
    assert verifying.verify_run(ctx, run_id)["passed"]

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "deleted" and result["count"] == 3, result
    run = jobs_and_runs.get_run(ctx.db, run_id)
    assert run.state == "cleaned"
    source = ctx.store(spec.source)
    if spec.source.kind == "pgvector" and spec.source.documented:
        # The application's table is renamed away whole (a move): theirs are in the backup, which erasures search.
        backup = str((run.cleanup or {})["method"]).removeprefix("renamed_to:")
        assert retired.owned_ids(source, backup, Subject("a.1").owns_record) == theirs  # type: ignore[arg-type]
    else:
        assert sorted(r.id for r in source.fetch("public", theirs + others)) == theirs

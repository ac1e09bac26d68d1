"""Seed 004's pgvector tables in the fleet, on real Postgres + pgvector, Redis, Celery workers and the Pinecone SDK
against the local data plane: a move between tables of one database runs its batches inside Postgres (nothing
through the worker), builds the target's indexes at verification and renames the source to a backup at cleanup;
such a move survives kill -9 of its worker; and a round trip legacy table → per-namespace tables → Pinecone → back
gives identical records."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import BatchState, RunState
from nsmigrate.orchestrator.pgvector_layout import VectorIndex, create_table_sql
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.cleaning import cleanup_run
from nsmigrate.workers.stores import open_retrying_store, open_store
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import seed_chunks
from nsmigrate_sandbox.stack import Stack
from tests.chaos import FAST_RECOVERY, start_standby, take_over
from tests.fleet_jobs import batches, start_job
from tests.polling import wait_until

URL_ENV = "NSMIGRATE_PGVECTOR_URL"
DIM = 16
INDEX, BACK_INDEX = "roundtrip", "roundtrip-back"
DOCUMENTED = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
KEEP_AS_IS = {"creator_fields": False, "migrated_from": False}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(INDEX, dimension=DIM), IndexSpec(BACK_INDEX, dimension=DIM)]


@pytest.fixture
def pg_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv(URL_ENV, stack.database_url)  # the workers get the same (Stack.env)
    return stack


def store(prefix: str = "embeddings") -> DocumentedPgvectorStore:
    opened = open_store(PgvectorStoreSpec.model_validate({**DOCUMENTED, "table": prefix}))
    assert isinstance(opened, DocumentedPgvectorStore)
    return opened


def chunks(n: int, seed: int = 0, tag: str = "") -> list[Record]:
    return [Record(id=f"{tag}{i}", values=v, metadata=m) for i, v, m in seed_chunks(n, DIM, seed=seed)]


def wait_verified(db: jobs_database.Database, job_id: int, timeout_s: float = 120) -> JobStatus:
    def probe() -> JobStatus | None:
        status = jobs_status.job_status(db, job_id)
        return status if status.runs and all(r.state == RunState.VERIFIED for r in status.runs) else None

    def explain() -> object:
        return [(r.source_namespace, r.state, r.copied, r.last_error) for r in jobs_status.job_status(db, job_id).runs]

    found = wait_until(probe, what=f"job {job_id} verified", timeout_s=timeout_s, explain=explain)
    assert found is not None
    return found


def move_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "pg-move",
        "source": DOCUMENTED,
        "target": DOCUMENTED,
        "namespaces": {"include": ["alpha"]},
        "routing": {"mode": "explicit", "map": {"alpha": "beta"}},
        "enrich": {"creator_fields": False, "migrated_from": True},
        "cleanup": {"mode": "manual"},
        **overrides,
    }


def assert_same_records(expected: list[Record], got: list[Record], extra: dict[str, Any] | None = None) -> None:
    by_id = {r.id: r for r in got}
    assert sorted(by_id) == sorted(r.id for r in expected)
    for record in expected:
        copy = by_id[record.id]
        assert copy.metadata == {**record.metadata, **(extra or {})}, record.id
        np.testing.assert_allclose(
            np.asarray(copy.values, dtype=np.float32), np.asarray(record.values, dtype=np.float32), atol=1e-6
        )


def test_a_move_in_one_database_runs_inside_postgres_indexes_at_verify_and_keeps_a_backup(
    pg_stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    source = chunks(900)
    store().upsert("alpha", source)
    pg_stack.start_worker("list,copy,verify,cleanup", 4, pool="threads", name="fleet")
    db, _, job_id = start_job(pg_stack, move_spec(batch_size=100))

    status = wait_verified(db, job_id)

    assert status.totals.copied == 900
    done = batches(db, job_id)
    # Cut evenly for its 2 batches at once (``table_batches``): 10 of 90, not 9 of 100.
    assert {b.state for b in done} == {BatchState.DONE} and sorted(len(b.ids) for b in done) == [90] * 10
    assert all(b.bytes == 0 for b in done)  # not a byte of vectors went through the worker
    s = store()
    assert_same_records(
        source, s.fetch("beta", [r.id for r in source]), {"migrated_from": "pgvector:embeddings_*/alpha"}
    )
    with s.engine().connect() as conn:  # built after the load, at verification
        found = pgnamespaces.stats(conn, "embeddings", "beta")
    assert found.vector_index == "ivfflat (lists = 100)" and found.btree_columns == [
        "collection_name",
        "document_id",
        "strategy",
    ]

    [run] = jobs_and_runs.runs_of(db, job_id)
    ctx = worker_context(pg_stack.database_url, pg_stack.redis_url)
    result = cleanup_run(ctx, run.id, actor="test")
    assert result["action"] == "deleted", result
    with s.engine().connect() as conn:
        backups = [t for t in conn.execute(sa.text("SELECT tablename FROM pg_tables")).scalars() if "backup" in t]
        assert len(backups) == 1 and backups[0].endswith("_alpha")
        assert conn.execute(sa.text(f'SELECT count(*) FROM "{backups[0]}"')).scalar() == 900
    assert s.namespaces() == {"beta": 900}
    detail = next(e["detail"] for e in jobs_status.events_of(db, job_id) if e["action"] == "source_deleted")
    assert detail["method"] == f"renamed_to:{backups[0]}"


def test_verification_inside_postgres_finds_every_difference(pg_stack: Stack) -> None:
    source = chunks(200)
    store().upsert("alpha", source)
    pg_stack.start_worker("list,copy,verify", 4, pool="threads", name="fleet")
    db, dispatcher, job_id = start_job(pg_stack, move_spec(batch_size=50))
    wait_verified(db, job_id)
    [verified] = jobs_and_runs.runs_of(db, job_id)
    assert verified.verification is not None and verified.verification["content_checked"] == 200
    ids = sorted(r.id for r in source)
    with store().engine().begin() as conn:  # what a later writer (or a broken copy) could do to the target
        conn.execute(sa.text("UPDATE embeddings_beta SET text = 'changed' WHERE chunk_id = :i"), {"i": ids[0]})
        conn.execute(
            sa.text("UPDATE embeddings_beta SET embedding = embedding + embedding WHERE chunk_id = :i"), {"i": ids[1]}
        )
        conn.execute(sa.text("UPDATE embeddings_beta SET metadata = '{}' WHERE chunk_id = :i"), {"i": ids[2]})
        conn.execute(sa.text("UPDATE embeddings_beta SET depth_level = NULL WHERE chunk_id = :i"), {"i": ids[3]})
        conn.execute(sa.text("DELETE FROM embeddings_beta WHERE chunk_id = :i"), {"i": ids[4]})

    launch.request_verification(db, dispatcher, job_id)

    def failed() -> dict[str, Any] | None:
        [run] = jobs_and_runs.runs_of(db, job_id)
        return run.verification if run.state == RunState.VERIFY_FAILED else None

    report = wait_until(failed, what="the tampered target failing verification", timeout_s=60)
    assert report is not None
    assert report["missing_ids"] == [ids[4]]
    reasons = {m["id"]: m["reason"] for m in report["content_mismatches"]}
    assert reasons == {
        ids[0]: "text differs",
        ids[1]: "embedding differs",
        ids[2]: "metadata differs",
        ids[3]: "depth_level differs",
    }


def test_a_server_side_move_resumes_after_kill_9_of_its_worker(pg_stack: Stack) -> None:
    source = chunks(1500)
    s = store()
    s.upsert("alpha", source)
    with s.engine().begin() as conn:  # slow every batch's INSERT down, so the worker dies mid-move
        pgnamespaces.create_namespace(conn, "embeddings", "beta", DIM)
        conn.execute(
            sa.text(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$"
            )
        )
        conn.execute(
            sa.text("CREATE TRIGGER slow AFTER INSERT ON embeddings_beta FOR EACH STATEMENT EXECUTE FUNCTION slow()")
        )
    doomed = pg_stack.start_worker("list,copy,verify", 3, name="doomed", **FAST_RECOVERY)
    successor = start_standby(pg_stack, "successor", 3, pool="prefork", **FAST_RECOVERY)
    db, _, job_id = start_job(pg_stack, move_spec(batch_size=20, max_batches_in_flight=10))

    def mid_move() -> bool:
        states = Counter(b.state for b in batches(db, job_id))
        return 5 <= states[BatchState.DONE] <= 30 and states[BatchState.RUNNING] > 0

    wait_until(mid_move, what="batches running mid-move", timeout_s=60, interval_s=0.05)
    pg_stack.kill(doomed, signal.SIGKILL)
    orphaned = {b.id for b in batches(db, job_id) if b.state == BatchState.RUNNING}
    assert orphaned
    with s.engine().begin() as conn:  # the kill landed mid-move: the rest need not be slow
        conn.execute(sa.text("DROP TRIGGER slow ON embeddings_beta"))
    take_over(pg_stack, successor)

    status = wait_verified(db, job_id, timeout_s=180)

    assert status.totals.copied == 1500 and status.totals.failed == 0
    every = batches(db, job_id)
    assert Counter(i for b in every for i in b.ids) == Counter(r.id for r in source)  # each id batched once
    assert all(b.attempts >= 2 for b in every if b.id in orphaned)  # redelivered and run again
    assert_same_records(
        source, store().fetch("beta", [r.id for r in source]), {"migrated_from": "pgvector:embeddings_*/alpha"}
    )
    assert store().count("alpha") == 1500  # the source is untouched until cleanup


def test_round_trip_legacy_table_to_namespace_tables_to_pinecone_and_back_is_identical(pg_stack: Stack) -> None:
    legacy = chunks(300)
    docs = chunks(120, seed=5, tag="docs-")
    with store().engine().begin() as conn:
        conn.execute(sa.text(f"{create_table_sql('embeddings', DIM)}"))
        pgnamespaces.upsert_records(conn, "embeddings", legacy)
    moved = table_copies.migrate_legacy(store().engine(), "embeddings", vector_index=VectorIndex())
    assert moved.verified and moved.backup_table and moved.target_table == "embeddings_default"
    store().upsert("docs", docs)
    pg_stack.start_worker("list,copy,verify", 4, pool="threads", name="fleet")

    index = {"kind": "pinecone", "host": pg_stack.pinecone.host(INDEX)}
    db, _, out_job = start_job(
        pg_stack, {"name": "to-pinecone", "source": DOCUMENTED, "target": index, "enrich": KEEP_AS_IS}
    )
    wait_verified(db, out_job)
    assert pg_stack.pinecone.count(INDEX, "") == 300 and pg_stack.pinecone.count(INDEX, "docs") == 120
    back = {**DOCUMENTED, "table": "roundtrip"}
    db, _, in_job = start_job(
        pg_stack, {"name": "from-pinecone", "source": index, "target": back, "enrich": KEEP_AS_IS}
    )
    wait_verified(db, in_job)

    returned = store("roundtrip")
    assert returned.namespaces() == {"": 300, "docs": 120}
    assert_same_records(legacy, returned.fetch("", [r.id for r in legacy]))
    assert_same_records(docs, returned.fetch("docs", [r.id for r in docs]))


def test_round_trip_pinecone_to_namespace_tables_and_back_is_identical(pg_stack: Stack) -> None:
    records = {"": chunks(150, seed=3), "docs": chunks(80, seed=4, tag="d-")}
    for ns, rows in records.items():
        pg_stack.pinecone.load(INDEX, ns, [(r.id, r.values, r.metadata) for r in rows])
    pg_stack.start_worker("list,copy,verify", 4, pool="threads", name="fleet")
    index = {"kind": "pinecone", "host": pg_stack.pinecone.host(INDEX)}
    middle = {**DOCUMENTED, "table": "middle"}
    back = {"kind": "pinecone", "host": pg_stack.pinecone.host(BACK_INDEX)}

    db, _, in_job = start_job(pg_stack, {"name": "in", "source": index, "target": middle, "enrich": KEEP_AS_IS})
    wait_verified(db, in_job)
    assert store("middle").namespaces() == {"": 150, "docs": 80}
    db, _, out_job = start_job(pg_stack, {"name": "out", "source": middle, "target": back, "enrich": KEEP_AS_IS})
    wait_verified(db, out_job)

    target = open_store(parse_spec({"name": "x", "source": back, "target": back}).source)
    for ns, rows in records.items():
        assert pg_stack.pinecone.count(BACK_INDEX, ns) == len(rows)
        assert_same_records(rows, target.fetch(ns, [r.id for r in rows]))


def test_a_target_name_the_rules_refuse_is_refused_at_plan_time(pg_stack: Stack) -> None:
    store().upsert("alpha", chunks(3))
    spec = parse_spec(move_spec(routing={"mode": "explicit", "map": {"alpha": "Beta-2"}}))
    with pytest.raises(PlanError, match="lowercase letters, digits and '_'"):
        launch.prepare(spec, open_retrying_store, pg_stack.workdir)
    assert store().namespaces() == {"alpha": 3}

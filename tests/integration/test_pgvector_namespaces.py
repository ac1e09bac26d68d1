"""Seed 004's pgvector layout on real PostgreSQL + pgvector: every ``nsmigrate pgvector`` command, the name rules and
refusals, the documented schema and its indexes, copy/move/legacy verified with their backups, and the documented
store (namespaces found from the tables, records mapped to columns, unmappable records refused by id)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.connections.database_urls import KeptEngines
from nsmigrate.orchestrator.errors import PlanError, RetryableError, StoreError
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers.stores import open_store
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate_sandbox.seed import seed_chunks

URL_ENV = "NSMIGRATE_PGVECTOR_URL"
DIM = 16


def store() -> DocumentedPgvectorStore:
    spec = PgvectorStoreSpec.model_validate({"schema": "documented", "database_url_env": URL_ENV})
    opened = open_store(spec)
    assert isinstance(opened, DocumentedPgvectorStore)
    return opened


def records(n: int, seed: int = 0) -> list[Record]:
    return [Record(id=i, values=v, metadata=m) for i, v, m in seed_chunks(n, DIM, seed=seed)]


def load_legacy(engine: sa.Engine, n: int) -> list[Record]:
    rows = records(n)
    with engine.begin() as conn:
        conn.execute(sa.text(pgvector_layout.create_table_sql("embeddings", DIM)))
        pgnamespaces.upsert_records(conn, "embeddings", rows)
    return rows


def load(namespace: str, n: int, seed: int = 0) -> list[Record]:
    rows = records(n, seed)
    s = store()
    s.upsert(namespace, rows)
    s.close()
    return rows


def nsmigrate(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())


# --- name rules -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("docs_2024", True),
        ("", True),
        ("a" * 50, True),
        ("a" * 51, False),
        ("Docs", False),
        ("docs-2024", False),
        ("creator_a.1_twin_x", False),
        ("backup", False),
        ("temp", False),
        ("tmp", False),
        ("system", False),
        ("admin", False),
        ("backup_20240101", False),
        ('x"; DROP TABLE embeddings_a; --', False),
    ],
)
def test_name_rules(name: str, ok: bool) -> None:
    assert (pgvector_layout.namespace_problem(name) is None) is ok


def test_an_injection_attempt_changes_nothing_and_says_why(pg: sa.Engine) -> None:
    load("alpha", 5)
    before = tables(pg)

    for args in (
        ["create", 'x"; DROP TABLE embeddings_alpha; --', "--dimension", "8"],
        ["drop", "alpha; DROP TABLE embeddings_alpha", "--yes"],
        ["copy", "alpha", "beta'); DROP TABLE embeddings_alpha; --"],
        ["stats", "ALPHA"],
    ):
        result = nsmigrate("pgvector", *args)
        assert result.exit_code == 2, result.output
        assert "may hold only lowercase letters, digits and '_'" in result.output

    assert tables(pg) == before
    assert store().count("alpha") == 5


def test_a_bad_prefix_or_url_env_is_refused(pg: sa.Engine) -> None:
    result = nsmigrate("pgvector", "list", "--prefix", 'e"x')
    assert result.exit_code == 2 and "--prefix" in result.output and "lower-case SQL identifier" in result.output

    result = nsmigrate("pgvector", "list", "--url-env", "postgresql://user:hunter2@host/db")
    assert result.exit_code == 2 and "NAME of an environment variable" in result.output
    assert "hunter2" not in result.output


# --- create / list / stats / drop ---------------------------------------------------------------------------------


def test_create_makes_the_documented_schema(pg: sa.Engine) -> None:
    result = nsmigrate("pgvector", "create", "docs", "--dimension", str(DIM))
    assert result.exit_code == 0, result.output
    assert "created table embeddings_docs" in result.output

    with pg.connect() as conn:
        columns = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = 'embeddings_docs'"
                )
            ).all()
        )
        unique = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'embeddings_docs' AND indexdef LIKE '%UNIQUE%'")
        ).scalars()
        assert any("(chunk_id)" in d for d in unique)
        assert pgnamespaces.dimension_of(conn, "embeddings_docs") == DIM
    assert columns["chunk_id"] == "varchar" and columns["embedding"] == "vector" and columns["metadata"] == "jsonb"
    for column in pgvector_layout.COLUMNS:
        assert column.name in columns
    assert columns["domain_tags"] == "_text" and columns["depth_level"] == "int4" and columns["is_leaf"] == "bool"
    assert columns["confidence"] == "float8" and columns["created_at"] == "timestamp"

    again = nsmigrate("pgvector", "create", "docs", "--dimension", str(DIM))
    assert again.exit_code == 0 and "already there" in again.output
    other = nsmigrate("pgvector", "create", "docs", "--dimension", "8")
    assert other.exit_code == 2 and "exists with dimension 16" in other.output


def test_create_dry_run_writes_nothing(pg: sa.Engine) -> None:
    result = nsmigrate("pgvector", "create", "docs", "--dimension", str(DIM), "--dry-run")
    assert result.exit_code == 0 and "would create table embeddings_docs" in result.output
    assert "embeddings_docs" not in tables(pg)


def test_list_finds_namespaces_from_the_tables_legacy_as_default(pg: sa.Engine) -> None:
    load_legacy(pg, 9)
    load("alpha", 4)
    with pg.begin() as conn:  # neither is a namespace: a backup, and a table that is not of the layout
        conn.execute(sa.text(pgvector_layout.create_table_sql("embeddings_backup_20240101", DIM)))
        conn.execute(sa.text("CREATE TABLE embeddings_notes (id int)"))

    result = nsmigrate("pgvector", "list", "--json", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "__default__": {"table": "embeddings", "rows": 9, "indexes": ["embeddings_chunk_id_key", "embeddings_pkey"]},
        "alpha": {
            "table": "embeddings_alpha",
            "rows": 4,
            "indexes": ["embeddings_alpha_chunk_id_key", "embeddings_alpha_pkey"],
        },
    }
    assert store().namespaces() == {"": 9, "alpha": 4}


def test_stats_shows_rows_collections_size_and_indexes(pg: sa.Engine) -> None:
    load("alpha", 30)
    result = nsmigrate("pgvector", "stats", "alpha", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["rows"] == 30 and found["table"] == "embeddings_alpha" and found["dimension"] == DIM
    assert sum(found["collections"].values()) == 30 and len(found["collections"]) == 3
    assert found["size_bytes"] > 0
    assert found["vector_index"] is None and found["btree_columns"] == []  # nothing before the load is done

    with pg.begin() as conn:
        built = pgnamespaces.build_indexes(conn, "embeddings_alpha", pgvector_layout.VectorIndex("hnsw"))
    assert built["built"] == [
        f"embeddings_alpha_{s}" for s in ("vector_idx", "collection_idx", "document_idx", "strategy_idx")
    ]
    found = json.loads(nsmigrate("pgvector", "stats", "alpha", "--json").output)
    assert found["vector_index"] == "hnsw" and found["btree_columns"] == ["collection_name", "document_id", "strategy"]

    missing = nsmigrate("pgvector", "stats", "nothing")
    assert missing.exit_code == 2 and "has no table" in missing.output


def test_drop_needs_yes(pg: sa.Engine) -> None:
    load("alpha", 3)
    refused = nsmigrate("pgvector", "drop", "alpha")
    assert refused.exit_code == 2 and "--yes" in refused.output
    dry = nsmigrate("pgvector", "drop", "alpha", "--dry-run")
    assert dry.exit_code == 0 and "would drop table embeddings_alpha (3 rows)" in dry.output
    assert "embeddings_alpha" in tables(pg)

    done = nsmigrate("pgvector", "drop", "alpha", "--yes")
    assert done.exit_code == 0, done.output
    assert "embeddings_alpha" not in tables(pg)


# --- copy / move / legacy ---------------------------------------------------------------------------------------


def test_copy_verifies_and_builds_the_indexes(pg: sa.Engine) -> None:
    source = load("alpha", 1200)
    result = nsmigrate("pgvector", "copy", "alpha", "beta", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verified"] and report["source_rows"] == report["target_rows"] == 1200 and report["copied"] == 1200
    assert report["indexes"]["built"] == [
        f"embeddings_beta_{s}" for s in ("vector_idx", "collection_idx", "document_idx", "strategy_idx")
    ]
    assert report["indexes"]["vector_index"] == "ivfflat (lists = 100)"

    s = store()
    assert s.namespaces() == {"alpha": 1200, "beta": 1200}
    copied = {r.id: r for r in s.fetch("beta", [r.id for r in source])}
    for record in source:
        assert copied[record.id].metadata == record.metadata
        assert list(copied[record.id].values) == pytest.approx(record.values, abs=1e-6)
    found = json.loads(nsmigrate("pgvector", "stats", "beta", "--json").output)
    assert found["vector_index"] == "ivfflat (lists = 100)"


def test_copy_resumes_from_where_it_stopped(pg: sa.Engine) -> None:
    load("alpha", 50)
    with pg.begin() as conn:  # an earlier copy that stopped after its first chunk of 20
        pgnamespaces.create_namespace(conn, "embeddings", "beta", DIM)
        conn.execute(sa.text("INSERT INTO embeddings_beta SELECT * FROM embeddings_alpha ORDER BY chunk_id LIMIT 20"))

    result = nsmigrate("pgvector", "copy", "alpha", "beta", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["verified"] and report["copied"] == 30


def test_a_copy_takes_a_row_the_application_wrote_behind_its_cursor(pg: sa.Engine) -> None:
    # The copy resumes after the target's largest chunk_id: a row written below it was never read, so every later
    # run failed its comparison and nothing could complete it. (A row changed after its copy is reported instead:
    # which side changed is unknown, and the target's may be the application's newer write.)
    rows = load("alpha", 30)
    assert json.loads(nsmigrate("pgvector", "copy", "alpha", "beta", "--json").output)["verified"]
    early = Record(id="0000-early", values=rows[2].values, metadata=rows[2].metadata)
    s = store()
    s.upsert("alpha", [early])
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT :e < max(chunk_id) FROM embeddings_beta"), {"e": early.id}).scalar()

    result = nsmigrate("pgvector", "copy", "alpha", "beta", "--json")

    report = json.loads(result.output)
    assert result.exit_code == 0 and report["verified"] and report["copied"] == 1, result.output
    assert s.fetch("beta", [early.id]) == s.fetch("alpha", [early.id])
    with pg.connect() as conn:  # the application's next row takes a row number after every copied one
        next_id = "SELECT nextval(pg_get_serial_sequence('embeddings_beta', 'id')) > max(id) FROM embeddings_beta"
        assert conn.execute(sa.text(next_id)).scalar()


def test_copy_commits_as_many_rows_a_transaction_as_the_setting_says(
    pg: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load("alpha", 50)
    monkeypatch.setenv("NSMIGRATE_PGVECTOR_COPY_CHUNK_ROWS", "20")
    chunks: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.startswith("WITH chunk AS"):
            chunks.append(parameters["n"])

    sa.event.listen(sa.Engine, "before_cursor_execute", seen)
    try:
        result = nsmigrate("pgvector", "copy", "alpha", "beta", "--json")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", seen)

    assert result.exit_code == 0 and json.loads(result.output)["copied"] == 50, result.output
    assert chunks == [20, 20, 20, 20]  # 20, 20, 10 rows, then one that finds none left


def test_copy_keeps_a_row_the_application_wrote_into_the_target_meanwhile(pg: sa.Engine) -> None:
    # `legacy` makes the default namespace's table first, and the application may write it while rows are copied
    # in: its write is the newer one. The copy replaced it with the older source row, and the comparison before the
    # rename then found both equal: the application's write was nowhere.
    rows = load("alpha", 50)
    newer = Record(id=rows[30].id, values=rows[30].values, metadata={**rows[30].metadata, "edited": "by the app"})
    s = store()
    s.upsert("beta", [newer])

    result = nsmigrate("pgvector", "copy", "alpha", "beta", "--json")

    assert result.exit_code == 1 and json.loads(result.stdout)["differing"] == {newer.id: "metadata differs"}
    [kept] = s.fetch("beta", [newer.id])
    assert kept.metadata["edited"] == "by the app" and s.count("beta") == 50
    s.close()


def test_copy_into_a_table_holding_other_rows_is_refused(pg: sa.Engine) -> None:
    load("alpha", 5)
    s = store()
    s.upsert("beta", [Record(id=f"other-{r.id}", values=r.values, metadata=r.metadata) for r in records(3)])
    result = nsmigrate("pgvector", "copy", "alpha", "beta")
    assert result.exit_code == 2 and "rows that are not in embeddings_alpha" in result.output
    assert store().count("beta") == 3


def test_move_renames_the_source_to_a_backup(pg: sa.Engine) -> None:
    load("alpha", 40)
    refused = nsmigrate("pgvector", "move", "alpha", "beta")
    assert refused.exit_code == 2 and "--yes" in refused.output
    dry = nsmigrate("pgvector", "move", "alpha", "beta", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.output)["source_rows"] == 40
    assert "embeddings_beta" not in tables(pg)

    result = nsmigrate("pgvector", "move", "alpha", "beta", "--yes", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["verified"], result.output
    backup = report["backup_table"]
    assert backup.startswith("embeddings_backup_") and backup.endswith("_alpha")
    after = tables(pg)
    assert "embeddings_alpha" not in after and backup in after and "embeddings_beta" in after
    with pg.connect() as conn:
        assert conn.execute(sa.text(f'SELECT count(*) FROM "{backup}"')).scalar() == 40
    assert store().namespaces() == {"beta": 40}  # the backup is not a namespace


def test_legacy_goes_to_embeddings_default_with_a_backup(pg: sa.Engine) -> None:
    rows = load_legacy(pg, 120)
    dry = nsmigrate("pgvector", "legacy", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.output)["source_rows"] == 120
    assert "embeddings_default" not in tables(pg)

    result = nsmigrate("pgvector", "legacy", "--yes", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["verified"], result.output
    assert report["target_table"] == "embeddings_default" and report["target_rows"] == 120
    assert report["backup_table"].startswith("embeddings_backup_")
    after = tables(pg)
    assert "embeddings" not in after and report["backup_table"] in after
    s = store()
    assert s.namespaces() == {"": 120}
    assert s.fetch("", [rows[0].id])[0].metadata == rows[0].metadata

    again = nsmigrate("pgvector", "legacy", "--yes")
    assert again.exit_code == 2 and "no legacy table" in again.output


@pytest.mark.parametrize("writer", ["copy", "create", "store"])
def test_no_default_table_is_made_that_would_hide_the_legacy_one(pg: sa.Engine, writer: str) -> None:
    # The legacy table is the default namespace until `pgvector legacy` moves it: an embeddings_default made beside
    # it would be read instead, and every legacy row would vanish from the namespace (`legacy` refused for good).
    load_legacy(pg, 3)
    load("docs", 2)
    if writer == "store":
        with pytest.raises(StoreError, match="the default namespace is the legacy table embeddings"):
            store().upsert("", records(1, seed=9))
    else:
        refused = nsmigrate(
            "pgvector",
            *(["copy", "docs", "default"] if writer == "copy" else ["create", "default", "--dimension", str(DIM)]),
        )
        assert refused.exit_code != 0 and "the default namespace is the legacy table embeddings" in refused.output

    assert "embeddings_default" not in tables(pg)
    assert store().namespaces() == {"": 3, "docs": 2}
    moved = nsmigrate("pgvector", "legacy", "--yes", "--json")
    assert moved.exit_code == 0 and json.loads(moved.output)["target_rows"] == 3, moved.output


# --- the documented store -----------------------------------------------------------------------------------------


def test_store_maps_metadata_to_typed_columns_and_the_rest_to_jsonb(pg: sa.Engine) -> None:
    record = Record(
        id="c-1",
        values=[0.5] * DIM,
        metadata={
            "document_id": "d-1",
            "collection_name": "books",
            "text": "hello",
            "strategy": "semantic",
            "content_type": "text/plain",
            "depth_level": 2.0,  # Pinecone's numbers are floats
            "confidence": 1,
            "is_leaf": True,
            "domain_tags": ["a", "b"],
            "twin_id": "t-1",
        },
    )
    s = store()
    s.upsert("", [record])
    with pg.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM embeddings_default")).mappings().one()
    assert row["chunk_id"] == "c-1" and row["depth_level"] == 2 and row["confidence"] == 1.0 and row["is_leaf"] is True
    assert row["domain_tags"] == ["a", "b"] and row["metadata"] == {"twin_id": "t-1"} and row["path"] is None
    # Nothing is filled in: a column the record does not mention is NULL, not the layout's default.
    assert row["semantic_density"] is None and row["contains_arrays"] is None and row["created_at"] is None
    [back] = s.fetch("", ["c-1"])
    assert back.metadata == {**record.metadata, "depth_level": 2, "confidence": 1.0}
    assert s.list_ids("").ids == ["c-1"] and s.query("", [0.5] * DIM, 1) == ["c-1"]


_REQUIRED = {"document_id": "d", "collection_name": "c", "text": "t", "strategy": "s", "content_type": "c/t"}


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"document_id": "d", "collection_name": "c", "strategy": "s", "content_type": "c/t"}, "has no text"),
        ({**_REQUIRED, "strategy": None}, "has no strategy"),
        ({"text": "t", "collection_name": "c", "strategy": "s", "content_type": "c/t"}, "has no document_id"),
        ({**_REQUIRED, "depth_level": 2.5}, "'depth_level' = 2.5 is not integer"),
        ({**_REQUIRED, "is_leaf": "yes"}, "is not boolean"),
        ({**_REQUIRED, "domain_tags": [1]}, r"is not text\[\]"),
        ({**_REQUIRED, "strategy": "s" * 51}, r"holds at most 50"),
    ],
)
def test_a_record_that_does_not_map_is_refused_by_id(pg: sa.Engine, metadata: dict[str, Any], reason: str) -> None:
    good = records(2)
    with pytest.raises(PlanError, match=reason) as raised:
        store().upsert("alpha", [*good, Record(id="bad-1", values=[0.1] * DIM, metadata=metadata)])
    assert "bad-1" in str(raised.value)
    assert store().count("alpha") == 0  # nothing of that upsert was written


def test_store_refuses_a_namespace_the_rules_refuse(pg: sa.Engine) -> None:
    with pytest.raises(PlanError, match="may hold only lowercase"):
        store().upsert("Creator-1", records(1))
    assert tables(pg) == set()


def test_a_table_renamed_by_another_process_is_looked_up_again(pg: sa.Engine) -> None:
    load("alpha", 3)
    seen, other = store(), store()
    assert seen.count("alpha") == 3  # remembered from now on
    backup = other.retire_namespace("alpha")
    assert backup is not None and backup.startswith("embeddings_backup_")

    with pytest.raises(RetryableError, match="does not exist"):  # the retry (GuardedStore) looks again
        seen.count("alpha")
    assert seen.count("alpha") == 0 and seen.namespaces() == {}


def test_a_table_another_thread_is_still_creating_is_waited_for_not_read_empty(
    pg: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two copy threads of one worker share a store: the second must not take the table as existing while the first's
    # transaction that creates it is still open (it would see no columns and fail its batch).
    s = store()
    outcome: dict[str, Any] = {}
    write = pgnamespaces.upsert_records

    def second_writer() -> None:
        try:
            s.upsert("race", records(3, seed=1))
            outcome["second"] = "written"
        except Exception as e:  # what the batch would have failed with
            outcome["second"] = e

    def write_then_let_another_thread_write(conn: sa.Connection, table: str, rows: list[Record]) -> bool:
        written = write(conn, table, rows)
        if "thread" not in outcome:  # the first writer, inside its creating transaction
            outcome["thread"] = threading.Thread(target=second_writer)
            outcome["thread"].start()
            outcome["thread"].join(timeout=2)  # it fails at once, or waits for this transaction to commit
        return written

    monkeypatch.setattr(pgnamespaces, "upsert_records", write_then_let_another_thread_write)
    s.upsert("race", records(3))
    outcome["thread"].join(timeout=30)
    s.close()

    assert outcome["second"] == "written"
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embeddings_race")).scalar_one() >= 3


def test_a_table_dropped_since_the_store_wrote_into_it_is_made_again(pg: sa.Engine) -> None:
    # A standing worker's store remembers the tables it wrote; `nsmigrate pgvector drop` (or a bench, or a rollback)
    # may drop one before the next job writes there again.
    s = store()
    s.upsert("again", records(3))
    with pg.begin() as conn:
        conn.execute(sa.text("DROP TABLE embeddings_again"))

    assert s.upsert("again", records(4, seed=1)) == 4

    s.close()
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embeddings_again")).scalar_one() == 4


def test_stores_opened_with_kept_engines_reuse_one_session_and_leave_it_open_when_closed(pg: sa.Engine) -> None:
    spec = PgvectorStoreSpec.model_validate({"kind": "pgvector", "schema": "documented"})
    kept = KeptEngines(idle_s=3600)

    def session_of(store: Any) -> int:
        """The backend of the session ``store`` reads through, after a read of its namespaces."""
        store.namespaces()
        with store.engine().connect() as conn:
            pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        store.close()  # as the planner closes a plan's stores
        return pid

    first, second = session_of(open_store(spec, engines=kept)), session_of(open_store(spec, engines=kept))
    kept.prune()  # used just now: kept
    third = session_of(open_store(spec, engines=kept))
    alone = session_of(open_store(spec))  # a store of its own connects anew

    assert first == second == third != alone
    with pg.connect() as conn:
        alive = set(conn.execute(sa.text("SELECT pid FROM pg_stat_activity")).scalars())
    assert third in alive  # closing the store left the kept engine's session open


def test_kept_engines_unused_for_their_idle_time_are_disposed() -> None:
    kept = KeptEngines(idle_s=0)
    engine = kept.get("postgresql+psycopg://u@h/a", "A_URL")
    assert kept.get("postgresql+psycopg://u@h/a", "A_URL") is engine
    kept.prune()
    assert kept.get("postgresql+psycopg://u@h/a", "A_URL") is not engine


def test_a_table_another_worker_made_while_this_one_looked_is_found_not_made_again(pg: sa.Engine) -> None:
    # A worker's transaction looks for the table (a write asks for its columns first) and finds none; another
    # worker then makes it and commits. Postgres keeps that first "no such table" answer for the rest of the
    # transaction (`to_regclass` takes no lock, so its cache is not refreshed), and making the table again failed
    # with "relation … already exists".
    with pg.connect() as looking:
        with looking.begin():  # a worker's connection has made tables before: its lookups are cached
            pgnamespaces.create_namespace(looking, "embeddings", "delta", DIM)
        looking.begin()
        assert not pgnamespaces.exists(looking, "embeddings_gamma")
        assert pgnamespaces.columns_of(looking, "embeddings_gamma") == frozenset()
        with pg.begin() as other:
            assert pgnamespaces.create_namespace(other, "embeddings", "gamma", DIM) == ("embeddings_gamma", True)
        assert pgnamespaces.create_namespace(looking, "embeddings", "gamma", DIM) == ("embeddings_gamma", False)
        assert pgnamespaces.exists(looking, "embeddings_gamma")
        assert "embedding" in pgnamespaces.columns_of(looking, "embeddings_gamma")
        with pytest.raises(StoreError, match="dimension 16, not 8"):
            pgnamespaces.create_namespace(looking, "embeddings", "gamma", 8)
        looking.rollback()


def test_a_backup_name_postgres_would_cut_is_refused_and_nothing_renamed(pg: sa.Engine) -> None:
    # With a long prefix the backup's name passed 63 bytes: Postgres cut it to another backup's (or the legacy
    # table's), the look for a free name then never found one, and it looped holding the table's lock.
    prefix = "p" * 41
    table = f"{prefix}_alpha"
    with pg.begin() as conn:
        conn.execute(sa.text(pgvector_layout.create_table_sql(table, DIM)))
    with pg.begin() as conn, pytest.raises(StoreError, match="longer than Postgres's 63 bytes"):
        pgnamespaces.rename_to_backup(conn, prefix, table, "alpha")
    with pg.connect() as conn:
        assert pgnamespaces.exists(conn, table)


def test_a_backup_named_through_the_prefix_is_never_dropped(pg: sa.Engine) -> None:
    backup = "embeddings_backup_20250101120000_foo"
    with pg.begin() as conn:
        conn.execute(sa.text(pgvector_layout.create_table_sql(backup, DIM)))

    result = nsmigrate("pgvector", "drop", "20250101120000_foo", "--prefix", "embeddings_backup", "--yes")

    assert result.exit_code != 0 and "backups are never dropped" in " ".join(result.output.split())
    with pg.connect() as conn:
        assert pgnamespaces.exists(conn, backup)

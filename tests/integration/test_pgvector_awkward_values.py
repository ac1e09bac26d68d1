"""The application's tables exactly, on real Postgres + pgvector: a table made with the
application's own DDL, one row filling every column with awkward values (empty strings and arrays, a ``text[]`` with
NULL elements, commas and quotes, ``metadata`` with integers, a large integer, ``{}``, nested objects and unicode, a
timestamp written with a time zone and microseconds, denormals and -0.0 in the vector, defaults left to the
database) and the user's own columns of types Postgres compares badly or not at all (``json``, ``point``, an enum,
a domain). Each path (``pgvector copy``/``move``/``legacy``, Pinecone and back, records into a table, rows between
two databases, a rollback after cleanup) is checked with SQL, column by column, never through nsmigrate's own
reading, and a copy's verification must name any single column changed in the target."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.pgvector_layout import MappingError, VectorIndex, quote
from nsmigrate.orchestrator.pgvector_rows import INT_KEYS_KEY
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.orchestrator.verification.comparisons import compare_record
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.seed import create_application_table
from tests.integration.test_pgvector_layout import catalogue
from tests.integration.test_verify_cleanup import Job, RecordingDispatcher, copied_job

pytestmark = [pytest.mark.integration]

DIM = 8
CHUNK_ID = "doc-1#chunk-0"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("dst", dimension=DIM)]


#: The row, written as the application writes it (plain SQL; the defaults of depth_level … updated_at left to the
#: database). Driver SQL: a ":1" inside the JSON must not read as a bind parameter.
AWKWARD_ROW = """
INSERT INTO {table} (chunk_id, document_id, collection_name, text, embedding, strategy, content_type, path,
    parent_chunk_id, chunk_size, domain_tags, original_keys, metadata, created_at)
VALUES ('{chunk_id}', 'doc-1', 'bücher', '', '[1e-45,-0,3.4028235e38,-3.4028235e38,0.1,1.1754944e-38,0,1]',
    'semantic', 'text/markdown', '', NULL, 0, ARRAY['a,b', NULL, 'say "hi"', '', 'NULL', 'it''s']::text[],
    '{{}}'::text[], '{{"n": 1, "big": 12345678901234567, "ratio": 0.5, "empty": {{}}, "list": [],
    "nested": {{"é": ["ü", null, 1, {{"deep": true}}]}}, "emoji": "🙂"}}',
    '2024-02-29 23:59:59.999999+05:30')
"""
#: The user's own columns, of types without (``json``, ``point``) or with a loose (``jsonb``: 1 = 1.0) equality.
USER_COLUMNS = {
    "raw": ("json", """'{"b": 1, "a" : [1, 2.50],  "b": 2}'"""),
    "spot": ("point", "'(1.5,-0)'"),
    "mood": ("mood", "'busy'"),
    "rank": ("positive", "3"),
    "extra": ("jsonb", """'{"k": 1}'"""),
    "counter": ("bigint", "9007199254740993"),  # 2**53 + 1: no float64 holds it
    "score": ("double precision", "'NaN'"),  # no JSON number either
    "seen_at": ("timestamp with time zone", "'2024-02-29 23:59:59.999999+05:30'"),
}


def awkward_table(engine: sa.Engine, table: str, *, user_columns: bool = True) -> None:
    """``table`` made with the application's DDL, holding ``AWKWARD_ROW`` (and the user's columns, filled)."""
    with engine.begin() as conn:
        create_application_table(conn, table, DIM, [])
        conn.exec_driver_sql(AWKWARD_ROW.format(table=quote(table), chunk_id=CHUNK_ID))
        if user_columns:
            conn.exec_driver_sql("CREATE TYPE mood AS ENUM ('calm', 'busy')")
            conn.exec_driver_sql("CREATE DOMAIN positive AS integer CHECK (VALUE > 0)")
            for name, (sql_type, value) in USER_COLUMNS.items():
                conn.exec_driver_sql(f"ALTER TABLE {quote(table)} ADD COLUMN {name} {sql_type}")
                conn.exec_driver_sql(f"UPDATE {quote(table)} SET {name} = {value}")


def columns_of(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [c.name for c in pgnamespaces.table_columns(conn, table)]


def differing_columns(conn: sa.Connection, source: str, target: str) -> dict[str, list[str]]:
    """For each chunk_id in both tables, the columns whose text forms differ (Postgres's own output of each value,
    so 1 and 1.0, -0 and 0, key order in ``json`` all count), the row number apart."""
    columns = [c.name for c in pgnamespaces.table_columns(conn, source) if c.name != "id"]
    found: dict[str, list[str]] = {}
    for column in columns:
        rows = conn.execute(
            sa.text(
                f"SELECT s.chunk_id FROM {quote(source)} s JOIN {quote(target)} t USING (chunk_id) "
                f"WHERE CAST(s.{quote(column)} AS text) IS DISTINCT FROM CAST(t.{quote(column)} AS text)"
            )
        ).scalars()
        for chunk_id in rows:
            found.setdefault(chunk_id, []).append(column)
    return found


#: A value other than the awkward row's for each column (a column changed in the target must fail verification).
CHANGED: dict[str, str] = {
    "document_id": "'doc-2'",
    "collection_name": "'books'",
    "text": "' '",
    "embedding": "'[1e-45,0,3.4028235e38,-3.4028235e38,0.1,1.1754944e-38,0,1]'",  # -0 → 0
    "strategy": "'fixed'",
    "content_type": "'text/plain'",
    "path": "NULL",
    "parent_chunk_id": "''",
    "depth_level": "NULL",
    "hierarchy_level": "1",
    "semantic_density": "5e-324",
    "confidence": "-0.0",
    "chunk_size": "NULL",
    "token_count": "0",
    "key_count": "0",
    "contains_arrays": "NULL",
    "is_leaf": "true",
    "domain_tags": "ARRAY['a,b', 'say \"hi\"', '', 'NULL', 'it''s']",  # one NULL element fewer
    "original_keys": "NULL",
    "metadata": """'{"n": 1.0, "big": 12345678901234567, "ratio": 0.5, "empty": {}, "list": [],
        "nested": {"é": ["ü", null, 1, {"deep": true}]}, "emoji": "🙂"}'""",  # 1 → 1.0
    "created_at": "created_at + interval '1 microsecond'",
    "updated_at": "NULL",
    "raw": """'{"b": 1, "a" : [1, 2.50], "b": 2}'""",  # one space fewer
    "spot": "'(1.5,0)'",
    "mood": "'calm'",
    "rank": "4",
    "extra": """'{"k": 1.0}'""",
    "counter": "9007199254740992",
    "score": "'Infinity'",
    "seen_at": "'2024-02-29 23:59:59.999999+05:00'",
}


@pytest.mark.parametrize("command", ["copy", "move", "legacy"])
def test_pgvector_copy_move_legacy_carry_every_awkward_column_into_the_ddls_table_and_name_any_one_changed(
    pg: sa.Engine, command: str
) -> None:
    legacy = command == "legacy"
    awkward_table(pg, "embeddings" if legacy else "embeddings_alpha")
    target = "embeddings_default" if legacy else "embeddings_beta"

    if legacy:
        result = table_copies.migrate_legacy(pg, "embeddings", vector_index=VectorIndex())
    else:
        act = table_copies.move_namespace if command == "move" else table_copies.copy_namespace
        result = act(pg, "embeddings", "alpha", "beta", vector_index=VectorIndex())

    assert result.verified, result.to_json()
    assert (result.backup_table is None) == (command == "copy")
    source = result.backup_table or result.source_table
    with pg.begin() as conn:  # the target is the application's DDL, plus the user's columns, names and all
        assert differing_columns(conn, source, target) == {}
        conn.exec_driver_sql("CREATE SCHEMA app")
        conn.exec_driver_sql("SET LOCAL search_path TO app, public")
        create_application_table(conn, target, DIM, [])
        for name, (sql_type, _) in USER_COLUMNS.items():
            conn.exec_driver_sql(f"ALTER TABLE app.{quote(target)} ADD COLUMN {name} {sql_type}")
        assert catalogue(conn, "public", target) == catalogue(conn, "app", target)
        conn.rollback()
    columns = [c for c in columns_of(pg, source) if c not in ("id", "chunk_id")]
    assert sorted(CHANGED) == sorted(columns)  # every column but the keys is changed below, one at a time
    for column in columns:
        with pg.connect() as conn:
            conn.exec_driver_sql(f"UPDATE {quote(target)} SET {quote(column)} = {CHANGED[column]}")
            assert differing_columns(conn, source, target) == {CHUNK_ID: [column]}
            checked = table_copies.compare_tables(conn, source, target, _result(result))
            conn.rollback()
        assert checked.differing == {CHUNK_ID: f"{column} differs"}, column
        assert not checked.verified


@pytest.mark.parametrize(
    ("column", "narrower"),
    [("created_at", "timestamp(0) without time zone"), ("semantic_density", "numeric(10,2)")],
)
def test_a_move_into_a_table_keeping_less_precision_is_refused_and_renames_nothing(
    pg: sa.Engine, column: str, narrower: str
) -> None:
    # The insert's cast would round the value, and verification would cast the source the same way: equal.
    awkward_table(pg, "embeddings_alpha", user_columns=False)
    with pg.begin() as conn:
        if column == "semantic_density":  # a numeric of the source's, with more digits than the target keeps
            conn.exec_driver_sql("ALTER TABLE embeddings_alpha ALTER COLUMN semantic_density TYPE numeric(10,4)")
        conn.exec_driver_sql("UPDATE embeddings_alpha SET semantic_density = 0.1234")
        create_application_table(conn, "embeddings_beta", DIM, [])
        conn.exec_driver_sql(f"ALTER TABLE embeddings_beta ALTER COLUMN {column} TYPE {narrower}")

    with pytest.raises(PlanError, match=f"table embeddings_beta column {column} is {re.escape(narrower)}"):
        table_copies.move_namespace(pg, "embeddings", "alpha", "beta", vector_index=VectorIndex())

    with pg.connect() as conn:
        assert pgnamespaces.exists(conn, "embeddings_alpha")
        assert conn.exec_driver_sql("SELECT count(*) FROM embeddings_beta").scalar() == 0


def _result(copied: table_copies.CopyResult) -> table_copies.CopyResult:
    """A fresh result for ``compare_tables`` of the copy's tables (the source as its backup, after a move)."""
    source = copied.backup_table or copied.source_table
    return table_copies.CopyResult(source, copied.target_table, 0, 0, 0, columns=copied.columns)


def documented(prefix: str = "embeddings") -> DocumentedPgvectorStore:
    spec = {"kind": "pgvector", "schema": "documented", "table": prefix, "database_url_env": "NSMIGRATE_PGVECTOR_URL"}
    return DocumentedPgvectorStore(PgvectorStoreSpec.model_validate(spec))


def test_every_awkward_column_goes_to_pinecone_and_back_and_through_records_exactly(
    pg: sa.Engine, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgvector → Pinecone → pgvector (a job each way) and pgvector → pgvector as records (a job between two
    databases with a type of the user's own, a rollback's write-back, ``StoreIndex``): every column exactly, and the
    records' comparison (what verifies those jobs) names any one column changed in the target."""
    awkward_table(pg, "embeddings_alpha")
    with pg.begin() as conn:  # the application's tables for the copies, with the user's columns too
        for table in ("embeddings_back", "embeddings_records"):
            conn.exec_driver_sql(f"CREATE TABLE {table} (LIKE embeddings_alpha INCLUDING ALL)")
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox")
    pinecone = PineconeStore(PineconeStoreSpec(host=sandbox.host("dst")))
    [record] = documented().fetch("alpha", [CHUNK_ID])

    pinecone.upsert("alpha", [record])
    [in_pinecone] = pinecone.fetch("alpha", [CHUNK_ID])
    documented().upsert("back", [in_pinecone])
    documented().upsert("records", [record])

    assert compare_record(record, in_pinecone, record.metadata, 0.0) is None
    with pg.connect() as conn:
        for table in ("embeddings_back", "embeddings_records"):
            assert differing_columns(conn, "embeddings_alpha", table) == {}, table
    changed = {**CHANGED, "embedding": "'[1e-45,-0,3.4028235e38,-3.4028235e38,0.2,1.1754944e-38,0,1]'"}
    for column in [c for c in columns_of(pg, "embeddings_alpha") if c not in ("id", "chunk_id")]:
        with pg.begin() as conn:
            conn.exec_driver_sql(f"UPDATE embeddings_back SET {quote(column)} = {changed[column]}")
        [target] = documented().fetch("back", [CHUNK_ID])
        reason = compare_record(record, target, record.metadata, 1e-6)
        # The vector within the job's tolerance; the metadata JSONB's keys are the record's own (its 1 made 1.0 here).
        named = {"embedding": "values", "metadata": repr(INT_KEYS_KEY)}.get(column, repr(column))
        assert reason is not None and named in reason, (column, reason)
        with pg.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE embeddings_back t SET {quote(column)} = s.{quote(column)} FROM embeddings_alpha s "
                "WHERE s.chunk_id = t.chunk_id"
            )


def every_row_as_text(conn: sa.Connection, table: str) -> list[dict[str, str | None]]:
    """Every row of ``table``, every column (the row number too) as Postgres's text form of its value."""
    listed = ", ".join(
        f"CAST({quote(c.name)} AS text) AS {quote(c.name)}" for c in pgnamespaces.table_columns(conn, table)
    )
    return [dict(r) for r in conn.execute(sa.text(f"SELECT {listed} FROM {quote(table)} ORDER BY chunk_id")).mappings()]


@pytest.fixture
def job_ctx(
    monkeypatch: pytest.MonkeyPatch, job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]
) -> WorkerContext:
    """A worker's context over the job table and Redis, with the local data plane's key set."""
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox")
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


def verified_table_job(ctx: WorkerContext, sandbox: PineconeSandbox, name: str) -> Job:
    """A job from the application's table ``embeddings_alpha`` to Pinecone, copied (as its batches would) and
    verified."""
    spec = {"kind": "pgvector", "schema": "documented", "database_url_env": "NSMIGRATE_PGVECTOR_URL"}
    job_spec = parse_spec(
        {
            "name": name,
            "source": spec,
            "target": {"kind": "pinecone", "host": sandbox.host("dst")},
            "verify": {"count_timeout_s": 5},
            "cleanup": {"mode": "manual"},
        }
    )
    job = copied_job(ctx, job_spec, {"alpha": documented().fetch("alpha", [CHUNK_ID])}, started=True)
    assert job.verify()["passed"]
    return job


def test_a_rollback_after_cleanup_renamed_the_table_brings_it_back_whole(
    pg: sa.Engine, sandbox: PineconeSandbox, job_ctx: WorkerContext
) -> None:
    """A job from the application's table to Pinecone, verified and cleaned up (the source table renamed to a
    backup), then rolled back: the original table is back as it was, every column, row number, default, constraint
    and index, not rebuilt from the copies (the user's columns would land in ``metadata``, or fail)."""
    awkward_table(pg, "embeddings_alpha")
    with pg.connect() as conn:
        before = every_row_as_text(conn, "embeddings_alpha"), catalogue(conn, "public", "embeddings_alpha")
    ctx = job_ctx
    job = verified_table_job(ctx, sandbox, "awkward-rollback")
    assert job.cleanup()["action"] == "deleted"
    with pg.connect() as conn:
        assert pgnamespaces.read_table(conn, "embeddings", "alpha") is None  # renamed to a backup

    result = rollback_job(ctx, job.job_id, actor="tester")

    assert result["action"] == "rolled_back" and result["runs"][0]["restored"] == 1, result
    with pg.connect() as conn:
        assert (every_row_as_text(conn, "embeddings_alpha"), catalogue(conn, "public", "embeddings_alpha")) == before
        assert not [t for t in conn.execute(sa.text("SELECT tablename FROM pg_tables")).scalars() if "backup" in t]


#: The application's table as another database has it: the DDL's columns in reverse order, the user's columns (of
#: types whose rows pass between databases as they are) first.
REVERSED_DDL = f"""CREATE TABLE embeddings_beta (seen_at timestamp with time zone, score double precision,
    counter bigint, extra jsonb, raw json, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, metadata JSONB, original_keys TEXT[], domain_tags TEXT[],
    is_leaf BOOLEAN DEFAULT FALSE, contains_arrays BOOLEAN DEFAULT FALSE, key_count INTEGER, token_count INTEGER,
    chunk_size INTEGER, confidence FLOAT DEFAULT 1.0, semantic_density FLOAT DEFAULT 0.0,
    hierarchy_level INTEGER DEFAULT 0, depth_level INTEGER DEFAULT 0, parent_chunk_id VARCHAR(512),
    path VARCHAR(4096), content_type VARCHAR(100) NOT NULL, strategy VARCHAR(50) NOT NULL,
    embedding VECTOR({DIM}) NOT NULL, text TEXT NOT NULL, collection_name VARCHAR(255) NOT NULL,
    document_id VARCHAR(512) NOT NULL, chunk_id VARCHAR(512) UNIQUE NOT NULL, id SERIAL PRIMARY KEY)"""


def test_rows_between_two_databases_arrive_exactly_in_another_column_order_and_any_one_changed_is_named(
    pg: sa.Engine, database_url: str, postgres_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    awkward_table(pg, "embeddings_alpha")
    with pg.begin() as conn:  # the types of the user's own do not pass as rows: those columns go
        conn.exec_driver_sql("ALTER TABLE embeddings_alpha DROP COLUMN mood, DROP COLUMN rank, DROP COLUMN spot")
    other = f"{database_url.rsplit('/', 1)[1]}_other"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {other} TEMPLATE template1"))
    monkeypatch.setenv("OTHER_URL", f"{database_url.rsplit('/', 1)[0]}/{other}")
    elsewhere = sa.create_engine(f"{database_url.rsplit('/', 1)[0]}/{other}")
    target = DocumentedPgvectorStore(
        PgvectorStoreSpec.model_validate({"kind": "pgvector", "schema": "documented", "database_url_env": "OTHER_URL"})
    )
    try:
        with elsewhere.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            conn.exec_driver_sql(REVERSED_DDL)

        for _ in range(2):  # written, then overwritten by the batch run again
            assert target.copy_rows_from(documented(), "alpha", "beta", [CHUNK_ID], {}) is not None

        with pg.connect() as conn, elsewhere.connect() as there:
            [sent] = every_row_as_text(conn, "embeddings_alpha")
            [arrived] = every_row_as_text(there, "embeddings_beta")
        assert {k: v for k, v in arrived.items() if k != "id"} == {k: v for k, v in sent.items() if k != "id"}
        [source] = documented().fetch("alpha", [CHUNK_ID])
        assert compare_record(source, target.fetch("beta", [CHUNK_ID])[0], source.metadata, 0.0) is None
        changed = {**CHANGED, "embedding": "'[1e-45,-0,3.4028235e38,-3.4028235e38,0.2,1.1754944e-38,0,1]'"}
        for column in [c for c in sent if c not in ("id", "chunk_id")]:
            with elsewhere.begin() as there:
                there.exec_driver_sql(f"UPDATE embeddings_beta SET {quote(column)} = {changed[column]}")
            reason = compare_record(source, target.fetch("beta", [CHUNK_ID])[0], source.metadata, 1e-6)
            named = {"embedding": "values", "metadata": repr(INT_KEYS_KEY)}.get(column, repr(column))
            assert reason is not None and named in reason, (column, reason)
            target.copy_rows_from(documented(), "alpha", "beta", [CHUNK_ID], {})  # as it was again
    finally:
        target.close()
        elsewhere.dispose()
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)"))


@pytest.mark.parametrize(
    ("column", "value", "refusal"),
    [
        ("created_at", "not a time", "invalid input syntax for type timestamp"),
        ("seen_at", "2024-13-01", "out of range"),
        ("raw", "{nope", "invalid input syntax for type json"),
        ("mood", "angry", 'invalid input value for enum mood: "angry"'),
        ("rank", "-1", "violates check constraint"),
    ],
)
def test_a_record_whose_value_its_column_refuses_is_named_and_nothing_is_written(
    pg: sa.Engine, column: str, value: str, refusal: str
) -> None:
    awkward_table(pg, "embeddings_alpha")
    with pg.connect() as conn:
        before = every_row_as_text(conn, "embeddings_alpha")
    required = {"document_id": "d", "collection_name": "c", "text": "t", "strategy": "s", "content_type": "x"}
    records = [Record("fine", [0.5] * DIM, required), Record("r-2", [0.5] * DIM, {**required, column: value})]

    with pytest.raises(MappingError) as refused:
        documented().upsert("alpha", records)

    message = str(refused.value)
    assert f"record 'r-2': metadata {column!r} = {value!r}" in message and refusal in message, message
    assert f"column {column} " in message and "table embeddings_alpha" in message, message
    with pg.connect() as conn:
        assert every_row_as_text(conn, "embeddings_alpha") == before  # not even the fine record


@pytest.mark.parametrize(("table", "namespace"), [("embeddings", ""), ("embeddings_" + "n" * 40, "n" * 40)])
def test_a_table_renamed_to_a_backup_and_back_is_the_table_it_was(pg: sa.Engine, table: str, namespace: str) -> None:
    """The legacy table, and a namespace long enough that its backup's index names are cut and hashed."""
    awkward_table(pg, table, user_columns=False)
    with pg.begin() as conn:  # the DDL's indexes, named as it names them
        before = every_row_as_text(conn, table), catalogue(conn, "public", table)
        backup = pgnamespaces.rename_to_backup(conn, "embeddings", table, namespace if table != "embeddings" else None)
        assert not pgnamespaces.exists(conn, table)
        assert all(name.startswith("embeddings_backup_") for name in pgnamespaces.indexes_of(conn, backup))

        assert pgnamespaces.rename_from_backup(conn, "embeddings", backup, namespace) == table

        assert (every_row_as_text(conn, table), catalogue(conn, "public", table)) == before
        assert pgnamespaces.rename_from_backup(conn, "embeddings", backup, namespace) is None  # gone: nothing to do


def test_a_row_the_application_changes_while_cleanup_proves_keeps_the_table_where_it_is(
    pg: sa.Engine, sandbox: PineconeSandbox, job_ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cleanup of the application's table renames it to a backup once every row is proved equal to its copy. A row
    the application changes after its proof has no equal copy: renamed away, the live namespace would lose that
    change while the run is called cleaned. The table is renamed only if, locked, its rows are still those proved."""
    awkward_table(pg, "embeddings_alpha")
    job = verified_table_job(job_ctx, sandbox, "changed-while-proved")
    prove = cleaning._proof

    def the_application_writes_once_proved(*args: Any, **kwargs: Any) -> Any:
        proof = prove(*args, **kwargs)
        with pg.begin() as conn:
            conn.execute(sa.text("UPDATE embeddings_alpha SET text = 'edited after its proof'"))
        return proof

    monkeypatch.setattr(cleaning, "_proof", the_application_writes_once_proved)

    result = job.cleanup()

    assert result["action"] == "refused" and cleaning.SOURCE_CHANGED in result["reason"], result
    with pg.connect() as conn:
        assert pgnamespaces.read_table(conn, "embeddings", "alpha") == "embeddings_alpha"  # not renamed
        assert conn.execute(sa.text("SELECT text FROM embeddings_alpha")).scalar() == "edited after its proof"
    assert job.state() == "verify_failed"

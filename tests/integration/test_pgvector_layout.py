"""The application's pgvector layout exactly (issue 28): ``nsmigrate pgvector create`` against the application's own
DDL (sandbox/application-table.sql) in Postgres' catalogue, column by column, constraint by
constraint and index by index; its indexes in ``list``/``stats``; ivfflat lists as documented; an ANN index above
2,000 dimensions; and tables the application made with that DDL read as namespaces."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate_sandbox.seed import APPLICATION_DDL, application_rows, create_application_table
from tests.integration.test_pgvector_namespaces import store

_COLUMNS = (
    "SELECT column_name, data_type, udt_name, character_maximum_length, column_default, is_nullable, "
    "ordinal_position FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
    "ORDER BY ordinal_position"
)
_CONSTRAINTS = (
    "SELECT conname, contype, pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
    "JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = :s AND r.relname = :t ORDER BY conname"
)
_INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s AND tablename = :t ORDER BY indexname"
_DIMENSION = (
    "SELECT atttypmod FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid JOIN pg_namespace n "
    "ON n.oid = r.relnamespace WHERE n.nspname = :s AND r.relname = :t AND a.attname = 'embedding'"
)


def nsmigrate(*args: str) -> Any:
    return CliRunner().invoke(app, ["pgvector", *args], env={"COLUMNS": "200"})


def catalogue(conn: sa.Connection, schema: str, table: str) -> dict[str, Any]:
    """What Postgres knows of ``schema.table``'s shape, the schema's name left out (so two schemas compare)."""

    def read(sql: str) -> list[tuple[Any, ...]]:
        rows = conn.execute(sa.text(sql), {"s": schema, "t": table}).all()
        return [tuple(v.replace(f"{schema}.", "") if isinstance(v, str) else v for v in row) for row in rows]

    return {
        "columns": read(_COLUMNS),
        "constraints": read(_CONSTRAINTS),
        "indexes": read(_INDEXES),
        "dimension": read(_DIMENSION),
    }


@pytest.mark.parametrize("namespace", ["docs", "n" * 49])
def test_create_builds_the_application_ddl_column_by_column_and_index_by_index(pg: sa.Engine, namespace: str) -> None:
    """The same namespace made twice: by ``create`` in schema public, by the application's DDL in schema app."""
    result = nsmigrate("create", namespace, "--dimension", "1536")
    assert result.exit_code == 0, result.output
    table = f"embeddings_{namespace}"
    with pg.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA app"))
        conn.execute(sa.text("SET LOCAL search_path TO app, public"))
        create_application_table(conn, table, 1536, [])
        made, documented = catalogue(conn, "public", table), catalogue(conn, "app", table)

    assert len(made["columns"]) == 24 and made["columns"] == documented["columns"]
    assert made["constraints"] == documented["constraints"]
    assert made["indexes"] == documented["indexes"]
    assert made["dimension"] == documented["dimension"] == [(1536,)]
    names = {name for name, _ in made["indexes"]}
    assert {
        pgvector_layout.index_name(table, s) for s in ("vector_idx", "collection_idx", "document_idx", "strategy_idx")
    } < names
    assert (pgvector_layout.index_name(table, "chunk_id_key"), "u", "UNIQUE (chunk_id)") in made["constraints"]


def test_a_namespace_too_long_for_the_layouts_names_is_refused_as_the_ddl_fails(pg: sa.Engine) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="already exists"), pg.begin() as conn:
        create_application_table(conn, "embeddings_" + "n" * 50, 8, [])

    result = nsmigrate("create", "n" * 50, "--dimension", "8")
    assert result.exit_code == 2
    assert "are cut to 63 characters by Postgres and collide" in result.output
    assert "a namespace has at most 49 characters" in result.output
    with pg.connect() as conn:
        assert not pgnamespaces.exists(conn, "embeddings_" + "n" * 50)


def test_the_layout_is_the_reference_ddl_statement_by_statement() -> None:
    """pgschema writes the reference's statements, identifiers quoted (a pure check of the single source)."""
    reference = APPLICATION_DDL.read_text().replace("{namespace}", "x")
    code = ";\n".join(
        [
            pgvector_layout.create_table_sql("embeddings_x", 1536),
            *pgvector_layout.create_index_sql("embeddings_x", pgvector_layout.VectorIndex(), 1536),
        ]
    )

    def statements(text: str) -> list[str]:
        lines = [line for line in text.splitlines() if not line.startswith("--")]
        return [" ".join(s.replace('"', "").split()) for s in "\n".join(lines).split(";") if s.strip()]

    assert statements(code) == statements(reference)


def test_the_older_layouts_columns_are_gone_but_still_read(pg: sa.Engine) -> None:
    assert not {"depth", "quality_score", "coherence_score", "has_code"} & {c.name for c in pgvector_layout.LAYOUT}
    assert {"depth_level", "semantic_density", "confidence", "key_count", "contains_arrays"} <= {
        c.name for c in pgvector_layout.COLUMNS
    }
    with pg.begin() as conn:  # a table of nsmigrate's own earlier layout, with one of its invented columns
        conn.execute(
            sa.text(
                "CREATE TABLE embeddings_old (id bigserial PRIMARY KEY, chunk_id text NOT NULL UNIQUE, "
                "document_id text NOT NULL, collection_name text NOT NULL, text text NOT NULL, strategy text, "
                "depth integer, quality_score double precision, embedding vector(3) NOT NULL, "
                "metadata jsonb NOT NULL DEFAULT '{}')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO embeddings_old (chunk_id, document_id, collection_name, text, depth, quality_score, "
                "embedding) VALUES ('c1', 'd1', 'books', 'hello', 2, 0.5, '[1,0,0]')"
            )
        )
    [record] = store().fetch("old", ["c1"])
    assert record.metadata == {
        "document_id": "d1",
        "collection_name": "books",
        "text": "hello",
        "depth": 2,
        "quality_score": 0.5,
    }


def test_an_application_table_is_a_namespace_with_its_indexes_shown(pg: sa.Engine) -> None:
    rows = application_rows(40, 8)
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_docs", 8, rows)

    listed = nsmigrate("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["docs"] == {
        "table": "embeddings_docs",
        "rows": 40,
        "indexes": sorted(
            f"embeddings_docs_{s}"
            for s in ("chunk_id_key", "collection_idx", "document_idx", "pkey", "strategy_idx", "vector_idx")
        ),
    }
    text = nsmigrate("list")
    assert "vector_idx" in text.output and "strategy_idx" in text.output

    found = json.loads(nsmigrate("stats", "docs", "--json").output)
    assert found["vector_index"] == "ivfflat (lists = 100)"
    assert found["btree_columns"] == ["collection_name", "document_id", "strategy"]
    assert (
        found["indexes"]["embeddings_docs_vector_idx"]
        == "USING ivfflat (embedding vector_cosine_ops) WITH (lists='100')"
    )
    shown = nsmigrate("stats", "docs")
    assert "embeddings_docs_collection_idx" in shown.output and "ivfflat (lists = 100)" in shown.output

    nulls = [r["chunk_id"] for r in rows if r["metadata"] is None]
    fetched = {r.id: r for r in store().fetch("docs", [r["chunk_id"] for r in rows])}
    assert len(fetched) == 40 and nulls
    first = rows[1]
    assert fetched[first["chunk_id"]].metadata["key_count"] == first["key_count"]
    assert fetched[first["chunk_id"]].metadata["confidence"] == first["confidence"]


def test_ivfflat_lists_are_the_documented_100_unless_asked_otherwise(pg: sa.Engine) -> None:
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_alpha", 8, application_rows(1200, 8))
        conn.execute(sa.text("DROP INDEX embeddings_alpha_vector_idx"))

    copied = json.loads(nsmigrate("copy", "alpha", "beta", "--json").output)
    assert copied["verified"] and copied["indexes"]["vector_index"] == "ivfflat (lists = 100)"
    assert "embeddings_beta_vector_idx" in copied["indexes"]["built"]
    other = json.loads(nsmigrate("copy", "alpha", "gamma", "--lists", "7", "--json").output)
    assert other["indexes"]["vector_index"] == "ivfflat (lists = 7)"
    with pg.begin() as conn:
        built = pgnamespaces.build_indexes(conn, "embeddings_alpha", pgvector_layout.VectorIndex("hnsw"))
    assert built["built"] == ["embeddings_alpha_vector_idx"] and built["vector_index"] == "hnsw"


def test_a_specs_ivfflat_lists_are_the_layouts_100_unless_it_says_otherwise() -> None:
    documented = {"kind": "pgvector", "schema": "documented"}
    assert PgvectorStoreSpec.model_validate(documented).index == pgvector_layout.VectorIndex("ivfflat", 100)
    assert PgvectorStoreSpec.model_validate({**documented, "ivfflat_lists": 7}).index.lists == 7
    with pytest.raises(ValidationError, match="ivfflat_lists"):
        PgvectorStoreSpec.model_validate({**documented, "ivfflat_lists": 0})


def test_above_2000_dimensions_the_vector_index_is_hnsw_over_halfvec(pg: sa.Engine) -> None:
    dimension = 3072
    result = nsmigrate("create", "wide", "--dimension", str(dimension))
    assert result.exit_code == 0, result.output
    rows = application_rows(60, dimension)
    with pg.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embeddings_wide (chunk_id, document_id, collection_name, text, strategy, content_type, "
                "embedding) VALUES (:chunk_id, :document_id, :collection_name, :text, :strategy, :content_type, "
                "CAST(:embedding AS vector))"
            ),
            [
                {
                    k: r[k]
                    for k in (
                        "chunk_id",
                        "document_id",
                        "collection_name",
                        "text",
                        "strategy",
                        "content_type",
                        "embedding",
                    )
                }
                for r in rows
            ],
        )
    found = json.loads(nsmigrate("stats", "wide", "--json").output)
    assert found["vector_index"] == f"hnsw over halfvec({dimension})"
    assert found["indexes"]["embeddings_wide_vector_idx"] == (
        f"USING hnsw (((embedding)::halfvec({dimension})) halfvec_cosine_ops)"
    )
    query = f"SELECT chunk_id FROM embeddings_wide ORDER BY {pgvector_layout.distance_sql(dimension)} LIMIT 3"
    with pg.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}"), {"v": rows[5]["embedding"]}).scalars())
        nearest = conn.execute(sa.text(query), {"v": rows[5]["embedding"]}).scalars().first()
    assert "Index Scan using embeddings_wide_vector_idx" in plan
    assert nearest == rows[5]["chunk_id"]

    too_wide = nsmigrate("create", "wider", "--dimension", "4001", "--dry-run")
    assert too_wide.exit_code == 0 and "vector index none (pgvector indexes at most 4000 dimensions)" in too_wide.output


# --- reindex, collections, --yes and the audit log ------------------------------------------------------------------


def test_reindex_rebuilds_the_documented_indexes_and_creates_missing_ones_by_name(pg: sa.Engine) -> None:
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_docs", 8, application_rows(300, 8))
        conn.execute(sa.text("DROP INDEX embeddings_docs_strategy_idx"))
        conn.execute(sa.text("DROP INDEX embeddings_docs_document_idx"))
        conn.execute(sa.text("CREATE INDEX ON embeddings_docs (document_id)"))  # as nsmigrate named it before
    dry = nsmigrate("reindex", "docs", "--lists", "5", "--dry-run")
    assert dry.exit_code == 0 and "would rebuild the indexes of embeddings_docs" in dry.output, dry.output
    with pg.connect() as conn:
        assert "embeddings_docs_strategy_idx" not in pgnamespaces.indexes_of(conn, "embeddings_docs")

    result = nsmigrate("reindex", "docs", "--lists", "5")
    assert result.exit_code == 0, result.output
    assert "served by ivfflat (lists = 5)" in result.output
    with pg.connect() as conn:
        indexes = pgnamespaces.indexes_of(conn, "embeddings_docs")
    assert indexes == {
        "embeddings_docs_chunk_id_key": "USING btree (chunk_id)",
        "embeddings_docs_collection_idx": "USING btree (collection_name)",
        "embeddings_docs_document_idx": "USING btree (document_id)",
        "embeddings_docs_pkey": "USING btree (id)",
        "embeddings_docs_strategy_idx": "USING btree (strategy)",
        "embeddings_docs_vector_idx": "USING ivfflat (embedding vector_cosine_ops) WITH (lists='5')",
    }
    missing = nsmigrate("reindex", "nothing")
    assert missing.exit_code == 2 and "has no table" in missing.output


def test_collections_are_listed_and_one_is_deleted_only_with_yes(pg: sa.Engine) -> None:
    rows = application_rows(90, 8)
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_docs", 8, rows)
    per_collection = {
        name: sum(r["collection_name"] == name for r in rows) for name in {r["collection_name"] for r in rows}
    }

    listed = json.loads(nsmigrate("collections", "docs", "--json").output)
    assert {c["collection"]: c["rows"] for c in listed} == per_collection
    assert all(c["documents"] > 0 and c["strategies"] and c["last_updated"] for c in listed)
    assert "collection_1" in nsmigrate("collections", "docs").output

    refused = nsmigrate("collections", "docs", "--delete", "collection_1")
    assert refused.exit_code == 2 and "--yes" in refused.output
    dry = nsmigrate("collections", "docs", "--delete", "collection_1", "--dry-run")
    assert dry.exit_code == 0 and f"would delete the {per_collection['collection_1']} rows" in dry.output
    unknown = nsmigrate("collections", "docs", "--delete", "collection_9", "--yes")
    assert unknown.exit_code == 2 and "has no collection 'collection_9'" in unknown.output
    assert store().count("docs") == 90

    done = nsmigrate("collections", "docs", "--delete", "collection_1", "--yes")
    assert done.exit_code == 0, done.output
    left = {c["collection"]: c["rows"] for c in json.loads(nsmigrate("collections", "docs", "--json").output)}
    assert left == {k: v for k, v in per_collection.items() if k != "collection_1"}


def test_legacy_needs_yes_as_move_does(pg: sa.Engine) -> None:
    with pg.begin() as conn:
        create_application_table(conn, "embeddings", 8, application_rows(20, 8))
    refused = nsmigrate("legacy")
    assert refused.exit_code == 2 and "--yes" in refused.output
    with pg.connect() as conn:
        assert pgnamespaces.exists(conn, "embeddings") and not pgnamespaces.exists(conn, "embeddings_default")

    done = json.loads(nsmigrate("legacy", "--yes", "--json").output)
    assert done["verified"] and done["target_rows"] == 20
    with pg.connect() as conn:  # the backup took its indexes' names with it: the default namespace has its own
        indexes = pgnamespaces.indexes_of(conn, "embeddings_default")
        backup = pgnamespaces.indexes_of(conn, done["backup_table"])
    assert "embeddings_default_vector_idx" in indexes and "embeddings_default_chunk_id_key" in indexes
    assert all(name.startswith(done["backup_table"]) for name in backup)


def audit(engine: sa.Engine) -> list[tuple[str, str, dict[str, Any]]]:
    """(job name, event action, detail) of every event of a pgvector job, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT j.name, e.action, e.detail FROM events e JOIN jobs j ON j.id = e.job_id "
                "WHERE j.kind = 'pgvector' ORDER BY e.id"
            )
        ).all()
    return [(name, action, detail) for name, action, detail in rows]


def test_every_pgvector_command_that_changes_something_writes_an_audit_record(pg: sa.Engine) -> None:
    with pg.begin() as conn:
        create_application_table(conn, "embeddings", 8, application_rows(30, 8))
    commands = [
        ["create", "docs", "--dimension", "8"],
        ["legacy", "--yes"],
        ["copy", "default", "alpha"],
        ["move", "alpha", "beta", "--yes"],
        ["reindex", "beta"],
        ["collections", "beta", "--delete", "collection_0", "--yes"],
        ["drop", "docs", "--yes"],
    ]
    for command in commands:  # a dry run changes nothing and writes nothing
        assert nsmigrate(*command, "--dry-run").exit_code in (0, 2)
    with pg.connect() as conn:
        assert not pgnamespaces.exists(conn, "events")
    for command in commands:
        result = nsmigrate(*command)
        assert result.exit_code == 0, (command, result.output)

    events = audit(pg)
    names = ["create", "legacy", "copy", "move", "reindex", "collection_delete", "drop"]
    assert [(name, action) for name, action, _ in events] == [
        (f"pgvector {n}", a) for n in names for a in ("pgvector_started", "pgvector_finished")
    ]
    finished = {name: detail for name, action, detail in events if action == "pgvector_finished"}
    assert all(d["outcome"] == "done" for d in finished.values())
    assert finished["pgvector move"]["verified"] and finished["pgvector move"]["backup_table"]
    assert finished["pgvector collection_delete"]["deleted"] > 0
    assert finished["pgvector drop"]["table"] == "embeddings_docs"
    shown = CliRunner().invoke(app, ["jobs"], env={"COLUMNS": "200"})
    assert "pgvector move" in shown.output


def test_a_command_without_a_reachable_job_table_changes_nothing(
    pg: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none")
    result = nsmigrate("create", "docs", "--dimension", "8")
    assert result.exit_code == 2 and "cannot open the job table" in result.output
    assert "hunter2" not in result.output
    with pg.connect() as conn:
        assert not pgnamespaces.exists(conn, "embeddings_docs")


def test_the_seed_shaped_3072_d_application_table_gets_an_ann_index_through_legacy(pg: sa.Engine) -> None:
    ddl = APPLICATION_DDL.read_text().replace("{namespace}", "x").replace("VECTOR(1536)", "VECTOR(3072)")
    with pytest.raises(sa.exc.DBAPIError, match="more than 2000 dimensions"), pg.begin() as conn:
        conn.exec_driver_sql(ddl)  # the application's own DDL: pgvector refuses its ivfflat index at 3072

    rows = application_rows(120, 3072)
    with pg.begin() as conn:
        create_application_table(conn, "embeddings", 3072, rows)  # the same, without the index pgvector refuses
    before = json.loads(nsmigrate("stats", "default", "--json").output)
    assert before["vector_index"] is None and before["dimension"] == 3072

    done = json.loads(nsmigrate("legacy", "--yes", "--json").output)
    assert done["verified"] and done["indexes"]["vector_index"] == "hnsw over halfvec(3072)"
    after = json.loads(nsmigrate("stats", "default", "--json").output)
    assert after["vector_index"] == "hnsw over halfvec(3072)"
    assert "hnsw over halfvec(3072)" in nsmigrate("stats", "default").output
    probe = store().fetch("", [rows[7]["chunk_id"]])[0]
    assert store().query("", probe.values, 1) == [rows[7]["chunk_id"]]

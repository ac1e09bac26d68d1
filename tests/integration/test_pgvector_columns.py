"""Every column carried, every column verified (issue 28, item 2), on real Postgres + pgvector: tables made with the
application's own DDL (``sandbox/application-table.sql``) and rows that fill every column,
NULLs where the DDL allows them; ``copy``'s verification fails when a column nsmigrate does not know differs; a
user's extra column is carried, or refused at plan time (by ``copy`` and by a job's plan) when the target cannot hold
it. The fleet's part (``legacy``, ``copy``, ``move``, jobs to Pinecone and back) is
``tests/fleet/test_pgvector_columns_fleet.py``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.pgvector_layout import quote
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.seed import application_rows, create_application_table

pytestmark = [pytest.mark.integration]

URL_ENV = "NSMIGRATE_PGVECTOR_URL"
DIM = 1536  # the DDL's own VECTOR(1536)
DOCUMENTED = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
KEEP_AS_IS = {"creator_fields": False, "migrated_from": False}


def app_rows(n: int) -> list[dict[str, Any]]:
    """``application_rows`` (every column of the DDL filled, NULLs in turn wherever it allows them) with more shapes
    still: empty arrays, ``metadata`` NULL, empty, flat or nested (``app_metadata``), floats to the last bit, NULL
    timestamps."""
    rows = application_rows(n, DIM, seed=28)
    for i, row in enumerate(rows):
        row["metadata"] = app_metadata(i)
        row["domain_tags"] = [] if i % 6 == 1 else row["domain_tags"]
        row["confidence"] = None if row["confidence"] is None else 1 / (i + 3)
        row["created_at"] = None if i % 31 == 0 else row["created_at"] + timedelta(microseconds=i)
        row["updated_at"] = None if i % 37 == 0 else row["updated_at"]
    return rows


def app_metadata(i: int) -> dict[str, Any] | None:
    """NULL, empty, flat (what Pinecone metadata holds as it is), or nested objects, nulls and lists of numbers."""
    return [
        None,
        {},
        {"source": "app", "page": i, "ratio": 0.5 + i, "reviewed": bool(i % 3), "tags": ["a"]},
        {"origin": {"file": f"{i}.json", "keys": [1, 2.5]}, "scores": [0.25, 3], "note": None, "page": i},
    ][i % 4]


def make_app_table(engine: sa.Engine, table: str, rows: list[dict[str, Any]]) -> None:
    """``table`` made as the application makes it (its DDL), holding ``rows``."""
    with engine.begin() as conn:
        create_application_table(conn, table, DIM, rows)


def table_rows(engine: sa.Engine, table: str) -> dict[str, dict[str, Any]]:
    """Every row of ``table`` by chunk_id, every column as Postgres returns it (the vector as floats)."""
    with engine.connect() as conn:
        found = conn.execute(sa.text(f"SELECT * FROM {quote(table)}")).mappings().all()
    rows = {}
    for row in found:
        row = dict(row)
        row["embedding"] = np.fromstring(row["embedding"][1:-1], dtype=np.float64, sep=",")
        rows[row["chunk_id"]] = row
    return rows


def assert_every_column_equal(
    expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]], *, but: tuple[str, ...] = ()
) -> None:
    """Both tables hold the same rows, each column of ``expected`` equal in ``got`` (the vector within float32's
    tolerance; every other column exactly, types included), but the columns ``but``; a column only ``got`` has (one
    the layout nsmigrate creates adds) holds nothing."""
    assert sorted(got) == sorted(expected)
    for chunk_id, row in expected.items():
        other = got[chunk_id]
        assert set(other) >= set(row), chunk_id
        assert all(other[c] is None for c in set(other) - set(row)), chunk_id
        np.testing.assert_allclose(other["embedding"], row["embedding"], atol=1e-6)
        for column, value in row.items():
            if column in (*but, "embedding"):
                continue
            assert other[column] == value and type(other[column]) is type(value), (chunk_id, column, other[column])


def job(name: str, source: dict[str, Any], target: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A job spec that copies as it is (no metadata added)."""
    return {"name": name, "source": source, "target": target, "enrich": KEEP_AS_IS, **more}


def move(source: str, target: str, to: dict[str, Any] = DOCUMENTED) -> dict[str, Any]:
    """A job spec: namespace ``source`` to ``target`` (tables of this database, or of the store ``to``)."""
    return job(
        "move",
        DOCUMENTED,
        to,
        namespaces={"include": [source]},
        routing={"mode": "explicit", "map": {source: target}},
    )


def nsmigrate(*args: str) -> Any:
    result = CliRunner().invoke(app, ["pgvector", *args])
    return result


def test_verification_fails_when_a_column_nsmigrate_does_not_know_differs(pg: sa.Engine) -> None:
    rows = app_rows(30)
    make_app_table(pg, "embeddings_alpha", rows)
    assert json.loads(nsmigrate("copy", "alpha", "beta", "--json").output)["verified"]
    one, other = rows[17]["chunk_id"], rows[23]["chunk_id"]
    with pg.begin() as conn:  # what a broken copy, or a later writer, could leave behind
        conn.execute(sa.text("UPDATE embeddings_beta SET confidence = 0.125 WHERE chunk_id = :i"), {"i": one})
        conn.execute(sa.text("UPDATE embeddings_beta SET domain_tags = '{x}' WHERE chunk_id = :i"), {"i": other})

    again = nsmigrate("copy", "alpha", "beta", "--json")

    assert again.exit_code == 1
    report = json.loads(again.output.split("\nerror:")[0])
    assert not report["verified"] and report["differ"] == 2
    assert report["differing"] == {one: "confidence differs", other: "domain_tags differs"}


def test_a_users_extra_column_is_carried_into_a_new_table(pg: sa.Engine) -> None:
    make_app_table(pg, "embeddings_alpha", app_rows(20))
    with pg.begin() as conn:
        conn.execute(sa.text("ALTER TABLE embeddings_alpha ADD COLUMN tenant_ref uuid, ADD COLUMN score numeric(6,3)"))
        conn.execute(
            sa.text("UPDATE embeddings_alpha SET tenant_ref = gen_random_uuid(), score = 12.345 WHERE id % 2 = 0")
        )

    result = nsmigrate("copy", "alpha", "beta", "--json")

    assert result.exit_code == 0 and json.loads(result.output)["verified"], result.output
    assert_every_column_equal(table_rows(pg, "embeddings_alpha"), table_rows(pg, "embeddings_beta"))


def with_a_users_column_and_a_target_without_it(pg: sa.Engine) -> None:
    make_app_table(pg, "embeddings_alpha", app_rows(10))
    make_app_table(pg, "embeddings_beta", [])
    with pg.begin() as conn:
        conn.execute(sa.text("ALTER TABLE embeddings_alpha ADD COLUMN tenant_ref uuid"))


def test_a_target_without_a_users_column_is_refused_at_plan_time(pg: sa.Engine) -> None:
    with_a_users_column_and_a_target_without_it(pg)

    for dry_run in (("--dry-run",), ()):
        result = nsmigrate("copy", "alpha", "beta", *dry_run)

        assert result.exit_code == 2, dry_run
        assert "table embeddings_beta has no column tenant_ref (uuid)" in result.output
    assert table_rows(pg, "embeddings_beta") == {}  # nothing copied


def test_a_fleet_job_into_a_target_without_a_users_column_is_refused_at_plan_time(
    pg: sa.Engine, tmp_path: Path
) -> None:
    with_a_users_column_and_a_target_without_it(pg)
    spec = parse_spec(move("alpha", "beta"))

    with pytest.raises(PlanError, match="table embeddings_beta has no column tenant_ref"):
        launch.prepare(spec, open_retrying_store, tmp_path)
    assert table_rows(pg, "embeddings_beta") == {}


def test_a_job_into_a_new_table_carries_a_users_column_inside_postgres_and_refuses_it_through_the_workers(
    pg: sa.Engine, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_app_table(pg, "embeddings_alpha", app_rows(10))
    with pg.begin() as conn:
        conn.execute(sa.text("ALTER TABLE embeddings_alpha ADD COLUMN tenant_ref uuid"))
    # The same database spelled otherwise: a job between two URLs runs its batches through the workers.
    monkeypatch.setenv("ELSEWHERE_URL", f"{database_url}?application_name=elsewhere")
    elsewhere = {**DOCUMENTED, "database_url_env": "ELSEWHERE_URL"}

    assert launch.prepare(parse_spec(move("alpha", "beta")), open_retrying_store, tmp_path).plan.runs
    with pytest.raises(PlanError, match=r"table embeddings_beta \(new, of the application's layout\) would have no "):
        launch.prepare(parse_spec(move("alpha", "beta", elsewhere)), open_retrying_store, tmp_path)

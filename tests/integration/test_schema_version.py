"""A job table upgraded by a newer nsmigrate is refused by this one, on a real Postgres: `ensure_schema` raises
naming both schema versions and changes nothing, and every command that writes (a worker's start included) says so
in one line with exit code 3. An older table is still upgraded (``test_batch_ids_storage.py``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.models import SCHEMA_VERSION, SchemaInfo, SchemaTooNew, ensure_schema

NEWER = SCHEMA_VERSION + 1


def upgraded_by_a_newer_nsmigrate(database_url: str) -> sa.Engine:
    """A job table of this version, then the version record a newer nsmigrate leaves after upgrading it."""
    jobs_database.Database(database_url).dispose()
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(SchemaInfo).values(version=NEWER))
    return engine


def tables_and_versions(engine: sa.Engine) -> tuple[set[str], list[int]]:
    with engine.connect() as conn:
        versions = list(conn.scalars(sa.select(SchemaInfo.version).order_by(SchemaInfo.version)))
        return set(sa.inspect(conn).get_table_names()), versions


def test_a_newer_job_table_is_refused_naming_both_versions_and_left_as_it_is(database_url: str) -> None:
    engine = upgraded_by_a_newer_nsmigrate(database_url)
    before = tables_and_versions(engine)

    with pytest.raises(SchemaTooNew) as refused:
        ensure_schema(engine)

    message = str(refused.value)
    assert f"schema is version {NEWER}" in message and f"schema version {SCHEMA_VERSION}" in message
    assert refused.value.exit_code == 3
    assert tables_and_versions(engine) == before
    engine.dispose()


@pytest.mark.parametrize(
    "command",
    [["cancel", "1"], ["retry", "1"], ["worker", "--queues", "copy", "--pool", "threads"]],
    ids=lambda c: c[0],
)
def test_commands_and_a_starting_worker_refuse_a_newer_job_table_with_exit_code_3(
    command: list[str], database_url: str, redis_url: str
) -> None:
    upgraded_by_a_newer_nsmigrate(database_url).dispose()

    result = CliRunner().invoke(
        app,
        [*command, "--database-url", database_url] + (["--redis-url", redis_url] if command[0] == "worker" else []),
    )

    assert result.exit_code == 3, result.output
    assert f"schema is version {NEWER}, newer than this nsmigrate knows (schema version {SCHEMA_VERSION}" in (
        " ".join(result.output.split())
    )
    assert "Traceback" not in result.output

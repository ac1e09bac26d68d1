"""Issue 27, case 9, as a user meets it (`python -m nsmigrate …` in its own process, real Postgres + pgvector, the
Pinecone
SDK on the local data plane): two namespaces that map to one table are refused at plan time, `pgvector drop` drops
only namespace tables, and a malformed pgvector URL is one message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.spec.jobspec import SourceTable
from nsmigrate.orchestrator.spec.stores import IdCatalogue
from nsmigrate.orchestrator.tenancy.creator_mapping import load_sources
from nsmigrate.workers.stores.enumeration import open_catalogue
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import cli, job_ids, write_spec
from tests.fleet.test_refusals_secrets import nsmigrate, one_error

DOCUMENTED = {"kind": "pgvector", "schema": "documented", "dimension": 8}


def tables(database_url: str) -> set[str]:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    finally:
        engine.dispose()


def test_the_default_namespace_and_default_are_refused_as_one_table(stack: Stack) -> None:
    for namespace in ("", "default", "alpha"):
        stack.pinecone.load("src", namespace, [(f"{namespace or 'd'}-1", [0.5] * 8, {"text": "t"})])
    spec = write_spec(stack, target=DOCUMENTED)

    message = cli(stack, "run", str(spec))

    assert message.returncode == 2, message.stdout + message.stderr
    assert "'' (the default namespace) and 'default' would both be the table embeddings_default" in message.stderr
    assert job_ids(stack) == []
    assert not {t for t in tables(stack.database_url) if t.startswith("embeddings")}


def test_drop_refuses_an_application_table_and_the_job_tables_own(database_url: str) -> None:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE app_users (id serial PRIMARY KEY, email text NOT NULL)"))
        conn.execute(sa.text("INSERT INTO app_users (email) VALUES ('a@example.com')"))
    engine.dispose()
    jobs_database.Database(database_url).dispose()  # the job table: jobs, namespace_runs, batches, events
    env = {"NSMIGRATE_PGVECTOR_URL": database_url}

    for namespace, prefix, table in [("users", "app", "app_users"), ("runs", "namespace", "namespace_runs")]:
        for flag in ("--yes", "--dry-run"):
            message = one_error(nsmigrate("pgvector", "drop", namespace, "--prefix", prefix, flag, **env))
            assert f"table {table} is not a namespace table of nsmigrate's layout" in message
            assert "nothing was dropped" in message

    assert {"app_users", "jobs", "namespace_runs", "batches", "events"} <= tables(database_url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:p@ss-TAIL@127.0.0.1:notaport/db",
        "not a url at all, maybe a key pasted by mistake",
        "postgresql+psycopg://app:SECRET@127.0.0.1:5432:5433/db",
    ],
)
def test_a_malformed_pgvector_url_is_one_message_without_the_url(url: str) -> None:
    message = one_error(nsmigrate("pgvector", "list", NSMIGRATE_PGVECTOR_URL=url))

    assert "environment variable NSMIGRATE_PGVECTOR_URL does not hold a database URL" in message
    assert "TAIL" not in message and "SECRET" not in message and "pasted" not in message


BAD_URL = "postgresql+psycopg://app:p@ss-TAIL@127.0.0.1:notaport/db"


def test_a_malformed_url_of_a_sources_table_or_an_id_catalogue_is_the_same_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NSM_TEST_SOURCES_URL", BAD_URL)
    monkeypatch.setenv("NSM_TEST_CATALOGUE_URL", BAD_URL)
    sources = SourceTable(source="postgres", database_url_env="NSM_TEST_SOURCES_URL")
    catalogue = open_catalogue(IdCatalogue(source="postgres", database_url_env="NSM_TEST_CATALOGUE_URL"))

    with pytest.raises(SpecError) as from_sources:
        load_sources(sources)
    with pytest.raises(SpecError) as from_catalogue:
        catalogue.ids_after("alpha", None, 10)

    for err, env_var in ((from_sources, "NSM_TEST_SOURCES_URL"), (from_catalogue, "NSM_TEST_CATALOGUE_URL")):
        assert f"environment variable {env_var} does not hold a database URL" in str(err.value)
        assert "TAIL" not in str(err.value)

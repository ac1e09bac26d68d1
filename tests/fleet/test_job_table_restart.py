"""A restarted Postgres (a server of the test's own, stopped and started again) costs the job table's transitions no
error: the pooled connections that died with it are found out and replaced before a statement runs."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate_sandbox.services import PostgresServer
from tests.integration.test_job_table import a_job, watch


def test_a_restarted_postgres_costs_no_transition_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled connections died with the server; ``pool_pre_ping`` finds that out as each is checked out and
    replaces it (and every connection as old) before the transition's statement runs."""
    server = PostgresServer().start()
    db = jobs_database.Database(server.url)
    try:
        _, run_ids = a_job(db, namespaces=3)
        traffic = watch(db, monkeypatch)
        with db.transaction(), db.transaction(), db.transaction():
            pass  # three connections in the pool
        server.stop(fast=True)
        server.start()

        for run_id in run_ids:
            assert jobs_pages.start_listing(db, run_id) is not None
        assert traffic.pings >= 1
    finally:
        db.dispose()
        server.destroy()

"""A restarted Postgres (a server of the test's own, stopped and started again) costs the job table's transitions no
error: the pooled connections that died with it are found out and replaced before a statement runs."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate_sandbox.services import PostgresServer
from tests.integration.test_job_table import a_job, watch


def test_a_restarted_postgres_costs_no_transition_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooled connections died with the server; each one's socket says so as it is checked out
    (``orchestrator.connections.liveness``), and the pool replaces it before the transition's statement runs."""
    server = PostgresServer().start()
    db = jobs_database.Database(server.url)
    try:
        _, run_ids = a_job(db, namespaces=3)
        traffic = watch(db, monkeypatch)
        replaced: list[BaseException | None] = []
        event.listen(db.engine, "invalidate", lambda _conn, _record, error: replaced.append(error))
        with db.transaction(), db.transaction(), db.transaction():
            pass  # three connections in the pool
        server.stop(fast=True)
        server.start()

        for run_id in run_ids:
            assert jobs_pages.start_listing(db, run_id) is not None
        assert replaced and all(isinstance(e, sa_exc.DisconnectionError) for e in replaced)
        assert traffic.pings == 0  # each was found dead by its socket, before any ping
    finally:
        db.dispose()
        server.destroy()

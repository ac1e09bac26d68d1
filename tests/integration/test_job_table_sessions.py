"""A job-table session whose client went away mid-transaction (a worker host cut off or lost between two statements
of a transition) does not hold its row locks for the rest of the fleet: Postgres ends it after
``IDLE_IN_TRANSACTION_S`` (``orchestrator.jobs.database``). The multi-host fleet: tests/fleet/test_hosts.py."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.models import Event


def test_a_transaction_whose_client_went_away_is_ended_and_its_row_locks_released(job_table_url: str) -> None:
    lost = jobs_database.Database(job_table_url, create=False, idle_in_transaction_s=1)
    fleet = jobs_database.Database(job_table_url, create=False)
    try:
        with fleet.transaction() as s:
            event = Event(actor="test", action="locked", detail={})
            s.add(event)
        held = lost.engine.connect()
        held.begin()
        held.execute(sa.select(Event.id).where(Event.id == event.id).with_for_update())
        # The client sends nothing more: its session waits inside the transaction, holding the row's lock.

        started = time.monotonic()
        with fleet.single_statement() as conn:
            conn.execute(sa.text("SET lock_timeout = '20s'"))  # without the limit: LockNotAvailable after 20 s
            conn.execute(sa.update(Event).where(Event.id == event.id).values(action="moved on"))
        assert time.monotonic() - started < 15
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
            held.execute(sa.select(1))
        held.invalidate()
        with fleet.transaction() as s:
            assert s.scalar(sa.select(Event.action).where(Event.id == event.id)) == "moved on"
    finally:
        lost.dispose()
        fleet.dispose()


def test_job_table_sessions_end_a_transaction_left_waiting_after_a_minute(job_table_url: str) -> None:
    db = jobs_database.Database(job_table_url, create=False)
    try:
        with db.single_statement() as conn:
            assert conn.scalar(sa.text("SHOW idle_in_transaction_session_timeout")) == "1min"
    finally:
        db.dispose()

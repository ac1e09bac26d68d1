"""The job table read over libpq itself (``cli.libpq``): every reader a command uses answers exactly what it answers
over psycopg, on a real Postgres, for a job with runs and batches in every state; a lost connection is made again
once; an unreachable server and a refused statement are told apart; with no libpq that loads, commands read over
psycopg."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from nsmigrate.cli import libpq
from nsmigrate.cli.options import _executor, read_job_status, status_reader
from nsmigrate.orchestrator import progress, snapshot
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from tests.integration.test_job_table import a_job


def _conninfo(url: str) -> str:
    return "postgresql://" + url.partition("://")[2]


@pytest.fixture
def job(job_table_url: str) -> Iterator[tuple[str, int, list[int]]]:
    """A job of three runs: one with a done, a failed and a queued batch, one listed but not copied, one untouched."""
    db = jobs_database.Database(job_table_url, create=False)
    job_id, run_ids = a_job(db, 3)
    first = run_ids[0]
    assert jobs_pages.start_listing(db, first) is not None
    done, failed, _queued = jobs_pages.add_batches(
        db, first, [["a", "b"], ["c"], ["d"]], None, listing_done=True
    ).batch_ids
    for batch_id in (done, failed):
        jobs_batches.start_batch(db, batch_id, "worker")
    jobs_batches.finish_batch(db, done, vectors=2, missing=0, nbytes=10, targets=["ns0"], max_in_flight=8)
    jobs_batches.fail_batch(db, failed, "HTTP 503 from the target, 5 attempts", "worker")
    assert jobs_pages.start_listing(db, run_ids[1]) is not None
    jobs_pages.add_batches(db, run_ids[1], [["e"]], None, listing_done=True)
    db.dispose()
    yield job_table_url, job_id, run_ids


def test_every_reader_answers_over_libpq_what_it_answers_over_psycopg(job: tuple[str, int, list[int]]) -> None:
    url, job_id, run_ids = job
    readers = {
        "progress": lambda execute: progress.read_progress(execute, job_id, 2),
        "snapshot": lambda execute: snapshot.read_snapshot(execute, job_id),
        "summary": lambda execute: snapshot.read_summary(execute, job_id, None),
        "summary of 1 row": lambda execute: snapshot.read_summary(execute, job_id, 1),
        "by name": lambda execute: snapshot.job_id_of(execute, "cost"),
        "jobs": lambda execute: snapshot.read_jobs(execute, 5),
        "verdicts": lambda execute: snapshot.read_verdicts(execute, run_ids),
    }
    with libpq.connect(_conninfo(url)) as conn, psycopg.connect(_conninfo(url), autocommit=True) as plain:
        over_libpq = {name: read(conn.execute) for name, read in readers.items()}
        over_psycopg = {name: read(_executor(plain)) for name, read in readers.items()}
    assert over_libpq == over_psycopg
    assert over_libpq["by name"] == job_id
    counts = {r.run_id: r.batches.as_dict() for r in over_libpq["snapshot"].runs}
    assert counts[run_ids[0]] == {"queued": 1, "running": 0, "done": 1, "failed": 1, "cancelled": 0}
    assert read_job_status(url, str(job_id)) == over_psycopg["snapshot"]


def test_values_and_parameters_load_as_psycopg_loads_them(job_table_url: str) -> None:
    statements = [
        ("SELECT %(a)s + %(a)s", {"a": 2}),
        ("SELECT %(n)s::text", {"n": 'ünïcode "quoted" 50%'}),
        ("SELECT '100%%'::text", {}),
        ("SELECT json_build_object('k', %(s)s::text, 'n', NULL)", {"s": "v"}),
        ("SELECT jsonb_build_array(1, 'two', true)", {}),
        ("SELECT 3 = ANY(%(ids)s)", {"ids": [1, 2, 3]}),
        ("SELECT (%(names)s::text[])[2]", {"names": ['a"b', "c\\d"]}),
        ("SELECT %(flag)s AND true", {"flag": False}),
        ("SELECT %(x)s * 2", {"x": 1.25}),
        ("SELECT %(missing)s::int", {"missing": None}),
        ("SELECT 1 WHERE false", {}),
    ]
    with (
        libpq.connect(_conninfo(job_table_url)) as conn,
        psycopg.connect(_conninfo(job_table_url), autocommit=True) as plain,
    ):
        execute = _executor(plain)
        for sql, params in statements:
            assert conn.execute(sql, params) == execute(sql, params), sql


def test_a_connection_lost_is_made_again_once(job: tuple[str, int, list[int]]) -> None:
    url, job_id, _ = job
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with libpq.connect(_conninfo(url)) as conn:
        before = progress.read_progress(conn.execute, job_id, 5)
        pid = conn.execute("SELECT pg_backend_pid()", {})
        with admin.connect() as other:
            assert other.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert progress.read_progress(conn.execute, job_id, 5) == before
        assert conn.execute("SELECT pg_backend_pid()", {}) != pid
    admin.dispose()


def test_an_unreachable_server_and_a_refused_statement_are_told_apart(job_table_url: str) -> None:
    with pytest.raises(libpq.ConnectionFailed, match=r"127\.0\.0\.1.* 1 failed"):
        libpq.connect("postgresql://nobody@127.0.0.1:1/none")
    with libpq.connect(_conninfo(job_table_url)) as conn, pytest.raises(libpq.Failed) as refused:
        conn.execute("SELECT * FROM no_such_table", {})
    assert refused.value.sqlstate == "42P01" and not isinstance(refused.value, libpq.ConnectionFailed)


def test_with_no_libpq_that_loads_commands_read_over_psycopg(
    job: tuple[str, int, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, job_id, _ = job
    with status_reader(url, job_id) as read:
        over_libpq = read(5)
    monkeypatch.setattr(libpq, "_lib", None)
    assert libpq.connect(_conninfo(url)) is None
    with status_reader(url, job_id) as read:
        assert read(5) == over_libpq
    assert read_job_status(url, str(job_id)).job_id == job_id

"""A job just made is read at once, and at every poll, by the command waiting for it (`run --wait`), and by `status`,
while the planner's statistics still predate its runs: autovacuum analyzes a table at most once a minute, after
enough of it changed. Those statistics put the new job's runs at one row. On a real Postgres with such statistics,
each read still answers in a fraction of a second: no plan may run a join of the job's runs again for each run (a poll
of 2,000 runs with 32 batches in flight took 35 s, and `run --wait` exited that much after the job's last batch).

The statements that act on a job read it under the same statistics, which stay stale for as long as the job's rows are
too few beside the table's to trigger an analyze: every worker's sweep for stalled runs, `resume` and `retry`. Their
plans are read as they ran (``auto_explain``), and held to the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa

from nsmigrate.cli.options import read_job_status, status_reader
from nsmigrate.cli.render import SUMMARY_ROWS
from nsmigrate.cli.waits import Settled
from nsmigrate.orchestrator import progress, recovery, snapshot
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.progress import RunShape
from nsmigrate.orchestrator.snapshot import BatchCounts
from tests.integration.test_job_table import a_job
from tests.sent_tasks import SentTasks

RUNS = 2_000
QUEUED, RUNNING, FAILED = 100, 100, 100
#: Far above what a read takes here (milliseconds), far below what a plan that joins again per run takes (minutes).
READ_TIMEOUT_MS = 10_000
_TABLES = ("namespace_runs", "batches")


@pytest.fixture
def db(job_table_url: str) -> Iterator[jobs_database.Database]:
    """The job table with autovacuum off for the runs and batches, so the statistics stay those the test made."""
    database = jobs_database.Database(job_table_url, create=False)
    with database.engine.begin() as conn:
        for table in _TABLES:
            conn.execute(sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    yield database
    with database.engine.begin() as conn:
        for table in _TABLES:
            conn.execute(sa.text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
    database.dispose()


#: An earlier job's runs all copied, one done batch each, written in two statements.
_COPIED = (
    "UPDATE namespace_runs SET state = 'copied', listing_done = true, batches_total = 1, listed = 3, copied = 3 "
    "WHERE job_id = :job",
    "INSERT INTO batches (run_id, seq, ids, state, attempts, lost_attempts, vectors, missing, bytes, created_at) "
    "SELECT id, 0, '\\x00', 'done', 1, 0, 3, 0, 1, now() FROM namespace_runs WHERE job_id = :job",
)


def statistics_of_an_earlier_job(db: jobs_database.Database, jobs: int = 1) -> None:
    """The tables analyzed while they hold an earlier job of a few hundred runs (or as many ``jobs`` sharing them),
    copied: what the planner knows when the next job is made."""
    for _ in range(jobs):
        job_id, _ = a_job(db, 300 // jobs)
        with db.engine.begin() as conn:
            for statement in _COPIED:
                conn.execute(sa.text(statement), {"job": job_id})
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"ANALYZE {', '.join(_TABLES)}"))


class NewJob(NamedTuple):
    job_id: int
    run_ids: list[int]
    #: The runs with a batch, in order: ``QUEUED`` queued, ``RUNNING`` running, ``FAILED`` failed.
    in_flight: list[int]


@pytest.fixture
def new_job(db: jobs_database.Database, request: pytest.FixtureRequest) -> NewJob:
    """A job of ``RUNS`` runs made after the tables were analyzed (with as many earlier jobs as the test's parameter
    says, one by default), some of its batches in flight."""
    statistics_of_an_earlier_job(db, getattr(request, "param", 1))
    job_id, run_ids = a_job(db, RUNS)
    in_flight = run_ids[: QUEUED + RUNNING + FAILED]
    batch_of: dict[int, int] = {}
    for run_id in in_flight:
        assert jobs_pages.start_listing(db, run_id) is not None
        [batch_of[run_id]] = jobs_pages.add_batches(db, run_id, [["a"]], None, listing_done=True).batch_ids
    for run_id in in_flight[QUEUED:]:
        assert jobs_batches.start_batch(db, batch_of[run_id], "w") is not None
    for run_id in in_flight[QUEUED + RUNNING :]:
        jobs_batches.fail_batch(db, batch_of[run_id], "refused")
    return NewJob(job_id, run_ids, in_flight)


def test_the_commands_read_a_new_job_of_many_runs_in_time_with_statistics_that_predate_it(
    new_job: NewJob, job_table_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, run_ids, in_flight = new_job
    # Every connection the commands open from here on cancels a statement that runs longer (libpq reads PGOPTIONS).
    monkeypatch.setenv("PGOPTIONS", f"-c statement_timeout={READ_TIMEOUT_MS}")

    with status_reader(job_table_url, job_id) as read:  # what `run --wait` polls
        progress = read(SUMMARY_ROWS)
    assert progress.summary.namespaces == RUNS
    assert progress.summary.states == {RunState.PENDING: RUNS - len(in_flight), RunState.COPYING: len(in_flight)}
    assert (progress.summary.failed_batches, progress.summary.failed_batch_namespaces) == (FAILED, FAILED)
    assert progress.shapes == {
        RunShape(RunState.PENDING, busy=False, failed_batches=False, failed_ids=False),
        RunShape(RunState.COPYING, busy=True, failed_batches=False, failed_ids=False),
        RunShape(RunState.COPYING, busy=False, failed_batches=True, failed_ids=True),
    }
    assert not Settled(auto_verify=False).done(progress)

    status = read_job_status(job_table_url, str(job_id))  # `status --all`, and `run --wait --json` at its end
    counts = {r.run_id: r.batches for r in status.runs}
    assert [counts[run_id] for run_id in in_flight] == (
        [BatchCounts(queued=1)] * QUEUED + [BatchCounts(running=1)] * RUNNING + [BatchCounts(failed=1)] * FAILED
    )
    assert all(counts[run_id] == BatchCounts() for run_id in run_ids[len(in_flight) :])


def rows_read_again(node: dict[str, Any]) -> int:
    """The rows the nodes of a plan that ran more than once produced, over all their runs: a node run again for each
    run or batch, reading more than a handful each time, makes a read's cost grow with their product."""
    loops = node["Actual Loops"]
    own = int(node["Actual Rows"] * loops) if loops > 1 else 0
    return own + sum(rows_read_again(child) for child in node.get("Plans", ()))


@pytest.mark.parametrize("statement", ["PROGRESS_SQL", "SNAPSHOT_SQL"])
@pytest.mark.parametrize("new_job", [1, 300], ids=["one_earlier_job", "many_earlier_jobs"], indirect=True)
def test_the_plans_of_a_new_jobs_reads_stay_linear_in_its_runs(
    new_job: NewJob, db: jobs_database.Database, statement: str
) -> None:
    """The reads' plans under the stale statistics: their work grows with the job's runs and batches, never with
    their product (a run scanning every other run, a batch every run). Statistics of many earlier jobs put a job's
    runs at one row even where the job is a parameter (the snapshot's failed batches, joined to the job's runs, read
    them again for each failed batch)."""
    sql = {"PROGRESS_SQL": progress.PROGRESS_SQL, "SNAPSHOT_SQL": snapshot.SNAPSHOT_SQL}[statement]
    with db.engine.connect() as conn:
        conn.exec_driver_sql(f"SET statement_timeout = {READ_TIMEOUT_MS}")
        [explained] = conn.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", {"job_id": new_job.job_id, "rows": SUMMARY_ROWS}
        ).scalar_one()
    assert rows_read_again(explained["Plan"]) < 5 * (RUNS + len(new_job.in_flight))


#: Every statement a connection with these options runs sends its plan, as it ran (EXPLAIN ANALYZE), to the client.
_PLANS_SENT = (
    "-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on "
    "-c auto_explain.log_format=json -c auto_explain.log_level=notice"
)


@contextmanager
def plans_run(database: jobs_database.Database) -> Iterator[list[dict[str, Any]]]:
    """The plans of the statements ``database``'s connections run meanwhile, each as it ran, cancelled past
    ``READ_TIMEOUT_MS``."""
    plans: list[dict[str, Any]] = []

    def with_options(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["options"] = f"{cparams.get('options', '')} {_PLANS_SENT} -c statement_timeout={READ_TIMEOUT_MS}"

    def keep(notice: Any) -> None:
        message = notice.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message[message.index("{") :]))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.add_notice_handler(keep)

    database.engine.dispose()  # only new connections have the options
    sa.event.listen(database.engine, "do_connect", with_options)
    sa.event.listen(database.engine, "connect", on_connect)
    try:
        yield plans
    finally:
        sa.event.remove(database.engine, "do_connect", with_options)
        sa.event.remove(database.engine, "connect", on_connect)
        database.engine.dispose()


def made_an_hour_ago(db: jobs_database.Database) -> None:
    """The runs and batches of the job table changed an hour ago, the statistics still those taken before them: a run
    with work to come then looks stalled to the sweep."""
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE namespace_runs SET updated_at = updated_at - interval '1 hour'"))
        conn.execute(
            sa.text(
                "UPDATE batches SET created_at = created_at - interval '1 hour', "
                "started_at = started_at - interval '1 hour', finished_at = finished_at - interval '1 hour'"
            )
        )


@pytest.mark.parametrize("command", ["sweep", "resume", "retry"])
@pytest.mark.parametrize("new_job", [1, 300], ids=["one_earlier_job", "many_earlier_jobs"], indirect=True)
def test_the_sweep_resume_and_retry_act_on_a_new_job_in_plans_linear_in_its_runs(
    new_job: NewJob, db: jobs_database.Database, command: str
) -> None:
    """Each statement of the sweep for stalled runs (every worker, every few seconds), `resume` and `retry`, under the
    stale statistics: none runs a node again for each run or batch that reads more than a handful of rows each time
    (the job's unfinished and failed batches joined to its runs read them all again per batch)."""
    job_id, run_ids, in_flight = new_job
    copying = in_flight[: QUEUED + RUNNING]  # with a queued or running batch: work to come
    pending = run_ids[len(in_flight) :]  # a lister to come
    made_an_hour_ago(db)
    sent = SentTasks()
    with plans_run(db) as plans:
        if command == "sweep":
            resent = recovery.resend_stalled(db, sent, idle_s=60)  # the earlier job's copied runs: their verifications
            assert resent[job_id] == {"listers": len(pending), "batches": len(copying), "verifications": 0}
        elif command == "resume":
            assert recovery.resume(db, sent, job_id) == {
                "listers": len(pending),
                "batches": len(copying),
                "verifications": 0,
            }
        else:
            assert [run_id for run_id, _ in jobs_batches.requeue_failed(db, job_id)] == in_flight[QUEUED + RUNNING :]
    if command != "retry":
        assert sorted(run_id for kind, run_id in sent.sent if kind == "list") == pending
        assert len([kind for kind, _ in sent.sent if kind == "copy"]) == len(copying)
    assert plans
    read_again = [(plan["Query Text"], rows_read_again(plan["Plan"])) for plan in plans]
    assert [(sql, rows) for sql, rows in read_again if rows >= 5 * (RUNS + len(in_flight))] == []


def batches_read(node: dict[str, Any]) -> int:
    """The rows of ``batches`` a plan's scans read (those its filters dropped too), over all their runs."""
    own = 0
    if node.get("Relation Name") == "batches":
        own = int((node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"])
    return own + sum(batches_read(child) for child in node.get("Plans", ()))


def test_resume_and_retry_read_none_of_the_batches_a_cancelled_job_left(
    new_job: NewJob, db: jobs_database.Database
) -> None:
    """A cancelled job's queued and failed batches stay in the table for good (its workers drop them): `resume`,
    `retry` and a poll of `status` of another job read its own runs' batches, not every unfinished one of the
    table."""
    left, runs = 20_000, 200
    cancelled, _ = a_job(db, runs)
    jobs_and_runs.cancel_job(db, cancelled)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO batches (run_id, seq, ids, state, attempts, lost_attempts, vectors, missing, bytes, "
                "created_at) SELECT r.id, s, '\\x00', CASE WHEN s % 2 = 0 THEN 'queued' ELSE 'failed' END, 1, 0, 0, 0, "
                "0, now() FROM namespace_runs r, generate_series(0, :per_run - 1) s WHERE r.job_id = :job"
            ),
            {"job": cancelled, "per_run": left // runs},
        )
    with plans_run(db) as plans:
        summary = jobs_status.job_progress(db, new_job.job_id, SUMMARY_ROWS).summary
        assert (summary.failed_batches, summary.failed_batch_namespaces) == (FAILED, FAILED)
        [polled] = plans
        assert len(jobs_batches.unfinished_work(db, new_job.job_id)[1]) == QUEUED + RUNNING
        assert len(jobs_batches.requeue_failed(db, new_job.job_id)) == FAILED
    # The poll reads the job's unfinished batches for the runs shown, for the shapes, and its failed ones again.
    assert batches_read(polled["Plan"]) <= 3 * len(new_job.in_flight)
    assert max(batches_read(plan["Plan"]) for plan in plans[1:]) <= len(new_job.in_flight)

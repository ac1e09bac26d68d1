"""`status` reads a job's runs from the real job table as columns, each verification report reduced to its summary
and verdict in the database, and a job's namespace runs are written in one multi-row insert: both must give exactly
what the full rows said."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.cli.render import SUMMARY_ROWS
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import Batch, ErasePlace, NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec


def test_status_shows_each_runs_summary_and_verdict_and_every_planned_run(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "status-view",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    source = Inventory("src", 4, {"a": 3, "b": 5, "c": 7, "": 2}, "cosine")
    plan = make_plan(spec, source, Inventory("dst", 4, {}, "cosine"), {})
    db = jobs_database.Database(database_url)
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    reports = {
        "a": ({"passed": True, "summary": "3/3 ids, contents equal", "missing": [], "checked_at": "t"}, "verified"),
        "b": ({"passed": False, "summary": "2 missing", "missing": ["x", "y"]}, "verify_failed"),
        # Verified, then sent copying again by a sync: its report is an earlier one, and passes nothing now.
        "": ({"passed": True, "summary": "2/2 ids, contents equal"}, "copying"),
    }
    with db.transaction() as s:
        for ns, (report, state) in reports.items():
            s.execute(
                sa.update(NamespaceRun)
                .where(NamespaceRun.job_id == job_id, NamespaceRun.source_namespace == ns)
                .values(verification=report, state=state)
            )

    status = jobs_status.job_status(db, job_id)

    by_ns = {r.source_namespace: r for r in status.runs}
    assert {ns: r.source_count for ns, r in by_ns.items()} == {"a": 3, "b": 5, "c": 7, "": 2}
    assert (by_ns["a"].verification, by_ns["a"].verified_ok) == ("3/3 ids, contents equal", True)
    assert (by_ns["b"].verification, by_ns["b"].verified_ok) == ("2 missing", False)
    assert (by_ns["c"].verification, by_ns["c"].verified_ok) == (None, None)
    assert (by_ns[""].verification, by_ns[""].verified_ok) == ("2/2 ids, contents equal", None)
    env = {"NSMIGRATE_DATABASE_URL": database_url}
    assert CliRunner().invoke(app, ["report", str(job_id), "-n", "a"], env=env).exit_code == 0
    assert CliRunner().invoke(app, ["report", str(job_id), "-n", "__default__"], env=env).exit_code == 1
    assert by_ns["b"].state == RunState.VERIFY_FAILED and by_ns["c"].state == RunState.PENDING
    assert [r.run_id for r in status.runs] == sorted(r.run_id for r in status.runs)
    assert status.totals.source == 17
    db.dispose()


def test_status_of_many_namespaces_shows_those_to_look_at_and_the_count_of_each_state(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "many",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    names = {f"n{k:02d}": 3 for k in range(60)}
    plan = make_plan(spec, Inventory("src", 4, names, "cosine"), Inventory("dst", 4, {}, "cosine"), {})
    db = jobs_database.Database(database_url)
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    states = {"n59": RunState.LIST_FAILED, "n58": RunState.VERIFY_FAILED, "n57": RunState.COPYING}
    with db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.job_id == job_id).values(state=RunState.VERIFIED))
        for ns, state in states.items():
            s.execute(
                sa.update(NamespaceRun)
                .where(NamespaceRun.job_id == job_id, NamespaceRun.source_namespace == ns)
                .values(state=state)
            )
    db.dispose()
    runner = CliRunner()

    summary = runner.invoke(app, ["status", str(job_id), "--database-url", database_url])
    every = runner.invoke(app, ["status", str(job_id), "--all", "--database-url", database_url])

    assert summary.exit_code == 0 and every.exit_code == 0, summary.output + every.output
    rows = [line for line in summary.stdout.splitlines() if line.startswith("│ n")]
    assert len(rows) == SUMMARY_ROWS
    assert [row.split()[1] for row in rows[:3]] == ["n59", "n58", "n57"]  # failed first, then unfinished
    assert "20 more namespaces" in summary.stdout
    assert "1 copying, 1 list_failed, 57 verified, 1 verify_failed" in " ".join(summary.stdout.split())
    assert len([line for line in every.stdout.splitlines() if line.startswith("│ n")]) == 60
    assert "more namespaces" not in every.stdout


def test_status_counts_each_runs_batches_by_state_as_the_batch_rows_say(database_url: str) -> None:
    spec = parse_spec(
        {
            "name": "batch-counts",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    plan = make_plan(
        spec, Inventory("src", 4, {"a": 9, "b": 3, "c": 1}, "cosine"), Inventory("dst", 4, {}, "cosine"), {}
    )
    db = jobs_database.Database(database_url)
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    run_a, run_b, _ = (r.id for r in jobs_and_runs.runs_of(db, job_id))
    a = jobs_pages.add_batches(db, run_a, [["1"], ["2"], ["3"], ["4"], ["5"]], "t", listing_done=False).batch_ids
    b = jobs_pages.add_batches(db, run_b, [["x", "y"], ["z"]], None, listing_done=True).batch_ids
    for batch in (a[0], a[1], a[2], a[3], b[0], b[1]):
        jobs_batches.start_batch(db, batch, "w")
    for batch in (a[0], b[0], b[1]):
        jobs_batches.finish_batch(db, batch, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs_batches.fail_batch(db, a[1], "boom: the target refused")
    jobs_batches.fail_batch(db, a[2], "boom: again")

    status = {r.run_id: r for r in jobs_status.job_status(db, job_id).runs}

    with db.transaction() as s:
        rows = s.execute(sa.select(Batch.run_id, Batch.state, sa.func.count()).group_by(Batch.run_id, Batch.state))
        expected = {(run_id, state): n for run_id, state, n in rows}
    for run_id, run in status.items():
        assert run.batches.as_dict() == {
            st: expected.get((run_id, st), 0) for st in ("queued", "running", "done", "failed")
        } | {"cancelled": 0}
    assert status[run_a].batches.as_dict() == {"queued": 1, "running": 1, "done": 1, "failed": 2, "cancelled": 0}
    assert status[run_a].last_error == "boom: the target refused"
    assert status[run_b].state == RunState.COPIED and status[run_b].batches.done == 2
    db.dispose()


def test_a_cancelled_runs_queued_batches_are_shown_cancelled_never_queued(database_url: str) -> None:
    """No worker starts a batch of a cancelled run: the job's snapshot (`status`, `--json`, the job page) counts its
    queued batches as cancelled, while a batch already running, done or failed stays what it is (a run that had
    copied is cancelled too, with nothing to show cancelled)."""
    spec = parse_spec(
        {
            "name": "cancelled-counts",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    plan = make_plan(spec, Inventory("src", 4, {"a": 9, "b": 3}, "cosine"), Inventory("dst", 4, {}, "cosine"), {})
    db = jobs_database.Database(database_url)
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    run_a, run_b = (r.id for r in jobs_and_runs.runs_of(db, job_id))
    a = jobs_pages.add_batches(db, run_a, [["1"], ["2"], ["3"], ["4"], ["5"]], "t", listing_done=False).batch_ids
    [b] = jobs_pages.add_batches(db, run_b, [["x"]], None, listing_done=True).batch_ids
    for batch in (a[0], a[1], a[2], b):
        jobs_batches.start_batch(db, batch, "w")
    for batch in (a[0], b):
        jobs_batches.finish_batch(db, batch, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs_batches.fail_batch(db, a[1], "boom")

    jobs_and_runs.cancel_job(db, job_id, actor="tester")

    assert [jobs_batches.start_batch(db, batch, "w") for batch in a[3:]] == [None, None]  # never to run
    status = {r.run_id: r for r in jobs_status.job_status(db, job_id).runs}
    assert status[run_a].state == RunState.CANCELLED
    assert status[run_a].batches.as_dict() == {"queued": 0, "running": 1, "done": 1, "failed": 1, "cancelled": 2}
    assert status[run_b].state == RunState.CANCELLED
    assert status[run_b].batches.as_dict() == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}
    db.dispose()
    shown = CliRunner().invoke(app, ["status", str(job_id), "--json", "--database-url", database_url])
    assert shown.exit_code == 0, shown.output
    runs = {r["run_id"]: r for r in orjson.loads(shown.stdout_bytes)["runs"]}
    assert runs[run_a]["batches"] == status[run_a].batches.as_dict()
    assert runs[run_b]["batches"] == status[run_b].batches.as_dict()
    # its failed batch is shown, but not `retry`, which refuses a cancelled job
    told = CliRunner().invoke(app, ["status", str(job_id), "--database-url", database_url], env={"COLUMNS": "200"})
    assert told.exit_code == 0 and "1 in failed batches" in told.stdout, told.output
    assert "nsmigrate retry" not in told.stdout


def job_in_every_state(db: jobs_database.Database) -> int:
    """A job of 13 runs in every state a run can be in, some with failed ids, some with batches in each state, one
    routed (no target namespace, two targets), with two erasure places: what `status` has to summarise."""
    spec = parse_spec(
        {
            "name": "every-state",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    names = {f"s{k:02d}": 10 + k for k in range(13)}
    plan = make_plan(spec, Inventory("src", 4, names, "cosine"), Inventory("dst", 4, {}, "cosine"), {})
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    runs = [r.id for r in jobs_and_runs.runs_of(db, job_id)]
    # Run 0: batches queued, running, done and failed (fail_batch counts its ids as failed).
    first = jobs_pages.add_batches(db, runs[0], [["a"], ["b"], ["c"], ["d", "e"]], "t", listing_done=True).batch_ids
    for batch in first[1:]:
        jobs_batches.start_batch(db, batch, "w")
    jobs_batches.finish_batch(db, first[2], vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs_batches.fail_batch(db, first[3], "boom: the target refused")
    states = [
        RunState.COPYING,  # run 0, with failed ids
        RunState.VERIFIED,
        RunState.LIST_FAILED,
        RunState.VERIFIED,
        RunState.PENDING,
        RunState.VERIFY_FAILED,
        RunState.COPIED,  # with failed ids (below)
        RunState.CLEANED,
        RunState.LISTING,
        RunState.VERIFYING,
        RunState.CANCELLED,
        RunState.CLEANING,
        RunState.PENDING,
    ]
    with db.transaction() as s:
        for run_id, state in zip(runs, states, strict=True):
            s.execute(
                sa.update(NamespaceRun)
                .where(NamespaceRun.id == run_id)
                .values(state=state, copied=NamespaceRun.source_count // 2, listed=NamespaceRun.source_count)
            )
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.id == runs[6]).values(failed=3))
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.id == runs[2]).values(last_error="listing refused"))
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == runs[5])
            .values(verification={"passed": False, "summary": "2 missing", "missing": ["x", "y"]})
        )
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == runs[1])
            .values(verification={"passed": True, "summary": "11 = 11 vectors"})
        )
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == runs[3])
            .values(target_namespace=None, target_namespaces=["creator_a", "creator_b"])
        )
        s.add_all(
            [
                ErasePlace(job_id=job_id, kind="namespace", store="dst", namespace="s00", planned=4, state="verified"),
                ErasePlace(
                    job_id=job_id,
                    kind="backup",
                    store="backup",
                    path="/b/x",
                    planned=2,
                    erased=1,
                    state="failed",
                    last_error="read-only file system",
                ),
            ]
        )
    return job_id


@pytest.mark.parametrize("rows", [None, 1, 2, 3, 4, 6, 12, 13, 40])
def test_the_summary_the_database_aggregates_is_the_one_the_full_snapshot_gives(database_url: str, rows: int) -> None:
    db = jobs_database.Database(database_url)
    job_id = job_in_every_state(db)

    summary = jobs_status.job_summary(db, job_id, rows)
    full = jobs_status.job_status(db, job_id)

    assert summary == full.summary(rows)
    shown = [r.source_namespace for r in summary.runs]
    assert len(shown) == (13 if rows is None or rows >= 13 else rows)
    if rows is not None and rows < 13:  # failed ids first, then failed states, unfinished ones; ties by run id
        order = ["s00", "s06", "s02", "s05", "s08", "s09", "s04", "s12", "s11", "s01", "s03", "s07", "s10"]
        assert shown == order[:rows]
    assert summary.namespaces == 13 and sum(summary.states.values()) == 13
    assert summary.states[RunState.PENDING] == 2 and summary.totals.failed == 5
    assert len(summary.places) == 2
    db.dispose()


def test_status_json_is_the_snapshot_as_dict_byte_for_byte(database_url: str) -> None:
    db = jobs_database.Database(database_url)
    job_id = job_in_every_state(db)
    expected = orjson.dumps(
        jobs_status.job_status(db, job_id).as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )
    db.dispose()

    result = CliRunner().invoke(app, ["status", str(job_id), "--json", "--database-url", database_url])

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected
    data = orjson.loads(expected)
    assert [p["kind"] for p in data["places"]] == ["namespace", "backup"]
    assert data["runs"][3]["target_namespace"] is None and data["runs"][3]["targets"] == ["creator_a", "creator_b"]
    assert data["runs"][0]["batches"] == {"queued": 1, "running": 1, "done": 1, "failed": 1, "cancelled": 0}


def test_status_of_a_job_shows_its_summary_from_the_database(database_url: str) -> None:
    db = jobs_database.Database(database_url)
    job_id = job_in_every_state(db)
    db.dispose()

    result = CliRunner().invoke(app, ["status", "every-state", "--database-url", database_url], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"job {job_id} (every-state): running" in out
    assert "re-run the failed batches" in out and "list the failed namespaces again" in out
    assert "boom: the target refused" in out and "2 missing" in out and "listing refused" in out
    assert "erased of" in out and "read-only file system" in out


def test_jobs_lists_the_newest_first_as_the_engine_reads_them(database_url: str) -> None:
    db = jobs_database.Database(database_url)
    first, second = job_in_every_state(db), job_in_every_state(db)
    listed = jobs_status.list_jobs(db, 5)
    db.dispose()

    result = CliRunner().invoke(app, ["jobs", "--database-url", database_url], env={"COLUMNS": "200"})

    assert [j["job_id"] for j in listed] == [second, first]
    assert listed[0]["created_at"] >= listed[1]["created_at"] and listed[0]["kind"] == "migrate"
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert [(r[1], r[3]) for r in rows] == [(str(second), "every-state"), (str(first), "every-state")]
    assert rows[0][9] == listed[0]["created_at"][:19]


def test_jobs_and_events_show_utc_whatever_the_sessions_time_zone(database_url: str) -> None:
    # The job page labels these times UTC; a server set to another zone rendered them in its own, offset cut.
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = conn.exec_driver_sql("SELECT current_database()").scalar()
        conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET TimeZone = 'America/New_York'")
    admin.dispose()
    db = jobs_database.Database(database_url)
    job_id = job_in_every_state(db)
    with db.transaction() as s:
        assert s.execute(sa.text("SHOW TimeZone")).scalar() == "America/New_York"
        created = s.execute(sa.text("SELECT created_at FROM jobs WHERE id = :j"), {"j": job_id}).scalar()
    utc = created.astimezone(UTC).isoformat(timespec="seconds")[:19]

    [listed] = [j for j in jobs_status.list_jobs(db, 5) if j["job_id"] == job_id]
    events = jobs_status.events_of(db, job_id)
    db.dispose()
    shown = CliRunner().invoke(app, ["jobs", "--database-url", database_url], env={"COLUMNS": "200"})

    assert listed["created_at"][:19] == utc and listed["created_at"].endswith("+00:00")
    assert events and all(e["at"].endswith("+00:00") for e in events)
    assert shown.exit_code == 0 and utc in shown.stdout, shown.output


def test_status_and_jobs_given_the_job_tables_url_read_no_other_setting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = jobs_database.Database(database_url)
    job_in_every_state(db)
    db.dispose()
    monkeypatch.setenv("NSMIGRATE_RETRY_ATTEMPTS", "0")  # invalid, and not what reading the job table needs
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", database_url)
    runner = CliRunner()

    for args in (["status", "every-state"], ["status", "every-state", "--json"], ["jobs"]):
        assert runner.invoke(app, args).exit_code == 0, args
    # A command that loads the settings still names the bad one.
    assert "NSMIGRATE_RETRY_ATTEMPTS" in runner.invoke(app, ["events", "every-state"]).stderr


def test_status_without_the_url_in_the_environment_reads_it_from_dot_env(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = jobs_database.Database(database_url)
    job_id = job_in_every_state(db)
    db.dispose()
    monkeypatch.delenv("NSMIGRATE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"NSMIGRATE_DATABASE_URL={database_url}\n")

    result = CliRunner().invoke(app, ["status", "every-state", "--json"])

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["job_id"] == job_id


def test_a_job_table_without_its_schema_is_read_by_the_same_reader_through_the_engine(database_url: str) -> None:
    """`status` and `jobs` read over plain psycopg; on a database without the job table's schema they read through
    the engine, which makes the schema first, and with the same statements: a missing job is the same error, naming
    where to find the jobs."""
    from nsmigrate.cli.options import read_job_table
    from nsmigrate.orchestrator.errors import NotFound
    from nsmigrate.orchestrator.snapshot import read_jobs, read_snapshot

    listed = read_job_table(database_url, lambda execute: read_jobs(execute, 5))  # no tables yet: the engine's way
    with pytest.raises(NotFound) as through_psycopg:
        read_job_table(database_url, lambda execute: read_snapshot(execute, 7))  # the tables exist now
    db = jobs_database.Database(database_url)
    try:
        with pytest.raises(NotFound) as through_engine:
            jobs_status.read_status(db, lambda execute: read_snapshot(execute, 7))
    finally:
        db.dispose()

    assert listed == []
    assert str(through_psycopg.value) == str(through_engine.value)
    assert str(through_engine.value).startswith("no job '7' in the job table")

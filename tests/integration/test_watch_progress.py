"""A command following a job of more namespaces than it lists (`run --wait`, `watch`, `retry --wait`…) reads, at each
poll, the job's summary and the shapes of its runs (``orchestrator.progress``), never every run: on the real job
table, the shapes the database groups are the runs' own, and the waiting ends as reading every run would have ended it,
with the same exit code and the same final summary."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import nsmigrate.cli.options
import nsmigrate.orchestrator.jobs.status
from nsmigrate.cli import libpq, render, waits
from nsmigrate.cli.options import settings, status_reader
from nsmigrate.cli.render import SUMMARY_ROWS, job_reader, print_summary, watch_job
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.jobs.database import add_event
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.progress import RunShape
from nsmigrate.orchestrator.spec.jobspec import parse_spec

NAMESPACES = SUMMARY_ROWS + 20


def large_job(db: jobs_database.Database, **overrides: Any) -> tuple[int, list[int]]:
    """A job of ``NAMESPACES`` three-vector namespaces ``w000``…, every run copied; returns its id and its run ids."""
    spec = parse_spec(
        {
            "name": "watched",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
            **overrides,
        }
    )
    names = {f"w{k:03d}": 3 for k in range(NAMESPACES)}
    plan = make_plan(spec, Inventory("src", 4, names, "cosine"), Inventory("dst", 4, {}, "cosine"), {})
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    with db.transaction() as s:
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id)
            .values(state=RunState.COPIED, listed=NamespaceRun.source_count, copied=NamespaceRun.source_count)
        )
    return job_id, [r.id for r in jobs_and_runs.runs_of(db, job_id)]


def set_state(db: jobs_database.Database, run_id: int, state: RunState, **values: Any) -> None:
    with db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.id == run_id).values(state=state, **values))


def copying(db: jobs_database.Database, run_id: int, batches: int) -> list[int]:
    """Run ``run_id`` listed again into ``batches`` queued batches of one id (it is copying them)."""
    set_state(db, run_id, RunState.PENDING, copied=0)
    ids = [[f"id{k}"] for k in range(batches)]
    return jobs_pages.add_batches(db, run_id, ids, None, listing_done=True).batch_ids


@pytest.fixture
def db(database_url: str) -> Iterator[jobs_database.Database]:
    database = jobs_database.Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(params=["engine", "libpq", "psycopg"])
def follow(
    request: pytest.FixtureRequest, db: jobs_database.Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[int], int]:
    """``watch_job`` until the job settles, through a reader a command uses: the job table's engine (`watch`,
    `retry --wait`…), or one plain connection (`run --wait` after the fleet planned the job): libpq's, or psycopg's
    where no libpq loads by itself; its exit code."""
    if request.param == "psycopg":
        monkeypatch.setattr(libpq, "_lib", None)

    def following(job_id: int) -> int:
        if request.param == "engine":
            return watch_job(job_reader(db, job_id), job_id, waits.Settled(auto_verify=False))
        with status_reader(settings(database_url, None).database_url, job_id) as read:
            return watch_job(read, job_id, waits.Settled(auto_verify=False))

    return following


class StatementSpy:
    """Every document the job table's statements answer, through either reader's executor."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.documents: list[str] = []
        for module in (nsmigrate.cli.options, nsmigrate.orchestrator.jobs.status):
            monkeypatch.setattr(module, "_executor", self._spying(module._executor))
        execute = libpq.Connection.execute

        def spied(conn: libpq.Connection, sql: str, params: dict[str, Any]) -> Any:
            answer = execute(conn, sql, params)
            self.documents.append(str(answer))
            return answer

        monkeypatch.setattr(libpq.Connection, "execute", spied)

    def _spying(self, make: Callable[[Any], Callable[..., Any]]) -> Callable[[Any], Callable[..., Any]]:
        def spying(conn: Any) -> Callable[..., Any]:
            execute = make(conn)

            def spied(sql: str, params: dict[str, Any]) -> Any:
                answer = execute(sql, params)
                self.documents.append(str(answer))
                return answer

            return spied

        return spying

    def namespaces_in_each(self) -> list[int]:
        return [len(set(re.findall(r'"w\d{3}"', document))) for document in self.documents]


def test_the_shapes_the_database_groups_are_the_runs_own(db: jobs_database.Database) -> None:
    job_id, runs = large_job(db)
    running_only = copying(db, runs[0], 1)
    jobs_batches.start_batch(db, running_only[0], "w")
    one_failed = copying(db, runs[1], 2)
    for batch in one_failed:
        jobs_batches.start_batch(db, batch, "w")
    jobs_batches.finish_batch(db, one_failed[0], vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs_batches.fail_batch(db, one_failed[1], "boom")
    copying(db, runs[2], 1)  # queued only
    set_state(db, runs[3], RunState.LIST_FAILED, last_error="listing refused")
    set_state(db, runs[4], RunState.COPIED, failed=3)

    progress = jobs_status.job_progress(db, job_id, SUMMARY_ROWS)
    full = jobs_status.job_status(db, job_id)

    assert progress.shapes == {RunShape.of(r) for r in full.runs}
    assert progress.shapes == {
        RunShape(RunState.COPYING, busy=True, failed_batches=False, failed_ids=False),  # running, and queued
        RunShape(RunState.COPYING, busy=False, failed_batches=True, failed_ids=True),
        RunShape(RunState.LIST_FAILED, busy=False, failed_batches=False, failed_ids=False),
        RunShape(RunState.COPIED, busy=False, failed_batches=False, failed_ids=True),
        RunShape(RunState.COPIED, busy=False, failed_batches=False, failed_ids=False),
    }
    assert progress.summary == full.summary(SUMMARY_ROWS)
    assert len(progress.summary.runs) == SUMMARY_ROWS < progress.summary.namespaces == NAMESPACES


def test_a_verified_run_owes_its_automatic_cleanup_until_it_starts_or_is_refused(db: jobs_database.Database) -> None:
    job_id, runs = large_job(db, cleanup={"mode": "auto"})
    for run_id in runs:
        set_state(db, run_id, RunState.VERIFIED)
    set_state(db, runs[0], RunState.CLEANED)
    set_state(db, runs[1], RunState.CLEANING)
    with db.transaction() as s:  # what a refused cleanup leaves: the run verified, and the refusal in the audit log
        add_event(s, "cleanup_refused", "w", job_id, runs[2], reason="the source changed")
    until = waits.Settled(auto_verify=True)

    progress = jobs_status.job_progress(db, job_id, SUMMARY_ROWS)

    assert {(shape.state, shape.cleanup_owed) for shape in progress.shapes} == {
        (RunState.CLEANED, False),
        (RunState.CLEANING, False),
        (RunState.VERIFIED, False),  # its cleanup refused: an operator's turn
        (RunState.VERIFIED, True),  # the rest: their cleanups to come, as the workers' sweep reads them
    }
    assert len(jobs_verdicts.auto_cleanups_owed(db, job_id)) == NAMESPACES - 2  # the sweep's own: cleaning too
    assert not until.done(progress) and until.left(progress) >= NAMESPACES - 3

    with db.transaction() as s:
        for run_id in runs[3:]:
            add_event(s, "cleanup_refused", "w", job_id, run_id, reason="the source changed")
    set_state(db, runs[1], RunState.CLEANED)

    assert until.done(jobs_status.job_progress(db, job_id, SUMMARY_ROWS))


def test_a_run_verified_again_after_its_cleanup_was_refused_owes_the_cleanup_that_verdict_sends(
    db: jobs_database.Database,
) -> None:
    # `sync` repaired what a cleanup refused and verification passed again: that verdict sends a new cleanup, which
    # `sync --wait` and the workers' sweep must count on, not the refusal before it.
    job_id, runs = large_job(db, cleanup={"mode": "auto"})
    for run_id in runs:
        set_state(db, run_id, RunState.CLEANED)
    set_state(db, runs[0], RunState.VERIFIED)
    with db.transaction() as s:
        add_event(s, "verified", "w", job_id, runs[0], summary="passed")
        add_event(s, "cleanup_refused", "w", job_id, runs[0], reason="1 ids have no equal copy now")
    until = waits.Settled(auto_verify=True)
    assert until.done(jobs_status.job_progress(db, job_id, SUMMARY_ROWS))
    assert jobs_verdicts.auto_cleanups_owed(db, job_id) == []

    with db.transaction() as s:
        add_event(s, "verified", "w", job_id, runs[0], summary="passed")
    progress = jobs_status.job_progress(db, job_id, SUMMARY_ROWS)

    assert (RunState.VERIFIED, True) in {(shape.state, shape.cleanup_owed) for shape in progress.shapes}
    assert not until.done(progress)
    assert jobs_verdicts.auto_cleanups_owed(db, job_id) == [runs[0]]


def test_a_verified_run_owes_no_cleanup_unless_its_spec_cleans_up_by_itself(db: jobs_database.Database) -> None:
    job_id, runs = large_job(db, cleanup={"mode": "manual"})
    for run_id in runs:
        set_state(db, run_id, RunState.VERIFIED)

    progress = jobs_status.job_progress(db, job_id, SUMMARY_ROWS)

    assert progress.shapes == {RunShape(RunState.VERIFIED, busy=False, failed_batches=False, failed_ids=False)}
    assert waits.Settled(auto_verify=True).done(progress)


def final_summary(db: jobs_database.Database, job_id: int, capsys: pytest.CaptureFixture[str]) -> str:
    """What `status` shows of the job, read from every run: what the waiting command must end with."""
    capsys.readouterr()
    print_summary(jobs_status.job_status(db, job_id).summary(SUMMARY_ROWS))
    return capsys.readouterr().out


def test_a_large_job_is_followed_through_its_summary_until_every_run_is_copied(
    db: jobs_database.Database,
    follow: Callable[[int], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id, runs = large_job(db)
    (batch,) = copying(db, runs[-1], 1)
    polls = []

    def the_last_batch_copied_meanwhile(seconds: float) -> None:
        polls.append(seconds)
        jobs_batches.start_batch(db, batch, "w")
        jobs_batches.finish_batch(db, batch, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)

    monkeypatch.setattr(render.time, "sleep", the_last_batch_copied_meanwhile)
    spy = StatementSpy(monkeypatch)

    code = follow(job_id)

    out = capsys.readouterr().out
    assert code == 0, out
    assert len(polls) == 1  # it did not stop while the last run still had a batch queued
    # Two readings, one on each side of the sleep (the first is the loop's first, not read twice), each listing at
    # most SUMMARY_ROWS runs.
    assert len(spy.documents) == 2 and max(spy.namespaces_in_each()) <= SUMMARY_ROWS, spy.namespaces_in_each()
    assert f"job {job_id}: " in out and "namespaces copied, copying" in out  # one line for the whole job
    assert out.endswith(final_summary(db, job_id, capsys))


def test_a_large_job_stuck_on_a_failed_batch_ends_the_wait_with_exit_code_1(
    db: jobs_database.Database,
    follow: Callable[[int], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id, runs = large_job(db)
    done, failed = copying(db, runs[7], 2)
    for batch in (done, failed):
        jobs_batches.start_batch(db, batch, "w")
    jobs_batches.finish_batch(db, done, vectors=1, missing=0, nbytes=1, targets=["t"], max_in_flight=8)
    jobs_batches.fail_batch(db, failed, "boom: the target refused")
    monkeypatch.setattr(render.time, "sleep", lambda s: pytest.fail("a stuck job is settled: nothing to wait for"))
    spy = StatementSpy(monkeypatch)

    code = follow(job_id)

    out = capsys.readouterr().out
    assert code == 1, out
    assert max(spy.namespaces_in_each()) <= SUMMARY_ROWS, spy.namespaces_in_each()
    assert "re-run the failed batches" in out
    assert out.endswith(final_summary(db, job_id, capsys))


def test_a_large_job_all_copied_but_one_run_with_failed_ids_exits_1(
    db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id, runs = large_job(db)
    monkeypatch.setattr(render.time, "sleep", lambda s: pytest.fail("every run is copied: nothing to wait for"))

    assert watch_job(job_reader(db, job_id), job_id, waits.Settled(auto_verify=False)) == 0
    set_state(db, runs[30], RunState.COPIED, failed=2)
    assert watch_job(job_reader(db, job_id), job_id, waits.Settled(auto_verify=False)) == 1


def test_verify_waits_for_the_new_verdicts_of_the_runs_it_asked_for(db: jobs_database.Database) -> None:
    job_id, runs = large_job(db)
    asked = runs[:4]

    def report(passed: bool, checked_at: str) -> dict[str, Any]:
        return {"verification": {"passed": passed, "checked_at": checked_at, "summary": "…", "missing": ["x"] * 100}}

    set_state(db, asked[1], RunState.VERIFIED, **report(True, "t1"))
    wait = waits.Verdicts(db, job_id, waits.Verdicts.snapshot(db, job_id), asked)
    only_the_first = waits.Verdicts(db, job_id, waits.Verdicts.snapshot(db, job_id), asked[:1])
    for run_id in (asked[0], asked[2], asked[3]):
        set_state(db, run_id, RunState.VERIFYING)
    progress = jobs_status.job_progress(db, job_id, SUMMARY_ROWS)  # what the waits are given; `Verdicts` reads its own

    assert not wait.done(progress)
    set_state(db, asked[0], RunState.VERIFIED, **report(True, "t2"))
    set_state(db, asked[2], RunState.VERIFIED, **report(True, "t2"))
    set_state(db, asked[3], RunState.CANCELLED)  # no verdict will come
    assert not wait.done(progress)  # asked[1] still holds the verdict it had before
    assert only_the_first.done(progress) and only_the_first.ok(progress)
    set_state(db, asked[1], RunState.VERIFY_FAILED, **report(False, "t2"))
    assert wait.done(progress) and not wait.ok(progress)

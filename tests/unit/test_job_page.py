"""The live job page's pure parts: what a job's page shows (escaped), and the WSGI app's basic auth, method and
routes, called directly with fake readers."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from nsmigrate.cli.job_page import Throughput, page_app, render_job
from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.snapshot import BatchCounts, JobSummary, RunStatus, Totals
from nsmigrate.orchestrator.states import JobKind, JobState, RunState

HOSTILE = "<script>alert(1)</script>"


def run(namespace: str, state: RunState, copied: int, *, ok: bool | None = None, error: str | None = None) -> RunStatus:
    return RunStatus(
        run_id=1,
        source_namespace=namespace,
        target_namespace=f"creator_{namespace}",
        targets=(),
        state=state,
        source_count=10,
        listed=10,
        copied=copied,
        failed=10 - copied,
        batches=BatchCounts(done=1, failed=int(copied < 10)),
        last_error=error,
        verification=None if ok is None else "10/10 ids present",
        verified_ok=ok,
    )


def summary(state: JobState, runs: tuple[RunStatus, ...]) -> JobSummary:
    return JobSummary(
        job_id=7,
        name="creators",
        kind=JobKind.MIGRATE,
        state=state,
        created_at=datetime(2026, 11, 25, 7, 0, tzinfo=UTC),
        phase=None,
        namespaces=len(runs),
        states={r.state: 1 for r in runs},
        totals=Totals(source=20, listed=20, copied=sum(r.copied for r in runs), failed=0),
        runs=runs,
        failed_batches=1,
        failed_batch_namespaces=1,
    )


EVENTS = [{"at": "2026-11-25T07:00:01+00:00", "actor": "alice", "action": "run", "detail": {"note": HOSTILE}}]


def test_a_running_jobs_page_shows_progress_verdicts_errors_and_log_escaped() -> None:
    runs = (run("", RunState.VERIFIED, 10, ok=True), run(HOSTILE, RunState.COPYING, 4, error=f"503 {HOSTILE}"))
    page = render_job(summary(JobState.RUNNING, runs), EVENTS)

    assert '<meta http-equiv="refresh"' in page
    assert "__default__" in page and '<progress value="10" max="10">' in page
    assert '<progress value="14" max="20">' in page  # the job's bar
    assert '<progress value="4" max="10">' in page
    assert "passed</span> 10/10 ids present" in page and "Failed batches: 1 in 1 namespaces" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alice" in page


def test_a_cancelled_runs_batches_that_never_ran_are_shown_cancelled() -> None:
    cancelled = replace(run("a", RunState.CANCELLED, 4), batches=BatchCounts(running=1, done=1, cancelled=3))
    page = render_job(summary(JobState.CANCELLED, (cancelled, run("b", RunState.COPIED, 10))), EVENTS)

    assert '<td class="num">0/1/1/0 (3 cancelled)</td>' in page
    assert page.count("cancelled)") == 1  # the other run has none
    assert "Failed batches: 1 in 1 namespaces</p>" in page  # and no `retry`, which refuses a cancelled job
    assert "nsmigrate retry" in render_job(summary(JobState.RUNNING, (cancelled,)), EVENTS)


def test_a_finished_jobs_page_does_not_reload() -> None:
    assert "refresh" not in render_job(summary(JobState.FINISHED, ()), [])


def call(app: Any, path: str, method: str = "GET", auth: str | None = None) -> tuple[str, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(auth.encode()).decode()
    answered: list[str] = []
    body = b"".join(app(environ, lambda status, headers: answered.append(status)))
    return answered[0], body


@pytest.fixture
def app() -> Any:
    def job(job_id: int) -> tuple[JobSummary, list[dict[str, Any]]]:
        if job_id != 7:
            raise NotFound(f"job {job_id} does not exist")
        return summary(JobState.RUNNING, (run("ns", RunState.COPYING, 3),)), EVENTS

    jobs = [{"job_id": 7, "name": "creators", "kind": "migrate", "state": "running", "created_at": "2026-11-25T07:00"}]
    return page_app("admin", "s3cret", newest_jobs=lambda: jobs, job=job)


@pytest.mark.parametrize("auth", [None, "admin:wrong", "other:s3cret"])
def test_pages_need_flowers_basic_auth(app: Any, auth: str | None) -> None:
    status, body = call(app, "/jobs/7", auth=auth)
    assert status.startswith("401") and b"creators" not in body


def test_pages_are_read_only_and_routed(app: Any) -> None:
    assert call(app, "/jobs/7", auth="admin:s3cret")[0] == "200 OK"
    status, body = call(app, "/", auth="admin:s3cret")
    assert status == "200 OK" and b'href="/jobs/7"' in body
    assert call(app, "/jobs/8", auth="admin:s3cret")[0].startswith("404")
    assert call(app, "/nowhere", auth="admin:s3cret")[0].startswith("404")
    assert call(app, "/jobs/7", method="POST", auth="admin:s3cret")[0].startswith("405")


def test_throughput_is_the_rate_between_page_loads_bounded_per_job_and_in_jobs() -> None:
    now = iter([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0])
    throughput = Throughput(clock=lambda: next(now), samples=3, jobs=2)

    assert throughput.record(7, 0) == []
    assert throughput.record(7, 50) == [10.0]
    assert throughput.record(7, 150) == [10.0, 20.0]
    assert throughput.record(7, 150) == [20.0, 0.0]  # the oldest sample dropped: 3 kept
    throughput.record(8, 0)
    throughput.record(9, 0)  # a third job: the least recently seen (7) is forgotten
    assert throughput.record(7, 200) == []


def test_the_page_draws_the_throughput() -> None:
    page = render_job(summary(JobState.RUNNING, ()), [], [10.0, 20.0, 5.0])
    assert "5.0 vectors/s now, 20.0 at most" in page and "<polyline" in page
    assert "shown from the next reload on" in render_job(summary(JobState.RUNNING, ()), [])


def test_a_reloaded_page_has_its_throughput(app: Any) -> None:
    assert b'id="throughput"' not in call(app, "/jobs/7", auth="admin:s3cret")[1]
    assert b'id="throughput"' in call(app, "/jobs/7", auth="admin:s3cret")[1]


def test_a_job_under_cut_over_shows_where_reads_go_what_they_saw_per_side_and_the_breach_escaped() -> None:
    from nsmigrate.cli.options import CutoverView
    from nsmigrate.orchestrator.cutover.breach import Sample, window_figures
    from nsmigrate.orchestrator.cutover.rules import Rollout

    figures = window_figures([Sample(1, "new", 40.0), Sample(1, "new", 60.0, reader="app"), Sample(1, "old", 9)], 1, 60)
    reads = ({"percent": 25, "window_s": 60.0, "figures": figures, "instances": 3}, "2026-11-26T10:00:00+00:00")
    breach = ({"percent": 50, "problems": [f"P95 {HOSTILE}"]}, "2026-11-26T09:59:00+00:00")
    view = CutoverView(Rollout(percent=25, started_at=datetime(2026, 11, 26, 9, tzinfo=UTC)), reads, breach)

    page = render_job(summary(JobState.FINISHED, ()), [], cutover=view)

    assert "Reads <b>25 % new</b>" in page and "3 application instance(s)" in page
    new_row = page.split('<table id="cutover-reads">')[1].split("<tr><td>new</td>")[1].split("</tr>")[0]
    assert [cell.split(">")[1] for cell in new_row.split("</td>")[:-1]] == ["2", "50.0", "59.0", "59.8", "0", "0", "1"]
    assert 'id="cutover-breach"' in page and HOSTILE not in page and "&lt;script&gt;" in page
    assert "Cut-over" not in render_job(summary(JobState.FINISHED, ()), [], cutover=CutoverView(Rollout(), None, None))


def test_the_page_reads_the_jobs_cut_over_through_its_reader(app: Any) -> None:
    from nsmigrate.cli.options import CutoverView
    from nsmigrate.orchestrator.cutover.rules import Rollout

    def job(job_id: int) -> tuple[JobSummary, list[dict[str, Any]]]:
        return summary(JobState.RUNNING, ()), []

    under_way = CutoverView(Rollout(percent=5, started_at=datetime(2026, 11, 26, 9, tzinfo=UTC)), None, None)
    pages = page_app("admin", "s3cret", newest_jobs=list, job=job, cutover=lambda job_id: under_way)

    status, body = call(pages, "/jobs/7", auth="admin:s3cret")

    assert status.startswith("200") and b"Reads <b>5 % new</b>" in body

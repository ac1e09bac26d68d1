"""A waiting command reads the job at most a tenth of its time, however long a reading takes (by its fastest reading:
one slow reading does not stretch the waits), and each reading lists
at most SUMMARY_ROWS runs (pure logic: the job table is replaced by a function that advances a fake clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from nsmigrate.cli import render, waits
from nsmigrate.orchestrator.jobs.status import BatchCounts, JobStatus, RunStatus
from nsmigrate.orchestrator.models import JobKind, JobState, RunState
from nsmigrate.orchestrator.progress import JobProgress, RunShape


def one_run_status(state: RunState) -> JobStatus:
    """A job of one run in ``state`` (also drawn by ``test_render_data_as_is``)."""
    run = RunStatus(
        run_id=1,
        source_namespace="a",
        target_namespace="b",
        targets=("b",),
        state=state,
        source_count=3,
        listed=3,
        copied=3,
        failed=0,
        batches=BatchCounts(done=1),
        last_error=None,
        verification=None,
        verified_ok=None,
    )
    return JobStatus(
        job_id=1,
        name="j",
        kind=JobKind.MIGRATE,
        state=JobState.RUNNING,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        runs=(run,),
    )


def _progress(state: RunState) -> JobProgress:
    status = one_run_status(state)
    return JobProgress(summary=status.summary(render.SUMMARY_ROWS), shapes=frozenset({RunShape.of(status.runs[0])}))


class _UntilThirdReading:
    """Done at the third reading; judging a reading takes ``done_s`` on the clock ``now`` (as `verify` reads its
    runs' verdicts)."""

    def __init__(self, now: list[float], done_s: float) -> None:
        self.readings = 0
        self.now = now
        self.done_s = done_s

    def done(self, progress: JobProgress) -> bool:
        self.now[0] += self.done_s
        return self.readings >= 3

    def ok(self, progress: JobProgress) -> bool:
        return True


def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[float]]:
    """The watch's clock as ``now[0]``, its sleeps recorded and added to it: ``(now, sleeps)``."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(render.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(render.time, "sleep", sleep)
    return now, sleeps


@pytest.mark.parametrize(
    ("read_s", "done_s", "expected_sleep_s"), [(0.001, 0.0, 0.5), (0.2, 0.0, 2.0), (0.001, 0.2, 2.01)]
)
def test_the_wait_between_readings_grows_with_what_a_reading_costs(
    monkeypatch: pytest.MonkeyPatch, read_s: float, done_s: float, expected_sleep_s: float
) -> None:
    now, sleeps = _fake_clock(monkeypatch)
    rows_asked: list[int] = []
    until = _UntilThirdReading(now, done_s)

    def reading(rows: int) -> JobProgress:
        now[0] += read_s
        until.readings += 1
        rows_asked.append(rows)
        return _progress(RunState.COPYING)

    assert render.watch_job(reading, 1, until, poll_s=0.5) == 0

    assert sleeps and all(s == pytest.approx(expected_sleep_s) for s in sleeps)
    assert rows_asked == [render.SUMMARY_ROWS] * 3  # never every run of the job


def test_one_slow_reading_does_not_stretch_the_waits_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first reading waits 8 s for a core the fleet keeps busy; reading the job costs 1 ms.
    now, sleeps = _fake_clock(monkeypatch)
    reads_s = iter([8.0, 0.001, 0.001, 0.001, 0.001])
    until = _UntilFifthReading()

    def reading(rows: int) -> JobProgress:
        now[0] += next(reads_s)
        until.readings += 1
        return _progress(RunState.COPYING)

    assert render.watch_job(reading, 1, until, poll_s=0.5) == 0

    # Ten polls at most after the slow one (not ten times it: 80 s), then the reading's cost again.
    assert sleeps == [pytest.approx(5.0), pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5)]


class _UntilFifthReading:
    def __init__(self) -> None:
        self.readings = 0

    def done(self, progress: JobProgress) -> bool:
        return self.readings >= 5

    def ok(self, progress: JobProgress) -> bool:
        return True


def _copying(copied: int, total: int) -> JobProgress:
    """A job of one run that has copied ``copied`` of ``total`` vectors (copied: its last batch is done)."""
    status = one_run_status(RunState.COPIED if copied >= total else RunState.COPYING)
    run = replace(
        status.runs[0],
        source_count=total,
        listed=total,
        copied=copied,
        batches=BatchCounts(done=1) if copied >= total else BatchCounts(done=1, running=1),
    )
    status = replace(status, runs=(run,))
    return JobProgress(summary=status.summary(render.SUMMARY_ROWS), shapes=frozenset({RunShape.of(run)}))


def test_a_wait_returns_soon_after_the_last_batch_without_reading_the_job_much_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    total, rate = 1000, 370.0  # vectors per second: the copy ends at 2.70 s, between two readings 0.5 s apart
    now = [0.0]
    readings: list[float] = []

    def reading(rows: int) -> JobProgress:
        now[0] += 0.001
        readings.append(now[0])
        return _copying(min(total, int(rate * now[0])), total)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(render.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(render.time, "sleep", sleep)

    assert render.watch_job(reading, 1, waits.Settled(auto_verify=False), poll_s=0.5) == 0

    ended = total / rate
    assert now[0] - ended < 0.1  # reading every 0.5 s, it returned 0.3 s after the end
    assert len(readings) <= ended / 0.5 + 5  # the short pauses are only near the end


def test_a_job_that_stopped_copying_is_read_every_poll_s_again() -> None:
    pace = waits.Pace(poll_s=0.5)
    pauses = [pace.pause(0.0, 0, 100), pace.pause(0.5, 90, 100)]
    pauses += [pace.pause(0.5 + 0.1 * i, 100, 100) for i in range(1, 12)]  # copied, then verifying for a while

    assert pauses[0] == 0.5 and pauses[1] == pytest.approx(0.5 * 10 / 90)
    assert all(p == waits.MIN_POLL_S for p in pauses[2:6])  # the end is here: look again soon
    assert pauses[-1] == 0.5  # and nothing moved for longer than poll_s: back to the usual pace


@pytest.mark.parametrize(("auto_verify", "left"), [(False, 4), (True, 7)])
def test_a_settled_wait_counts_the_runs_that_may_still_wake_it(auto_verify: bool, left: int) -> None:
    # Copying runs (one of them maybe stuck on failed batches: no worker wakes the command for it) and a failed
    # lister count, and a run being verified; so do copied runs when the spec verifies by itself.
    states = {
        RunState.COPYING: 2,
        RunState.LIST_FAILED: 1,
        RunState.COPIED: 3,
        RunState.VERIFYING: 1,
        RunState.VERIFIED: 4,
        RunState.CANCELLED: 5,
    }
    progress = _progress(RunState.COPYING)
    progress = replace(progress, summary=replace(progress.summary, states=states))
    assert waits.Settled(auto_verify=auto_verify).left(progress) == left


class _Wakes:
    """Wake-ups as ``cli.wakes.Wakes`` gives them: ``woken`` says which pauses a wake-up ends at once."""

    def __init__(self, now: list[float], woken: list[bool]) -> None:
        self.now, self.woken, self.asked = now, woken, []

    def forget_earlier(self) -> None:
        self.asked.append("forget")

    def pause(self, pause_s: float, enough: int) -> bool:
        self.asked.append(enough)
        woken = self.woken.pop(0)
        self.now[0] += 0.0 if woken else pause_s
        return woken


def test_a_wake_up_ends_the_pause_and_the_next_reading_finds_the_job_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    now, sleeps = _fake_clock(monkeypatch)
    states = iter([RunState.COPYING, RunState.COPYING, RunState.COPIED])

    def reading(rows: int) -> JobProgress:
        now[0] += 0.001
        return _progress(next(states))

    wakes = _Wakes(now, [False, True])
    assert render.watch_job(reading, 1, waits.Settled(auto_verify=False), poll_s=0.5, wakes=wakes) == 0  # type: ignore[arg-type]

    # Forgotten before the first reading; each pause waits for the one run left; no plain sleep.
    assert wakes.asked == ["forget", 1, 1] and sleeps == []

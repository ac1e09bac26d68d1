"""Everything the CLI draws: the plan, live progress bars, a job's summary. Used by every command and by the demo.

Output goes to ``cli.console``'s consoles. Without a terminal (logs, pipes) there are no
live bars: ``watch_job`` prints one summary line every 2 s instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nsmigrate.cli.console import EXIT_INTERRUPTED, console, err_console, print_interrupted
from nsmigrate.cli.waits import Pace, settled
from nsmigrate.orchestrator.planning.summary import TEXT_COLUMNS, PlanSummary
from nsmigrate.orchestrator.progress import JobProgress
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.snapshot import JobStatus, JobSummary, RunStatus
from nsmigrate.orchestrator.states import JobState, RunState, strategy_of_phase

#: Run states in which more batches may still be listed.
LISTING_STATES = frozenset({RunState.PENDING, RunState.LISTING})

#: Namespaces that `status` and a command's live view show one by one; a larger job is summarised.
SUMMARY_ROWS = 40

if TYPE_CHECKING:  # launch loads Celery, jobs SQLAlchemy: only their types are needed here
    from nsmigrate.cli.waits import Wait
    from nsmigrate.cli.wakes import Wakes
    from nsmigrate.orchestrator.jobs import database as jobs_database


def plain(value: str) -> Text:
    """Data as it is: rich would read ``[job_id=3]`` in an error as markup (and drop it) and ``:smile:`` as an
    emoji."""
    return Text(value)


def print_plan(summary: PlanSummary, *, more_hint: str | None = None) -> None:
    """A plan as ``orchestrator.planning.summary`` summarised it: its table of namespace runs, then its lines.

    ``more_hint``: the table stops at ``SUMMARY_ROWS`` namespaces, then says how many more and where every one is
    (the hint). `run` shows it so: a table of thousands of rows is nobody's reading, and drawing it took the command
    a core for a second, while the job's first tasks started. `plan` shows every row."""
    rows = summary.rows if more_hint is None else summary.rows[:SUMMARY_ROWS]
    table = Table(title=summary.title)
    for col in summary.columns:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*map(plain, row))
    console.print(table)
    if len(rows) < len(summary.rows):
        console.print(f"{len(summary.rows) - len(rows)} more namespaces ({more_hint})")
    for line in summary.lines:
        console.print(plain(line))
    for warning in summary.warnings:
        console.print(Text("warning: ", style="yellow") + plain(warning))


def bars(*state: ProgressColumn) -> Progress:
    """Progress bars (description, bar, done/total, ``state`` columns, elapsed), live only on a terminal."""
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        *state,
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


#: A waiting command sleeps at least this many times as long as its fastest reading of the job took.
READ_SHARE_INVERSE = 10


#: Reads the job's progress (``orchestrator.progress``) with at most as many runs listed as it is given.
ProgressReader = Callable[[int], JobProgress]


def job_reader(db: jobs_database.Database, job_id: int) -> ProgressReader:
    """Job ``job_id``'s progress, read through the job table's engine (for ``watch_job``)."""
    from nsmigrate.orchestrator.jobs.status import job_progress

    return lambda rows: job_progress(db, job_id, rows)


def watch_job(
    read: ProgressReader,
    job_id: int,
    until: Wait,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    wakes: Wakes | None = None,
) -> int:
    """Live progress bars per namespace, from ``read(SUMMARY_ROWS)``, until ``until`` is done, then the job's summary.
    Returns the exit code: 0 when what it waited for succeeded (``until.ok``), 1 otherwise or after ``timeout_s``,
    ``EXIT_INTERRUPTED`` after Ctrl-C, which stops the watching only: the job goes on in the workers. ``wakes``: the
    job's wake-ups (``cli.wakes``), which end a pause as soon as the runs it waits for settled; without, it polls."""
    try:
        return _watch(read, job_id, until, poll_s, timeout_s, wakes)
    except KeyboardInterrupt:
        print_interrupted(
            f"stopped watching job {job_id}; its work goes on in the workers — `nsmigrate watch {job_id}` follows "
            f"it again, `nsmigrate cancel {job_id}` stops it"
        )
        return EXIT_INTERRUPTED


def watch_until_settled(db: jobs_database.Database, job_id: int, redis_url: str | None = None) -> int:
    """``watch_job`` on job ``job_id`` until it settles (``waits.settled``): what `watch` and a --wait show; woken
    through the Redis of ``redis_url`` (``cli.wakes``) when given."""
    with woken_by(redis_url, job_id) as wakes:
        return watch_job(job_reader(db, job_id), job_id, settled(db, job_id), wakes=wakes)


@contextlib.contextmanager
def woken_by(redis_url: str | None, job_id: int) -> Iterator[Wakes | None]:
    """Job ``job_id``'s wake-ups on the Redis of ``redis_url`` for ``watch_job`` (None: no URL, poll only)."""
    if redis_url is None:
        yield None
        return
    from nsmigrate.cli.wakes import Wakes

    wakes = Wakes(redis_url, job_id)
    try:
        yield wakes
    finally:
        wakes.close()


def _watch(
    read: ProgressReader, job_id: int, until: Wait, poll_s: float, timeout_s: float | None, wakes: Wakes | None
) -> int:
    if wakes is not None:
        wakes.forget_earlier()  # before the first reading, which sees the runs they were for settled

    def reading() -> tuple[JobProgress, bool, float]:
        """The job's progress, whether the wait is over, and how long the two took."""
        started = time.monotonic()
        progress = read(SUMMARY_ROWS)
        done = until.done(progress)  # a wait may read the job table too (`verify`: its runs' verdicts)
        return progress, done, time.monotonic() - started

    # The first reading draws the bars and is the loop's first: read again at once, it read every run of a job that
    # had just started a second time, while its first tasks needed the cores.
    progress, done, read_s = reading()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    # A bar per namespace, or for a job of many namespaces one bar for the whole job with the count of each state:
    # either way a reading lists at most SUMMARY_ROWS runs, so its cost in this process does not grow with the job.
    one_bar = progress.summary.namespaces > SUMMARY_ROWS
    with bars(TextColumn("{task.fields[state]}")) as live:
        tasks = {
            r.run_id: live.add_task(
                display_namespace(r.source_namespace)[:40], total=max(r.source_count, 1), state=r.state
            )
            for r in ([] if one_bar else progress.summary.runs)
        }
        whole = (
            live.add_task(f"job {job_id}", total=max(progress.summary.totals.source, 1), state="") if one_bar else None
        )
        last_line = 0.0
        said_cleanups = False
        pace = Pace(poll_s)
        fastest_read_s = float("inf")
        while True:
            summary = progress.summary
            t = summary.totals
            if whole is not None:
                live.update(
                    whole,
                    completed=t.copied,
                    total=max(t.source, t.listed, 1),
                    state=", ".join(f"{n} {state}" for state, n in sorted(summary.states.items())),
                )
            stuck = only_failed_left(progress)
            if whole is not None and stuck:
                live.update(whole, state=failed_batches_text(summary))
            for r in summary.runs if whole is None else ():
                b = r.batches
                failed_only = r.state == RunState.COPYING and b.failed and not (b.queued or b.running)
                live.update(
                    tasks[r.run_id],
                    completed=r.copied,
                    state=f"{b.failed} batches failed" if failed_only else r.state,
                    total=max(r.source_count, r.listed, 1),
                )
            if not console.is_terminal and time.monotonic() - last_line >= 2:
                # No live bars in logs and pipes: one summary line every 2 s instead.
                last_line = time.monotonic()
                where = failed_batches_text(summary) if stuck else f"namespaces {', '.join(sorted(summary.states))}"
                console.print(f"job {job_id}: {t.copied}/{t.source} copied, {t.failed} failed; {where}")
            if not done and not said_cleanups and cleanups_awaited(progress):
                # Said once: without a worker on the `cleanup` queue the wait goes on with nothing else moving.
                said_cleanups = True
                console.print(
                    f"job {job_id}: waiting for the cleanup of its verified sources (under `cleanup.mode: auto`, "
                    "workers of the `cleanup` queue delete them)"
                )
            if done:
                break
            if deadline is not None and time.monotonic() > deadline:
                err_console.print(f"[yellow]still running after {timeout_s:.0f} s; `nsmigrate status {job_id}`[/]")
                return 1
            # Why: the statement still reads every run of the job in Postgres, on the fleet's machine; the command
            # spends at most a tenth of its time reading, however large the job. By its fastest reading, and never
            # more than ten polls: a reading that waited for a core the fleet keeps busy (seconds, on a small
            # machine) says nothing of what reading costs, and ten times it kept a finished job's command waiting for
            # a minute.
            fastest_read_s = min(fastest_read_s, read_s)
            pause = pace.pause(time.monotonic(), t.copied + t.failed, max(t.source, t.listed))
            pause = max(pause, READ_SHARE_INVERSE * min(fastest_read_s, poll_s))
            if wakes is None:
                time.sleep(pause)
            else:  # read at once when every run it waits for may have settled: a long job is read no more often
                wakes.pause(pause, max(1, until.left(progress)))
            progress, done, read_s = reading()
    print_summary(progress.summary)
    return 0 if until.ok(progress) else 1


def cleanups_awaited(progress: JobProgress) -> bool:
    """A run is verified and its automatic cleanup still to come, or under way."""
    return any(shape.cleanup_owed or shape.state == RunState.CLEANING for shape in progress.shapes)


def only_failed_left(progress: JobProgress) -> bool:
    """Nothing is left to copy or list but batches that failed for good: the job waits for `nsmigrate retry`."""
    idle = all(not shape.busy and shape.state not in LISTING_STATES for shape in progress.shapes)
    return progress.summary.failed_batches > 0 and idle


def failed_batches_text(summary: JobSummary) -> str:
    """E.g. ``3 batches failed in 2 namespaces``."""
    n, m = summary.failed_batches, summary.failed_batch_namespaces
    return f"{n} batch{'es' if n != 1 else ''} failed in {m} namespace{'s' if m != 1 else ''}"


def _note(run: RunStatus) -> str:
    """A run's verdict, or, while batches of it have failed, the error they failed with: a sync's failed batch is
    what to look at, not the verification it came to repair."""
    if run.last_error and (run.failed or run.batches.failed):
        return run.last_error
    return run.verification or run.last_error or ""


def print_summary(status: JobStatus | JobSummary, rows: int | None = None) -> None:
    """The job's table of namespaces, with at most ``rows`` of them (None: all): a job of thousands of namespaces
    then shows the count of each state and the namespaces to look at first, failed ones, then unfinished ones. A
    ``JobSummary`` (``SUMMARY_SQL``) has its rows chosen already."""
    summary = status if isinstance(status, JobSummary) else status.summary(rows)
    phase = f", strategy {strategy_of_phase(summary.phase)}: {summary.phase}" if summary.phase else ""
    table = Table(title=f"job {summary.job_id} ({summary.name}): {summary.state}{phase}")
    for col in ("source namespace", "state", "copied/source", "failed ids", "verification / last error"):
        table.add_column(col)
    for r in summary.runs:
        table.add_row(
            plain(display_namespace(r.source_namespace)),
            r.state,
            f"{r.copied}/{r.source_count}",
            str(r.failed),
            plain(_note(r)[:120]),
        )
    console.print(table)
    if len(summary.runs) < summary.namespaces:
        console.print(
            f"{summary.namespaces - len(summary.runs)} more namespaces (`nsmigrate status {summary.job_id} --all` "
            "lists every one); by state: " + ", ".join(f"{n} {state}" for state, n in sorted(summary.states.items()))
        )
    t = summary.totals
    console.print(f"total: {t.copied}/{t.source} vectors copied, {t.failed} in failed batches")
    if summary.failed_batches:
        console.print(
            f"{failed_batches_text(summary)} (`nsmigrate status {summary.job_id} --json` lists them with their errors)"
        )
    stopped = summary.state == JobState.CANCELLED  # cancelled or rolled back: `retry` refuses it, so no hint to it
    if (t.failed or summary.failed_batches) and not stopped:
        console.print(f"re-run the failed batches with `nsmigrate retry {summary.job_id}`")
    if summary.states.get(RunState.LIST_FAILED) and not stopped:
        console.print(f"list the failed namespaces again with `nsmigrate retry {summary.job_id}` once fixed")

"""When a command that follows a job is done: what it waits FOR decides, never the job's own state alone.

``run``/``watch``/``retry``/``resume``/``sync`` wait for the job to settle: every namespace copied (and judged, when
the spec verifies by itself, and cleaned up or its cleanup refused, when the spec cleans up by itself), cancelled, or
stuck on failed batches or a failed lister. ``verify`` waits for the verdicts it asked for, so re-verifying a
finished job waits for the new verdicts instead of returning at once with the old ones.

Each poll gives the job's ``JobProgress`` (``orchestrator.progress``): its runs are judged by their shapes
(``RunShape``), which hold everything a wait looks at, so a job of thousands of runs is judged without reading them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nsmigrate.orchestrator.progress import JobProgress, RunShape
from nsmigrate.orchestrator.states import (
    BUSY_RUN_STATES,
    COPY_DONE_RUN_STATES,
    JUDGED_RUN_STATES,
    PASSED_RUN_STATES,
    RUN_TRANSITIONS,
    JobState,
    RunState,
    may_move_to,
)

if TYPE_CHECKING:  # SQLAlchemy: `run --wait` after the fleet planned its job waits without loading it
    from nsmigrate.orchestrator.jobs import database as jobs_database

#: The shortest pause between two readings of a job whose copy is about to end.
MIN_POLL_S = 0.05

#: A verification requested for a run in one of these states still ends in a verdict (``jobs_verdicts.start_verify``).
_VERDICT_COMING = may_move_to(RUN_TRANSITIONS, RunState.VERIFYING)


class Wait(Protocol):
    """What a command waits for, read from each poll of the job (``orchestrator.progress.read_progress``)."""

    def done(self, progress: JobProgress) -> bool:
        """Nothing more will happen that this command waits for."""
        ...

    def ok(self, progress: JobProgress) -> bool:
        """What it waited for succeeded (exit code 0)."""
        ...

    def left(self, progress: JobProgress) -> int:
        """How many runs may still settle before it is done, at most (``cli.wakes``: once that many woke the
        command, it reads the job at once)."""
        ...


def stuck(run: RunShape) -> bool:
    """Copy finished but some batches failed, or the lister failed for good and its batches ended: nothing more
    will happen until `retry`."""
    if run.busy:
        return False
    return run.state == RunState.LIST_FAILED or (run.state == RunState.COPYING and run.failed_batches)


@dataclass(frozen=True)
class Settled:
    """The job's work is over: each run copied (and judged when ``auto_verify``, and its source cleaned up or the
    cleanup refused when the spec's ``cleanup.mode`` is ``auto``), cancelled or stuck."""

    auto_verify: bool

    def _settled_state(self, state: RunState) -> bool:
        if state == RunState.CANCELLED:
            return True
        if self.auto_verify:
            return state in JUDGED_RUN_STATES
        return state in COPY_DONE_RUN_STATES and state not in BUSY_RUN_STATES

    def _settled(self, run: RunShape) -> bool:
        return (self._settled_state(run.state) and not run.cleanup_owed) or stuck(run)

    def done(self, progress: JobProgress) -> bool:
        return progress.summary.state == JobState.CANCELLED or all(self._settled(r) for r in progress.shapes)

    def ok(self, progress: JobProgress) -> bool:
        return all(
            r.state in PASSED_RUN_STATES or (r.state == RunState.COPIED and not r.failed_ids) for r in progress.shapes
        )

    def left(self, progress: JobProgress) -> int:
        # A run stuck on failed batches or a failed lister counts: the worker that leaves it so wakes the command too;
        # so does a verified one whose cleanup is still to come: the cleanup's end wakes it.
        owed = any(r.cleanup_owed for r in progress.shapes)
        return sum(
            n
            for state, n in progress.summary.states.items()
            if not self._settled_state(state) or (owed and state == RunState.VERIFIED)
        )


def settled(db: jobs_database.Database, job_id: int) -> Settled:
    """Wait for JOB to settle, verified or not as its spec says."""
    from nsmigrate.orchestrator.jobs import jobs_and_runs

    return Settled(auto_verify=jobs_and_runs.job_spec(db, job_id).auto_verify)


class Verdicts:
    """New verification verdicts of the runs ``run_ids``: a verdict is new when its report is not the one the run
    held before verification was requested (``before``: run id → that report's ``checked_at``, or None)."""

    def __init__(
        self, db: jobs_database.Database, job_id: int, before: Mapping[int, str | None], run_ids: Iterable[int]
    ):
        self.db = db
        self.job_id = job_id
        self.before = dict(before)
        self.run_ids = set(run_ids)
        self._verdicts: dict[int, bool | None] = {}  # run id → passed, once its new verdict is in (None: none will)

    @staticmethod
    def snapshot(db: jobs_database.Database, job_id: int, namespace: str | None = None) -> dict[int, str | None]:
        """Each run's current verdict, to tell a new one from; take it BEFORE requesting verification."""
        from nsmigrate.orchestrator.jobs import jobs_and_runs

        return {r.id: (r.verification or {}).get("checked_at") for r in jobs_and_runs.runs_of(db, job_id, namespace)}

    def done(self, progress: JobProgress) -> bool:
        from nsmigrate.orchestrator.jobs import status as jobs_status

        waiting = self.run_ids - set(self._verdicts)
        if waiting:
            for run in jobs_status.verdicts_of(self.db, waiting):
                if run.state in JUDGED_RUN_STATES and run.checked_at != self.before.get(run.run_id):
                    self._verdicts[run.run_id] = bool(run.passed)
                elif run.state not in _VERDICT_COMING:  # cancelled or cleaned up meanwhile: no verdict will come
                    self._verdicts[run.run_id] = None
        return self.run_ids <= set(self._verdicts)

    def ok(self, progress: JobProgress) -> bool:
        return all(self._verdicts.get(run_id) for run_id in self.run_ids)

    def left(self, progress: JobProgress) -> int:
        return len(self.run_ids - set(self._verdicts))


@dataclass
class Pace:
    """How long a waiting command pauses before reading the job again: ``poll_s``, but less while the copy moves and
    its end, at the rate of the last readings, is nearer than that, so the command returns soon after the last batch
    instead of up to ``poll_s`` later. Short pauses last at most ``poll_s`` after the copy last moved: a job that
    lists, verifies or waits for `retry` is read every ``poll_s``."""

    poll_s: float
    _moved: tuple[float, int] | None = None  # (when, vectors done) at the last reading where the copy moved
    _rate: float = 0.0  # vectors per second between the last two such readings

    def pause(self, now: float, done: int, total: int) -> float:
        """The pause after a reading at ``now`` that found ``done`` of ``total`` vectors copied or failed."""
        if self._moved is None or done < self._moved[1]:
            self._moved = (now, done)
            return self.poll_s
        when, before = self._moved
        if done > before:
            self._rate = (done - before) / max(now - when, 1e-9)
            self._moved = (now, done)
        elif now - when > self.poll_s:
            return self.poll_s
        if self._rate <= 0:
            return self.poll_s
        return min(self.poll_s, max(MIN_POLL_S, (total - done) / self._rate))

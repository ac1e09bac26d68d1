"""When a command that follows a job is done: what it waits FOR decides, never the job's own state alone.

``run``/``watch``/``retry``/``resume``/``sync`` wait for the job to settle: every namespace copied (and judged, when
the spec verifies by itself), cancelled, or stuck on failed batches. ``verify`` waits for the verdicts it asked for,
so re-verifying a finished job waits for the new verdicts instead of returning at once with the old ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator import jobs
from orchestrator.models import JobState, RunState

# State groups the waits need (TODO after the merge: take them from orchestrator.jobs.lifecycle).
#: A run in one of these states finished copying (whatever followed).
COPY_DONE = frozenset(
    {
        RunState.COPIED,
        RunState.VERIFYING,
        RunState.VERIFIED,
        RunState.VERIFY_FAILED,
        RunState.CLEANING,
        RunState.CLEANED,
    }
)
#: A run in one of these states was judged by verification (and maybe cleaned up after).
JUDGED = frozenset({RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.CLEANED})
#: Nothing more happens to a run in one of these states unless a user acts.
STOPPED = frozenset({RunState.CANCELLED})
#: A run in one of these states is being verified or cleaned up: something still happens to it.
BUSY = frozenset({RunState.VERIFYING, RunState.CLEANING})
#: A verification requested for a run in one of these states still ends in a verdict (``jobs.start_verify``).
VERIFIABLE = frozenset({RunState.COPIED, RunState.VERIFYING, RunState.VERIFIED, RunState.VERIFY_FAILED})


class Wait(Protocol):
    """What a command waits for, read from each status snapshot (``orchestrator.jobs.job_status``)."""

    def done(self, status: Mapping[str, Any]) -> bool:
        """Nothing more will happen that this command waits for."""
        ...

    def ok(self, status: Mapping[str, Any]) -> bool:
        """What it waited for succeeded (exit code 0)."""
        ...


def stuck(run: Mapping[str, Any]) -> bool:
    """Copy finished but some batches failed: nothing more will happen until `retry`."""
    b = run["batches"]
    return run["state"] == RunState.COPYING and b["failed"] > 0 and b["queued"] == 0 and b["running"] == 0


@dataclass(frozen=True)
class Settled:
    """The job's work is over: each run copied (and judged when ``auto_verify``), cancelled or stuck."""

    auto_verify: bool

    def _settled(self, run: Mapping[str, Any]) -> bool:
        if run["state"] in STOPPED or stuck(run):
            return True
        if self.auto_verify:
            return run["state"] in JUDGED
        return run["state"] in COPY_DONE - BUSY

    def done(self, status: Mapping[str, Any]) -> bool:
        return status["state"] == JobState.CANCELLED or all(self._settled(r) for r in status["runs"])

    def ok(self, status: Mapping[str, Any]) -> bool:
        return all(
            r["state"] in (RunState.VERIFIED, RunState.CLEANED) or (r["state"] == RunState.COPIED and r["failed"] == 0)
            for r in status["runs"]
        )


def settled(db: jobs.Database, job_id: int) -> Settled:
    """Wait for JOB to settle, verified or not as its spec says."""
    return Settled(auto_verify=jobs.job_spec(db, job_id).auto_verify)


class Verdicts:
    """New verification verdicts of the runs ``run_ids``: a verdict is new when its report is not the one the run
    held before verification was requested (``before``: run id → that report's ``checked_at``, or None)."""

    def __init__(self, db: jobs.Database, job_id: int, before: Mapping[int, str | None], run_ids: Iterable[int]):
        self.db = db
        self.job_id = job_id
        self.before = dict(before)
        self.run_ids = set(run_ids)
        self._verdicts: dict[int, bool | None] = {}  # run id → passed, once its new verdict is in (None: none will)

    @staticmethod
    def snapshot(db: jobs.Database, job_id: int, namespace: str | None = None) -> dict[int, str | None]:
        """Each run's current verdict, to tell a new one from; take it BEFORE requesting verification."""
        return {r.id: (r.verification or {}).get("checked_at") for r in jobs.runs_of(db, job_id, namespace)}

    def done(self, status: Mapping[str, Any]) -> bool:
        waiting = self.run_ids - set(self._verdicts)
        if waiting:
            for run in jobs.runs_of(self.db, self.job_id):
                if run.id not in waiting:
                    continue
                report = run.verification or {}
                if run.state in JUDGED and report.get("checked_at") != self.before.get(run.id):
                    self._verdicts[run.id] = bool(report.get("passed"))
                elif run.state not in VERIFIABLE:  # cancelled or cleaned up meanwhile: no verdict will come
                    self._verdicts[run.id] = None
        return self.run_ids <= set(self._verdicts)

    def ok(self, status: Mapping[str, Any]) -> bool:
        return all(self._verdicts.get(run_id) for run_id in self.run_ids)

"""Read-only views of the job table for `status`, `jobs` and `events`: a job's typed snapshot, the job list, the
audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestrator.errors import NotFound
from orchestrator.jobs.database import Database
from orchestrator.models import Batch, BatchState, Event, Job, JobKind, JobState, NamespaceRun, RunState


@dataclass(frozen=True)
class BatchCounts:
    """How many of a run's batches are in each state."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {st.value: getattr(self, st.value) for st in BatchState}


@dataclass(frozen=True)
class Totals:
    """Vector counts summed over a job's runs."""

    source: int
    listed: int
    copied: int
    failed: int

    def as_dict(self) -> dict[str, int]:
        return {"source": self.source, "listed": self.listed, "copied": self.copied, "failed": self.failed}


@dataclass(frozen=True)
class RunStatus:
    """One namespace run as `status` shows it."""

    run_id: int
    source_namespace: str
    #: None: routed per vector; ``targets`` says where it wrote.
    target_namespace: str | None
    targets: tuple[str, ...]
    state: RunState
    #: Vectors in the source namespace at plan time.
    source_count: int
    listed: int
    copied: int
    #: Ids in failed batches.
    failed: int
    batches: BatchCounts
    #: Why its lister failed (``list_failed``), else the last error of one of its failed batches.
    last_error: str | None
    #: The verification report's one-line summary, and whether it passed (None: not verified yet).
    verification: str | None
    verified_ok: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source_namespace": self.source_namespace,
            "target_namespace": self.target_namespace,
            "targets": list(self.targets),
            "state": self.state,
            "source_count": self.source_count,
            "listed": self.listed,
            "copied": self.copied,
            "failed": self.failed,
            "batches": self.batches.as_dict(),
            "last_error": self.last_error,
            "verification": self.verification,
            "verified_ok": self.verified_ok,
        }


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job and its namespace runs, from one transaction."""

    job_id: int
    name: str
    kind: JobKind
    state: JobState
    created_at: datetime
    runs: tuple[RunStatus, ...]
    #: Where a `strategy: collection` job is (collecting, restoring, restored, failed); None for the fleet.
    phase: str | None = None

    @property
    def totals(self) -> Totals:
        return Totals(
            source=sum(r.source_count for r in self.runs),
            listed=sum(r.listed for r in self.runs),
            copied=sum(r.copied for r in self.runs),
            failed=sum(r.failed for r in self.runs),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data, the shape of `nsmigrate status --json`."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "runs": [r.as_dict() for r in self.runs],
            "totals": self.totals.as_dict(),
            "phase": self.phase,
        }


def job_status(db: Database, job_id: int) -> JobStatus:
    """A snapshot of a job for `status` (``as_dict()`` for --json).

    Raises:
        NotFound: no job ``job_id``.
    """
    with db.transaction() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", job_id=job_id)
        counts = {
            (run_id, state): n
            for run_id, state, n in s.execute(
                sa.select(Batch.run_id, Batch.state, sa.func.count())
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id)
                .group_by(Batch.run_id, Batch.state)
            ).all()
        }
        errors = {
            run_id: err
            for run_id, err in s.execute(
                sa.select(Batch.run_id, sa.func.max(Batch.last_error))
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id, Batch.state == BatchState.FAILED)
                .group_by(Batch.run_id)
            ).all()
        }
        # Only the columns `status` shows, and of each verification report only its summary and verdict (read in
        # the database): a job of thousands of namespaces is not thousands of full reports, routing tables and list
        # states decoded into objects.
        run, report = NamespaceRun, NamespaceRun.verification
        rows = s.execute(
            sa.select(
                run.id,
                run.source_namespace,
                run.target_namespace,
                run.target_namespaces,
                run.state,
                run.source_count,
                run.listed,
                run.copied,
                run.failed,
                run.last_error,
                report["summary"].as_string(),
                report["passed"].as_boolean(),
            )
            .where(run.job_id == job_id)
            .order_by(run.id)
        ).all()
        runs = tuple(
            RunStatus(
                run_id=run_id,
                source_namespace=source_namespace,
                target_namespace=target_namespace,
                targets=tuple(targets or []),
                state=RunState(state),
                source_count=source_count,
                listed=listed,
                copied=copied,
                failed=failed,
                batches=BatchCounts(**{st.value: counts.get((run_id, st), 0) for st in BatchState}),
                last_error=last_error or errors.get(run_id),
                verification=summary,
                verified_ok=passed,
            )
            for (
                run_id,
                source_namespace,
                target_namespace,
                targets,
                state,
                source_count,
                listed,
                copied,
                failed,
                last_error,
                summary,
                passed,
            ) in rows
        )
        return JobStatus(
            job_id=job.id,
            name=job.name,
            kind=JobKind(job.kind),
            state=JobState(job.state),
            created_at=job.created_at,
            runs=runs,
            phase=job.phase,
        )


def list_jobs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    with db.transaction() as s:
        return [
            {"job_id": j.id, "name": j.name, "kind": j.kind, "state": j.state, "created_at": j.created_at.isoformat()}
            for j in s.scalars(sa.select(Job).order_by(Job.id.desc()).limit(limit))
        ]


def events_of(db: Database, job_id: int) -> list[dict[str, Any]]:
    with db.transaction() as s:
        return [
            {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "run_id": e.run_id, "detail": e.detail}
            for e in s.scalars(sa.select(Event).where(Event.job_id == job_id).order_by(Event.id))
        ]

"""A job's snapshot as `status` shows it, read in one statement that Postgres aggregates and returns as one JSON
document: the job, each namespace run with the count of its batches in each state, and an erasure's places.

Imports neither SQLAlchemy nor the models: `nsmigrate status` reads it over a plain psycopg connection
(``read_snapshot``), so a job of thousands of namespaces and a million batches answers in well under a second, start-up
included (figures: ``bench/README.md``). ``orchestrator.jobs.job_status`` runs the same statement through the job
table's engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from orchestrator.errors import NotFound
from orchestrator.states import BatchState, JobKind, JobState, RunState


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
class PlaceStatus:
    """One place of an erasure job (kind ``erase``)."""

    kind: str
    store: str
    namespace: str | None
    path: str | None
    planned: int
    erased: int
    state: str
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job and its namespace runs, from one statement."""

    job_id: int
    name: str
    kind: JobKind
    state: JobState
    created_at: datetime
    runs: tuple[RunStatus, ...]
    #: Where a `strategy: collection` job is (collecting, restoring, restored, failed); None for the fleet.
    phase: str | None = None
    #: An erasure job's places (none for other kinds).
    places: tuple[PlaceStatus, ...] = ()

    @property
    def totals(self) -> Totals:
        return Totals(
            source=sum(r.source_count for r in self.runs),
            listed=sum(r.listed for r in self.runs),
            copied=sum(r.copied for r in self.runs),
            failed=sum(r.failed for r in self.runs),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data, the shape of `nsmigrate status --json` (``places`` only for an erasure)."""
        data = {
            "job_id": self.job_id,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "runs": [r.as_dict() for r in self.runs],
            "totals": self.totals.as_dict(),
            "phase": self.phase,
        }
        if self.places:
            data["places"] = [p.as_dict() for p in self.places]
        return data


# Batches are counted per run in SQL, and each verification report is
# reduced to its summary and verdict there: the client decodes one compact document, not rows of full reports.
SNAPSHOT_SQL = """
WITH job AS (
    SELECT id, name, kind, state, phase, created_at FROM jobs WHERE id = %(job_id)s
), counts AS (
    -- Only the batches not done (a partial index holds them): a run's done batches are its batches_total less
    -- these, so a job of a million done batches reads none of them.
    SELECT b.run_id,
           count(*) FILTER (WHERE b.state = 'queued') AS queued,
           count(*) FILTER (WHERE b.state = 'running') AS running,
           count(*) FILTER (WHERE b.state = 'failed') AS failed,
           count(*) AS unfinished,
           max(b.last_error) FILTER (WHERE b.state = 'failed') AS error
    FROM batches b JOIN namespace_runs r ON r.id = b.run_id
    WHERE r.job_id = %(job_id)s AND b.state <> 'done'
    GROUP BY b.run_id
)
SELECT json_build_array(
    job.id, job.name, job.kind, job.state, job.phase, job.created_at,
    coalesce((
        SELECT json_agg(json_build_array(
            r.id, r.source_namespace, r.target_namespace, r.target_namespaces, r.state, r.source_count, r.listed,
            r.copied, r.failed, coalesce(nullif(r.last_error, ''), c.error), r.verification ->> 'summary',
            (r.verification -> 'passed')::boolean,
            coalesce(c.queued, 0), coalesce(c.running, 0), greatest(r.batches_total - coalesce(c.unfinished, 0), 0),
            coalesce(c.failed, 0)
        ) ORDER BY r.id)
        FROM namespace_runs r LEFT JOIN counts c ON c.run_id = r.id
        WHERE r.job_id = job.id
    ), '[]'),
    coalesce((
        SELECT json_agg(json_build_array(
            p.kind, p.store, p.namespace, p.path, p.planned, p.erased, p.state, p.last_error
        ) ORDER BY p.id)
        FROM erase_places p WHERE p.job_id = job.id
    ), '[]')
)::text
FROM job
"""

#: The newest job of a name (``nsmigrate status NAME``).
JOB_BY_NAME_SQL = "SELECT id FROM jobs WHERE name = %(name)s ORDER BY id DESC LIMIT 1"


def snapshot_of(document: str | None, job_id: int) -> JobStatus:
    """The ``JobStatus`` of what ``SNAPSHOT_SQL`` returned (None: no such job)."""
    if document is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    job_id, name, kind, state, phase, created_at, runs, places = orjson.loads(document)
    return JobStatus(
        job_id=job_id,
        name=name,
        kind=JobKind(kind),
        state=JobState(state),
        created_at=datetime.fromisoformat(created_at),
        phase=phase,
        runs=tuple(
            RunStatus(
                run_id=r[0],
                source_namespace=r[1],
                target_namespace=r[2],
                targets=tuple(r[3] or ()),
                state=RunState(r[4]),
                source_count=r[5],
                listed=r[6],
                copied=r[7],
                failed=r[8],
                last_error=r[9],
                verification=r[10],
                verified_ok=r[11],
                batches=BatchCounts(r[12], r[13], r[14], r[15]),
            )
            for r in runs
        ),
        places=tuple(PlaceStatus(*p) for p in places),
    )


#: Runs one statement with psycopg-style parameters and returns the first column of its row (None: no row).
Execute = Callable[[str, dict[str, Any]], Any]


def read_snapshot(execute: Execute, ref: str | int) -> JobStatus:
    """The snapshot of job ``ref`` (an id, or a name: its newest job).

    Raises:
        NotFound: no such job.
    """
    if isinstance(ref, int) or ref.isdigit():
        job_id = int(ref)
    else:
        job_id = execute(JOB_BY_NAME_SQL, {"name": ref})
        if job_id is None:
            raise NotFound(f"no job {ref!r} in the job table", hint="`nsmigrate jobs` lists the jobs")
    return snapshot_of(execute(SNAPSHOT_SQL, {"job_id": job_id}), job_id)

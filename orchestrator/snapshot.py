"""A job as `status` shows it, read in one statement that Postgres aggregates and returns as one JSON document: the
job, each namespace run with the count of its batches in each state, and an erasure's places (``SNAPSHOT_SQL``); or
only its summary, the count of runs in each state and the totals over every run with the few runs to look at first
(``SUMMARY_SQL``); the list of jobs (``JOBS_SQL``); and the verdicts of some runs (``VERDICTS_SQL``).

The one reader of job status: its ``read_*`` functions (with ``orchestrator.progress.read_progress``) are what
every command, page and test reads a job's status with, over whichever connection it holds (an ``Execute``): a plain
psycopg one (``cli.options.read_job_table``) or the job table's engine (``jobs.read_status``). So this module imports
neither SQLAlchemy nor the models: `nsmigrate status` and `nsmigrate jobs` answer for a job of thousands of
namespaces and a million batches in well under a second, start-up included (figures: ``bench/README.md``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.states import JUDGED_RUN_STATES, BatchState, JobKind, JobState, RunState


@dataclass(frozen=True)
class BatchCounts:
    """How many of a run's batches are in each state."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    #: Batches of a cancelled run that never started: ``queued`` in the job table, but no worker starts a batch of a
    #: cancelled run, and a cancelled job is never taken up again.
    cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


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
    #: The verification report's one-line summary, and whether it passed (None: not judged yet, or being judged or
    #: copied again since: the report is an earlier one).
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
class FailedBatch:
    """A batch that gave up, as `status --json` lists it (``namespace``: its run's source namespace, as in ``runs``)."""

    batch_id: int
    run_id: int
    namespace: str
    attempts: int
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
    #: Batches that failed for good, oldest first, for `nsmigrate retry`.
    failed_batches: tuple[FailedBatch, ...] = ()

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
            "failed_batches": [b.as_dict() for b in self.failed_batches],
        }
        if self.places:
            data["places"] = [p.as_dict() for p in self.places]
        return data

    def summary(self, rows: int | None = None) -> JobSummary:
        """What `status` shows of this snapshot: every run when there are at most ``rows`` (None: no limit), else the
        ``rows`` to look at first (``to_look_at``). ``SUMMARY_SQL`` computes the same in the database."""
        shown = self.runs if rows is None or len(self.runs) <= rows else to_look_at(self.runs)[:rows]
        return JobSummary(
            job_id=self.job_id,
            name=self.name,
            kind=self.kind,
            state=self.state,
            created_at=self.created_at,
            phase=self.phase,
            namespaces=len(self.runs),
            states=dict(Counter(r.state for r in self.runs)),
            totals=self.totals,
            runs=tuple(shown),
            places=self.places,
            failed_batches=len(self.failed_batches),
            failed_batch_namespaces=len({b.run_id for b in self.failed_batches}),
        )


@dataclass(frozen=True)
class JobSummary:
    """A job as `status` shows it: how many runs are in each state and the totals over all of them, and the runs it
    lists (all of them, or for a large job the ones to look at first)."""

    job_id: int
    name: str
    kind: JobKind
    state: JobState
    created_at: datetime
    phase: str | None
    #: How many namespace runs the job has (``runs`` may list fewer).
    namespaces: int
    states: Mapping[RunState, int]
    totals: Totals
    #: In the order to show them: by run id when every run is here, else ``to_look_at``'s.
    runs: tuple[RunStatus, ...]
    places: tuple[PlaceStatus, ...] = ()
    #: Batches that failed for good, and the namespaces they are in.
    failed_batches: int = 0
    failed_batch_namespaces: int = 0


#: The order in which a large job's runs are shown: failed states first, then every state before verified, in the
#: order a run goes through them; the others (verified, cleaned, cancelled) last.
ATTENTION: tuple[RunState, ...] = (
    RunState.LIST_FAILED,
    RunState.VERIFY_FAILED,
    RunState.COPYING,
    RunState.LISTING,
    RunState.VERIFYING,
    RunState.PENDING,
    RunState.COPIED,
    RunState.CLEANING,
)
_RANK = {state: rank for rank, state in enumerate(ATTENTION)}


def to_look_at(runs: Sequence[RunStatus]) -> list[RunStatus]:
    """Runs in the order to look at them: with failed ids first, then by ``ATTENTION``, then by run id (``runs`` is
    in run-id order; the sort is stable)."""
    rest = len(ATTENTION)
    return sorted(runs, key=lambda r: (0 if r.failed else 1, _RANK.get(r.state, rest)))


def sql_list(states: Iterable[StrEnum]) -> str:
    """States as the items of a SQL ``IN (…)`` list: their values are fixed lower-case words, never user input."""
    return ", ".join(f"'{state.value}'" for state in states)


# Batches are counted per run in SQL, and each verification report is reduced to its summary and verdict there: the
# client decodes one compact document, not rows of full reports. A run's done batches are its batches_total less the
# ones not done, which a partial index holds: a job of a million done batches reads none of them.
_UNFINISHED = f"""
    count(*) FILTER (WHERE b.state = '{BatchState.QUEUED}') AS queued,
    count(*) FILTER (WHERE b.state = '{BatchState.RUNNING}') AS running,
    count(*) FILTER (WHERE b.state = '{BatchState.FAILED}') AS failed,
    count(*) AS unfinished,
    max(b.last_error) FILTER (WHERE b.state = '{BatchState.FAILED}') AS error
"""
#: The ``_UNFINISHED`` counts of run ``r`` as ``c`` (zeros when it has none), read run by run from that partial index.
#: Why run by run: the planner's statistics of a job just made predate its runs and put them at one row, and a join of
#: its runs with their batches, grouped, was then planned as a nested loop that ran the whole join again for each run
#: (its cost grew as the cube of the runs). One index probe a run stays linear, however stale the statistics.
UNFINISHED_OF_RUN = f"""CROSS JOIN LATERAL (
    SELECT {_UNFINISHED} FROM batches b WHERE b.run_id = r.id AND b.state <> '{BatchState.DONE}'
) c"""
#: The states in which a run's stored report is its verdict now: in any other (copying again for a sync, verifying
#: again), the report is an earlier one, and whether it passed is not said.
_JUDGED_NOW = ", ".join(f"'{s}'" for s in (*JUDGED_RUN_STATES, RunState.CLEANING))
#: One run as an array (``_run_of`` reads it): r is its namespace_runs row, c its ``_UNFINISHED`` counts.
_RUN_ROW = f"""json_build_array(
    r.id, r.source_namespace, r.target_namespace, r.target_namespaces, r.state, r.source_count, r.listed,
    r.copied, r.failed, coalesce(nullif(r.last_error, ''), c.error), r.verification ->> 'summary',
    CASE WHEN r.state IN ({_JUDGED_NOW}) THEN (r.verification -> 'passed')::boolean END,
    CASE WHEN r.state = '{RunState.CANCELLED}' THEN 0 ELSE coalesce(c.queued, 0) END, coalesce(c.running, 0),
    greatest(r.batches_total - coalesce(c.unfinished, 0), 0), coalesce(c.failed, 0),
    CASE WHEN r.state = '{RunState.CANCELLED}' THEN coalesce(c.queued, 0) ELSE 0 END
)"""
_JOB = "job.id, job.name, job.kind, job.state, job.phase, job.created_at"
_PLACES = """coalesce((
    SELECT json_agg(json_build_array(
        p.kind, p.store, p.namespace, p.path, p.planned, p.erased, p.state, p.last_error
    ) ORDER BY p.id)
    FROM erase_places p WHERE p.job_id = job.id
), '[]')"""

#: A job's failed batches (``FailedBatch`` fields), from the partial index of batches not done, found from an array of
#: the job's runs as ``SUMMARY_SQL`` counts them (joined to the job's runs, a nested loop could read them again for
#: each failed batch).
_FAILED_BATCHES = f"""coalesce((
    SELECT json_agg(json_build_array(b.id, r.id, r.source_namespace, b.attempts, b.last_error) ORDER BY b.id)
    FROM batches b JOIN namespace_runs r ON r.id = b.run_id
    WHERE b.state = '{BatchState.FAILED}' AND b.run_id = ANY(ARRAY(SELECT id FROM namespace_runs WHERE job_id = job.id))
), '[]')"""

SNAPSHOT_SQL = f"""
WITH job AS (
    SELECT id, name, kind, state, phase, created_at FROM jobs WHERE id = %(job_id)s
)
SELECT json_build_array(
    {_JOB},
    coalesce((
        SELECT json_agg({_RUN_ROW} ORDER BY r.id)
        FROM namespace_runs r {UNFINISHED_OF_RUN}
        WHERE r.job_id = job.id
    ), '[]'),
    {_PLACES},
    {_FAILED_BATCHES}
)::text
FROM job
"""

_RANK_SQL = (
    "CASE r.state "
    + " ".join(f"WHEN '{state.value}' THEN {rank}" for rank, state in enumerate(ATTENTION))
    + f" ELSE {len(ATTENTION)} END"
)

# What `status` shows of a large job, aggregated in the database: the counts by state and the totals read a few
# columns of every run, and only the runs shown (``to_look_at``'s order when the job has more than %(rows)s runs;
# NULL: every run) are turned into JSON, with their unfinished batches counted. The failed batches are found from an
# array of the job's runs (an InitPlan the planner never turns into a join: one index probe a run): joined to the runs,
# a nested loop could read every run of the job again for each failed batch; and looked up by their run's key, every
# failed batch of the table was read, those a cancelled job left for good too.
SUMMARY_SQL = f"""
WITH job AS (
    SELECT id, name, kind, state, phase, created_at FROM jobs WHERE id = %(job_id)s
), runs AS MATERIALIZED (
    SELECT id, state, source_count, listed, copied, failed FROM namespace_runs r WHERE r.job_id = %(job_id)s
), shown AS (
    SELECT id,
           CASE WHEN (SELECT count(*) FROM runs) > %(rows)s THEN (failed = 0)::int ELSE 0 END AS failed_last,
           CASE WHEN (SELECT count(*) FROM runs) > %(rows)s THEN {_RANK_SQL} ELSE 0 END AS attention
    FROM runs r
    ORDER BY failed_last, attention, id
    LIMIT %(rows)s
)
SELECT json_build_array(
    {_JOB},
    (SELECT json_build_array(
        count(*), coalesce(sum(source_count), 0), coalesce(sum(listed), 0), coalesce(sum(copied), 0),
        coalesce(sum(failed), 0)
    ) FROM runs),
    coalesce((SELECT json_object_agg(state, n) FROM (SELECT state, count(*) AS n FROM runs GROUP BY state) s), '{{}}'),
    coalesce((
        SELECT json_agg({_RUN_ROW} ORDER BY s.failed_last, s.attention, s.id)
        FROM shown s JOIN namespace_runs r ON r.id = s.id {UNFINISHED_OF_RUN}
    ), '[]'),
    {_PLACES},
    (SELECT json_build_array(count(*), count(DISTINCT b.run_id))
     FROM batches b
     WHERE b.state = '{BatchState.FAILED}' AND b.run_id = ANY(ARRAY(SELECT id FROM runs)))
)::text
FROM job
"""

#: The newest job of a name (``nsmigrate status NAME``).
JOB_BY_NAME_SQL = "SELECT id FROM jobs WHERE name = %(name)s ORDER BY id DESC LIMIT 1"

#: The newest ``%(limit)s`` jobs (``nsmigrate jobs``).
# ``created_at`` in UTC whatever the session's TimeZone (a server's own, or the URL's ``options``): it is shown as UTC.
JOBS_SQL = """
SELECT coalesce(json_agg(json_build_array(id, name, kind, state, created_at) ORDER BY id DESC), '[]')::text
FROM (SELECT id, name, kind, state,
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS created_at
      FROM jobs ORDER BY id DESC LIMIT %(limit)s) j
"""


def _run_of(r: list[Any]) -> RunStatus:
    """A run from its ``_RUN_ROW`` array."""
    return RunStatus(
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
        batches=BatchCounts(*r[12:17]),
    )


def _loaded(document: str | None, job_id: int) -> list[Any]:
    """A statement's document decoded (None: no such job)."""
    return _found(None if document is None else orjson.loads(document), job_id)


def _found(decoded: list[Any] | None, job_id: int) -> list[Any]:
    if decoded is None:
        raise NotFound(f"no job '{job_id}' in the job table", hint="`nsmigrate jobs` lists the jobs", job_id=job_id)
    return decoded


def _job_of(job_id: int, name: str, kind: str, state: str, phase: str | None, created_at: str) -> dict[str, Any]:
    """The job's fields of a ``JobStatus`` or ``JobSummary``, from the ``_JOB`` columns."""
    return {
        "job_id": job_id,
        "name": name,
        "kind": JobKind(kind),
        "state": JobState(state),
        "created_at": datetime.fromisoformat(created_at),
        "phase": phase,
    }


def snapshot_of(document: str | None, job_id: int) -> JobStatus:
    """The ``JobStatus`` of what ``SNAPSHOT_SQL`` returned (None: no such job)."""
    *job, runs, places, failed = _loaded(document, job_id)
    return JobStatus(
        **_job_of(*job),
        runs=tuple(_run_of(r) for r in runs),
        places=tuple(PlaceStatus(*p) for p in places),
        failed_batches=tuple(FailedBatch(*b) for b in failed),
    )


def summary_of(document: str | None, job_id: int) -> JobSummary:
    """The ``JobSummary`` of what ``SUMMARY_SQL`` returned (None: no such job)."""
    return summary_of_decoded(_loaded(document, job_id), job_id)


def summary_of_decoded(decoded: list[Any] | None, job_id: int) -> JobSummary:
    """The ``JobSummary`` of ``SUMMARY_SQL``'s document once decoded, e.g. from within a larger one (None: no such
    job)."""
    *job, (namespaces, *totals), states, runs, places, (failed_batches, in_namespaces) = _found(decoded, job_id)
    return JobSummary(
        **_job_of(*job),
        namespaces=namespaces,
        states={RunState(st): n for st, n in states.items()},
        totals=Totals(*totals),
        runs=tuple(_run_of(r) for r in runs),
        places=tuple(PlaceStatus(*p) for p in places),
        failed_batches=failed_batches,
        failed_batch_namespaces=in_namespaces,
    )


_PLACE_FIELDS = tuple(f.name for f in fields(PlaceStatus))
_BATCH_COUNTS = tuple(f.name for f in fields(BatchCounts))
_FAILED_BATCH_FIELDS = tuple(f.name for f in fields(FailedBatch))


def snapshot_json(document: str | None, job_id: int) -> bytes:
    """`nsmigrate status --json` of what ``SNAPSHOT_SQL`` returned: ``snapshot_of(document).as_dict()`` as indented
    JSON, built from the decoded rows without the dataclasses (most of the time of a job of thousands of runs)."""
    *job, runs, places, failed = _loaded(document, job_id)
    header = _job_of(*job)
    data = {
        "job_id": header["job_id"],
        "name": header["name"],
        "kind": header["kind"],
        "state": header["state"],
        "created_at": header["created_at"].isoformat(),
        "runs": [
            {
                "run_id": r[0],
                "source_namespace": r[1],
                "target_namespace": r[2],
                "targets": r[3] or [],
                "state": r[4],
                "source_count": r[5],
                "listed": r[6],
                "copied": r[7],
                "failed": r[8],
                "batches": dict(zip(_BATCH_COUNTS, r[12:17], strict=True)),
                "last_error": r[9],
                "verification": r[10],
                "verified_ok": r[11],
            }
            for r in runs
        ],
        "totals": {
            "source": sum(r[5] for r in runs),
            "listed": sum(r[6] for r in runs),
            "copied": sum(r[7] for r in runs),
            "failed": sum(r[8] for r in runs),
        },
        "phase": header["phase"],
        "failed_batches": [dict(zip(_FAILED_BATCH_FIELDS, b, strict=True)) for b in failed],
    }
    if places:
        data["places"] = [dict(zip(_PLACE_FIELDS, p, strict=True)) for p in places]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


#: Runs one statement with psycopg-style parameters and returns the first column of its row (None: no row).
Execute = Callable[[str, dict[str, Any]], Any]


def job_id_of(execute: Execute, ref: str | int) -> int:
    """The id of job ``ref`` (an id, or a name: its newest job).

    Raises:
        NotFound: no job of that name.
    """
    if isinstance(ref, int) or ref.isdigit():
        return int(ref)
    job_id = execute(JOB_BY_NAME_SQL, {"name": ref})
    if job_id is None:
        raise NotFound(f"no job {ref!r} in the job table", hint="`nsmigrate jobs` lists the jobs")
    return int(job_id)


def read_snapshot(execute: Execute, ref: str | int) -> JobStatus:
    """The snapshot of job ``ref`` (an id, or a name: its newest job).

    Raises:
        NotFound: no such job.
    """
    job_id = job_id_of(execute, ref)
    return snapshot_of(execute(SNAPSHOT_SQL, {"job_id": job_id}), job_id)


def read_summary(execute: Execute, ref: str | int, rows: int | None) -> JobSummary:
    """The summary of job ``ref`` with at most ``rows`` runs listed (None: every run); the same as
    ``read_snapshot(…).summary(rows)`` without reading every run.

    Raises:
        NotFound: no such job.
    """
    job_id = job_id_of(execute, ref)
    return summary_of(execute(SUMMARY_SQL, {"job_id": job_id, "rows": rows}), job_id)


def read_json(execute: Execute, ref: str | int) -> bytes:
    """`nsmigrate status --json` of job ``ref`` (``snapshot_json``).

    Raises:
        NotFound: no such job.
    """
    job_id = job_id_of(execute, ref)
    return snapshot_json(execute(SNAPSHOT_SQL, {"job_id": job_id}), job_id)


def read_jobs(execute: Execute, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs, newest first: job_id, name, kind, state, created_at (ISO 8601)."""
    return [
        {
            "job_id": job_id,
            "name": name,
            "kind": kind,
            "state": state,
            "created_at": datetime.fromisoformat(created_at).isoformat(),
        }
        for job_id, name, kind, state, created_at in orjson.loads(execute(JOBS_SQL, {"limit": limit}))
    ]


class RunVerdict(NamedTuple):
    """What `verify` waits on of a run: its state, and when its verification report was written and its verdict
    (None: no report, or none in it)."""

    run_id: int
    state: RunState
    checked_at: str | None
    passed: bool | None


#: The verdicts of runs ``%(ids)s``; the reports themselves stay in the database (a job's may hold thousands of
#: missing ids each).
VERDICTS_SQL = """
SELECT coalesce(json_agg(json_build_array(
    id, state, verification ->> 'checked_at', (verification -> 'passed')::boolean)), '[]')::text
FROM namespace_runs WHERE id = ANY(%(ids)s)
"""


def read_verdicts(execute: Execute, run_ids: Collection[int]) -> list[RunVerdict]:
    """The ``RunVerdict`` of each of the runs ``run_ids`` that exists."""
    rows = orjson.loads(execute(VERDICTS_SQL, {"ids": list(run_ids)}))
    return [RunVerdict(run_id, RunState(state), checked_at, passed) for run_id, state, checked_at, passed in rows]

"""What a command that follows a job (`run --wait`, `watch`, `retry --wait`, `verify`…) reads at each poll, in one
statement (``PROGRESS_SQL``): the job's summary as `status` shows it (``snapshot.SUMMARY_SQL``: the count of runs in
each state, the totals, at most ``rows`` runs) and the distinct shapes of its runs, which is all the command needs to
tell whether what it waits for is done (``cli.waits``). A poll then decodes at most ``rows`` runs, however many the
job has.

Like ``orchestrator.snapshot``, imports neither SQLAlchemy nor the models.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from nsmigrate.orchestrator.snapshot import (
    SUMMARY_SQL,
    UNFINISHED_OF_RUN,
    Execute,
    JobSummary,
    RunStatus,
    summary_of_decoded,
)
from nsmigrate.orchestrator.states import JobKind, RunState


@dataclass(frozen=True)
class RunShape:
    """A run as a waiting command tells runs apart (``cli.waits``): runs of one shape are alike to it, so it judges a
    job of thousands of runs from the few shapes they have."""

    state: RunState
    #: Some of its batches are queued or running: copy tasks are still to come.
    busy: bool
    #: Some of its batches failed.
    failed_batches: bool
    #: It has ids in failed batches (``RunStatus.failed`` > 0).
    failed_ids: bool
    #: Verified, and the cleanup its job's ``cleanup.mode: auto`` sends is still to come: not yet started, and not
    #: refused (``jobs.verdicts.auto_cleanup_owed``, which the workers' sweep reads).
    cleanup_owed: bool = False

    @classmethod
    def of(cls, run: RunStatus) -> RunShape:
        """The shape of a run of a job that owes it no cleanup."""
        b = run.batches
        return cls(run.state, busy=bool(b.queued or b.running), failed_batches=b.failed > 0, failed_ids=run.failed > 0)


@dataclass(frozen=True)
class JobProgress:
    """One poll of a job: what `status` shows of it, and the shapes of all its runs."""

    summary: JobSummary
    shapes: frozenset[RunShape]


# A run's batches that are not done are counted as ``SNAPSHOT_SQL`` counts them, run by run from a partial index
# (``UNFINISHED_OF_RUN``: linear in the runs whatever the planner's statistics), reduced to whether there are any
# queued or running, and any failed. A verified run of a job whose spec cleans up by itself still owes its cleanup
# until the cleanup starts (``cleaning``) or is refused (a ``cleanup_refused`` event of the run since its last
# ``verified`` one): the job's refusals are read once, by the job's index on events, not once a run.
_SHAPES_SQL = f"""
SELECT coalesce(json_agg(json_build_array(state, busy, failed_batches, failed_ids, cleanup_owed)), '[]')
FROM (
    SELECT DISTINCT r.state, c.queued + c.running > 0 AS busy, c.failed > 0 AS failed_batches,
           r.failed > 0 AS failed_ids,
           coalesce(auto.cleans AND r.state = '{RunState.VERIFIED}' AND r.id NOT IN (
               SELECT e.run_id FROM events e
               WHERE e.job_id = %(job_id)s AND e.action = 'cleanup_refused' AND e.run_id IS NOT NULL
               AND NOT EXISTS (
                   SELECT 1 FROM events v
                   WHERE v.job_id = %(job_id)s AND v.run_id = e.run_id AND v.action = 'verified' AND v.id > e.id
               )
           ), false) AS cleanup_owed
    FROM namespace_runs r {UNFINISHED_OF_RUN}
    CROSS JOIN (
        SELECT j.kind = '{JobKind.MIGRATE}' AND j.spec -> 'cleanup' ->> 'mode' = 'auto' AS cleans
        FROM jobs j WHERE j.id = %(job_id)s
    ) auto
    WHERE r.job_id = %(job_id)s
) shapes
"""

#: The summary (NULL: no such job) and the shapes, in one statement: both from the same snapshot of the job table.
PROGRESS_SQL = f"SELECT json_build_array(({SUMMARY_SQL})::json, ({_SHAPES_SQL}))::text"


def read_progress(execute: Execute, job_id: int, rows: int) -> JobProgress:
    """Job ``job_id``'s summary with at most ``rows`` runs listed, and the shapes of its runs.

    Raises:
        NotFound: no such job.
    """
    summary, shapes = orjson.loads(execute(PROGRESS_SQL, {"job_id": job_id, "rows": rows}))
    return JobProgress(
        summary=summary_of_decoded(summary, job_id),
        shapes=frozenset(RunShape(RunState(state), *flags) for state, *flags in shapes),
    )

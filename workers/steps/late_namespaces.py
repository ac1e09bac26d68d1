"""Source namespaces a job's selection takes now that no run of the job holds: made after its plan, or within the lag
of the listing it planned from (Pinecone's namespace listing lags writes, and no probe can await a namespace it does
not show yet). A sync copies the job's runs only, so reads moved to the target would find none of these: `sync` names
them (and with ``--new-namespaces`` adds them to the job: ``orchestrator.late_runs``) and `cutover check` fails on
them, each with what to do. Reads only.
"""

from __future__ import annotations

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs.crossing_jobs import wrote_into
from nsmigrate.orchestrator.models import JobKind
from nsmigrate.orchestrator.planning.selection import matching
from nsmigrate.orchestrator.records.namespaces import parse_namespace_arg, shown_namespaces
from nsmigrate.workers.context import WorkerContext


def late_namespaces(ctx: WorkerContext, job_id: int) -> list[str]:
    """The source namespaces ``job_id``'s selection takes now that none of its runs holds, sorted (none for a job
    that is not a migration: a rollback's or an erasure's runs are not a selection)."""
    if jobs_and_runs.find_job(ctx.db, job_id).kind != JobKind.MIGRATE:
        return []
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    runs = jobs_and_runs.runs_of(ctx.db, job_id)
    source = ctx.guarded(spec.source, spec.rate)
    held = {r.source_namespace for r in runs}
    if source.identity() == ctx.guarded(spec.target, spec.rate).identity():
        # A refactor inside one store: the namespaces the job wrote are its copies, not new sources.
        held.update(ns for r in runs for ns in wrote_into(r.target_namespace, r.target_namespaces))
    listed = (parse_namespace_arg(ns) for ns in source.namespaces())
    return [ns for ns in matching(spec, listed) if ns not in held]


def late_namespaces_problem(job_id: int, late: list[str]) -> str:
    """What ``late`` means for a cut-over of ``job_id``, and what to do."""
    return (
        f"{len(late)} source namespace(s) that job {job_id}'s selection takes have no run in it (made after its plan): "
        f"{shown_namespaces(late)}; reads moved to the target would find nothing there. Copy them into the job with "
        f"`nsmigrate sync {job_id} --new-namespaces`, or leave them out of its selection (namespaces.exclude)"
    )

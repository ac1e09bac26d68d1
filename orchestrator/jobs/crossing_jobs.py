"""The other unfinished migrate jobs a new job's namespaces cross, read from the job table, and judged by
``planning.crossings`` (pure): warnings shown with the plan, and a target namespace another job still writes into,
refused. Jobs are created one at a time (``jobs_and_runs.create_job`` holds a lock for it), and the refusal is asked
again under that lock: two jobs planned at the same moment cannot both pass it."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import Job, JobKind, JobState, NamespaceRun, RunState
from nsmigrate.orchestrator.planning import crossings
from nsmigrate.orchestrator.states import COPY_UNDER_WAY_RUN_STATES

if TYPE_CHECKING:
    from nsmigrate.orchestrator.planning.plan import Plan
    from nsmigrate.orchestrator.spec.jobspec import JobSpec


def crossings_of(db: Database, spec: JobSpec, plan: Plan, *, resumed_by_run: bool = False) -> list[str]:
    """Warnings for the namespaces ``plan`` shares with other unfinished jobs (``crossings``), shown with the plan and
    kept in its ``job_created`` event; PlanError for a target namespace another job still writes into
    (``crossings.check_shared_targets``). ``resumed_by_run``: a dry plan, whose spec `run` would resume the unfinished
    job of its name with (that job is not another)."""
    others = _crossing_runs(db, spec, plan, resumed_by_run)
    crossings.check_shared_targets(spec, plan, others)
    return crossings.crossing_warnings(spec, plan, others)


def check_shared_targets(session: Session, spec: JobSpec, plan: Plan) -> None:
    """``crossings.check_shared_targets`` against the job table as it is now, in ``session`` (``create_job``'s, under
    its lock): one query, of the runs still copying into a namespace ``plan`` writes (most often none).

    Raises:
        PlanError: a target namespace another job still writes into.
    """
    if spec.allow_id_overwrite:
        return
    targets = [run.target_namespace for run in plan.runs if run.target_namespace is not None]
    copying = (
        sa.select(NamespaceRun.job_id, Job.name, Job.spec, NamespaceRun.source_namespace, NamespaceRun.target_namespace)
        .add_columns(NamespaceRun.target_namespaces)
        .join(Job, NamespaceRun.job_id == Job.id)
        .where(
            Job.kind == JobKind.MIGRATE,
            Job.state != JobState.CANCELLED,
            NamespaceRun.state.in_(COPY_UNDER_WAY_RUN_STATES),
            sa.or_(NamespaceRun.target_namespace == _any_of(targets), NamespaceRun.target_namespace.is_(None)),
        )
    )
    rows = session.execute(copying).all()
    others = [
        crossings.OpenRun(job_id, name, other or {}, source, frozenset(wrote_into(target, written)), True)
        for job_id, name, other, source, target, written in rows
    ]
    crossings.check_shared_targets(spec, plan, others)


def _crossing_runs(db: Database, spec: JobSpec, plan: Plan, resumed_by_run: bool) -> list[crossings.OpenRun]:
    sources = {run.source_namespace for run in plan.runs}
    targets = {run.target_namespace for run in plan.runs if run.target_namespace is not None}
    # Stores first, namespaces after: only the runs of jobs on this job's stores are read (thousands of namespaces
    # each, for jobs of many small ones); of a job that only writes into this job's target, only the runs still
    # writing (the shared-target refusal's): a job run again into the same target reads no finished copy of it.
    crossing: list[int] = []
    writing: list[int] = []
    for job_id, other in open_migrate_jobs(db):
        if resumed_by_run and other.get("name") == spec.name:
            continue
        if crossings.stores_may_cross(spec, other):
            crossing.append(job_id)
        elif crossings.writes_same_store(spec, other):
            writing.append(job_id)
    found = [
        *open_runs_crossing(db, sources, targets, crossing),
        *open_runs_crossing(db, sources, targets, writing, states=COPY_UNDER_WAY_RUN_STATES),
    ]
    return [
        crossings.OpenRun(job_id, name, spec_json, source, frozenset(wrote), state in COPY_UNDER_WAY_RUN_STATES)
        for job_id, name, spec_json, source, wrote, state in found
    ]


_RUN_DONE = [RunState.CLEANED, RunState.CANCELLED]


def wrote_into(target: str | None, written: list[str] | None) -> set[str]:
    """The namespaces a run writes into: its fixed target, and those it wrote (routed: several)."""
    return {*(written or []), *([target] if target is not None else [])}


def _any_of(names: Collection[str]) -> Any:
    """``= ANY(names)``, the names one array parameter: an ``IN`` of a job's thousands of namespaces is as many
    parameters, each rendered, sent and planned (2,000 namespaces: 49 ms a query, 26 ms with the array)."""
    return sa.any_(sa.bindparam(None, list(names), type_=ARRAY(sa.String)))


def open_migrate_jobs(db: Database) -> list[tuple[int, dict[str, Any]]]:
    """``(job id, its spec)`` of every migrate job not cancelled with a run neither cleaned nor cancelled (a cleanup
    may still delete its source): the jobs a new one may cross (``open_runs_crossing``)."""
    open_run = sa.exists().where(NamespaceRun.job_id == Job.id, NamespaceRun.state.not_in(_RUN_DONE))
    stmt = sa.select(Job.id, Job.spec).where(Job.kind == JobKind.MIGRATE, Job.state != JobState.CANCELLED, open_run)
    with db.transaction() as s:
        return [(job_id, spec or {}) for job_id, spec in s.execute(stmt.order_by(Job.id))]


def open_runs_crossing(
    db: Database,
    sources: Collection[str],
    targets: Collection[str],
    job_ids: Collection[int],
    *,
    states: Collection[str] | None = None,
) -> list[tuple[int, str, dict[str, Any], str, set[str], str]]:
    """``(job id, job name, its spec, source namespace, target namespaces, run state)`` of every run of the
    unfinished migrate jobs ``job_ids`` (not cancelled; the run neither cleaned nor cancelled: a cleanup may still
    delete its source; in one of ``states`` when given) whose source is one of ``targets`` or whose target namespaces
    hold one of ``sources`` or ``targets``. Matched by name: the caller compares the stores, and names only the jobs
    whose stores may cross (``open_migrate_jobs``)."""
    if not job_ids:
        return []
    done = _RUN_DONE
    crossing = sa.or_(
        NamespaceRun.source_namespace == _any_of(targets),
        NamespaceRun.target_namespace == _any_of([*sources, *targets]),
        NamespaceRun.target_namespace.is_(None),  # routed: its targets are the namespaces it wrote
    )
    stmt = (
        sa.select(NamespaceRun.job_id, NamespaceRun.source_namespace, NamespaceRun.target_namespace)
        .add_columns(NamespaceRun.target_namespaces, NamespaceRun.state)
        .join(Job, NamespaceRun.job_id == Job.id)
        .where(Job.kind == JobKind.MIGRATE, Job.state != JobState.CANCELLED, NamespaceRun.state.not_in(done), crossing)
        .where(NamespaceRun.job_id.in_(list(job_ids)))
        .order_by(NamespaceRun.job_id, NamespaceRun.id)
    )
    if states is not None:
        stmt = stmt.where(NamespaceRun.state.in_(list(states)))
    found = []
    with db.transaction() as s:
        rows = s.execute(stmt).all()
        # Each job's name and spec once, not on each of its runs: a job of 2,000 namespaces would parse its spec
        # 2,000 times.
        job_ids = {row[0] for row in rows}
        jobs = (
            {}
            if not job_ids
            else dict(
                (job_id, (name, spec or {}))
                for job_id, name, spec in s.execute(sa.select(Job.id, Job.name, Job.spec).where(Job.id.in_(job_ids)))
            )
        )
    for job_id, source, target, written, state in rows:
        wrote = wrote_into(target, written)
        if source in targets or wrote & {*sources, *targets}:
            name, spec = jobs[job_id]
            found.append((job_id, name, spec, source, wrote, state))
    return found

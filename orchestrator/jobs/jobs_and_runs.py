"""Jobs and their namespace runs as rows: create, find, cancel and finish a job; read its runs and its spec; write an
audit event."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.errors import JobStopped, NotFound, StateError
from nsmigrate.orchestrator.jobs.database import Database, _get_job, _get_run, _rowcount, add_event, default_actor
from nsmigrate.orchestrator.jobs.lifecycle import FINAL_RUN_STATES, LISTABLE_RUN_STATES, OPEN_RUN_STATES
from nsmigrate.orchestrator.jobs.tables import _JOB_CREATED, _jobs, _runs
from nsmigrate.orchestrator.models import (
    CANCELLED_WHILE_CLEANING,
    Event,
    Job,
    JobKind,
    JobState,
    NamespaceRun,
    RunState,
    utcnow,
)
from nsmigrate.orchestrator.records.namespaces import shown_namespaces
from nsmigrate.orchestrator.states import UNSTOPPABLE_PHASES, phase_name

if TYPE_CHECKING:  # reading the job table (status, jobs) needs neither the planner nor the spec's pydantic models
    from nsmigrate.orchestrator.planning.plan import Plan
    from nsmigrate.orchestrator.spec.jobspec import JobSpec


#: Namespace runs written per INSERT, and listers sent per round trip by ``launch``.
ROWS_PER_INSERT = 1000


_arrays = (
    sa.func.unnest(
        sa.bindparam("each_source_namespaces", type_=ARRAY(sa.String)),
        sa.bindparam("each_target_namespaces", type_=ARRAY(sa.String)),
        sa.bindparam("each_creator_ids", type_=ARRAY(sa.String)),
        sa.bindparam("each_twin_ids", type_=ARRAY(sa.String)),
        sa.bindparam("each_source_counts", type_=ARRAY(sa.BigInteger)),
        sa.bindparam("each_states", type_=ARRAY(sa.String)),
    )
    .table_valued("source_namespace", "target_namespace", "creator_id", "twin_id", "source_count", "state")
    .render_derived("planned")
)
#: A job's namespace runs, a row per element of the arrays; a routed run (no target namespace) keeps the twin →
#: creator table, the others none. The columns not named take their defaults.
_INSERT_RUNS = sa.insert(_runs).from_select(
    [
        "job_id",
        "source_store",
        "source_namespace",
        "target_store",
        "target_namespace",
        "creator_id",
        "twin_id",
        "source_count",
        "routing_table",
        "state",
    ],
    sa.select(
        sa.bindparam("job_id", type_=sa.Integer),
        sa.bindparam("source_store", type_=sa.String),
        _arrays.c.source_namespace,
        sa.bindparam("target_store", type_=sa.String),
        _arrays.c.target_namespace,
        _arrays.c.creator_id,
        _arrays.c.twin_id,
        _arrays.c.source_count,
        sa.case(
            (_arrays.c.target_namespace.is_(None), sa.bindparam("routed", type_=_runs.c.routing_table.type)),
            else_=sa.cast(sa.literal("{}"), _runs.c.routing_table.type),
        ),
        _arrays.c.state,
    ).select_from(_arrays),
)


#: The advisory lock a job is created under when it asks a question of the other jobs (``create_job`` ``recheck``).
JOB_CREATION_LOCK = 7316002


def create_job(
    db: Database,
    spec: JobSpec,
    plan: Plan,
    *,
    source_label: str,
    target_label: str,
    kind: JobKind = JobKind.MIGRATE,
    actor: str | None = None,
    parent_job_id: int | None = None,
    planning: dict[str, float] | None = None,
    checking: Collection[str] = (),
    recheck: Callable[[Session], None] | None = None,
) -> int:
    """Write the job and one namespace run per planned namespace; returns the job id. ``planning``: when planning
    passed its steps (``planning.prepared.Prepared.marks``), kept in the ``job_created`` event. ``checking``: the source
    namespaces whose own checks are still to be made; their runs start ``checking`` (``finish_namespace_checks``).
    ``recheck``: asked in the job's transaction before anything is written, while no other job given one is being
    created (a lock until this one is committed), so that it sees every such job created before; what it raises is
    raised, nothing written."""
    from nsmigrate.orchestrator.spec.jobspec import spec_to_json  # once per job; see the TYPE_CHECKING block

    actor = actor or default_actor()
    with db.transaction() as s:
        if recheck is not None:
            s.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": JOB_CREATION_LOCK})
            recheck(s)
        job = Job(
            name=spec.name, kind=kind, spec=spec_to_json(spec), state=JobState.RUNNING, parent_job_id=parent_job_id
        )
        s.add(job)
        s.flush()
        _insert_runs(s, job.id, plan, source_label, target_label, checking)
        detail: dict[str, Any] = {"kind": str(kind), "namespaces": len(plan.runs), "vectors": plan.total_vectors}
        if planning:
            detail["planning"] = planning
        if plan.warnings:
            detail["warnings"] = list(plan.warnings)
        add_event(s, "job_created", actor, job.id, **detail)
        return job.id


def _insert_runs(
    s: Session, job_id: int, plan: Plan, source_label: str, target_label: str, checking: Collection[str]
) -> None:
    # One INSERT … SELECT from arrays per ``ROWS_PER_INSERT`` runs: its text is the same whatever the rows, so it is
    # compiled once per process, where a multi-row VALUES of thousands of parameters took SQLAlchemy and psycopg
    # ~0.5 ms of CPU a namespace to build (``bench/README.md``); and no object per namespace, so the orchestrator's
    # memory does not grow with them.
    for start in range(0, len(plan.runs), ROWS_PER_INSERT):
        runs = plan.runs[start : start + ROWS_PER_INSERT]
        s.execute(
            _INSERT_RUNS,
            {
                "job_id": job_id,
                "source_store": source_label,
                "target_store": target_label,
                "routed": dict(plan.twins),
                "each_source_namespaces": [p.source_namespace for p in runs],
                "each_target_namespaces": [p.target_namespace for p in runs],
                "each_creator_ids": [p.creator_id for p in runs],
                "each_twin_ids": [p.twin_id for p in runs],
                "each_source_counts": [p.vector_count for p in runs],
                "each_states": [
                    (RunState.CHECKING if p.source_namespace in checking else RunState.PENDING).value for p in runs
                ],
            },
        )


def add_runs(
    db: Database,
    job_id: int,
    plan: Plan,
    *,
    source_label: str,
    target_label: str,
    actor: str | None = None,
    checking: Collection[str] = (),
    recheck: Callable[[Session], None] | None = None,
) -> None:
    """Write one run per planned namespace into job ``job_id`` (source namespaces made after its plan:
    ``orchestrator.late_runs``) and set the job running again. ``checking`` and ``recheck``: ``create_job``'s.

    Raises:
        JobStopped: the job was cancelled or rolled back.
        StateError: a planned namespace has a run in the job already (added meanwhile); nothing is written.
    """
    actor = actor or default_actor()
    names = [p.source_namespace for p in plan.runs]
    with db.transaction() as s:
        if recheck is not None:
            s.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": JOB_CREATION_LOCK})
            recheck(s)
        _refuse_stopped(s, job_id, "adding namespaces")
        held = s.scalars(
            sa.select(_runs.c.source_namespace).where(_runs.c.job_id == job_id, _runs.c.source_namespace.in_(names))
        ).all()
        if held:
            raise StateError(
                f"job {job_id} has a run of {shown_namespaces(held)} already (added meanwhile); nothing was changed",
                job_id=job_id,
            )
        _insert_runs(s, job_id, plan, source_label, target_label, checking)
        s.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.RUNNING))
        add_event(
            s,
            "namespaces_added",
            actor,
            job_id,
            namespaces=len(names),
            names=shown_namespaces(names),
            vectors=plan.total_vectors,
        )


def create_action_job(
    db: Database, name: str, kind: JobKind, spec: dict[str, Any], actor: str | None = None, **detail: Any
) -> int:
    """A job with no namespace runs (erase): a row for the record and its audit events."""
    with db.transaction() as s:
        job = Job(name=name[:64], kind=kind, spec=spec, state=JobState.RUNNING)
        s.add(job)
        s.flush()
        add_event(s, f"{kind}_started", actor or default_actor(), job.id, **detail)
        return job.id


def finish_action_job(db: Database, job_id: int, actor: str | None = None, **detail: Any) -> None:
    with db.transaction() as s:
        job = _get_job(s, job_id)
        job.state = JobState.FINISHED
        add_event(s, f"{job.kind}_finished", actor or default_actor(), job_id, **detail)


def find_job(db: Database, ref: str | int) -> Job:
    """A job by id, or the newest job of that name."""
    with db.transaction() as s:
        if isinstance(ref, int) or str(ref).isdigit():
            job = s.get(Job, int(ref))
        else:
            job = s.scalars(sa.select(Job).where(Job.name == ref).order_by(Job.id.desc()).limit(1)).one_or_none()
        if job is None:
            raise NotFound(f"no job {ref!r} in the job table", hint="`nsmigrate jobs` lists the jobs")
        return job


def latest_unfinished_job(db: Database, name: str, kind: JobKind = JobKind.MIGRATE) -> Job | None:
    with db.transaction() as s:
        return s.scalars(
            sa.select(Job)
            .where(Job.name == name, Job.kind == kind, Job.state == JobState.RUNNING)
            .order_by(Job.id.desc())
            .limit(1)
        ).one_or_none()


#: The strategies whose work is one task stepping through Pinecone's part (not listers and batches).
STEPPED_STRATEGIES = ("collection", "import", "convert")


def stepped_strategy(db: Database, job_id: int) -> str | None:
    """``collection``, ``import`` or ``convert`` for a job whose work is one task stepping through Pinecone's part
    (not listers and batches), else None. Read from the stored spec as it is: rollback and erase jobs keep other
    shapes there."""
    strategy = (find_job(db, job_id).spec or {}).get("strategy")
    return strategy if strategy in STEPPED_STRATEGIES else None


def job_key(db: Database, job_id: int) -> tuple[int, datetime]:
    """What a process keeps of a job is known by: its id and when its row was made (one indexed read). A job table
    re-created or restored under a running fleet starts its ids over; a key by id alone would give its job 1 what
    was read of another job 1."""
    with db.single_statement() as conn:
        created_at = conn.execute(_JOB_CREATED, {"job_id": job_id}).scalar()
    if created_at is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    return job_id, created_at


def job_spec(db: Database, job_id: int, created_at: datetime | None = None) -> JobSpec:
    """The job's spec, read and validated once per process and job (a spec never changes once its job is written),
    kept by ``job_key``; ``created_at``: the job's, when the caller's statement read it already."""
    key = (job_id, created_at) if created_at is not None else job_key(db, job_id)
    spec = db._specs.get(key)
    if spec is None:
        # Once, not once per thread: a worker's task threads start on a new job together.
        with db._spec_lock:
            spec = db._specs.get(key)
            if spec is None:
                with db.transaction() as s:
                    spec = _job_spec(db, s, job_id)
    return spec


def _job_spec(db: Database, s: Session, job_id: int) -> JobSpec:
    job = _get_job(s, job_id)
    key = (job_id, job.created_at)
    spec = db._specs.get(key)
    if spec is None:
        from nsmigrate.orchestrator.spec.jobspec import JobSpec  # once per job and process: the spec is kept

        spec = db._specs.setdefault(key, JobSpec.model_validate(job.spec))
    return spec


def runs_of(db: Database, job_id: int, namespace: str | None = None) -> list[NamespaceRun]:
    with db.transaction() as s:
        stmt = sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id)
        if namespace is not None:
            stmt = stmt.where(NamespaceRun.source_namespace == namespace)
        return list(s.scalars(stmt))


def runs_to_list(db: Database, job_id: int, namespaces: Collection[str] | None = None) -> list[tuple[int, str, int]]:
    """(run id, source namespace, its count at plan time) of a job's ``pending`` runs (of ``namespaces`` only, when
    given), the largest namespaces first: the order ``launch`` sends their listers in. Three columns, not the runs'
    rows: a job may have thousands."""
    stmt = sa.select(NamespaceRun.id, NamespaceRun.source_namespace, NamespaceRun.source_count).where(
        NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.PENDING
    )
    if namespaces is not None:
        stmt = stmt.where(NamespaceRun.source_namespace.in_(list(namespaces)))
    with db.transaction() as s:
        rows = s.execute(stmt.order_by(NamespaceRun.source_count.desc(), NamespaceRun.id))
        return [(run_id, namespace, int(count or 0)) for run_id, namespace, count in rows]


def finish_namespace_checks(
    db: Database, job_id: int, passed: Collection[str], refused: Mapping[str, str], actor: str | None = None
) -> None:
    """checking → pending for the runs of the ``passed`` source namespaces, checking → cancelled for the ``refused``
    ones (source namespace → why), each refusal with a ``namespace_refused`` event, in one transaction. A run no
    longer ``checking`` (its job was cancelled meanwhile) is left as it is."""
    actor = actor or default_actor()
    checking = (NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.CHECKING)
    with db.transaction() as s:
        if passed:
            s.execute(
                sa.update(NamespaceRun)
                .where(*checking, NamespaceRun.source_namespace.in_(list(passed)))
                .values(state=RunState.PENDING)
            )
        for namespace, why in refused.items():
            run_id = s.scalar(
                sa.update(NamespaceRun)
                .where(*checking, NamespaceRun.source_namespace == namespace)
                .values(state=RunState.CANCELLED, last_error=why[:2000])
                .returning(NamespaceRun.id)
            )
            if run_id is not None:
                add_event(s, "namespace_refused", actor, job_id, run_id, namespace=namespace, reason=why)


def get_run(db: Database, run_id: int) -> NamespaceRun:
    with db.transaction() as s:
        return _get_run(s, run_id)


def cancel_job(db: Database, job_id: int, actor: str | None = None) -> int:
    """Stop handing out work: unfinished runs become cancelled, queued batches are dropped by the workers.

    Raises:
        StateError: Pinecone makes the job's target in a phase nothing stops (``UNSTOPPABLE_PHASES``) and its runs
            wait for it: cancelled, its copy would land after the job says cancelled. Nothing is changed.
    """
    with db.transaction() as s:
        job = _get_job(s, job_id, lock=True)  # under the lock a step takes to enter a phase: one comes first
        waiting = sa.select(NamespaceRun.id).where(
            NamespaceRun.job_id == job_id, NamespaceRun.state.in_(LISTABLE_RUN_STATES)
        )
        if phase_name(job.phase) in UNSTOPPABLE_PHASES and s.scalar(waiting.limit(1)) is not None:
            raise StateError(
                f"job {job_id} is {job.phase}: Pinecone makes its target index and nothing stops that, so its copy "
                "would land after the job said cancelled (and after an erasure that found it empty); nothing was "
                "changed",
                hint=f"cancel once `nsmigrate status {job_id}` shows it ended",
                job_id=job_id,
            )
        job.state = JobState.CANCELLED
        # A cleanup under way may have deleted source ids; how many only it knows (its host may be lost). The run
        # keeps that said, so the copies of those ids are never taken for deletable ones (``source_may_be_deleted``).
        cleaning = sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.CLEANING)
        for run in s.scalars(cleaning.with_for_update()):
            run.cleanup = {**(run.cleanup or {}), CANCELLED_WHILE_CLEANING: True}
        s.flush()
        stopped = _rowcount(
            s,
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id, NamespaceRun.state.not_in(FINAL_RUN_STATES))
            .values(state=RunState.CANCELLED),
        )
        add_event(s, "job_cancelled", actor or default_actor(), job_id)
        return stopped


def stopped_reason(s: Session, job_id: int, state: str) -> str | None:
    """Why nothing more is done for job ``job_id`` (in ``state``), or None: it was cancelled, or rolled back (the
    rollback cancels it, and removed what it wrote). A cancelled job is never taken up again: its work would write
    where a rollback removed, or end in verdicts a cleanup would act on while the job says cancelled."""
    if state != JobState.CANCELLED:
        return None
    rolled_back = s.scalar(
        sa.select(Event.detail).where(Event.job_id == job_id, Event.action == "rolled_back").order_by(Event.id.desc())
    )
    then = "start a new job: `nsmigrate run SPEC`"
    if rolled_back is not None:
        by = rolled_back.get("rollback_job_id")
        return (
            f"job {job_id} was rolled back (rollback job {by}): the namespaces it wrote were removed and nothing more "
            f"is done for it; to migrate again, {then}"
        )
    return f"job {job_id} was cancelled: nothing more is done for it; to copy its namespaces, {then}"


def why_stopped(db: Database, job_id: int) -> str | None:
    """``stopped_reason`` of job ``job_id`` as it is now (None for a job that does not exist)."""
    with db.transaction() as s:
        state = s.scalar(sa.select(_jobs.c.state).where(_jobs.c.id == job_id))
        return None if state is None else stopped_reason(s, job_id, state)


def refuse_stopped(db: Database, job_id: int, doing: str) -> None:
    """Raise ``JobStopped`` when job ``job_id`` was cancelled or rolled back (``stopped_reason``); ``doing``: what was
    asked (``retry``…), for the message."""
    with db.transaction() as s:
        _refuse_stopped(s, job_id, doing, lock=False)


def _refuse_stopped(s: Session, job_id: int, doing: str, *, lock: bool = True) -> None:
    """``refuse_stopped`` inside the caller's transaction; with ``lock``, the job's row stays locked (shared) until it
    ends: a `cancel` (which updates that row) then waits for the caller's change, and cancels what it started, or
    came first and is seen here."""
    query = sa.select(_jobs.c.state).where(_jobs.c.id == job_id)
    state = s.scalar(query.with_for_update(read=True) if lock else query)
    if state is None:
        raise NotFound(f"job {job_id} does not exist", job_id=job_id)
    reason = stopped_reason(s, job_id, state)
    if reason is not None:
        raise JobStopped(f"{doing} refused: {reason}; nothing was changed", job_id=job_id)


# Built once (see ``pages``): every verification ends with it.
_FINISH_JOB = (
    sa.update(_jobs)
    .where(
        _jobs.c.id == sa.bindparam("job_id"),
        _jobs.c.state == JobState.RUNNING.value,
        ~sa.exists().where(
            _runs.c.job_id == sa.bindparam("job_id"),
            _runs.c.state.in_(OPEN_RUN_STATES),
        ),
    )
    .values(state=JobState.FINISHED.value, updated_at=sa.bindparam("now"))
)


def maybe_finish_job(db: Database, job_id: int) -> bool:
    """Mark the job finished when every namespace run is in a final state.

    One statement, run after the caller's own change committed: of two runs finishing at once, the later statement
    sees both. It looks for one open run by the states an open run can be in (``ix_runs_job_state`` finds the few
    left at the end of a job): a count of them all, once per verification, would read every run of a job of 12,000."""
    with db.single_statement() as conn:
        return bool(_rowcount(conn, _FINISH_JOB, {"job_id": job_id, "now": utcnow()}))


def runs_in_state(db: Database, job_id: int, *states: RunState) -> list[int]:
    with db.transaction() as s:
        return list(
            s.scalars(sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id, NamespaceRun.state.in_(states)))
        )


def record_event(
    db: Database, action: str, actor: str, job_id: int | None = None, run_id: int | None = None, **detail: Any
) -> None:
    with db.transaction() as s:
        add_event(s, action, actor, job_id, run_id, **detail)

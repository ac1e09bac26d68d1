"""Runs added to a job for source namespaces its selection takes that it has no run for: made after its plan
(``workers.steps.late_namespaces`` finds them). `nsmigrate sync JOB --new-namespaces`.

They are planned as `run` plans a job, with the job's stored spec narrowed to them and every check of a new plan (a
non-empty target namespace, another job writing into one, ids that collide or are too long), then written into the
job (``jobs_and_runs.add_runs``) and sent to the fleet; the job is running again until they are verified, so the
cut-over's rails wait for them as for any run. Only a `strategy: fleet` job takes namespaces in: the other
strategies copy a whole index at once. The spec's backup (``before_write``: the command's) covers them as `run`'s
covers the planned ones, before anything is written; the target index exists, so it is not created again.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import crossing_jobs, jobs_and_runs
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.planning.selection import exact_pattern
from nsmigrate.orchestrator.settings import DEFAULTS, Settings
from nsmigrate.orchestrator.spec.jobspec import JobSpec


def narrowed(spec: JobSpec, namespaces: Collection[str]) -> JobSpec:
    """``spec`` selecting ``namespaces`` only, with its target index taken as it is (created by the job already)."""
    selection = spec.namespaces.model_copy(update={"include": [exact_pattern(ns) for ns in namespaces], "exclude": []})
    update: dict[str, Any] = {"namespaces": selection}
    if spec.target.kind == "pinecone" and spec.target.create is not None:
        update["target"] = spec.target.model_copy(update={"create": None})
    return spec.model_copy(update=update)


class _Adding(launch.Starting):
    """``launch.Starting`` that writes the plan's runs into job ``job_id`` instead of a new job."""

    def __init__(
        self,
        db: jobs_database.Database,
        dispatcher: Dispatcher,
        job_id: int,
        actor: str | None,
        before_write: launch.BeforeWrite | None,
        settings: Settings,
    ) -> None:
        super().__init__(db, dispatcher, actor, before_write, settings)
        self.job_id = job_id

    def start(self, prepared: Prepared, checking: Collection[str]) -> None:
        # This job is not another one here; its runs still copying are in the recheck below.
        prepared.plan.warnings.extend(
            crossing_jobs.crossings_of(self.db, prepared.spec, prepared.plan, resumed_by_run=True)
        )
        events = self.before_write(prepared) if self.before_write is not None else []

        def recheck(session: Any) -> None:
            crossing_jobs.check_shared_targets(session, prepared.spec, prepared.plan)

        jobs_and_runs.add_runs(
            self.db,
            self.job_id,
            prepared.plan,
            source_label=prepared.source_label,
            target_label=prepared.target_label,
            actor=self.actor,
            checking=checking,
            recheck=recheck,
        )
        self.record(events)
        ready = [r.source_namespace for r in prepared.plan.runs if r.source_namespace not in checking]
        if ready:
            launch.send_work(self.db, self.dispatcher, self.job_id, prepared.spec, ready, settings=self.settings)


def add_late_namespaces(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    job_id: int,
    namespaces: Collection[str],
    open_store: launch.StoreOpener,
    *,
    actor: str | None = None,
    before_write: launch.BeforeWrite | None = None,
    settings: Settings = DEFAULTS,
) -> Prepared:
    """Plan ``namespaces`` of job ``job_id``'s source, write their runs into it and send their work; the plan.
    ``before_write``: as `run`'s (``launch.BeforeWrite``), between the plan's checks and the runs' rows; a failure
    there adds nothing.

    Raises:
        StateError: the job's strategy copies a whole index (not `fleet`).
        PlanError: a check of the plan refused it (nothing written).
        JobStopped: the job was cancelled or rolled back.
    """
    spec = jobs_and_runs.job_spec(db, job_id)
    if spec.strategy != "fleet":
        raise StateError(
            f"job {job_id} has strategy {spec.strategy!r}, which copies a whole index at once: it takes no namespace "
            "in; nothing was changed",
            hint="copy the new namespaces with a job of their own (namespaces.include naming them, strategy: fleet)",
            job_id=job_id,
        )
    adding = _Adding(db, dispatcher, job_id, actor, before_write, settings)
    return launch.prepare_and_start(narrowed(spec, namespaces), open_store, adding, settings)

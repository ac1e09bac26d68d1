"""An erasure job (kind ``erase``) and its places: create them, claim one, record what it deleted and how it was
checked, and finish the job with its receipt when every place is final. Each function is one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from nsmigrate.orchestrator.errors import NotFound, WrongJobKind
from nsmigrate.orchestrator.jobs import erasure_ledger
from nsmigrate.orchestrator.jobs.database import Database, add_event, default_actor
from nsmigrate.orchestrator.jobs.lifecycle import ROLLBACK_READY_STATES
from nsmigrate.orchestrator.models import (
    ErasePlace,
    HeldMetadata,
    Job,
    JobKind,
    JobState,
    NamespaceRun,
    PlaceKind,
    PlaceState,
    utcnow,
)
from nsmigrate.orchestrator.settings import DEFAULTS

FINAL_PLACE_STATES = (PlaceState.VERIFIED, PlaceState.FAILED)
#: The jobs that write vectors: their runs are where an erasure looks, and what may undo it.
WRITING_KINDS = (JobKind.MIGRATE, JobKind.SYNC, JobKind.ROLLBACK)


def create_erasure(
    db: Database, name: str, spec: dict[str, Any], places: list[dict[str, Any]], actor: str | None = None
) -> int:
    """The job and one row per place (``kind``, ``store``, ``store_spec``, ``namespace``, ``path``, ``planned``);
    returns the job id. ``spec`` says whose data goes (``creator_id``, ``twin_id``) and how records are matched."""
    with db.transaction() as s:
        job = Job(name=name[:64], kind=JobKind.ERASE, spec=spec, state=JobState.RUNNING)
        s.add(job)
        s.flush()
        for place in places:
            s.add(ErasePlace(job_id=job.id, **place))
        erasure_ledger.enter(s, job.id, spec)  # held back from every write from now on, not once it is gone
        add_event(
            s,
            "erase_started",
            actor or default_actor(),
            job.id,
            creator_id=spec.get("creator_id"),
            twin_id=spec.get("twin_id"),
            places=len(places),
            planned=sum(p.get("planned", 0) for p in places),
        )
        return job.id


def places_of(db: Database, job_id: int) -> list[ErasePlace]:
    with db.transaction() as s:
        return list(s.scalars(sa.select(ErasePlace).where(ErasePlace.job_id == job_id).order_by(ErasePlace.id)))


def claim_place(db: Database, place_id: int) -> ErasePlace | None:
    """``pending | erasing | failed → erasing`` under a row lock (``erasing`` again: the worker that had it died);
    None when the place is verified already (a redelivered task)."""
    with db.transaction() as s:
        place = s.get(ErasePlace, place_id, with_for_update=True)
        if place is None:
            raise NotFound(f"erase place {place_id} does not exist", place_id=place_id)
        if place.state == PlaceState.VERIFIED:
            return None
        place.state = PlaceState.ERASING
        place.attempts += 1
        return place


def claim_stalled_places(db: Database, idle_s: float) -> list[ErasePlace]:
    """Places still to do (``pending`` or ``erasing``) of running erasure jobs none of whose places changed for
    ``idle_s`` (the visibility timeout): their message was lost (a worker killed between taking it off its queue
    and recording it unacknowledged) or their worker is gone for good. Backups are not taken: the command erases
    them on its own host. Each is touched (``updated_at``), so it is claimed again only after another ``idle_s``
    with no change; rows another session holds locked are left to the next sweep."""
    now = utcnow()
    other = sa.orm.aliased(ErasePlace)
    changed_lately = sa.exists().where(
        other.job_id == ErasePlace.job_id, other.updated_at >= now - timedelta(seconds=idle_s)
    )
    stalled = (
        sa.select(ErasePlace.id)
        .join(Job, ErasePlace.job_id == Job.id)
        .where(
            Job.state == JobState.RUNNING,
            Job.kind == JobKind.ERASE,
            ErasePlace.state.in_((PlaceState.PENDING, PlaceState.ERASING)),
            ErasePlace.kind != PlaceKind.BACKUP,
            ~changed_lately,
        )
        .with_for_update(of=ErasePlace, skip_locked=True)
        .cte("stalled")
    )
    with db.transaction() as s:
        return list(
            s.scalars(
                sa.update(ErasePlace)
                .where(ErasePlace.id == stalled.c.id)
                .values(updated_at=now)
                .returning(ErasePlace)
                .execution_options(synchronize_session=False)
            )
        )


def runs_writing_since(db: Database, run_ids: Iterable[int], since: datetime, batch_lifetime_s: float) -> set[int]:
    """Of ``run_ids``, those with a batch that may have written at or after ``since`` (an erasure's plan): one that
    ended since, or that started within ``batch_lifetime_s`` before it and never ended (its worker died: it may
    have written part). A batch that failed after writing some chunks counts nothing in its run's ``copied``."""
    from nsmigrate.orchestrator.models import Batch

    ids = list(run_ids)
    if not ids:
        return set()
    active = sa.or_(
        Batch.finished_at >= since,
        sa.and_(Batch.finished_at.is_(None), Batch.started_at >= since - timedelta(seconds=batch_lifetime_s)),
    )
    with db.transaction() as s:
        return set(s.scalars(sa.select(Batch.run_id).where(Batch.run_id.in_(ids), active).distinct()))


def add_erased_ids(db: Database, place_id: int, ids: list[str]) -> None:
    """Remember ids deleted from a records place before the next delete, so a kill between delete and finish still
    leaves them to be fetched (and found gone) by the verification."""
    with db.transaction() as s:
        place = s.get(ErasePlace, place_id, with_for_update=True)
        if place is not None:
            place.erased_ids = sorted(set(place.erased_ids or []) | set(ids))


def erased_ids(db: Database, place_id: int) -> list[str]:
    with db.transaction() as s:
        place = s.get(ErasePlace, place_id)
        return list(place.erased_ids or []) if place is not None else []


def finish_place(
    db: Database, place_id: int, *, erased: int, verification: dict[str, Any], actor: str | None = None
) -> None:
    """Record what the place's attempt deleted and its check; ``verified`` when the check passed, else ``failed``."""
    with db.transaction() as s:
        place = s.get(ErasePlace, place_id, with_for_update=True)
        if place is None:
            raise NotFound(f"erase place {place_id} does not exist", place_id=place_id)
        passed = bool(verification.get("passed"))
        place.erased = max(place.erased, erased) if place.kind == "namespace" else place.erased + erased
        place.verification = verification
        place.state = PlaceState.VERIFIED if passed else PlaceState.FAILED
        place.last_error = None if passed else str(verification.get("reason", "verification failed"))
        if passed and place.namespace is not None:
            s.execute(_held_of_the_erased(place.namespace, place.erased_ids or [], whole=place.kind == "namespace"))
        add_event(
            s,
            "place_erased" if passed else "place_erase_failed",
            actor or default_actor(),
            place.job_id,
            kind=place.kind,
            store=place.store,
            namespace=place.namespace,
            path=place.path,
            erased=erased,
            verification=verification,
        )


def _held_of_the_erased(namespace: str, ids: list[str], *, whole: bool) -> sa.Delete:
    """What a cleanup recorded of the subject's originals (``HeldMetadata``) for a rollback, gone with their copies (a
    job table keeps ids, never what a record says; a rollback has no copy of them to rebuild from either): of the
    runs that wrote ``namespace`` or read it (a rollback restored their originals there), the rows of ``ids``; and
    with ``whole`` (a namespace wholly the subject's), every row of the runs that wrote or read only it."""
    touched = sa.or_(
        NamespaceRun.target_namespace == namespace,
        NamespaceRun.source_namespace == namespace,
        NamespaceRun.target_namespaces.op("?")(namespace),
    )
    theirs = HeldMetadata.record_id == sa.any_(sa.cast(sa.literal(ids), ARRAY(sa.Text)))
    if whole:  # its erased ids are a sample of it (``CHECKED_IDS``): a run of that namespace alone is wholly theirs
        alone = sa.or_(NamespaceRun.target_namespace == namespace, NamespaceRun.source_namespace == namespace)
        theirs = sa.or_(theirs, HeldMetadata.run_id.in_(sa.select(NamespaceRun.id).where(alone)))
    return sa.delete(HeldMetadata).where(theirs, HeldMetadata.run_id.in_(sa.select(NamespaceRun.id).where(touched)))


def fail_place(db: Database, place_id: int, error: str, actor: str | None = None) -> None:
    with db.transaction() as s:
        place = s.get(ErasePlace, place_id, with_for_update=True)
        if place is None:
            return
        place.state = PlaceState.FAILED
        place.last_error = error[:2000]
        add_event(s, "place_erase_failed", actor or default_actor(), place.job_id, place_id=place_id, error=error[:500])


def retry_places(db: Database, job_id: int) -> list[int]:
    """Failed places of the job back to pending, and the job running again; their ids (to send their tasks). A job
    with none changes nothing (it is not set running again with nothing to finish it).

    Raises:
        NotFound: no job ``job_id``.
        WrongJobKind: the job is not an erasure (nothing is changed).
    """
    with db.transaction() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", hint="`nsmigrate jobs` lists the jobs", job_id=job_id)
        if job.kind != JobKind.ERASE:
            raise WrongJobKind(
                f"job {job_id} is a {job.kind} job, not an erasure: `erase --resume` resends an erasure's places",
                hint="give the id of an erase job (`nsmigrate jobs` shows each job's kind); `nsmigrate resume JOB` "
                "resumes a copy job",
                job_id=job_id,
            )
        ids = list(
            s.scalars(
                sa.select(ErasePlace.id).where(ErasePlace.job_id == job_id, ErasePlace.state != PlaceState.VERIFIED)
            )
        )
        if ids:
            s.execute(sa.update(ErasePlace).where(ErasePlace.id.in_(ids)).values(state=PlaceState.PENDING))
            job.state = JobState.RUNNING
        return ids


def maybe_finish_erasure(db: Database, job_id: int, receipt: Any, actor: str | None = None) -> dict[str, Any] | None:
    """When every place of the job is final: the job finished and its receipt (``receipt(job, places)``, a pure
    function) written to the audit log as ``erasure_receipt``; exactly one caller wins. Returns the receipt."""
    with db.transaction() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.state != JobState.RUNNING:
            return None
        places = list(s.scalars(sa.select(ErasePlace).where(ErasePlace.job_id == job_id).order_by(ErasePlace.id)))
        if any(p.state not in FINAL_PLACE_STATES for p in places):
            return None
        job.state = JobState.FINISHED
        made: dict[str, Any] = receipt(job, places)
        erasure_ledger.enter_receipt(s, job_id, made)
        add_event(s, "erasure_receipt", actor or default_actor(), job_id, receipt=made)
        return made


def erasure_receipt(db: Database, job_id: int) -> dict[str, Any] | None:
    """The newest receipt of an erasure job from the audit log (a resumed one's, until it finishes again, is the
    receipt of the run before), or None before it first finished."""
    from nsmigrate.orchestrator.models import Event

    with db.transaction() as s:
        event = s.scalars(
            sa.select(Event)
            .where(Event.job_id == job_id, Event.action == "erasure_receipt")
            .order_by(Event.id.desc())
            .limit(1)
        ).one_or_none()
        return dict(event.detail["receipt"]) if event is not None else None


def known_runs(
    db: Database, batch_lifetime_s: float = DEFAULTS.visibility_timeout_s
) -> tuple[list[Any], dict[str, dict[str, Any]], list[str]]:
    """What the job table knows about where data went: every namespace run of the jobs that write data
    (``WRITING_KINDS``) as ``erasure.KnownRun`` (with whether it may still write), their stores (spec identity →
    store spec JSON, env var names only: a label is not unique) and the backup directories their jobs wrote
    (``backup_written`` events).

    A run may still write while its copy has not ended and its job is not cancelled, and also while a batch of it
    is running (a cancelled job's batch that started before the cancel still upserts), unless that batch started
    more than ``batch_lifetime_s`` ago (the ``visibility_timeout_s`` setting: longer than any batch, so its worker
    is gone)."""
    from nsmigrate.orchestrator.models import Batch, BatchState, Event, NamespaceRun, utcnow
    from nsmigrate.orchestrator.spec.store_identity import key_of_json
    from nsmigrate.orchestrator.tenancy.erasure import KnownRun

    runs: list[KnownRun] = []
    stores: dict[str, dict[str, Any]] = {}
    with db.transaction() as s:
        job_rows = list(s.scalars(sa.select(Job).where(Job.kind.in_(WRITING_KINDS))))
        specs = {j.id: j.spec or {} for j in job_rows}
        cancelled = {j.id for j in job_rows if j.state == JobState.CANCELLED}
        in_flight = set(
            s.scalars(
                sa.select(Batch.run_id)
                .where(
                    Batch.state == BatchState.RUNNING,
                    Batch.started_at >= utcnow() - timedelta(seconds=batch_lifetime_s),
                )
                .distinct()
            )
        )
        for run in s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id.in_(list(specs)))):
            spec = specs[run.job_id]
            source_key = key_of_json(spec.get("source"))
            for role in ("source", "target"):
                if spec.get(role):
                    stores.setdefault(key_of_json(spec[role]), spec[role])
            routing = spec.get("routing") or {}
            sources = routing.get("sources") or {}
            runs.append(
                KnownRun(
                    source_store=run.source_store,
                    source_namespace=run.source_namespace,
                    target_store=run.target_store,
                    target_namespaces=tuple(
                        run.target_namespaces or ([run.target_namespace] if run.target_namespace is not None else [])
                    ),
                    creator_id=run.creator_id,
                    twin_id=run.twin_id,
                    routing_table=dict(run.routing_table or {}),
                    source_key_field=sources.get("key_field", "source_id") if sources else None,
                    creator_id_field=routing.get("creator_id_field") or "creator_id",
                    twin_id_field=routing.get("twin_id_field") or "twin_id",
                    override_creator=routing.get("override_creator"),
                    override=routing.get("override_creator") is not None,
                    source_key=source_key,
                    target_key=key_of_json(spec.get("target")),
                    job_id=run.job_id,
                    writing=(run.job_id not in cancelled and run.state not in ROLLBACK_READY_STATES)
                    or run.id in in_flight,
                    run_id=run.id,
                    copied=run.copied,
                )
            )
        # The tables `nsmigrate pgvector copy|move|legacy` wrote: no run names them, their store is searched whole.
        for spec in s.scalars(sa.select(Job.spec).where(Job.kind == JobKind.PGVECTOR)):
            if (spec or {}).get("store"):
                stores.setdefault(key_of_json(spec["store"]), spec["store"])
        backups = [
            str(e.detail.get("manifest"))
            for e in s.scalars(sa.select(Event).where(Event.action == "backup_written"))
            if e.detail.get("manifest")
        ]
    return runs, {k: v for k, v in stores.items() if v}, backups


#: The audit events that name a Pinecone collection a collection job made (``workers.steps.collection``).
COLLECTION_EVENTS = ("collection_collecting", "collection_restoring", "target_index_created")


def known_collections(db: Database) -> list[dict[str, Any]]:
    """Every Pinecone collection the job table says a job made: ``{"collection", "job_id", "source"}``, once each,
    oldest first. A collection is a whole copy of its index that nothing can erase inside."""
    from nsmigrate.orchestrator.models import Event

    found: dict[str, dict[str, Any]] = {}
    with db.transaction() as s:
        for e in s.scalars(sa.select(Event).where(Event.action.in_(COLLECTION_EVENTS)).order_by(Event.id)):
            name = (e.detail or {}).get("collection")
            if name and name not in found:
                found[name] = {"collection": str(name), "job_id": e.job_id, "source": e.detail.get("source")}
    return list(found.values())


#: Events after which an import job's directory holds no file any more (``workers.steps.bulk_import``, the erasure).
IMPORT_FILES_GONE = ("import_files_removed", "import_files_erased")
#: Events after which it may hold some: writing began (a file is uploaded before its namespace is recorded written).
IMPORT_FILES_WRITING = ("import_writing", "import_files_written")


def import_file_jobs(db: Database, job_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Of ``job_ids``, the ``strategy: import`` jobs whose import files may still be in object storage (written, and
    not removed since): ``{"job_id", "name", "import"}`` (the spec's ``import:``, its
    variables' names only), oldest first."""
    from nsmigrate.orchestrator.models import Event

    wanted = sorted(set(job_ids))
    if not wanted:
        return []
    found = []
    with db.transaction() as s:
        jobs = s.scalars(sa.select(Job).where(Job.id.in_(wanted)).order_by(Job.id))
        for job in jobs:
            spec = job.spec or {}
            if spec.get("strategy") != "import" or not spec.get("import"):
                continue
            last = s.scalar(
                sa.select(Event.action)
                .where(Event.job_id == job.id, Event.action.in_((*IMPORT_FILES_GONE, *IMPORT_FILES_WRITING)))
                .order_by(Event.id.desc())
                .limit(1)
            )
            if last in IMPORT_FILES_WRITING:
                found.append({"job_id": job.id, "name": job.name, "import": spec["import"]})
    return found

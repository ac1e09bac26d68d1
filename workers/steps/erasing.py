"""Erasing a creator's (or one twin's) data from every place nsmigrate put it, as a job of kind ``erase``.

``plan_erasure`` (called by `nsmigrate erase`) finds the places: in every store the job table knows (sources and
targets of its copy jobs) and any store named on the command line, the namespaces that are wholly the subject's
(their creator and twin namespaces, by the registry of built names; the old source namespaces of their twins), every
shared namespace searched for their vectors (``public``, the review namespace, the default namespace, hand-made
names), the retired tables of the application's pgvector layout (backups a move or cleanup renamed away:
``workers.steps.erasing_copies``) and the backup directories the jobs wrote; Pinecone collections its copy jobs made
are listed as copies it cannot erase inside. ``erase_place`` (the ``erase_place`` task on the cleanup queue)
first asks the job table again whether a copy job may still write the subject's data or copied some since the plan
(that answer is older than any copy started, resumed or synced since; a copy batch asks the mirror question as
it starts, ``workers.steps.copying``), then deletes one place and checks it: counts polled to zero, a listing, and a
fetch of the deleted ids (stores are eventually consistent; on Pinecone the listing of records counts once shown to
reflect the deletes and a point after them, ``freshness.complete_listing``, when the index tells its reads' LSN;
else polled), or for a backup the files read again.
The last place to finish writes the receipt. A backup place is erased by `nsmigrate erase` itself (``cli.erasure``),
on the host where the plan found the directory: a worker that cannot see it would fail it (never check it erased).

A place is re-run safely: a whole namespace is deleted again, a shared namespace is searched again, a backup is
rewritten from what is left; so a worker killed mid-erasure loses nothing (its task is redelivered) and
``nsmigrate erase --resume JOB`` finishes a job whose places failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsmigrate.orchestrator.errors import ErasureFailed, NsmigrateError, StoreError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.limits import DELETE_MAX_IDS, FETCH_MAX_IDS
from nsmigrate.orchestrator.models import PlaceKind
from nsmigrate.orchestrator.records.namespaces import Registry, display_namespace
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.orchestrator.spec.store_identity import spec_identity
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
from nsmigrate.orchestrator.tenancy.erasure import (
    KnownRun,
    Subject,
    by_job,
    carrying,
    copied_since,
    copies_seen,
    places_in_store,
    receipt,
    registry_of,
    still_writing,
    subject_of,
)
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.steps.alias_guard import release_aliases
from nsmigrate.workers.steps.erasing_copies import (
    collection_notes,
    erase_import_files,
    erase_retired_table,
    import_file_places,
    retired_table_places,
)
from nsmigrate.workers.steps.verifying import chunks, list_all_ids
from nsmigrate.workers.stores.base import Store, iter_all_ids
from nsmigrate.workers.stores.guarded import exclusive_hold
from nsmigrate.workers.transfer import write_fence

log = logging.getLogger(__name__)

#: Ids of a whole namespace remembered to fetch them again after the delete (a sample for big namespaces).
CHECKED_IDS = 10_000


def subject_ids(store: Store, namespace: str, subject: Subject, listed: Sequence[str] | None = None) -> list[str]:
    """The ids of the subject's vectors in ``namespace``: every id listed (or ``listed``), fetched for its metadata."""
    found: list[str] = []
    for ids in chunks(listed if listed is not None else list(iter_all_ids(store, namespace)), FETCH_MAX_IDS):
        found.extend(r.id for r in store.fetch(namespace, ids) if subject.owns_record(r.metadata, r.id))
    return found


@dataclass
class ErasurePlan:
    """What `erase` found: the subject, its places (rows for ``jobs_erasure.create_erasure``), the names reported as
    ambiguous, the stores that could not be read and the copy jobs that may still write the subject's data (the
    erasure is refused while a store cannot be read or such a job runs)."""

    subject: Subject
    places: list[dict[str, Any]] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # stores left out on purpose (``--skip-store``)
    #: Copy jobs that may still write the subject's data (``erasure.still_writing``): the erasure is refused until
    #: they end, or their copies would bring the data back after its places were checked empty.
    writing: dict[int, list[str]] = field(default_factory=dict)
    #: What the plan saw of the runs that carry the subject's data (``erasure.copies_seen``): each place compares it
    #: again before it deletes (``erase_place``).
    seen: dict[str, int] = field(default_factory=dict)
    #: Copies it cannot erase inside (Pinecone collections the subject's copy jobs made), with what to do.
    cannot_erase: list[dict[str, Any]] = field(default_factory=list)
    #: Where `erase --export-first` put the subject's data before deleting it, and how many records.
    exported_first: dict[str, Any] | None = None

    def spec(self, actor: str) -> dict[str, Any]:
        """The erase job's spec in the job table: whose data, how records match, what was reported, what copies the
        plan saw."""
        return {
            **self.subject.to_json(),
            "requested_by": actor,
            "ambiguous": self.ambiguous,
            "not_searched": self.skipped,
            "copies_seen": self.seen,
            "cannot_erase": self.cannot_erase,
            "exported_first": self.exported_first,
        }


def plan_erasure(
    db: jobs_database.Database,
    creator_id: str,
    twin_id: str | None,
    open_store: Callable[[Any], Store],
    extra_stores: list[Any] | None = None,
    backup_dirs: list[Path] | None = None,
    skip_stores: list[str] | None = None,
    batch_lifetime_s: float = DEFAULTS.visibility_timeout_s,
    settle_timeout_s: float = DEFAULTS.erasure_settle_timeout_s,
) -> ErasurePlan:
    """Every place the job table (plus ``extra_stores``, ``backup_dirs``) knows that holds the subject's data, with
    counts; ``skip_stores``: store labels left out (a store that is gone for good), named in the receipt;
    ``batch_lifetime_s``: the ``visibility_timeout_s`` setting (``jobs_erasure.known_runs``); ``settle_timeout_s``:
    the ``erasure_settle_timeout_s`` setting (``_copies_not_listed_yet``). Reads only (and waits for reads). Raises
    PlanError for an id that cannot be a creator or twin id."""
    runs, stores, manifests = jobs_erasure.known_runs(db, batch_lifetime_s)
    registry = registry_of(runs)
    plan = ErasurePlan(subject_of(creator_id, twin_id, runs))
    specs: dict[str, Any] = {key: store_spec_from_json(spec) for key, spec in stores.items()}
    for spec in extra_stores or []:
        specs.setdefault(spec_identity(spec), spec)
    # One place list per store its server names (two spellings of one store are searched once; one label in two
    # databases twice), with every spec key that reaches it.
    found: dict[str, tuple[Store, Any, set[str]]] = {}
    for key, spec in sorted(specs.items()):
        if spec.label in (skip_stores or []):
            if spec.label not in plan.skipped:
                plan.skipped.append(spec.label)
            continue
        try:
            store = open_store(spec)
            _, _, keys = found.setdefault(store.identity(), (store, spec, set()))
            keys.add(key)
        except NsmigrateError as e:
            plan.unreadable.append(f"{spec.label}: {e.message}")
    shown = _shown_names(found)
    for identity, (store, spec, keys) in sorted(found.items(), key=lambda item: shown[item[0]]):
        try:
            _plan_store(plan, store, spec, keys, shown[identity], registry, runs, settle_timeout_s)
        except NsmigrateError as e:
            plan.unreadable.append(f"{shown[identity]}: {e.message}")
    # Resolved: one backup named two ways (recorded, and --backup-dir relative to here) is one place.
    directories = {Path(m).parent.resolve() for m in manifests} | {Path(d).resolve() for d in backup_dirs or []}
    if directories:
        emptied = _Emptied(db)
        for directory in sorted(directories):
            _plan_backup(plan, directory, registry, runs, emptied)
    namespaces = {p["namespace"] for p in plan.places if p["namespace"] is not None}
    plan.writing = still_writing(runs, plan.subject, namespaces)
    plan.seen = copies_seen(runs, plan.subject, namespaces)
    carrying = {run.job_id for run in runs if str(run.run_id) in plan.seen}
    plan.places.extend(import_file_places(db, sorted(carrying)))
    made = [c for c in jobs_erasure.known_collections(db) if c["job_id"] in carrying]
    plan.cannot_erase = collection_notes(made)
    return plan


def _shown_names(found: dict[str, tuple[Store, Any, set[str]]]) -> dict[str, str]:
    """identity → how the plan and the receipt name the store: its label, with the variable that tells it apart
    when another store of the erasure has the same label (one pgvector prefix in two databases)."""
    labels = [store.name for store, _, _ in found.values()]
    shown = {}
    for identity, (store, spec, _) in found.items():
        variable = spec.database_url_env if spec.kind == "pgvector" else spec.api_key_env
        shown[identity] = store.name if labels.count(store.name) == 1 else f"{store.name} (${variable})"
    return shown


def _plan_store(
    plan: ErasurePlan,
    store: Store,
    spec: Any,
    keys: set[str],
    shown: str,
    registry: Registry,
    runs: list[KnownRun],
    settle_timeout_s: float,
) -> None:
    inventory = store.namespaces()
    inventory.update(_copies_not_listed_yet(store, keys, inventory, plan.subject, registry, runs, settle_timeout_s))
    found = places_in_store(store.name, inventory, plan.subject, registry, runs, store_keys=keys)
    spec_json = spec.model_dump(mode="json")
    for ns in found.whole:
        plan.places.append(_place(PlaceKind.NAMESPACE, shown, spec_json, ns, inventory[ns]))
    for ns in found.search:
        plan.places.append(_place(PlaceKind.RECORDS, shown, spec_json, ns, len(subject_ids(store, ns, plan.subject))))
    plan.ambiguous.extend(f"{shown}: {name}" for name in found.ambiguous)
    plan.places.extend(retired_table_places(store, spec_json, shown, plan.subject, registry, runs, keys))


def _copies_not_listed_yet(
    store: Store,
    keys: set[str],
    listed: dict[str, int],
    subject: Subject,
    registry: Registry,
    runs: list[KnownRun],
    timeout_s: float,
) -> dict[str, int]:
    """The namespaces nsmigrate's copies wrote in ``store`` (the job table's runs into it, ``keys``) that would be
    places of the erasure but its namespace listing does not show, with their counts once the store's reads reflect
    every write before now. A listing lags writes: a copy made right before the erasure is not in it yet, and a plan
    on its word alone would leave that copy whole and call the erasure verified.

    Awaited by LSN (``freshness.reads_now``) where the store tells one; a pod index tells none, so its listing is
    polled until it shows them all, for at most ``timeout_s`` (the ``erasure_settle_timeout_s`` setting): one that
    never shows is taken as gone (a rollback, a cleanup or an earlier erasure dropped it).

    Raises:
        StoreError: the reads did not reach the LSN in time (the caller names the store as not read).
    """
    if not store.capabilities.reads_lag:  # pgvector: its listing is current
        return {}
    unlisted = {ns for run in runs if run.target_key in keys and run.copied for ns in run.target_namespaces}
    unlisted -= set(listed)
    if not unlisted:
        return {}
    wanted = places_in_store(store.name, sorted(unlisted), subject, registry, runs, store_keys=keys)
    unproved: set[str] = set()
    for ns in wanted.whole + wanted.search:
        wait = freshness.reads_now(store, ns, timeout_s, side="erased")
        if wait is None:
            unproved.add(ns)
        elif wait.reason is not None:
            raise StoreError(wait.reason, hint="run `nsmigrate erase` again once the index has caught up")
    counts = store.namespaces()

    def all_listed() -> bool:
        counts.clear()
        counts.update(store.namespaces())
        return unproved <= set(counts)

    if unproved and not unproved <= set(counts):
        freshness.await_reads(store, "", lsn=None, shows=all_listed, timeout_s=timeout_s, side="erased")
    found = {ns: counts[ns] for ns in wanted.whole + wanted.search if counts.get(ns)}
    for ns in set(wanted.whole + wanted.search) - set(found) - unproved:
        # Its reads reflect every write before now, but the counts may lag them further (2026-07's vectorCount):
        # its own listing says whether it holds anything (at least a page of it, then).
        page = store.list_ids(ns)
        if page.ids:
            found[ns] = len(page.ids)
    return found


def _place(kind: PlaceKind, store: str, spec: dict[str, Any] | None, ns: str | None, planned: int) -> dict[str, Any]:
    return {"kind": kind.value, "store": store, "store_spec": spec, "namespace": ns, "planned": planned}


def _plan_backup(
    plan: ErasurePlan, directory: Path, registry: Registry, runs: list[KnownRun], emptied: _Emptied
) -> None:
    """The backup in ``directory`` as a place when it holds rows of the subject. One whose directory or manifest
    cannot be read here is named as not searched, unless an erasure removed it; a damaged manifest stops the plan
    (BackupError: the erasure would not know what the backup holds)."""
    from nsmigrate.workers.stores.backup.erasure import (  # pyarrow: only an erasure that reaches a backup loads it
        BackupUnreadable,
        read_manifest,
        rows_of,
    )

    try:
        data = read_manifest(directory)
    except BackupUnreadable as e:
        if not emptied.removed(directory):
            plan.skipped.append(f"backup {directory}: {e.message}")
        return
    namespaces = [str(e.get("namespace", "")) for e in data["namespaces"]]
    whole = places_in_store(str(data.get("source", "")), namespaces, plan.subject, registry, runs).whole
    rows = rows_of(directory, plan.subject, set(whole).__contains__)
    if rows:
        place = _place(PlaceKind.BACKUP, "backup", {"whole": whole}, None, rows)
        plan.places.append({**place, "path": str(directory)})


#: Recorded by a backup place right before it removes the backup's manifest (every file of it erased): from then on
#: the backup is gone by an erasure's hand, which nothing on disk can tell from a backup this host cannot see.
BACKUP_EMPTIED = "backup_emptied"


class _Emptied:
    """Whether an erasure removed a backup directory since it was last written (its newest ``backup_written``) and
    since ``since_job``'s plan read it: a ``BACKUP_EMPTIED`` event, or, from erasures older than that event, a place
    that erased rows and found its directory removed. The audit log is read once, when first asked."""

    def __init__(self, db: jobs_database.Database) -> None:
        self._db = db
        self._events: list[tuple[int, str, int | None, dict[str, Any]]] | None = None

    def removed(self, directory: Path, since_job: int | None = None) -> bool:
        if self._events is None:
            import sqlalchemy as sa

            from nsmigrate.orchestrator.models import Event

            actions = (BACKUP_EMPTIED, "place_erased", "backup_written", "erase_started")
            query = sa.select(Event.id, Event.action, Event.job_id, Event.detail).where(Event.action.in_(actions))
            with self._db.transaction() as s:
                self._events = [(i, a, j, d or {}) for i, a, j, d in s.execute(query.order_by(Event.id))]
        path, since, emptied = str(directory), 0, 0
        for event_id, action, job_id, detail in self._events:
            if action == "backup_written" and str(Path(str(detail.get("manifest"))).parent) == path:
                since = event_id  # written again since: what an erasure removed before is not this backup
            elif action == "erase_started" and job_id == since_job:
                since = max(since, event_id)
            elif detail.get("path") == path and (action == BACKUP_EMPTIED or _removed_before_the_mark(action, detail)):
                emptied = event_id
        return emptied > since


def _removed_before_the_mark(action: str, detail: dict[str, Any]) -> bool:
    """A place of an erasure older than ``BACKUP_EMPTIED`` that erased rows and found its directory removed (not one
    that erased nothing: that one found the directory missing, unseen)."""
    check = detail.get("verification") or {}
    return action == "place_erased" and bool(detail.get("erased")) and bool(check.get("directory_removed"))


# --------------------------------------------------------------------------------------------------------- the task


def erase_place(ctx: WorkerContext, place_id: int) -> int:
    """Delete one place of an erasure job and check it; the last place to finish writes the job's receipt. Returns
    what it erased (vectors, rows); 0 for a place verified before (a redelivered task).

    Raises:
        ErasureFailed: the place could not be erased or was not found empty afterwards; it is recorded ``failed``
            (`nsmigrate erase --resume JOB` sends it again).
    """
    place = jobs_erasure.claim_place(ctx.db, place_id)
    if place is None:  # verified before: a redelivered task
        return 0
    job = jobs_and_runs.find_job(ctx.db, place.job_id)
    subject = Subject.from_json(job.spec)
    error: str | None = None
    erased = 0
    try:
        error = _copies_that_may_undo(ctx, place.job_id, subject, job.spec)
        if error is not None:
            jobs_erasure.fail_place(ctx.db, place_id, error, ctx.worker_name)
        else:
            began = time.monotonic()
            erased, check = _erase(ctx, place, subject)
            check = {**check, "duration_s": round(time.monotonic() - began, 3)}  # the delete and its check
            jobs_erasure.finish_place(ctx.db, place_id, erased=erased, verification=check, actor=ctx.worker_name)
            if not check.get("passed"):
                error = str(check.get("reason", "the check after the delete did not pass"))
    except NsmigrateError as e:
        error = f"{e}; run `nsmigrate erase --resume {place.job_id}`"
        jobs_erasure.fail_place(ctx.db, place_id, error, ctx.worker_name)
    except INFRASTRUCTURE_ERRORS:
        raise  # the job table or Redis is unreachable: the task is sent again (workers.fleet.tasks)
    except Exception as e:
        # Anything unforeseen (a damaged backup file, a disk error, a bug) must not leave the place `erasing` with
        # no reason: it fails with its error, which the receipt and `erase --resume` see.
        # Info with the traceback: `nsmigrate erase` runs backup places itself, and a command has no logging set up
        # (Python would print an error to its terminal beside the command's own line); the worker's log keeps it.
        log.info("erasure place %s (job %s) failed unexpectedly", place_id, place.job_id, exc_info=True)
        error = f"unexpected {type(e).__name__}: {e}; run `nsmigrate erase --resume {place.job_id}` once it is fixed"
        jobs_erasure.fail_place(ctx.db, place_id, error, ctx.worker_name)
    finally:
        if jobs_erasure.maybe_finish_erasure(ctx.db, place.job_id, receipt, ctx.worker_name) is not None:
            log.info("erasure job %s finished; receipt in its audit log", place.job_id)
    if error is not None:
        where = (
            place.path
            if place.kind in (PlaceKind.BACKUP, PlaceKind.IMPORT_FILES)
            else display_namespace(place.namespace or "")
        )
        raise ErasureFailed(error, job=place.job_id, place=f"{place.kind} {where}")
    return erased


def _erase(ctx: WorkerContext, place: Any, subject: Subject) -> tuple[int, dict[str, Any]]:
    """Delete the place (a whole namespace, the subject's records of one, their rows of a backup or a retired table,
    an import job's files) and check it."""
    if place.kind == PlaceKind.BACKUP:
        return _erase_backup(ctx, place, subject)
    if place.kind == PlaceKind.TABLE:
        return erase_retired_table(place, subject, ctx.store)
    if place.kind == PlaceKind.IMPORT_FILES:
        return erase_import_files(ctx, place)
    spec = store_spec_from_json(place.store_spec or {})
    store = ctx.guarded(spec, RateBudget())
    namespace = place.namespace or ""
    # A copy delivery started before this erasure was recorded reads the job table before each write from now on: a
    # batch started again or ended since is no longer its to write (``write_fence``).
    write_fence.mark_erasure(ctx.redis)
    if place.kind == PlaceKind.NAMESPACE:
        return _erase_namespace(ctx, place.id, store, namespace)
    # A Pinecone index that tells the LSN its reads reflect can show a listing complete; a server that does not (a
    # Pinecone-shaped one without the headers) is checked by polling, as before: failing its every place would leave
    # the subject unerasable there.
    lagging = spec.kind == "pinecone" and store.reconciled_lsn(namespace) is not None
    return _erase_records(ctx, place.id, store, namespace, subject, lagging=lagging)


def _copies_that_may_undo(ctx: WorkerContext, job_id: int, subject: Subject, spec: dict[str, Any]) -> str | None:
    """Why this place must not be erased now, or None: a copy job may still write the subject's data (it would
    bring it back after the place was checked empty), or copied some of it since the erasure was planned (where it
    wrote may not be among the places). Asked again of the job table by each place, right before it deletes: the
    plan's answer is older than any copy started, resumed or synced since."""
    runs, _, _ = jobs_erasure.known_runs(ctx.db, ctx.settings.visibility_timeout_s)
    namespaces = {p.namespace for p in jobs_erasure.places_of(ctx.db, job_id) if p.namespace is not None}
    writing = still_writing(runs, subject, namespaces)
    if writing:
        return (
            f"copy jobs may still write {subject.label}'s data after it is erased: {_named(writing)} — wait for "
            f"them to finish, or {', '.join(f'`nsmigrate cancel {j}`' for j in writing)}, then `nsmigrate erase "
            f"--resume {job_id}`; nothing was deleted here"
        )
    seen = spec.get("copies_seen")
    since = copied_since(runs, subject, namespaces, seen) if seen is not None else {}
    # A batch that wrote since and then failed, or died, counts nothing in its run's copies: its activity is asked.
    theirs = carrying(runs, subject, namespaces)
    planned_at = jobs_and_runs.find_job(ctx.db, job_id).created_at
    wrote = jobs_erasure.runs_writing_since(
        ctx.db, [r.run_id for r in theirs], planned_at, ctx.settings.visibility_timeout_s
    )
    since = {**since, **by_job(r for r in theirs if r.run_id in wrote)}
    if since:
        again = f"--creator {subject.creator_id}" + (f" --twin {subject.twin_id}" if subject.twin_id else "")
        return (
            f"copy jobs wrote {subject.label}'s data after erasure job {job_id} was planned: {_named(since)} — where "
            f"they wrote may not be among its places; erase again with a new plan (`nsmigrate erase {again}`); "
            "nothing was deleted here"
        )
    return None


def _named(jobs_namespaces: dict[int, list[str]]) -> str:
    return "; ".join(
        f"job {job_id} (namespaces {', '.join(repr(display_namespace(n)) for n in names)})"
        for job_id, names in jobs_namespaces.items()
    )


def _erase_backup(ctx: WorkerContext, place: Any, subject: Subject) -> tuple[int, dict[str, Any]]:
    from nsmigrate.workers.stores.backup.erasure import BackupUnreadable, erase_backup, rows_of  # pyarrow

    directory = Path(place.path or "")
    is_whole = set((place.store_spec or {}).get("whole") or []).__contains__

    def emptying() -> None:
        jobs_and_runs.record_event(
            ctx.db, BACKUP_EMPTIED, ctx.worker_name, place.job_id, place_id=place.id, path=str(directory)
        )

    try:
        done = erase_backup(directory, subject, is_whole, before_emptying=emptying)
    except BackupUnreadable as e:
        if _Emptied(ctx.db).removed(directory, place.job_id):  # an erasure removed it since the plan: passes again
            return 0, {"passed": True, "rows_left": 0, "directory_removed": not directory.exists()}
        reason = f"{e.message}; not erased, not checked — run `nsmigrate erase --resume {place.job_id}` where it is"
        return 0, {"passed": False, "unreadable": True, "reason": reason}
    left = 0 if done.emptied else rows_of(directory, subject, is_whole)
    check: dict[str, Any] = {"passed": left == 0, "rows_left": left, "directory_removed": not directory.exists()}
    if done.missing:
        # Kept listed (import still refuses the backup): the erasure read every file that is there.
        check["files_missing"] = done.missing
        check["note"] = f"listed in {directory / 'manifest.json'} but missing, kept listed: {', '.join(done.missing)}"
    if left:
        check["reason"] = f"{left} of their rows still in {directory}"
    return done.rows, check


def _erase_namespace(ctx: WorkerContext, place_id: int, store: Store, namespace: str) -> tuple[int, dict[str, Any]]:
    before = store.count(namespace)
    ids: list[str] = []
    if store.can_list():
        for id_ in iter_all_ids(store, namespace):
            ids.append(id_)
            if len(ids) >= CHECKED_IDS:
                break
        jobs_erasure.add_erased_ids(ctx.db, place_id, ids)
    # An alias serving the namespace would keep Pinecone from deleting it, and would serve nothing once it is gone.
    removed = release_aliases(store, namespace)
    store.delete_namespace(namespace)
    check = _gone(ctx, store, namespace, jobs_erasure.erased_ids(ctx.db, place_id), None)
    return before, {**check, "aliases_removed": removed} if removed else check


def _erase_records(
    ctx: WorkerContext, place_id: int, store: Store, namespace: str, subject: Subject, *, lagging: bool
) -> tuple[int, dict[str, Any]]:
    erased = 0
    if store.capabilities.fetch_lags:  # a document index: fetched once its reads show what was written before now
        freshness.reads_now(store, namespace, ctx.settings.erasure_settle_timeout_s, side="erased")
    for listed in chunks(list(iter_all_ids(store, namespace)), min(FETCH_MAX_IDS, DELETE_MAX_IDS)):
        # Each chunk fetched right before its delete, the namespace held alone meanwhile: a record rewritten as
        # someone else's since the listing is kept (the application's write, but for that instant; nsmigrate's wait;
        # on pgvector not even then: the delete takes each row only at the version its fetch saw).
        with exclusive_hold([(store, namespace)]):
            versions = store.row_versions(namespace, listed)
            theirs = subject_ids(store, namespace, subject, listed)
            if theirs:
                jobs_erasure.add_erased_ids(ctx.db, place_id, theirs)  # before the delete: a kill after it checks them
                if versions is None:
                    store.delete(namespace, theirs)
                else:
                    theirs = store.delete_unchanged(namespace, {i: versions[i] for i in theirs if i in versions})
        erased += len(theirs)
    ids = jobs_erasure.erased_ids(ctx.db, place_id)
    return erased, _gone(ctx, store, namespace, ids, subject, lagging=lagging)


def _gone(
    ctx: WorkerContext, store: Store, namespace: str, ids: list[str], subject: Subject | None, *, lagging: bool = False
) -> dict[str, Any]:
    """Check the deletion, polling up to the ``erasure_settle_timeout_s`` setting (counts and reads lag on Pinecone): a
    whole namespace counts 0 and lists nothing; for records, a listing finds none of the subject's. Either way a fetch
    of the deleted ids returns none of them. A ``lagging`` store is listed by ``freshness.complete_listing``: once its
    reads reflect the deletes and a point after them, so a record of the subject written just before the erasure,
    which no lagging read showed it, is found and fails the place; reads that never get there fail it too."""
    timeout_s = ctx.settings.erasure_settle_timeout_s
    deadline = time.monotonic() + timeout_s
    behind, shown = False, None
    while True:
        # The erased ids fetched again: any there (a whole namespace), or still theirs (one rewritten as another
        # creator's since, and so kept by the delete, is not theirs).
        fetched = sum(
            1
            for c in chunks(ids, FETCH_MAX_IDS)
            for r in store.fetch(namespace, c)
            if subject is None or subject.owns_record(r.metadata, r.id)
        )
        if subject is None:
            count = store.count(namespace)
            listed = len(store.list_ids(namespace, limit=100).ids) if store.can_list() else 0
            left = {"count": count, "listed": listed, "fetched": fetched}
        else:
            names: list[str] = []
            if not lagging:
                names = list_all_ids(store, namespace)
            else:
                try:
                    left_s = max(0.0, deadline - time.monotonic())
                    names, shown = freshness.complete_listing(
                        store, namespace, left_s, None, side="erased", again="erase"
                    )
                except StoreError:  # reads did not reach the probe in time: nothing is concluded from them
                    behind = True
            left = {"found": len(subject_ids(store, namespace, subject, names)), "fetched": fetched}
        # A record of theirs on a listing shown complete is there (no later look can show it gone); else poll on.
        if behind or (shown and left.get("found")) or not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check: dict[str, Any] = {"passed": not behind and not any(left.values()), "ids_fetched_again": len(ids), **left}
    if shown is not None:
        # False (LSNs that skip, a refused probe): the listing was taken once reads showed the probe, not proved whole.
        check["listing_complete"] = shown
    where = display_namespace(namespace)
    if behind:
        check["reason"] = f"no listing of {where!r} reflected the deletes within {timeout_s:.0f} s (its reads lag)"
    elif shown and left.get("found"):
        check["reason"] = f"{left['found']} of their records still in {where!r} (written while it was erased)"
    elif not check["passed"]:
        check["reason"] = f"still there after {timeout_s:.0f} s in {where}: {left}"
    return check

"""From a validated spec to a running job (``start_or_resume``, the one way a migrate job starts), and the commands
that act on a job's failed or finished work (retry, verify). Taking up unfinished work is ``orchestrator.recovery``.

Stores are opened by a function passed in by the entry point (the CLI passes ``workers.stores.open_store``): the
orchestrator reads the source inventory to plan, but never imports the worker tasks; it enqueues them by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsmigrate.orchestrator import pgvector_layout, pgvector_rows, recovery, retry_policy
from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.errors import NotFound, NsmigrateError, PlanError, RetryableError, SpecChanged, SpecError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import crossing_jobs, jobs_and_runs
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.listing import small_namespaces
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher, send_strategy_step
from nsmigrate.orchestrator.models import Job
from nsmigrate.orchestrator.pgvector_layout import check_distinct_tables, check_target_names
from nsmigrate.orchestrator.planning.collection_strategy import plan_collection
from nsmigrate.orchestrator.planning.convert_checks import convert_note, converts_to, prepare_convert
from nsmigrate.orchestrator.planning.document_checks import check_document_keys
from nsmigrate.orchestrator.planning.id_checks import (
    check_id_collisions,
    check_id_lengths,
    namespace_refusals,
    namespaces_needing_id_check,
    sharing_with,
)
from nsmigrate.orchestrator.planning.import_strategy import check_import_plan
from nsmigrate.orchestrator.planning.plan import Inventory, Plan
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.planning.reads import PlanReads, RoutedIds
from nsmigrate.orchestrator.planning.target_indexes import IndexControl, plan_target_index
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.routing.route import route_context
from nsmigrate.orchestrator.settings import DEFAULTS, Settings
from nsmigrate.orchestrator.spec.differences import spec_differences
from nsmigrate.orchestrator.spec.jobspec import JobSpec, spec_to_json
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.orchestrator.states import VERIFIABLE_RUN_STATES
from nsmigrate.orchestrator.store import Store
from nsmigrate.orchestrator.tenancy.creator_mapping import load_owners, load_sources, load_twins

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

StoreOpener = Callable[[Any], Store]
ControlOpener = Callable[[Any], IndexControl]


#: ``_inventory``'s dimension of a store that has none yet (an empty pgvector target): the source's, once known.
_SOURCE_DIMENSION = -1


def _inventory(store: Store, role: str, reads: PlanReads, fallback_dimension: int | None = None) -> Inventory:
    """What ``store`` holds. Its listing probe and its aliases (a request each) are read beside its stats."""
    probing = reads.request(store.can_list)
    aliasing = reads.request(_aliases_of, store)
    try:
        namespaces = store.namespaces()
        try:
            dimension = store.dimension()
        except NsmigrateError:
            if fallback_dimension is None:
                raise
            dimension = fallback_dimension  # an empty pgvector target has no table to read it from yet
        metric = store.metric()
        enumeration = store.capabilities.enumeration
        can_list = bool(probing.result())
        identity = store.identity()
        aliases = aliasing.result()
    except RetryableError as e:
        raise PlanError(
            f"the {role} store {store.name} did not answer: {e}",
            hint=f"check the {role} host/URL and that the service is up, then run again",
        ) from e
    return Inventory(store.name, dimension, namespaces, metric, can_list, enumeration, identity, aliases)


def _aliases_of(store: Store) -> dict[str, str]:
    """``store.aliases()``, once the store knows what it is (an index named by the spec is described first: a pod
    index serves no aliases and is not asked)."""
    store.identity()
    return store.aliases()


def _check_columns(spec: JobSpec, plan: Plan, source: Store, target: Store, reads: PlanReads) -> None:
    """Between pgvector tables: refuse, before anything is copied, a target table that cannot hold every column of
    its source table (``pgvector_rows.carry_problems``). A new one is made inside Postgres with the source's own
    columns added; through the workers (another database) it has the layout's only, so a column of the user's is refused
    then too (``pgvector_rows.new_table_problems``). Every table's columns are read at once (``reads``), then judged
    run by run."""
    if not isinstance(spec.target, PgvectorStoreSpec):
        return
    in_postgres = isinstance(spec.source, PgvectorStoreSpec) and pgvector_rows.same_database(
        spec.source, spec.target, os.environ
    )
    reading = [
        (ns, reads.request(source.table_columns, run.source_namespace), reads.request(target.table_columns, ns))
        for run in plan.runs
        if (ns := run.target_namespace) is not None
    ]
    for target_ns, found_of, there_of in reading:
        found, there = found_of.result(), there_of.result()
        if found is None:
            continue
        carried = [c for c in found[1] if not c.serial]
        if there is not None:
            pgvector_rows.refuse_columns(pgvector_rows.carry_problems(there[0], carried, there[1]), found[0])
        elif not in_postgres:
            table = pgvector_layout.table_of(spec.target.table, target_ns)
            pgvector_rows.refuse_columns(pgvector_rows.new_table_problems(table, carried), found[0])


def _absolute_catalogue(spec: JobSpec, spec_dir: Path | None) -> JobSpec:
    """The spec with its id catalogue file's path made absolute (relative to the spec's directory, then the working
    directory): the spec is stored with the job and read by workers that run elsewhere."""
    stores = {}
    for role in ("source", "target"):
        store = getattr(spec, role)
        catalogue = getattr(getattr(store, "enumerate", None), "catalogue", None)
        if catalogue is None or catalogue.source != "file" or catalogue.path is None:
            continue
        path = Path(catalogue.path).expanduser()
        candidates = [path] if path.is_absolute() else [*([spec_dir / path] if spec_dir else []), Path.cwd() / path]
        found = next((c.resolve() for c in candidates if c.is_file()), None)
        if found is None:
            raise SpecError(
                f"{role}.enumerate.catalogue.path: file {catalogue.path!r} not found (looked at "
                f"{', '.join(str(c) for c in candidates)})",
                hint="give a CSV with a namespace,id header, relative to the spec file's directory",
            )
        enumeration = store.enumerate.model_copy(
            update={"catalogue": catalogue.model_copy(update={"path": str(found)})}
        )
        stores[role] = store.model_copy(update={"enumerate": enumeration})
    return spec.model_copy(update=stores) if stores else spec


def prepare(
    spec: JobSpec,
    open_store: StoreOpener,
    spec_dir: Path | None = None,
    open_control: ControlOpener | None = None,
    *,
    marks: dict[str, float] | None = None,
    settings: Settings = DEFAULTS,
) -> Prepared:
    """Read the inventories and the creator mapping, make the plan and rule out id collisions. Writes nothing.
    ``open_control`` opens a Pinecone control plane, needed when the spec asks for a target index to be created.
    Reads that do not wait on each other run at once (``orchestrator.planning.reads``). ``marks``: the caller's marks of
    the steps before (``PLANNING_MARKS``, epoch seconds; ``spec_parsed`` is now when not given); ``settings``: the
    entry point's (``plan_read_threads``)."""
    return _prepare(spec, open_store, spec_dir, open_control, marks, None, settings)


class Starting:
    """How ``start_or_resume`` starts a job while planning's per-namespace checks go on (``_prepare``): the job is
    written once the job-wide checks passed, with the namespaces still to be checked ``checking``, and the others'
    work is sent at once; each checked namespace is then sent, or refused, as its check ends."""

    def __init__(
        self,
        db: jobs_database.Database,
        dispatcher: Dispatcher,
        actor: str | None,
        before_write: BeforeWrite | None,
        settings: Settings,
    ) -> None:
        self.db, self.dispatcher, self.actor, self.before_write = db, dispatcher, actor, before_write
        self.settings = settings
        self.job_id = 0
        self.refused: dict[str, str] = {}

    def start(self, prepared: Prepared, checking: Collection[str]) -> None:
        prepared.plan.warnings.extend(crossing_jobs.crossings_of(self.db, prepared.spec, prepared.plan))
        events = self.before_write(prepared) if self.before_write is not None else []

        # Asked again as the job is written: another job planned meanwhile may write into the same namespaces.
        def recheck(session: Session) -> None:
            crossing_jobs.check_shared_targets(session, prepared.spec, prepared.plan)

        self.job_id = launch(
            self.db,
            self.dispatcher,
            prepared,
            actor=self.actor,
            checking=checking,
            settings=self.settings,
            recheck=recheck,
        )
        self.record(events)

    def record(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """The audit events of what ``before_write`` did, written once the job's rows are."""
        for action, detail in events:
            jobs_and_runs.record_event(self.db, action, self.actor or default_actor(), self.job_id, **detail)

    def checked(self, spec: JobSpec, passed: list[str], refused: dict[str, str]) -> None:
        jobs_and_runs.finish_namespace_checks(self.db, self.job_id, passed, refused, self.actor)
        if passed:
            send_work(self.db, self.dispatcher, self.job_id, spec, passed, settings=self.settings)
        self.refused.update(refused | recovery.refused_meanwhile(self.db, self.job_id, passed))

    def done(self, checked: int) -> None:
        actor = self.actor or default_actor()
        refused = sorted(self.refused)
        jobs_and_runs.record_event(
            self.db, "namespace_checks_done", actor, self.job_id, namespaces=checked, refused=refused
        )
        if self.refused:  # the others may all be final already
            jobs_and_runs.maybe_finish_job(self.db, self.job_id)


def _prepare(
    spec: JobSpec,
    open_store: StoreOpener,
    spec_dir: Path | None,
    open_control: ControlOpener | None,
    marks: dict[str, float] | None,
    starting: Starting | None,
    settings: Settings,
) -> Prepared:
    """``prepare``; with ``starting``, the job starts as soon as the job-wide checks pass (see ``Starting``)."""
    marks = {"spec_parsed": time.time(), **(marks or {})}
    spec = _absolute_catalogue(spec, spec_dir)
    source = open_store(spec.source)
    target = open_store(spec.target)
    marks["first_store_request"] = time.time()
    with PlanReads(spec.rate, settings.plan_read_threads) as reads:
        # The target's inventory is read beside the source's unless the plan may create the target (then it waits
        # for the source's shape) or Pinecone copies the index (strategy collection or convert).
        creates = spec.strategy != "fleet" or (spec.target.kind == "pinecone" and spec.target.create is not None)
        early_target = None if creates else reads.chain(_inventory, target, "target", reads, _SOURCE_DIMENSION)
        source_inv = _inventory(source, "source", reads)
        control = open_control(spec.target) if open_control is not None and spec.target.kind == "pinecone" else None
        if spec.strategy == "convert":
            prepared = prepare_convert(spec, source, source_inv, target.name, control, marks)
            return _started(prepared, starting, ())
        target_index = plan_target_index(spec, source.name, source_inv.dimension, source_inv.metric, control)
        if spec.strategy == "collection":
            described = open_control(spec.source).describe_index(source.name) if open_control is not None else None
            plan = plan_collection(spec, source_inv, target_index, described.kind if described is not None else None)
            return _started(Prepared(spec, plan, source.name, target.name, target_index, marks), starting, ())
        if target_index is not None and target_index.action == "create":
            # Nothing to read yet: the index the plan creates will be empty, with the shape it asks for.
            shape = target_index.shape
            target_inv = Inventory(label=target.name, dimension=shape.dimension, namespaces={}, metric=shape.metric)
        else:
            target_inv = (
                early_target.result()
                if early_target is not None
                else _inventory(target, "target", reads, _SOURCE_DIMENSION)
            )
            if target_inv.dimension == _SOURCE_DIMENSION:
                target_inv = replace(target_inv, dimension=source_inv.dimension)
        twins: dict[str, str] = {}
        sources: dict[str, str] = {}
        owners: dict[str, tuple[str, str | None]] = {}
        if spec.routing.mode == "creator":
            if spec.routing.creators is not None:
                twins = load_twins(spec.routing.creators, spec_dir, retry_policy.one_off(settings))
            sources = load_sources(spec.routing.sources, spec_dir, retry_policy.one_off(settings))
            owners = load_owners(spec.routing.owners, retry_policy.one_off(settings))
        plan = make_plan(spec, source_inv, target_inv, twins, sources, owners)
        if spec.strategy == "import":
            check_import_plan(spec, plan, target_inv)  # Pinecone imports into new namespaces only, one job's ids each
        # A key a document refuses would fail the import's files or the copy's batches: refused before either.
        check_document_keys(spec, source, [r.source_namespace for r in plan.runs if r.vector_count])
        if spec.strategy == "import":
            return _started(Prepared(spec, plan, source.name, target.name, target_index, marks), starting, ())
        routed = {r.source_namespace for r in plan.runs if r.target_namespace is None and r.vector_count}
        if spec.target.kind == "pgvector" and spec.target.documented:
            targets = sorted({r.target_namespace for r in plan.runs if r.target_namespace is not None})
            check_target_names(targets)
            check_distinct_tables(spec.target.table, targets)
            _check_columns(spec, plan, source, target, reads)
        # The job-wide checks passed. Each namespace's own checks read its ids: where each routed record really
        # lands (the plan shows the routes taken, and only true collisions are refused) and, in a target namespace
        # two sources share, whether they share an id. Every namespace at once, a routed one a page at a time.
        needs_check = namespaces_needing_id_check(plan)
        contexts = {ns: route_context(spec, source.name, ns, None, twins=plan.twins) for ns in routed}
        reading = reads.reading_ids(source, sorted(set(needs_check) | routed), contexts)
        marks["plan_done"] = time.time()
        notes = (convert_note(spec, control, source_inv.label, target_index),) if converts_to(spec, control) else ()
        prepared = Prepared(spec, plan, source.name, target.name, target_index, marks, notes)
        if starting is not None:
            starting.start(prepared, needs_check)
            read = _checked_as_read(spec, plan, needs_check, reading, starting)
        else:
            read = {ns: future.result() for ns, future in reading.items()}
    ids = {ns: got.targets if isinstance(got, RoutedIds) else got for ns, got in read.items()}
    routes = {ns: got.routes for ns, got in read.items() if isinstance(got, RoutedIds)}
    if needs_check and starting is None:
        checked = {ns: ids[ns] for ns in needs_check}
        check_id_lengths(spec, checked)
        check_id_collisions(plan, checked, spec.allow_id_overwrite)
    return replace(prepared, plan=replace(plan, routes=routes)) if routes else prepared


def prepare_and_start(spec: JobSpec, open_store: StoreOpener, starting: Starting, settings: Settings) -> Prepared:
    """Plan ``spec`` (whose catalogue paths are absolute: a stored spec) and hand it to ``starting`` as ``_prepare``
    does for a new job: a ``Starting`` that writes elsewhere (``orchestrator.late_runs``) takes the same checks."""
    with recovery.planning(starting.db, spec.name):
        return _prepare(spec, open_store, None, None, None, starting, settings)


def _started(prepared: Prepared, starting: Starting | None, checking: Collection[str]) -> Prepared:
    if starting is not None:
        starting.start(prepared, checking)
    return prepared


def _checked_as_read(
    spec: JobSpec,
    plan: Plan,
    needs_check: list[str],
    reading: dict[str, Future[list[str] | RoutedIds]],
    starting: Starting,
) -> dict[str, list[str] | RoutedIds]:
    """Each namespace of ``needs_check`` judged (``id_checks.namespace_refusals``) as soon as the ids it needs were
    read, and sent or refused (``starting.checked``); a read that failed refuses the namespaces that needed it.
    Returns what was read."""
    read: dict[str, list[str] | RoutedIds] = {}
    failed: dict[str, str] = {}
    waiting = {ns: sharing_with(plan, ns) for ns in needs_check}
    namespace_of = {future: ns for ns, future in reading.items()}
    for future in as_completed(namespace_of):
        ns = namespace_of[future]
        try:
            read[ns] = future.result()
        except Exception as e:  # the job is written: the namespaces that needed these ids are refused, not lost
            failed[ns] = f"its ids could not be read to check it ({type(e).__name__}: {e}); run the spec again"
        ready = [n for n, needs in waiting.items() if needs <= read.keys() | failed.keys()]
        if not ready:
            continue
        for n in ready:
            del waiting[n]
        unread = {n: failed[m] for n in ready for m in sharing_with(plan, n) if m in failed}
        ids = {m: got.targets if isinstance(got, RoutedIds) else got for m, got in read.items()}
        refused = unread | namespace_refusals(spec, plan, ids, [n for n in ready if n not in unread])
        starting.checked(spec, [n for n in ready if n not in refused], refused)
    if needs_check:
        starting.done(len(needs_check))
    return read


def launch(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    prepared: Prepared,
    actor: str | None = None,
    checking: Collection[str] = (),
    *,
    settings: Settings = DEFAULTS,
    recheck: Callable[[Session], None] | None = None,
) -> int:
    """Write the job and its namespace runs, then enqueue their work (``send_work``). Returns the job id. ``actor``:
    who asked, for the audit log (default: this process's user@host); ``checking``: source namespaces whose own
    checks are still to be made, written ``checking`` and sent later; ``recheck``: ``create_job``'s. Jobs start
    through ``start_or_resume``; tests and benchmarks call this with plans of their own."""
    job_id = jobs_and_runs.create_job(
        db,
        prepared.spec,
        prepared.plan,
        source_label=prepared.source_label,
        target_label=prepared.target_label,
        actor=actor,
        planning={mark: round(at, 3) for mark, at in prepared.marks.items()},
        checking=checking,
        recheck=recheck,
    )
    if prepared.spec.strategy != "fleet":
        # Pinecone copies (a collection, a conversion) or imports the files one step writes; the runs are verified
        # once it is done (a conversion's synced first).
        send_strategy_step(dispatcher, prepared.spec.strategy, job_id)
        return job_id
    send_work(db, dispatcher, job_id, prepared.spec, settings=settings)
    return job_id


#: Tasks in a launch's first round trip to the broker: work for each thread of a fleet (the default one has 32 copy
#: threads) before the rest of the job's tasks are built, a few ms of the command's CPU each.
FIRST_SENDS = 32


def send_work(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    job_id: int,
    spec: JobSpec,
    namespaces: Collection[str] | None = None,
    *,
    settings: Settings = DEFAULTS,
) -> None:
    """Enqueue one lister per ``pending`` run of the job (of ``namespaces`` only, when given), the largest
    namespaces first: theirs are the longest chains of list pages, so they should not start last. Small namespaces
    (one page and one batch at plan time) come last, several to a task that lists and copies them
    (``orchestrator.listing.small_namespaces``)."""
    listed: list[tuple[int, str]] = []
    small: list[tuple[int, str]] = []
    for run_id, namespace, count in jobs_and_runs.runs_to_list(db, job_id, namespaces):
        one_batch = small_namespaces.fits_one_batch(spec, count)
        (small if one_batch else listed).append((run_id, display_namespace(namespace)))
    sends: list[Callable[[], None]] = [
        partial(dispatcher.list_namespace, run_id, job_id=job_id, namespace=namespace) for run_id, namespace in listed
    ]
    sends += [
        partial(
            dispatcher.copy_small_namespaces,
            [run_id for run_id, _ in group],
            job_id=job_id,
            namespaces=[namespace for _, namespace in group],
        )
        for group in small_namespaces.groups(small, settings)
    ]
    # A round trip per ROWS_PER_INSERT tasks, so the messages waiting to be sent stay few however many namespaces
    # the job has; the first carries only FIRST_SENDS, so the fleet starts on them while the rest are built and sent.
    # A launch cut short is taken up by `nsmigrate resume`, which sends the listers not yet run.
    start = 0
    while start < len(sends):
        end = start + (FIRST_SENDS if start == 0 else jobs_and_runs.ROWS_PER_INSERT)
        with dispatcher.together():
            for send in sends[start:end]:
                send()
        start = end


#: What the command does between the plan and the job's first write, where only it can (``cli.run``): write the
#: backup the spec asks for, create the target index. Called with the plan once every check passed; returns the
#: audit events (action, detail) that record what it did, written once the job exists. A failure writes no job.
BeforeWrite = Callable[[Prepared], list[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Started:
    """What ``start_or_resume`` did: started a new job (the plan it made: ``prepared``) or resumed an unfinished one
    (what it sent again: ``resumed``)."""

    job_id: int
    prepared: Prepared | None = None
    resumed: dict[str, int] | None = None
    #: Source namespaces refused by their own checks (``namespace_refused`` events), and why.
    refused: dict[str, str] = field(default_factory=dict)


def start_or_resume(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    spec: JobSpec,
    open_store: StoreOpener,
    spec_dir: Path | None = None,
    open_control: ControlOpener | None = None,
    *,
    new: bool = False,
    resume: bool = False,
    actor: str | None = None,
    before_write: BeforeWrite | None = None,
    marks: dict[str, float] | None = None,
    settings: Settings = DEFAULTS,
) -> Started:
    """The one way a migrate job starts, wherever it is asked for: `nsmigrate run` planning in the command, the
    fleet's plan server (``workers.fleet.plan_server``), the demos.

    The unfinished job of the spec's name, if any, is resumed (``recovery.resume``) unless ``new``, with the spec it
    was started with: a ``spec`` that differs from it is refused (``SpecChanged``, naming each difference) unless
    ``resume`` says to go on with the stored one anyway (with ``resume`` and no unfinished job, nothing is started:
    ``NotFound``). Otherwise the
    spec is planned (``prepare``: the same reads and checks wherever it runs) and copying starts while planning's
    last reads go on: once the job-wide checks passed (nothing is written before), ``before_write`` runs with the
    plan, the job is written and the work of every namespace that needs no check of its own is enqueued
    (``launch``); each namespace whose own checks read its ids (a collision in a target namespace it shares, ids too
    long for the target) is enqueued when they pass and refused (``cancelled``, a ``namespace_refused`` event) when
    they fail, so nothing reaches its target before. ``actor``: who asked, for the audit log (default: this
    process's user@host); ``marks``: the caller's marks of planning's first steps (``prepare``)."""
    if new and resume:
        raise SpecError(
            "--new and --resume exclude each other: --new starts another job, --resume goes on with the unfinished "
            "one; nothing was changed",
            hint="give one of them",
        )
    existing = None if new else jobs_and_runs.latest_unfinished_job(db, spec.name)
    if existing is not None:
        if not resume:
            _refuse_changed_spec(existing, spec, spec_dir)
        return Started(existing.id, resumed=recovery.resume(db, dispatcher, existing.id, actor=actor))
    if resume:
        # Asked to go on with a job, not to start one: the job may have finished (or been cancelled) meanwhile.
        raise NotFound(
            f"there is no unfinished job named {spec.name!r} to resume; nothing was started",
            hint="`nsmigrate jobs` lists the jobs; run without --resume to start a new one with this spec",
        )
    starting = Starting(db, dispatcher, actor, before_write, settings)
    with recovery.planning(db, spec.name):  # `resume` leaves the namespaces this process checks to it
        prepared = _prepare(spec, open_store, spec_dir, open_control, marks, starting, settings)
    return Started(starting.job_id, prepared=prepared, refused=starting.refused)


#: Differences named in the refusal of a changed spec (the rest are counted).
DIFFERENCES_SHOWN = 12


def _refuse_changed_spec(job: Job, spec: JobSpec, spec_dir: Path | None) -> None:
    """Raise ``SpecChanged`` when ``spec`` differs from the one unfinished ``job`` was started with: resuming would
    silently go on with the stored one (another target, a cleanup the file no longer asks for). Both are compared as
    stored: the given one with its catalogue path made absolute as it would be, the stored one read with today's
    defaults filled in (a field added since is no difference)."""
    try:
        given = _absolute_catalogue(spec, spec_dir)
    except SpecError:
        given = spec  # its catalogue path then shows as a difference
    try:
        stored = spec_to_json(JobSpec.model_validate(job.spec))
    except ValueError:  # a spec of a shape no longer valid: compared as it is stored
        stored = dict(job.spec or {})
    changed = spec_differences(stored, spec_to_json(given))
    if not changed:
        return
    more = len(changed) - DIFFERENCES_SHOWN
    shown = "; ".join(changed[:DIFFERENCES_SHOWN]) + (f"; and {more} more" if more > 0 else "")
    raise SpecChanged(
        f"job {job.id} ({job.name}) is unfinished and was started with another spec; resuming it would go on with "
        f"that one, not this file: {shown}; nothing was changed",
        hint=f"run again with --resume to go on with job {job.id} as it was started, or with --new to start another "
        f"job with this spec (job {job.id} goes on unless you `nsmigrate cancel {job.id}` first)",
        job_id=job.id,
    )


def retry_failed(
    db: jobs_database.Database, dispatcher: Dispatcher, job_id: int, namespace: str | None = None
) -> dict[str, list[int]]:
    """Re-enqueue the failed batches (only those) of a job or of one of its source namespaces. Returns the batch
    ids re-queued by namespace (as shown to people)."""
    requeued = jobs_batches.requeue_failed(db, job_id, namespace)
    runs = {r.id: r for r in jobs_and_runs.runs_of(db, job_id)}
    by_namespace: dict[str, list[int]] = {}
    with dispatcher.together():
        for run_id, batch_id in requeued:
            shown = display_namespace(runs[run_id].source_namespace)
            dispatcher.copy_batch(batch_id, job_id=job_id, run_id=run_id, namespace=shown)
            by_namespace.setdefault(shown, []).append(batch_id)
    return by_namespace


def retry_failed_listers(
    db: jobs_database.Database, dispatcher: Dispatcher, job_id: int, namespace: str | None = None
) -> list[str]:
    """Re-enqueue the listers that failed for good (runs ``list_failed``) of a job or of one of its source
    namespaces; each lists on from its saved token. Returns their namespaces (as shown to people)."""
    requeued = jobs_pages.requeue_failed_listers(db, job_id, namespace)
    shown = [display_namespace(source_namespace) for _, source_namespace in requeued]
    strategy = jobs_and_runs.stepped_strategy(db, job_id) if requeued else None
    if strategy is not None:
        send_strategy_step(dispatcher, strategy, job_id)  # one step goes on for every namespace, from the job's phase
        return shown
    with dispatcher.together():
        for (run_id, _), name in zip(requeued, shown, strict=True):
            dispatcher.list_namespace(run_id, job_id=job_id, namespace=name)
    return shown


def request_verification(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    job_id: int,
    namespace: str | None = None,
    *,
    settings: Settings = DEFAULTS,
) -> list[int]:
    """Enqueue verification of every run that finished copying (again, for runs verified before). Returns their ids.
    Small namespaces (``small_namespaces.verified_in_one_round``) go several to a task, the others one each."""
    runs = [run for run in jobs_and_runs.runs_of(db, job_id, namespace) if run.state in VERIFIABLE_RUN_STATES]
    small = [run for run in runs if small_namespaces.verified_in_one_round(max(run.source_count, run.copied))]
    grouped = {run.id for run in small}
    with dispatcher.together():
        for run in runs:
            if run.id not in grouped:
                dispatcher.verify_namespace(run.id, job_id=job_id, namespace=display_namespace(run.source_namespace))
        for group in small_namespaces.groups(small, settings):
            dispatcher.verify_small_namespaces(
                [run.id for run in group],
                job_id=job_id,
                namespaces=[display_namespace(run.source_namespace) for run in group],
                rejudge=True,
            )
    return [run.id for run in runs]

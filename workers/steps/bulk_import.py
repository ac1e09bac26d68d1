"""The steps of a ``strategy: import`` job (see ``orchestrator.planning.import_strategy``): one task writes each
namespace run's records as import files to object storage (``workers.stores.import_files``; up to
``import_write_threads`` namespaces at once, their fetches within the spec's read budget), starts Pinecone's
import of the job's directory, and asks after it, sending itself again while Pinecone is busy and showing its
progress in the job's phase (``importing 42%``). When the import completed, the runs become ``copied`` with the
records their files hold and are verified like any run (``workers.steps.verifying``: counts, ids, contents, after
waiting for lagging reads), and the job's files are removed (unless ``import.keep_files``).

Each step may be taken again safely: a run's files are written again from scratch (its directory emptied first)
until it is recorded written; an import is started once per attempt (its id is in the job's ``import_started``
event; one of the job's files Pinecone holds already, not failed nor cancelled, is taken up instead of starting
another), and started anew only after it failed and the job was retried (``nsmigrate retry``). Records of a creator
an erasure erases are never written: they are left out of the files and named, and the rest is imported.

A job cancelled while Pinecone imports has that import cancelled too (``cancel_import``: by `nsmigrate cancel`, and
by the job's next step): Pinecone would go on writing its records, an erased creator's among them, after an erasure
found their namespaces empty.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import NoReturn

from nsmigrate.orchestrator.errors import ImportFailed, NsmigrateError, RetryableError, StoreError, failure_text
from nsmigrate.orchestrator.jobs import collection as jobs_phase
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.models import JobState, NamespaceRun
from nsmigrate.orchestrator.planning.collection_strategy import poll_delay_s
from nsmigrate.orchestrator.planning.import_strategy import (
    import_directory,
    import_uri,
    namespace_directory,
    next_import_step,
    progress_phase,
)
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.routing.route import RouteContext, route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.states import LISTABLE_RUN_STATES, ImportPhase, phase_name
from nsmigrate.workers import tally
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import step_chain
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.import_files import ImportFiles
from nsmigrate.workers.stores.pinecone.document_index import PineconeDocumentStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore

log = logging.getLogger(__name__)


def step(ctx: WorkerContext, job_id: int, polls: int = 0, failing_since: float | None = None) -> str:
    """Take the next step of import job ``job_id``; returns what it did (for logs and tests).

    A step that failed for good (the storage or Pinecone refused, Pinecone failed the import, Pinecone did not
    answer for ``collection_control_plane_outage_s`` on end) is recorded — the runs ``list_failed`` with the error,
    `status` and `run --wait` show it — and raised as ``ImportFailed``. An outage of the job table or Redis
    propagates: Celery sends the task again."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    phase = jobs_phase.job_phase(ctx.db, job_id)
    if phase_name(phase) == ImportPhase.IMPORTED:
        if not any(jobs_phase.latest_detail(ctx.db, job_id, action) is not None for action in _FILES_SETTLED):
            # Its worker died between the import's end and its files' removal: taken up here, sent again.
            assert spec.bulk_import is not None
            _settle_files(ctx, spec, job_id, import_uri(spec.bulk_import, spec.name, job_id))
        return "imported"
    if not any(r.state in LISTABLE_RUN_STATES for r in jobs_and_runs.runs_of(ctx.db, job_id)):
        if jobs_and_runs.find_job(ctx.db, job_id).state == JobState.CANCELLED:
            cancel_import(ctx, job_id)  # Pinecone's import, if `nsmigrate cancel` did not stop it
        return "stopped"  # cancelled, or failed and not retried
    try:
        return _take_step(ctx, spec, job_id, phase, polls)
    except RetryableError as e:
        since = failing_since if failing_since is not None else time.time()
        if time.time() - since < ctx.settings.collection_control_plane_outage_s:
            log.warning("import job %s: no answer (%s); asking again", job_id, e)
            ctx.dispatcher.import_step(
                job_id,
                polls=polls + 1,
                countdown_s=poll_delay_s(polls + 1),
                failing_since=since,
                chain=step_chain.current(),
            )
            return "wait"
        _fail(
            ctx, job_id, f"{failure_text(e)} (for {time.time() - since:.0f} s on end); run `nsmigrate retry {job_id}`"
        )
    except ImportFailed:
        raise  # recorded already
    except INFRASTRUCTURE_ERRORS:
        raise
    except NsmigrateError as e:
        _fail(ctx, job_id, f"{failure_text(e)}; run `nsmigrate retry {job_id}` once its cause is fixed")
    except Exception as e:
        log.exception("import job %s: the step failed unexpectedly", job_id)
        _fail(ctx, job_id, f"unexpected {type(e).__name__}: {e}; run `nsmigrate retry {job_id}` once it is fixed")


#: How long a cancel waits for Pinecone to say the import it cancelled has ended.
CANCEL_WAIT_S = 60.0
_ENDED = frozenset({"Completed", "Failed", "Cancelled"})


def cancel_import(ctx: WorkerContext, job_id: int, wait_s: float = CANCEL_WAIT_S) -> str | None:
    """Cancel Pinecone's import of cancelled job ``job_id`` and wait until Pinecone says it ended; record how
    (``import_cancelled``: its status and the records it imported). Returns that status (``Completed``: it ended
    first, its records are in the target), or None when the job has no import under way.

    Raises:
        StoreError: Pinecone did not say it ended within ``wait_s``: it may still write (cancel the job again).
    """
    started = jobs_phase.latest_detail(ctx.db, job_id, "import_started") or {}
    import_id = started.get("import_id")
    settled = jobs_phase.latest_detail(ctx.db, job_id, "import_cancelled") or {}
    phase = phase_name(jobs_phase.job_phase(ctx.db, job_id))
    if import_id is None or phase != ImportPhase.IMPORTING or settled.get("import_id") == import_id:
        return None
    target = ctx.store(jobs_and_runs.job_spec(ctx.db, job_id).target)
    assert isinstance(target, PineconeStore)
    imports = target.bulk_imports()
    status = imports.describe(import_id)
    if status.status not in _ENDED:
        imports.cancel(import_id)
    deadline = time.monotonic() + wait_s
    while status.status not in _ENDED:
        if time.monotonic() > deadline:
            raise StoreError(
                f"Pinecone's import {import_id} of job {job_id} was cancelled but is still {status.status} after "
                f"{wait_s:g} s: it may still write its records",
                hint=f"run `nsmigrate cancel {job_id}` again before you erase anything it imports",
            )
        time.sleep(1.0)  # Pinecone's own pace: an import is described, not waited on
        status = imports.describe(import_id)
    detail = {"import_id": import_id, "status": status.status, "records": status.records}
    jobs_and_runs.record_event(ctx.db, "import_cancelled", ctx.worker_name, job_id, **detail)
    return status.status


def _fail(ctx: WorkerContext, job_id: int, reason: str) -> NoReturn:
    jobs_phase.collection_failed(ctx.db, job_id, reason, strategy="import")
    raise ImportFailed(f"strategy import: {reason}", job=job_id)


def _take_step(ctx: WorkerContext, spec: JobSpec, job_id: int, phase: str | None, polls: int) -> str:
    assert spec.bulk_import is not None  # the spec made sure
    target = ctx.store(spec.target)
    assert isinstance(target, PineconeStore)
    imports = target.bulk_imports()
    started = jobs_phase.latest_detail(ctx.db, job_id, "import_started") or {}
    ended = jobs_phase.latest_detail(ctx.db, job_id, "import_ended") or {}
    import_id = started.get("import_id")
    retried = import_id is not None and ended.get("import_id") == import_id
    status = imports.describe(import_id) if import_id is not None and not retried and phase is not None else None
    decided = next_import_step(phase, import_id, status.status if status else None, retried)
    uri = import_uri(spec.bulk_import, spec.name, job_id)
    if decided.action == "write":
        jobs_phase.enter_phase(ctx.db, job_id, ImportPhase.WRITING, uri=uri)
        _write(ctx, spec, job_id, target)
    if decided.action in ("write", "start"):
        # Pinecone may hold an import of these files this job never recorded (the answer to its start lost, the
        # worker stopped before the record): it is this attempt's, as a second would fail on the namespaces it made.
        found = imports.live(uri)
        if found is not None:
            log.info("import job %s: taking up Pinecone's import %s of %s, started before", job_id, found.id, uri)
            new_id = found.id
        else:
            new_id = imports.start(
                uri, integration_id=spec.bulk_import.integration_id, error_mode=spec.bulk_import.error_mode
            )
        jobs_and_runs.record_event(ctx.db, "import_started", ctx.worker_name, job_id, import_id=new_id, uri=uri)
        jobs_phase.enter_phase(ctx.db, job_id, progress_phase(0), import_id=new_id, uri=uri)
        if jobs_and_runs.find_job(ctx.db, job_id).state == JobState.CANCELLED:  # while its files were written
            cancel_import(ctx, job_id)
            return "stopped"
        ctx.dispatcher.import_step(job_id, polls=0, countdown_s=poll_delay_s(0), chain=step_chain.current())
        return "start"
    assert status is not None
    if decided.action == "wait":
        jobs_phase.enter_phase(ctx.db, job_id, progress_phase(status.percent), import_id=import_id, uri=uri)
        ctx.dispatcher.import_step(
            job_id, polls=polls + 1, countdown_s=poll_delay_s(polls + 1), chain=step_chain.current()
        )
        return "wait"
    if decided.action == "imported":
        # Each run copied what its files hold: the index's counts lag the import as its reads lag any write.
        runs_now = jobs_and_runs.runs_of(ctx.db, job_id)
        counts = {
            run.source_namespace if run.target_namespace is None else run.target_namespace: run.copied
            for run in runs_now
        }
        detail = {"import_id": import_id, "records_imported": status.records}
        runs = jobs_phase.collection_restored(ctx.db, job_id, counts, phase=ImportPhase.IMPORTED, **detail)
        for run in jobs_and_runs.runs_of(ctx.db, job_id):
            if run.id in runs:
                ctx.dispatcher.verify_namespace(
                    run.id, job_id=job_id, namespace=display_namespace(run.source_namespace)
                )
        _settle_files(ctx, spec, job_id, uri)
        return "imported"
    jobs_and_runs.record_event(
        ctx.db, "import_ended", ctx.worker_name, job_id, import_id=import_id, status=status.status
    )
    _fail(
        ctx,
        job_id,
        f"{decided.reason}{': ' + status.error if status.error else ''} ({status.records} records imported); the "
        "target namespaces may hold part of it, and Pinecone imports only into new namespaces: delete them (or map "
        f"the job to new names), then `nsmigrate retry {job_id}`",
    )


#: The events that say what became of an imported job's files: kept (``import.keep_files``), removed, or left.
_FILES_SETTLED = ("import_files_kept", "import_files_removed", "import_files_left")


def _settle_files(ctx: WorkerContext, spec: JobSpec, job_id: int, uri: str) -> None:
    """Keep the files of an imported job (``import.keep_files``) or remove them, and say which (``_FILES_SETTLED``)."""
    assert spec.bulk_import is not None
    if spec.bulk_import.keep_files:
        jobs_and_runs.record_event(ctx.db, "import_files_kept", ctx.worker_name, job_id, uri=uri)
    else:
        _remove_files(ctx, spec, job_id, uri)


def _remove_files(ctx: WorkerContext, spec: JobSpec, job_id: int, uri: str) -> None:
    """Remove the job's import files once Pinecone imported them: a copy of every record in a bucket, which nothing
    needs any more (the target holds them now, the source still does). Files left (the storage refused, a worker
    died before this) are named by ``import_files_left`` and reached by `nsmigrate erase`
    (``workers.steps.erasing_copies``)."""
    assert spec.bulk_import is not None
    try:
        files = ImportFiles(spec.bulk_import, ctx.settings.allowed_key_vars)
        removed = files.clear(import_directory(spec.bulk_import, spec.name, job_id))
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as e:  # whatever the storage did, the import stands: its runs are copied and being verified
        log.warning("import job %s: its files were left in %s (%s)", job_id, uri, e)
        jobs_and_runs.record_event(ctx.db, "import_files_left", ctx.worker_name, job_id, uri=uri, reason=str(e))
        return
    jobs_and_runs.record_event(ctx.db, "import_files_removed", ctx.worker_name, job_id, uri=uri, objects=removed)


def _write(ctx: WorkerContext, spec: JobSpec, job_id: int, target: PineconeStore) -> None:
    """Write the import files of every run not written yet, one directory per target namespace, several namespaces at
    once: each its own directory and its own ``files_written`` record, so a step taken again rewrites only the runs
    not recorded yet. Returns once every namespace is written (the import starts after); the first failure is raised
    after the namespaces being written have ended, and the ones not begun are left for the next attempt."""
    assert spec.bulk_import is not None
    files = ImportFiles(spec.bulk_import, ctx.settings.allowed_key_vars)  # a boto3 client is thread-safe
    source = ctx.guarded(spec.source, spec.rate)
    fields = target.fields if isinstance(target, PineconeDocumentStore) else None
    dimension = source.dimension()
    directory = import_directory(spec.bulk_import, spec.name, job_id)
    runs = [
        run
        for run in jobs_and_runs.runs_of(ctx.db, job_id)
        if run.state in LISTABLE_RUN_STATES and not run.listing_done
    ]

    def write_run(run: NamespaceRun) -> None:
        namespace = run.target_namespace if run.target_namespace is not None else run.source_namespace
        folder = f"{directory}/{namespace_directory(namespace)}"
        files.clear(folder)
        route = route_context(spec, source.name, run.source_namespace, namespace)
        records = _records(ctx, source, run.source_namespace, route, namespace, job_id, run.id)
        written = files.write(folder, records, dimension, fields)
        jobs_phase.files_written(ctx.db, job_id, run.id, written.records, files=written.files, bytes=written.bytes)

    # More threads than fetches a second would only queue at the rate limiter: a budget under 2/s writes one by one.
    threads = max(1, min(ctx.settings.import_write_threads, len(runs), math.floor(spec.rate.read_rps)))
    if threads == 1:
        for run in runs:
            write_run(run)
        return
    # The task's tally counts its threads' fetches too (Flower shows a step's requests and 429s).
    with ThreadPoolExecutor(threads, f"import-{job_id}", initializer=tally.adopt, initargs=(tally.current(),)) as pool:
        pending = [pool.submit(write_run, run) for run in runs]
        try:
            for future in as_completed(pending):
                future.result()
        finally:
            for future in pending:
                future.cancel()


def _records(
    ctx: WorkerContext,
    source: GuardedStore,
    source_namespace: str,
    route: RouteContext,
    namespace: str,
    job_id: int,
    run_id: int,
) -> Iterator[list[Record]]:
    """The namespace's records as the target takes them (enriched as a copy enriches them), fetched ≤ 1,000 at a
    time, less those of a creator (or twin) an erasure is erasing or has erased: skipped and named in the job's and
    the erasure's events (``erasure_ledger.record_held_in_job``), as a copy batch skips them; verification expects
    them absent."""
    held = jobs_erasure_ledger.HeldBack(ctx.db)  # asked again for each chunk: an erasure started meanwhile counts
    # The backup machinery (pyarrow) only in the task that needs it: every worker imports this module at start.
    from nsmigrate.workers.stores.backup.exporting import id_chunks

    for ids in id_chunks(source, source_namespace, FETCH_MAX_IDS):
        routed = route_records(source.fetch(source_namespace, ids), route).get(namespace, [])
        [kept] = held.keep_writes([(route.pair_of(namespace), routed)])
        yield kept
    for sentence in held.sentences():
        log.warning("import job %s, namespace %s: %s", job_id, display_namespace(source_namespace), sentence)
    jobs_erasure_ledger.record_held_in_job(ctx.db, held, ctx.worker_name, job_id, run_id, source_namespace)

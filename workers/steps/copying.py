"""One copy batch: fetch its ids from the source, route and enrich them, upsert them to the target in chunks that
respect Pinecone's limits, each request under the fleet-wide rate budget and retried with backoff (``ctx.guarded``).
The chunks go out ``spec.parallel_upserts`` at a time: a batch routed to many target namespaces would otherwise wait
out one round trip per namespace. When source and target are tables of the application's layout of one Postgres database
(``table_copies.in_database``), the batch runs ``INSERT … SELECT`` inside it instead; between two databases, its
rows pass from one to the other in Postgres's binary form as they are (``table_copies.between_databases``). A job that
writes text (an integrated target, or ``reembed``) turns the routed records into what its target takes
(``workers.transfer.text_writes``); ids
without text are set aside and recorded in the audit log (``records_not_written``), never written empty.

A copy never writes the data of a creator (or twin) an erasure is erasing or has erased: the statement that starts a
batch reads the erasure ledger of the job table with it (``jobs.erasure_ledger.LEDGER_KEY``, its lines read again only
when they changed), and the batch skips their records, writing the rest (``_hold_back``); the skipped ids are named
in the job's events (``records_held_back``), the erasure's (``write_held_back``) and the run's verification report,
which expects them absent, until an operator lifts the erasure. The erasure asks the job table the mirror question at
each place before it deletes (copies that may still write, which a started batch's run is, or wrote since its plan:
``workers.steps.erasing``), so whichever comes second sees the other: every batch started after an erasure was
recorded holds its subject back, and an erasure never checks a place empty while a batch started before it runs.
A delivery held back while its batch was started again (by Redis, or `resume`) or ended by another delivery, once an
erasure deleted, or past the visibility timeout after which an erasure stops waiting for it, writes nothing more
(``workers.transfer.write_fence``).

Idempotent: upserts overwrite by id, and a batch already ``done`` is skipped, so a redelivered task is harmless.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.errors import BatchFailed, NsmigrateError, Superseded, failure_text
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.routing.route import expected_metadata, route_context, route_records, run_route_context
from nsmigrate.orchestrator.routing.text import missing_text_reason
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.workers import metrics
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.steps.next_steps import advance
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import shared_hold
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate.workers.transfer import write_fence
from nsmigrate.workers.transfer.chunking import binary_bytes, estimate_bytes, sized_chunks
from nsmigrate.workers.transfer.concurrent_calls import run_parallel
from nsmigrate.workers.transfer.ratelimit import Reservation
from nsmigrate.workers.transfer.text_writes import for_target, records_per_request, tokens_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyFetch:
    """A small run's fetch begun before its batch was started (``listing.read_ahead``): its records, or the slot of
    the fetch budget it was given, at which ``listing.fetch_at_slot`` fetches them."""

    records: list[Record] | None = None
    slot: Reservation | None = None


def fetches_through_worker(spec: JobSpec) -> bool:
    """Whether a copy of ``spec`` fetches its records into the worker (not a copy inside Postgres, or of rows between
    databases): a small run's fetch may then begin before its batch is started (``listing.read_ahead``)."""
    return not (table_copies.in_database(spec) or table_copies.between_databases(spec))


def _copy_through_worker(
    ctx: WorkerContext, work: jobs_batches.BatchWork, early: EarlyFetch | None = None
) -> tuple[int, int, int, list[str]]:
    """Fetch (unless ``early`` did), route, enrich and upsert the batch; returns (vectors written, ids not found,
    bytes, target namespaces)."""
    spec = work.spec
    source, target = ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate)
    if early is not None and early.records is not None:
        records = early.records
    else:  # a slot taken ahead is fetched at by ``listing.fetch_at_slot``, never here
        records = source.fetch(work.source_namespace, work.ids)
    ctx_route = run_route_context(spec, source.name, work)
    by_target, unwritable = for_target(spec, route_records(records, ctx_route))
    names = sorted(by_target)
    kept = _hold_back(ctx, work, [(ctx_route.pair_of(ns), by_target[ns]) for ns in names])
    by_target = {ns: routed for ns, routed in zip(names, kept, strict=True) if routed}
    if unwritable:
        _record_unwritable(ctx, work, spec.text_from or "", unwritable)
    per_request = records_per_request(spec)
    # The application's pgvector tables are charged what they are sent: the vectors' binary form, not a Pinecone
    # request's JSON.
    measure = binary_bytes if isinstance(spec.target, PgvectorStoreSpec) and spec.target.documented else estimate_bytes
    uploads = [
        (namespace, chunk, size)
        for namespace, routed in by_target.items()
        for chunk, size in sized_chunks(routed, max_count=per_request, measure=measure)
    ]

    fence = _fence(ctx, work)

    def upload(item: tuple[str, list[Record], int]) -> None:
        namespace, chunk, size = item
        target.upsert(namespace, chunk, nbytes=size, tokens=tokens_of(spec, chunk), fence=fence)

    with target.written_lsns() as lsns:
        run_parallel(upload, uploads, spec.parallel_upserts)
    # What the target's lagging reads must reflect before verification believes them (``workers.steps.freshness``).
    freshness.record_written(ctx.redis, work.run_id, lsns)
    written = sum(len(chunk) for _, chunk, _ in uploads)
    return written, len(work.ids) - len(records), sum(size for _, _, size in uploads), sorted(by_target)


def _fence(ctx: WorkerContext, work: jobs_batches.BatchWork) -> write_fence.WriteFence:
    """What this delivery asks before each write: whether the batch is still its own (``write_fence``)."""
    lifetime_s = ctx.settings.visibility_timeout_s
    return write_fence.WriteFence(ctx.db, work.batch_id, work.attempt, work.started, lifetime_s, work.erasure_mark)


def _record_unwritable(
    ctx: WorkerContext, work: jobs_batches.BatchWork, text_from: str, unwritable: dict[str, list[str]]
) -> None:
    """Ids that have no text, per target namespace, into the audit log (verification reports them too)."""
    for namespace, ids in unwritable.items():
        log.warning(
            "batch %s: %d ids without text in %r not written to %r", work.batch_id, len(ids), text_from, namespace
        )
        jobs_and_runs.record_event(
            ctx.db,
            "records_not_written",
            ctx.worker_name,
            work.job_id,
            work.run_id,
            batch_id=work.batch_id,
            namespace=namespace,
            ids=ids,
            reason=missing_text_reason(text_from),
        )


def _table_enrichment(
    ctx: WorkerContext, work: jobs_batches.BatchWork, source: Any, target_ns: str
) -> tuple[dict[str, Any], list[str]]:
    """What a batch copied as rows (inside Postgres, or between two databases) merges into each row's ``metadata``,
    by the same rule as a copy through records (``routing.expected_metadata``), and the batch's ids less those of an
    erased creator (``_hold_back``: its records are read for that only while the ledger holds an erasure)."""
    spec = work.spec
    ctx_route = route_context(spec, source.name, work.source_namespace, target_ns)
    extra = expected_metadata(Record(id="", values=[], metadata={}), target_ns, ctx_route)
    if work.ledger_key is None:
        return extra, list(work.ids)
    rows = [
        Record(r.id, [], {**r.metadata, **extra})
        for start in range(0, len(work.ids), FETCH_MAX_IDS)  # a fetch's records at a time, their values let go
        for r in source.fetch(work.source_namespace, work.ids[start : start + FETCH_MAX_IDS])
    ]
    [kept] = _hold_back(ctx, work, [(ctx_route.pair_of(target_ns), rows)])
    held = set(work.ids) - {r.id for r in kept} - (set(work.ids) - {r.id for r in rows})
    return extra, [i for i in work.ids if i not in held]


def _copy_in_postgres(ctx: WorkerContext, work: jobs_batches.BatchWork) -> tuple[int, int, int, list[str]]:
    """Source and target are tables of one database: the rows go ``INSERT … SELECT`` inside Postgres, their
    metadata enriched by the same rule as a copy through the worker (``routing.expected_metadata``); no vector
    passes through this process. Returns (rows, ids not found, 0 bytes through the worker, [target namespace])."""
    spec, target_ns = work.spec, work.target_namespace
    assert target_ns is not None and isinstance(spec.target, PgvectorStoreSpec)
    source = ctx.store(spec.source)
    extra, ids = _table_enrichment(ctx, work, source, target_ns)
    tables = table_copies.RunTables(source, spec.target.table, work.source_namespace, target_ns)
    copied = table_copies.copy_batch_in_postgres(tables, ids, extra) if ids else 0
    return copied, len(ids) - copied, 0, [target_ns]


def _hold_back(
    ctx: WorkerContext, work: jobs_batches.BatchWork, writes: Sequence[tuple[tuple[str | None, str | None], list[Any]]]
) -> list[list[Any]]:
    """The records of each write (per target namespace: the (creator, twin) it was built for and its records as they
    will be written) less those of a creator (or twin) an erasure is erasing or has erased: written back, they would
    outlive the receipt that says they are gone. The ledger as the batch's start read it, not as the job's start did.
    What is held back is named in the job's events (``records_held_back``, with the erasure and how to lift it) and in
    the erasure's (``write_held_back``); the run's verification expects it absent."""
    held = jobs_erasure_ledger.HeldBack(subjects=lambda: jobs_erasure_ledger.subjects_of_key(ctx.db, work.ledger_key))
    kept = held.keep_writes(writes)
    for sentence in held.sentences():
        log.warning("batch %s (job %s): %s", work.batch_id, work.job_id, sentence)
    jobs_erasure_ledger.record_held_in_job(
        ctx.db, held, ctx.worker_name, work.job_id, work.run_id, work.source_namespace, batch=work.batch_id
    )
    return kept


def _copy_between_databases(ctx: WorkerContext, work: jobs_batches.BatchWork) -> tuple[int, int, int, list[str]] | None:
    """Source and target are the application's tables in two databases: the batch's rows go from one to the other in
    Postgres's binary form as they are, as the single-process rival moves a table (``table_copies.copy_rows``), never
    made records; metadata enriched by the same rule as a copy through records. Returns (rows, ids not found, bytes
    passed, [target namespace]), or None for a table with a column of a type that cannot pass so: it goes through
    records."""
    spec, target_ns = work.spec, work.target_namespace
    assert target_ns is not None
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    assert isinstance(source, DocumentedPgvectorStore) and isinstance(target, DocumentedPgvectorStore)
    extra, ids = _table_enrichment(ctx, work, source, target_ns)
    if not ids:
        return 0, 0, 0, [target_ns]
    # A table's several batches go side by side already; its only one goes in streams of its own.
    streams = spec.parallel_upserts if work.only_batch else 1
    done = target.copy_rows_from(source, work.source_namespace, target_ns, ids, extra, streams=streams)
    if done is None:
        return None
    copied, passed = done
    return copied, len(ids) - copied, passed, [target_ns]


Step = Callable[[WorkerContext, jobs_batches.BatchWork], tuple[int, int, int, list[str]]]
#: A batch copied inside Postgres, or None: its rows cannot pass as they are, it goes through records.
TableStep = Callable[[WorkerContext, jobs_batches.BatchWork], tuple[int, int, int, list[str]] | None]


def _a_fetch_at_a_time(step: Step, ctx: WorkerContext, work: jobs_batches.BatchWork) -> tuple[int, int, int, list[str]]:
    """``step`` over the batch's ids a fetch's worth at a time: a batch between the application's tables may hold
    more (``jobspec.TABLE_BATCH_MAX_IDS``), and all of them as records at once would be memory that rows passed as they
    are never take."""
    if len(work.ids) <= FETCH_MAX_IDS:
        return step(ctx, work)
    vectors = missing = nbytes = 0
    targets: set[str] = set()
    for start in range(0, len(work.ids), FETCH_MAX_IDS):
        done = step(ctx, dataclasses.replace(work, ids=work.ids[start : start + FETCH_MAX_IDS]))
        vectors, missing, nbytes = vectors + done[0], missing + done[1], nbytes + done[2]
        targets.update(done[3])
    return vectors, missing, nbytes, sorted(targets)


def _copy_and_finish(
    ctx: WorkerContext, work: jobs_batches.BatchWork, early: EarlyFetch | None
) -> tuple[jobs_batches.AfterBatch | None, int, str | None]:
    """Copy a started batch and finish it. Returns (what ``finish_batch`` returned, vectors written, None) or, when it
    failed for good, (None, 0, its error); the job table or Redis unreachable raises, for Celery to send it again."""
    spec, batch_id = work.spec, work.batch_id
    try:
        one_target = work.target_namespace is not None
        in_postgres: TableStep | None = None
        if one_target and table_copies.in_database(spec):
            in_postgres = _copy_in_postgres
        elif one_target and table_copies.between_databases(spec):
            in_postgres = _copy_between_databases
        done = None
        if in_postgres is not None:  # it writes past upserts: it holds its target as a write does, deletions wait
            assert work.target_namespace is not None
            with shared_hold(ctx.guarded(spec.target, spec.rate), work.target_namespace):
                _fence(ctx, work).check(None)  # one job-table read: the batch is one statement
                done = in_postgres(ctx, work)
        if done is not None:
            vectors, missing, nbytes, targets = done
        elif early is not None:  # one fetch's worth (a small run)
            vectors, missing, nbytes, targets = _copy_through_worker(ctx, work, early)
        else:  # its upserts hold their namespaces themselves (``GuardedStore``), outside any hold of this batch's
            vectors, missing, nbytes, targets = _a_fetch_at_a_time(_copy_through_worker, ctx, work)
        outcome = jobs_batches.finish_batch(
            ctx.db,
            batch_id,
            vectors=vectors,
            missing=missing,
            nbytes=nbytes,
            targets=targets,
            max_in_flight=spec.max_batches_in_flight,
        )
        return outcome, vectors, None
    except Superseded:
        raise  # the batch is another delivery's now: this one neither finishes nor fails it
    except NsmigrateError as e:
        # Retries are exhausted or retrying cannot help: the batch waits for `nsmigrate retry` with its error.
        log.warning("batch %s (job %s, seq %s) failed: %s", batch_id, work.job_id, work.seq, e)
        return None, 0, failure_text(e)
    except INFRASTRUCTURE_ERRORS:
        raise  # the job table or Redis is unreachable: Celery sends the task again (workers.fleet.tasks)
    except Exception as e:
        # Anything unforeseen (an unmapped SDK or transport error, a bug) must not leave the batch `running`
        # forever: it fails visibly with its error, and `nsmigrate retry` re-runs it.
        log.exception("batch %s (job %s, seq %s) failed unexpectedly", batch_id, work.job_id, work.seq)
        return None, 0, f"unexpected {type(e).__name__}: {e}"


def lost_text(lost: int) -> str:
    """Why a batch whose workers kept dying is not started again (its error in the job table and Flower)."""
    return (
        f"the worker copying this batch died {lost} time{'s' if lost != 1 else ''} before it finished (killed: out of "
        "memory or SIGKILL, or its host lost); it is not started again (NSMIGRATE_BATCH_MAX_LOST_ATTEMPTS) — give "
        "the workers more memory or the spec a smaller batch_size, then `nsmigrate retry`"
    )


def copy_batch(
    ctx: WorkerContext,
    batch_id: int,
    *,
    again: bool = False,
    redelivered: bool = False,
    started: jobs_batches.BatchWork | None = None,
    early: EarlyFetch | None = None,
) -> int:
    """Copy one batch; returns the vectors it wrote (0 when it was done already, or is another delivery's: see
    ``workers.transfer.write_fence``). ``again``: the task ran before (redelivered, or retried after an outage); see
    ``workers.steps.next_steps.advance``. ``redelivered``: Redis handed this message out again, its worker having
    died (``jobs_batches.start_batch`` counts a lost attempt when the batch is still ``running``); after
    ``batch_max_lost_attempts`` of them the batch fails instead of running again, so a batch that kills its worker
    (out of memory) is not redelivered for ever. ``started``: the batch was started for this worker as it was
    recorded (``jobs_batches.record_and_claim_batch``), so it is not started again; ``early``: its fetch, begun
    before it was (``listing.read_ahead``).

    Raises:
        BatchFailed: the batch failed for good; it is recorded ``failed`` with the error and what follows it was
            sent, so raising only tells Celery (and Flower) the task failed.
    """
    work = started or write_fence.started_after_the_mark(
        ctx.redis, lambda: jobs_batches.start_batch(ctx.db, batch_id, ctx.worker_name, redelivered=redelivered)
    )
    if work is None:
        if again:  # done by the delivery that died: make sure what follows the batch was sent
            run = jobs_and_runs.get_run(ctx.db, jobs_batches.run_of_batch(ctx.db, batch_id))
            advance(
                ctx, run.id, run.job_id, run.source_namespace, jobs_and_runs.job_spec(ctx.db, run.job_id), again=True
            )
        return 0
    spec = work.spec
    outcome: jobs_batches.AfterBatch | None = None  # what follows, when the batch finished
    vectors, error = 0, None
    if work.lost_attempts >= ctx.settings.batch_max_lost_attempts:
        error = lost_text(work.lost_attempts)
        log.error("batch %s (job %s, seq %s): %s", batch_id, work.job_id, work.seq, error)
    else:
        try:
            outcome, vectors, error = _copy_and_finish(ctx, work, early)
        except Superseded as e:
            log.warning("batch %s (job %s, seq %s): %s", batch_id, work.job_id, work.seq, e)
            metrics.batch_superseded()
            if e.expired:  # no other delivery has it: one sent now starts it with the ledger as it is now
                namespace = display_namespace(work.source_namespace)
                ctx.dispatcher.copy_batch(batch_id, job_id=work.job_id, run_id=work.run_id, namespace=namespace)
            return 0
    if error is not None and not jobs_batches.fail_batch(ctx.db, batch_id, error, ctx.worker_name, work.attempt):
        # Started again (or ended) by another delivery meanwhile: the batch, and what follows it, are that one's.
        log.warning(
            "batch %s (job %s, seq %s): not failed, another delivery has it: %s", batch_id, work.job_id, work.seq, error
        )
        metrics.batch_superseded()
        return 0
    if error is not None:
        metrics.batch_failed()
    else:
        metrics.batch_done(vectors)
    advance(ctx, work.run_id, work.job_id, work.source_namespace, spec, again=again, outcome=outcome)
    if error is not None:
        raise BatchFailed(error, job=work.job_id, namespace=display_namespace(work.source_namespace), batch=batch_id)
    return vectors

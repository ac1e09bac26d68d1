"""Verification of one namespace run: list the source, fetch both sides, compare, count, store the verdict.

The judging is pure (``orchestrator.verification.comparisons``); this module only does the I/O, every store request
through ``ctx.guarded`` (fleet-wide rate budget + retries). It works chunk by chunk (≤ 1,000 ids) so a namespace of
millions of vectors is never held in memory: only ids are kept, never vectors.

What is checked (``spec.verify``):

- **ids**: each source id is fetched from the target namespace ``orchestrator.routing.route`` sends it to; absent →
  missing.
- **contents**: for all ids or a deterministic sample, values within float32 tolerance and metadata equal to
  source + enrichment (``routing.expected_metadata``: the copy's own rule, never re-implemented here).
- **counts** and **extras**: only for a run with a fixed target namespace that no other run of the job writes into;
  there the target may hold no other ids, and the target's count must equal the source's, polled until stable
  unless the first reading already agrees with the listing (``_check_count``); a settled count that differs while
  the source, listed again, changed since verification began fails at once instead of waiting ``count_timeout_s``.
  Where a count is a reading of the whole index's stats (a pod, Pinecone Local), the verifications of a process
  share readings (``workers.stores.shared_counts``). A shared target's extra ids are reported, not judged (they belong
  to other runs, or, with ``allow_id_overwrite``, to the namespace before the job).
- **queries** (``query_samples > 0``, unshared fixed targets): top-k ids of sample vectors on both sides, and the
  target's query latency (``workers.steps.latency``: every run of a small job, a sample of the runs of a large one).
- **text** (a job that writes text, ``spec.text_from``): a source id without text is reported as not written (and
  must not be in the target); an integrated target's records are compared by id, text and fields, never values
  (its model made them), and a sample is searched by its own text (``text_search_samples``); a re-embedded record's
  values must equal the embedding of its source text.

The source is listed *now*, not taken from the copy's batches, so a source that changed after the copy (live writes)
shows up as missing ids or differing contents and fails verification. Any error fails the run with the error in the
report, except an outage of the job table or Redis (``INFRASTRUCTURE_ERRORS``): then the task is retried and the run
stays ``verifying`` until it is (``nsmigrate resume`` re-enqueues it too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.models import JobKind, NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import (
    RouteContext,
    dropped_ids,
    expected_metadata,
    route_counts,
    route_records,
    run_route_context,
)
from nsmigrate.orchestrator.routing.text import missing_text_reason, record_text, split_by_text
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.orchestrator.tenancy.erasure import held_back_ids
from nsmigrate.orchestrator.verification.comparisons import (
    Report,
    compare_id_sets,
    compare_record,
    counts_stable,
    fields_comparer,
    fingerprint,
    query_summary,
    sample_ids,
    text_search_summary,
)
from nsmigrate.workers import metrics
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import freshness, next_steps
from nsmigrate.workers.steps.latency import measures_latency, time_run
from nsmigrate.workers.stores.base import list_all_ids
from nsmigrate.workers.stores.pgvector.table_copies import RunTables, compare_in_postgres, finish_load, in_database
from nsmigrate.workers.transfer.chunking import chunks
from nsmigrate.workers.transfer.concurrent_calls import beside, run_parallel
from nsmigrate.workers.transfer.text_writes import embedder_for

log = logging.getLogger(__name__)

COUNT_POLL_INTERVAL_S = 0.25  # between count readings (when polled); counts_stable needs 3 equal ones in a row
ROUTED_FETCHES_AT_ONCE = 8  # a routed chunk's target namespaces fetched at once: the seeds' default namespace has 30


def verify_run(ctx: WorkerContext, run_id: int) -> dict[str, Any]:
    """Verify one namespace run and record the verdict (``verified`` or ``verify_failed``).

    Returns:
        The report as stored on the run (see ``orchestrator.verification.comparisons.Report.to_json``); ``{}`` when the
        run is not in a state that can be verified (not copied yet, cleaned, cancelled).

    When the report passed and ``spec.cleanup.mode == "auto"``, the cleanup task is enqueued (it then finishes the
    job); otherwise the job is marked finished here once every run is final.
    """
    started = jobs_verdicts.start_verify(ctx.db, run_id)
    if started is None:
        log.info("run %s is not ready for verification; skipped", run_id)
        return {}
    data, finishing_job = _verify(ctx, *started)
    if finishing_job is not None:
        jobs_and_runs.maybe_finish_job(ctx.db, finishing_job)
    return data


def verify_runs(
    ctx: WorkerContext, run_ids: Sequence[int], job_id: int, *, rejudge: bool = False
) -> list[dict[str, Any]]:
    """Verify a group of runs of job ``job_id`` (small namespaces copied by one task: ``flow.verifications_grouped``;
    or asked for by `nsmigrate verify`: ``launch.request_verification``) one after the other, all moved to
    ``verifying`` first by one statement (``jobs_verdicts.start_verifications``). Unless ``rejudge`` (`nsmigrate
    verify`), a run that has its verdict already keeps it: the task was sent again after an outage or a killed worker,
    and a verified run may be on its way to cleanup. A run cancelled meanwhile gets no verdict; the others go on.

    Whether the job is finished is asked once, after the group, not after each verdict. It is asked too when no run
    was started here: a group sent again after its worker died past its last verdict still owes the job its end
    (``_ends_with_its_verdicts``).

    Returns:
        The reports of the runs judged here, as stored on them."""
    started = jobs_verdicts.start_verifications(ctx.db, run_ids, judged_too=rejudge)
    owes_finish = False
    reports: list[dict[str, Any]] = []
    for run, neighbours in started:
        try:
            report, finishing_job = _verify(ctx, run, neighbours)
        except StateError as e:
            log.info("run %s (job %s) was not judged: %s", run.id, job_id, e)
            continue
        reports.append(report)
        owes_finish |= finishing_job is not None
    if owes_finish or (not started and _ends_with_its_verdicts(ctx, job_id)):
        jobs_and_runs.maybe_finish_job(ctx.db, job_id)
    return reports


def _ends_with_its_verdicts(ctx: WorkerContext, job_id: int) -> bool:
    """Whether the job is finished after its last verdict: a migration or sync whose cleanup is not ``auto`` (there
    a verified run's cleanup finishes it). A rollback judges its own runs."""
    if jobs_and_runs.find_job(ctx.db, job_id).kind not in (JobKind.MIGRATE, JobKind.SYNC):
        return False
    return jobs_and_runs.job_spec(ctx.db, job_id).cleanup.mode != "auto"


def _verify(
    ctx: WorkerContext, run: NamespaceRun, neighbours: jobs_verdicts.Neighbours
) -> tuple[dict[str, Any], int | None]:
    """Verify a run moved to ``verifying``, record its verdict and send its cleanup. Returns the report and the job
    id when the caller must then ask whether the job is finished (None: its cleanup will ask).

    Raises:
        StateError: the run moved meanwhile (its job was cancelled); nothing was recorded.
    """
    run_id = run.id
    started = time.perf_counter()
    report = Report(source_namespace=run.source_namespace)
    spec: JobSpec | None = None
    try:
        spec = jobs_and_runs.job_spec(ctx.db, run.job_id)
        if spec.target.kind == "pgvector" and spec.target.documented:
            # Seed 004's indexes come after the bulk load (an ivfflat built on an empty table is useless), and
            # ANALYZE, so the copy's tables answer queries as planned before they are judged.
            targets = [run.target_namespace] if run.target_namespace is not None else run.target_namespaces or []
            finish_load(ctx.store(spec.target), targets, spec.target.index)
        verifier: type[_Verifier] = _CollectionVerifier if spec.strategy == "collection" else _Verifier
        if in_database(spec) and run.target_namespace is not None and not spec.verify.query_samples:
            verifier = _InPostgresVerifier
        verifier(ctx, run, neighbours, spec, report).run()
    except INFRASTRUCTURE_ERRORS:
        # The job table or Redis is down, not the data: the run stays `verifying` and the task is retried (or
        # re-enqueued by `resume`) instead of failing verification over an outage.
        raise
    except Exception as e:  # any other failure must end as verify_failed: a run never stays in verifying
        log.warning("verification of run %s (job %s) failed with an error: %s", run_id, run.job_id, e)
        report.error = f"{type(e).__name__}: {e}"
    data = report.to_json()
    assert run.verifying_since is not None  # the start that moved it to verifying set it
    jobs_verdicts.finish_verify(
        ctx.db, run_id, run.source_namespace, data, report.passed, ctx.worker_name, started_at=run.verifying_since
    )
    next_steps.run_settled(ctx, run.job_id, run_id)
    metrics.verification_done(report.passed, report.ids_expected, time.perf_counter() - started)
    if report.passed and spec is not None and spec.cleanup.mode == "auto":
        ctx.dispatcher.cleanup_namespace(run_id, job_id=run.job_id, namespace=display_namespace(run.source_namespace))
        return data, None
    return data, run.job_id


class _Verifier:
    """One verification pass; fills ``report`` as it goes, so an error keeps what was found before it."""

    def __init__(
        self, ctx: WorkerContext, run: NamespaceRun, neighbours: jobs_verdicts.Neighbours, spec: JobSpec, report: Report
    ) -> None:
        self.ctx, self.run_, self.neighbours, self.spec, self.report = ctx, run, neighbours, spec, report
        self.checks = spec.verify
        self.source = ctx.guarded(spec.source, spec.rate)
        self.target = ctx.guarded(spec.target, spec.rate)
        self.route: RouteContext = run_route_context(spec, self.source.name, run)
        self.expected_by_ns: dict[str, set[str]] = {}
        self.found_by_ns: dict[str, set[str]] = {}  # ids fetch found in each target namespace
        self.listed: dict[str, set[str]] = {}  # a target namespace as listed while its reads were awaited
        self.written_lsns = freshness.written(ctx.redis, run.id) if spec.target.kind == "pinecone" else {}
        self.query_vectors: dict[str, list[float]] = {}
        self.latency_vectors: list[list[float]] = []  # the first source vectors, timed as queries at the end
        self.latency_wanted = 0  # how many: the spec's latency_samples in a run that times queries (run())
        report.ids_checked = self.checks.ids
        report.content_mode = self.checks.contents
        self.text_from = spec.text_from
        self.fields_compare = fields_comparer(spec) or (lambda *_: None)
        self.text_sample: set[str] = set()  # ids an integrated target is searched for by their text
        self.text_queries: list[tuple[str, str, str]] = []  # (target namespace, id, text)
        #: The erasure ledger as the pass began: an erased creator's records were held back by the copy.
        self.erasures = jobs_erasure_ledger.erasure_subjects(ctx.db)
        text = spec.text_records or spec.reembed
        if text is not None:
            report.unwritable_fail = text.missing_text == "fail"
            report.unwritable_reason = missing_text_reason(text.text_from)

    @property
    def _seed(self) -> str:
        # Per job and namespace: a re-run of verification checks the same sample.
        return f"{self.run_.job_id}:{display_namespace(self.run_.source_namespace)}"

    # -- the pass --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        ns = self.run_.source_namespace
        if self.source.capabilities.reads_lag:  # a listing that lags would miss what the application just wrote
            wait = freshness.reads_now(self.source, ns, self.checks.freshness_timeout_s, side="source")
            if wait is not None and wait.reason is not None:
                self.report.reads_behind.append(wait.reason)
            elif wait is None:  # said, not silent: what this verdict judged may lack a write of the last moments
                self.report.notes.append(freshness.UNAWAITED_SOURCE)
        ids = list_all_ids(self.source, ns)
        self.report.source_count = len(ids)
        self.report.enumeration = self.source.capabilities.enumeration
        if self.report.enumeration != "list":
            # A catalogue or a sweep may come up short where a list cannot: hold it against the source's own count.
            self.report.source_stats_count = self.source.count(ns)
        self.report.source_fingerprint = fingerprint(ids)
        content_ids = self._content_sample(ids)
        fixed = self.run_.target_namespace
        overwrites, writers = self.spec.allow_id_overwrite, self.neighbours.writers  # others' ids may be there too
        shared = fixed is not None and (overwrites or jobs_verdicts.target_is_shared(self.run_, writers))
        if measures_latency(self.run_, self.neighbours, self.checks):
            self.latency_wanted = self.checks.latency_samples
        elif self.checks.latency_samples:
            self.report.notes.append("query latency is timed in a sample of the job's runs, not in this one")
        query_ids: set[str] = set()
        # The query check compares rankings of the same vectors on both sides; a text job wrote other vectors.
        if self.checks.query_samples and fixed is not None and not shared and self.text_from is None:
            query_ids = set(sample_ids(ids, self.checks.query_samples, "query:" + self._seed))
        if self.spec.text_records is not None:
            self.report.notes.append("integrated target: ids, text and fields compared; values are the model's")
            if self.checks.text_search_samples:
                self.text_sample = set(sample_ids(ids, self.checks.text_search_samples, "text:" + self._seed))
        # Without the ids check only the sampled records are fetched at all.
        sampled = content_ids | query_ids | self.text_sample
        # While the ledger holds an erasure, every source record is read: the count expects theirs absent.
        whole = self.checks.ids or (bool(self.erasures) and self.checks.counts)
        to_fetch = ids if whole else [i for i in ids if i in sampled]
        if self.target.capabilities.fetch_lags:
            # Its fetch shows the copies only once its reads reflect the job's writes: waited for by their LSNs first.
            for ns in sorted(self.written_lsns):
                self._await_reads(ns)
        for chunk in chunks(to_fetch, FETCH_MAX_IDS):
            self._check_chunk(chunk, content_ids, query_ids)
        if self.text_queries:
            for ns in sorted({ns for ns, _, _ in self.text_queries}):
                self._await_reads(ns)
            self._check_text_search()
        self.report.target_namespaces = sorted(set(self.expected_by_ns) | ({fixed} if fixed is not None else set()))
        timing = None
        if self.latency_vectors:
            queries = (self.target, self.run_, self.neighbours, self.expected_by_ns, self.latency_vectors, self.checks)
            if self.checks.latency_p95_ms is None:  # the figures only inform: timed beside the checks below
                timing = beside(partial(time_run, *queries))
            else:  # a limit judges the run: timed alone, as ever
                self.report.latency = time_run(*queries)
        try:
            self._judge_target(ids, fixed, shared, query_ids)
        finally:
            if timing is not None:
                self.report.latency = timing.result()

    def _judge_target(self, ids: list[str], fixed: str | None, shared: bool, query_ids: set[str]) -> None:
        # An empty source proves nothing where the target is not judged whole (routed, shared, neither ids nor counts
        # checked): a run that copied ids then fails. A target of its own is judged whole below: 0/0 passes only when
        # its copies went too (the app deleted them through both sides, or `sync --allow-vanished-source`).
        judged_whole = fixed is not None and not shared and (self.checks.ids or self.checks.counts)
        if not ids and not judged_whole:
            self.report.source_vanished = self.run_.copied
        if not ids and not self.run_.copied:
            # Nothing copied, nothing listed, though the plan counted vectors here: judged whole or not, the target
            # cannot show that the right store was read.
            self.report.planned_unseen = self.run_.source_count
        if fixed is None:
            self.report.notes.append("routed run: counts and extra ids are not judged per source namespace")
            return
        if shared:
            self.report.notes.append(
                f"target namespace {display_namespace(fixed)!r} is shared (other runs, or allow_id_overwrite): "
                "counts not compared, extra ids reported but not judged"
            )
        listing_agrees = False
        if self.checks.ids or (not shared and self.checks.counts) or query_ids:
            self._await_reads(fixed)
        if self.checks.ids:
            listing_agrees = self._check_extras(fixed, fail=not shared)
        if not ids and judged_whole and (self.report.extra_count or not self.checks.ids):
            self.report.source_vanished = self.run_.copied  # its copies are still there: the source went alone
        if not shared and self.checks.counts:
            self._check_count(fixed, listing_agrees=listing_agrees)
        if query_ids:
            self._check_queries(fixed)
        elif self.checks.query_samples:
            self.report.notes.append(
                "query check skipped: only for an unshared, fixed target namespace of a job that copies vectors"
            )

    def _content_sample(self, ids: Sequence[str]) -> set[str]:
        mode = self.checks.contents
        if mode == "all":
            return set(ids)
        if mode == "sample":
            return set(sample_ids(ids, self.checks.sample_size, "contents:" + self._seed))
        return set()

    def _check_chunk(self, chunk: Sequence[str], content_ids: set[str], query_ids: set[str]) -> None:
        source_ns, fixed = self.run_.source_namespace, self.run_.target_namespace
        copies: dict[str, dict[str, Record]] = {}  # target namespace → what it answered for the chunk's ids
        if fixed is None:
            records = self.source.fetch(source_ns, chunk)
        else:  # where the copies are is known: both sides fetched at once, one round trip instead of two
            fetching = beside(partial(self.target.fetch, fixed, chunk))
            records = self.source.fetch(source_ns, chunk)
            copies[fixed] = {r.id: r for r in fetching.result()}
        by_id = {r.id: r for r in records}
        # Listed a moment ago, gone now: something is writing the source. Never judged as "fine".
        self.report.vanished_count += sum(1 for i in chunk if i not in by_id)
        for id_ in query_ids.intersection(by_id):
            self.query_vectors[id_] = list(by_id[id_].values)
        wanted = self.latency_wanted - len(self.latency_vectors)
        self.latency_vectors.extend(list(r.values) for r in records[: max(0, wanted)])
        if self.run_.target_namespace is None:
            routes = self.report.routes if self.report.routes is not None else {}
            for route, n in route_counts(records, self.route).items():
                routes[route] = routes.get(route, 0) + n
            self.report.routes = routes
            self.report.add_dropped(dropped_ids(records, self.route))
        routed = route_records(records, self.route)
        if fixed is None:  # its copies are in many namespaces: fetched at once

            def fetch_copies(ns: str) -> None:
                copies[ns] = {r.id: r for r in self.target.fetch(ns, [r.id for r in routed[ns]])}

            run_parallel(fetch_copies, sorted(routed), ROUTED_FETCHES_AT_ONCE)
        for ns, sent in routed.items():
            self._check_targets(ns, [by_id[r.id] for r in sent], content_ids, copies[ns])

    def _held_back(self, sources: Sequence[Record]) -> set[str]:
        """Ids of ``sources`` the copy held back by the same rule (``copying._hold_back``)."""
        held = held_back_ids(self.erasures, sources, self.route)
        self.report.add_held_back(sorted(held))
        return held

    def _check_targets(self, ns: str, sources: list[Record], content_ids: set[str], copies: dict[str, Record]) -> None:
        """``copies``: what ``ns`` answered for the chunk's ids (``_check_chunk``)."""
        if self.text_from is not None:
            split = split_by_text(sources, self.text_from)
            self.report.add_unwritable(split.without_text)  # never written: not expected in the target either
            sources = split.with_text
        held = self._held_back(sources)  # never written either, as the copy asks after the text split
        sources = [r for r in sources if r.id not in held]
        if self.text_from is not None:
            self.text_queries.extend(
                (ns, r.id, record_text(r.metadata, self.text_from) or "") for r in sources if r.id in self.text_sample
            )
        if not sources:
            return
        found = {r.id: copies[r.id] for r in sources if r.id in copies}  # none held back, none without text
        reembedded = self._reembedded([r for r in sources if r.id in content_ids])
        self.expected_by_ns.setdefault(ns, set()).update(r.id for r in sources)
        self.found_by_ns.setdefault(ns, set()).update(found)
        if self.checks.ids:
            self.report.ids_expected += len(sources)
            self.report.add_missing(r.id for r in sources if r.id not in found)
        for src in sources:
            if src.id not in content_ids:
                continue
            target = found.get(src.id)
            if target is None and self.checks.ids:
                continue  # already counted as missing
            self.report.content_checked += 1
            reason = self._compare(reembedded.get(src.id, src), target, expected_metadata(src, ns, self.route))
            if reason is not None:
                self.report.add_mismatch(src.id, reason)

    def _reembedded(self, sources: list[Record]) -> dict[str, Record]:
        """For a re-embedding: the sources as the copy must have written them (values: the embedding of their text,
        one ``embed`` call for the chunk); else nothing."""
        reembed = self.spec.reembed
        if reembed is None or not sources:
            return {}
        vectors = embedder_for(reembed).embed([record_text(r.metadata, reembed.text_from) or "" for r in sources])
        return {r.id: Record(id=r.id, values=v, metadata=r.metadata) for r, v in zip(sources, vectors, strict=True)}

    def _compare(self, src: Record, target: Record | None, expected: dict[str, Any]) -> str | None:
        """Why ``target`` is not what the copy of ``src`` must be (``src`` re-embedded already, for a re-embedding),
        or None. An integrated target holds the text and fields; its values are the model's, never compared."""
        if self.spec.text_records is not None:
            return self.fields_compare(src, target, expected)
        return compare_record(src, target, expected, self.checks.tolerance)

    def _check_text_search(self) -> None:
        """Each sampled record searched by its own text in its target namespace: its top-k must contain it."""
        top_k = self.checks.top_k
        found = [id_ in self.target.search_text(ns, text, top_k) for ns, id_, text in sorted(self.text_queries)]
        self.report.text_search = text_search_summary(found, top_k, self.checks.text_search_min_hit_rate)

    def _count(self, ns: str) -> int:
        """The target namespace's count from a reading taken after this call (shared:
        ``workers.stores.shared_counts``)."""
        inner = self.target.inner
        if inner.counts_by_index:
            return self.ctx.shared_counts.count(inner, self.target.namespaces, ns)
        return self.target.count(ns)

    def _check_count(self, ns: str, *, listing_agrees: bool = False) -> None:
        """Poll the target's count until three readings agree (stats are eventually consistent). A stable count
        that still differs from the source is given until ``count_timeout_s`` to catch up, unless the run has
        already failed for another reason (then waiting cannot change the verdict) or the source changed since it was
        listed (``_source_changed``: the application is still writing it; the run fails at once, ``nsmigrate sync``
        follows).

        ``listing_agrees``: the target namespace, listed after the copy, holds exactly the expected ids (and each
        was fetched and compared). Then a first reading equal to the expected count is final. Polling tells a
        count still moving (stats lag behind writes, up or down) from a settled one; here the reading lands on the
        very number that the listing, an independent and later view, proves the namespace holds, so it could only
        be wrong if the stats and the listing both missed the same vectors, which further readings a fraction of a
        second apart would not reveal either. Any other first reading is polled as before."""
        expected = self.report.expected_target_count
        deadline = time.monotonic() + self.checks.count_timeout_s
        readings: list[int] = [self._count(ns)]
        agreed = listing_agrees and readings[0] == expected
        while not agreed:
            stable = counts_stable(readings)
            if stable and (readings[-1] == expected or not self.report.passed):
                break
            if stable and self._source_changed():
                break  # the application is writing the source: the count will not agree, however long we wait
            if time.monotonic() >= deadline:
                break
            time.sleep(COUNT_POLL_INTERVAL_S)
            readings.append(self._count(ns))
        self.report.count_readings = readings
        self.report.count_stable = agreed or counts_stable(readings)
        self.report.target_count = readings[-1]

    def _source_changed(self) -> bool:
        """Whether the source, listed again now, differs from its listing at the start (asked once, when the
        target's settled count differs from that listing). Only a listed source is asked: a list is cheap to repeat
        and a different one proves a write (pgvector's is exact; Pinecone's can only lag, never invent ids). A
        source that did not move keeps today's wait, since Pinecone's counts lag behind writes."""
        if self.report.source_count_after is not None or self.report.enumeration != "list":
            return self.report.source_changed
        ids = list_all_ids(self.source, self.run_.source_namespace)
        self.report.source_count_after = len(ids)
        self.report.source_changed = fingerprint(ids) != self.report.source_fingerprint
        return self.report.source_changed

    def _await_reads(self, ns: str) -> None:
        """Wait, at most ``verify.freshness_timeout_s``, until the target's lagging reads of ``ns`` (list, query,
        counts) reflect the job's writes there: by LSN when the copy recorded one and the store tells how far its
        reads are, else until its listing holds every id ``fetch`` found (``workers.steps.freshness``). Reads still
        behind then fail the run with that bound named; a pgvector target's reads do not lag."""
        if ns in self.report.reads or self.spec.target.kind != "pinecone":
            return
        found = self.found_by_ns.get(ns, set())
        probe = freshness.PageProbe(self.target, ns)  # the read that shows the writes is then the listing to judge

        def shows() -> bool:
            self.listed[ns] = set(list_all_ids(self.target, ns))
            return found <= self.listed[ns]

        wait = freshness.await_reads(
            self.target,
            ns,
            lsn=self.written_lsns.get(ns),
            shows=shows if found else None,
            timeout_s=self.checks.freshness_timeout_s,
            probe=probe if len(self.expected_by_ns.get(ns, ())) <= LIST_MAX_PAGE_IDS else None,
        )
        if wait.by == "lsn":
            self.listed.pop(ns, None)  # a listing taken before the reads caught up is not the one to judge
            if (whole := probe.whole(wait)) is not None:
                self.listed[ns] = set(whole.ids)  # the read that reached the writes' LSN
        self.report.reads[ns] = wait.to_json()
        if wait.reason is not None:
            self.report.reads_behind.append(wait.reason)

    def _check_extras(self, ns: str, *, fail: bool) -> bool:
        """List the target namespace (or take the listing that showed its reads caught up): ids the source does not
        have there are extras. Returns whether it holds exactly the expected ids."""
        target_ids = self.listed.pop(ns, None)
        if target_ids is None:
            target_ids = set(list_all_ids(self.target, ns))
        expected = self.expected_by_ns.get(ns, set())
        self.report.set_extras(compare_id_sets(expected, target_ids), fail=fail)
        return target_ids == expected and self.report.missing_count == 0

    def _check_queries(self, ns: str) -> None:
        source_ns, top_k = self.run_.source_namespace, self.checks.top_k
        source_results: list[list[str]] = []
        target_results: list[list[str]] = []
        latencies_ms: list[float] = []
        for id_ in sorted(self.query_vectors):
            vector = self.query_vectors[id_]
            source_results.append(self.source.query(source_ns, vector, top_k))
            result, ms = self.target.timed_query(ns, vector, top_k)
            target_results.append(result)
            latencies_ms.append(ms)
        self.report.query = query_summary(
            source_results, target_results, latencies_ms, top_k, self.checks.query_min_overlap
        )


class _InPostgresVerifier(_Verifier):
    """A run whose source and target are the application's tables in one database (``pgnamespaces.in_database``): ids
    and contents are compared inside Postgres, chunk by chunk, with the copy's own enrichment rule; values must be equal
    exactly (a copy inside Postgres is bit for bit). Counts and extra ids are checked as for every run."""

    def run(self) -> None:
        self.report.notes.append("ids and contents compared inside Postgres (source and target in one database)")
        super().run()

    def _check_chunk(self, chunk: Sequence[str], content_ids: set[str], query_ids: set[str]) -> None:
        ns = self.run_.target_namespace
        assert ns is not None and isinstance(self.spec.target, PgvectorStoreSpec)
        extra = expected_metadata(Record(id="", values=[], metadata={}), ns, self.route)
        source = self.ctx.store(self.spec.source)
        if self.erasures:
            held = self._held_back(source.fetch(self.run_.source_namespace, chunk))
            chunk = [i for i in chunk if i not in held]
        tables = RunTables(source, self.spec.target.table, self.run_.source_namespace, ns)
        found = compare_in_postgres(tables, chunk, extra)
        self.report.vanished_count += len(chunk) - len(found)
        self.expected_by_ns.setdefault(ns, set()).update(found)
        if self.checks.ids:
            self.report.ids_expected += len(found)
            self.report.add_missing(i for i, reason in found.items() if reason == "missing")
        for id_, reason in found.items():
            if id_ not in content_ids or (reason == "missing" and self.checks.ids):
                continue
            self.report.content_checked += 1
            if reason is not None:
                self.report.add_mismatch(id_, reason)


class _CollectionVerifier(_Verifier):
    """A run of a ``strategy: collection`` job: Pinecone copied the pod index into a new serverless index, records
    unchanged and namespaces under their own names. The target lists its ids (a pod source cannot): each is fetched
    from the source and compared, one not in the source fails; the target's count, polled until stable, must equal
    the source's (``describe_index_stats``), which is how a source id the target lacks shows."""

    def run(self) -> None:
        ns = self.run_.source_namespace
        target_ns = self.run_.target_namespace if self.run_.target_namespace is not None else ns
        target_ids = list_all_ids(self.target, target_ns)
        self.report.source_count = self.source.count(ns)
        self.report.source_fingerprint = fingerprint(target_ids)
        self.report.target_namespaces = [target_ns]
        self.report.notes.append(
            "strategy collection: ids listed in the target index and fetched from the source (a pod index cannot "
            "list); a source id missing in the target shows as a count difference"
        )
        content_ids = self._content_sample(target_ids)
        not_in_source: list[str] = []
        for chunk in chunks(target_ids, FETCH_MAX_IDS):
            sources = {r.id: r for r in self.source.fetch(ns, chunk)}
            not_in_source.extend(i for i in chunk if i not in sources)
            self.report.ids_expected += len(sources)
            compared = [i for i in chunk if i in sources and i in content_ids]
            found = {r.id: r for r in self.target.fetch(target_ns, compared)} if compared else {}
            for id_ in compared:
                source = sources[id_]
                self.report.content_checked += 1
                expected = expected_metadata(source, target_ns, self.route)  # the spec enriches nothing here
                reason = compare_record(source, found.get(id_), expected, self.checks.tolerance)
                if reason is not None:
                    self.report.add_mismatch(id_, reason)
        self.report.set_extras(compare_id_sets(set(), set(not_in_source)), fail=True)
        self._check_count(target_ns)  # always: the only check that sees a source id the target lacks

    def _source_changed(self) -> bool:
        return False  # a pod source cannot be listed again; its count is the one being awaited

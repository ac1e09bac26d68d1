"""Verification and cleanup on real services, called directly (no Celery worker): a real ``WorkerContext`` over real
Postgres (job table) and Redis (rate budget), with two pgvector stores — and, the same cases again, two Pinecone
indexes in the local data plane through the real SDK.

How a run becomes ``copied`` here: the test writes the target itself with the copy's own routing/enrichment
(``route_records``), then records one batch with ``jobs_pages.add_batches(listing_done=True)`` and
``jobs_batches.finish_batch`` (which marks the run copied) — the same transitions the copy tasks make — so the job
table is in the state a real copy leaves, without starting workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.errors import StateError, StoreError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.limits import UPSERT_MAX_VECTORS
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.records.vectors import Record, same_bytes
from nsmigrate.orchestrator.routing.route import route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning, freshness, proving, syncing, verifying
from nsmigrate.workers.steps.proving import PROOF_CHUNK_IDS
from nsmigrate.workers.steps.rollback import _Rollback, rollback_job
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.transfer.chunking import chunks
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.seed import application_rows, create_application_table
from tests.settling import settle

DIM = 8
URL_ENV = "NSMIGRATE_TEST_VERIFY_PG_URL"
KEY_ENV = "NSMIGRATE_TEST_VERIFY_PINECONE_KEY"


class RecordingDispatcher:
    """Stands in for the Celery dispatcher: remembers what would have been enqueued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, dict[str, Any]]] = []

    def cleanup_namespace(self, run_id: int, **kw: Any) -> None:
        self.sent.append(("cleanup", run_id, kw))

    def verify_namespace(self, run_id: int, **kw: Any) -> None:
        self.sent.append(("verify", run_id, kw))

    def copy_batch(self, batch_id: int, **kw: Any) -> None:
        self.sent.append(("copy", batch_id, kw))


def make_records(n: int, prefix: str = "v", seed: int = 0, **metadata: Any) -> list[Record]:
    rng = np.random.default_rng(seed)
    return [
        Record(
            f"{prefix}-{i:03d}", [float(x) for x in rng.normal(size=DIM)], {"text": f"chunk {i}", "n": i, **metadata}
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------------------- stores


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture(params=["pgvector", "pinecone"])
def store_specs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], ...]:
    """(source, target) store specs as spec dicts."""
    if request.param == "pgvector":
        monkeypatch.setenv(URL_ENV, request.getfixturevalue("database_url"))
        common = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
        return {**common, "table": "src"}, {**common, "table": "dst"}
    sb: PineconeSandbox = request.getfixturevalue("sandbox")
    monkeypatch.setenv(KEY_ENV, "pcsk-verify-test")
    return tuple({"kind": "pinecone", "host": sb.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


# ---------------------------------------------------------------------------------------------------------- helpers


@dataclass
class Job:
    ctx: WorkerContext
    spec: JobSpec
    job_id: int
    runs: dict[str, int] = field(default_factory=dict)  # source namespace → run id

    @property
    def source(self) -> Store:
        return self.ctx.store(self.spec.source)

    @property
    def target(self) -> Store:
        return self.ctx.store(self.spec.target)

    def state(self, ns: str = "alpha") -> str:
        return jobs_and_runs.get_run(self.ctx.db, self.runs[ns]).state

    def verify(self, ns: str = "alpha") -> dict[str, Any]:
        return verifying.verify_run(self.ctx, self.runs[ns])

    def cleanup(self, ns: str = "alpha", **kw: Any) -> dict[str, Any]:
        return cleaning.cleanup_run(self.ctx, self.runs[ns], actor="tester", **kw)

    def events(self, action: str) -> list[dict[str, Any]]:
        return [e for e in jobs_status.events_of(self.ctx.db, self.job_id) if e["action"] == action]


def make_spec(store_specs: tuple[dict[str, Any], ...], **overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "verify-test",
        "source": store_specs[0],
        "target": store_specs[1],
        "verify": {"count_timeout_s": 5},
        "cleanup": {"mode": "manual"},
    }
    data.update(overrides)
    return parse_spec(data)


def copied_job(
    ctx: WorkerContext,
    spec: JobSpec,
    data: dict[str, list[Record]],
    targets: dict[str, str | None] | None = None,
    twins: dict[str, str] | None = None,
    copy: bool = True,
    pairs: dict[str, tuple[str, str]] | None = None,
    started: bool = False,
    settled: bool = True,
) -> Job:
    """Write ``data`` (namespace → records) to the source, create the job, copy each namespace to its target the
    way a copy batch does (``route_records``) and mark the runs copied. ``targets`` maps a source namespace to its
    target (default: the same name; None = routed); ``pairs`` maps one to the (creator, twin) of its twin run.
    ``started``: each batch is started before it finishes, as a copy task does, so the job table counts its ids as
    written (``jobs_sync_rollback.written_ids``: what sync and rollback act on). ``settled``: the target's reads are
    made to reflect the copy at once (False: the copy was just made, and lagging reads do not show it yet)."""
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    targets = targets or {ns: ns for ns in data}
    for ns, records in data.items():
        for part in chunks(records, UPSERT_MAX_VECTORS):
            source.upsert(ns, part)
    settle(spec.source)  # written by the application long before the job
    plan = Plan(
        runs=[
            NamespacePlan(ns, targets[ns], len(records), 1, *(pairs or {}).get(ns, (None, None)))
            for ns, records in data.items()
        ],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
        twins=twins or {},
    )
    job = Job(
        ctx, spec, jobs_and_runs.create_job(ctx.db, spec, plan, source_label=source.name, target_label=target.name)
    )
    for run in jobs_and_runs.runs_of(ctx.db, job.job_id):
        job.runs[run.source_namespace] = run.id
        records = data[run.source_namespace]
        route = route_context(
            spec,
            source.name,
            run.source_namespace,
            run.target_namespace,
            run.creator_id,
            run.twin_id,
            run.routing_table,
        )
        routed = route_records(records, route)
        if copy:
            for target_ns, enriched in routed.items():
                for part in chunks(enriched, UPSERT_MAX_VECTORS):
                    target.upsert(target_ns, part)
        [batch_id] = jobs_pages.add_batches(
            ctx.db, run.id, [[r.id for r in records]], None, listing_done=True
        ).batch_ids
        if started:
            jobs_batches.start_batch(ctx.db, batch_id, "tester")
        follows = jobs_batches.finish_batch(
            ctx.db, batch_id, vectors=len(records), missing=0, nbytes=0, targets=sorted(routed), max_in_flight=1
        )
        assert follows.copied
    if settled:  # what verification awaits by the LSNs a copy batch records (none here: test_lagging_reads.py)
        settle(spec.target)
    return job


# ------------------------------------------------------------------------------------------------------ verification


def test_perfect_copy_passes_and_the_report_is_stored(ctx: WorkerContext, store_specs: tuple) -> None:
    spec = make_spec(store_specs, verify={"count_timeout_s": 5, "query_samples": 5, "top_k": 3})
    job = copied_job(ctx, spec, {"alpha": make_records(30)})

    report = job.verify()

    assert report["passed"], report
    assert report["summary"].startswith("30/30 ids present, 30 contents equal, counts 30=30"), report["summary"]
    assert report["missing_count"] == 0 and report["extra_count"] == 0
    assert report["source_fingerprint"] and report["source_count"] == 30
    assert report["query"]["samples"] == 5 and report["query"]["same_top_k"] == 5
    assert report["query"]["latency_ms_p95"] is not None
    run = jobs_and_runs.get_run(ctx.db, job.runs["alpha"])
    assert run.state == RunState.VERIFIED
    assert run.verification == report
    assert job.events("verified")
    assert jobs_and_runs.find_job(ctx.db, job.job_id).state == "finished"


def test_a_source_listing_that_could_not_be_awaited_is_said_in_the_report(
    ctx: WorkerContext, store_specs: tuple, request: pytest.FixtureRequest
) -> None:
    # A source that tells no LSN (or refuses the probe): a write of the last moments may be missing from the listing
    # the verdict judged. Nothing said so; the report now does (the verdict stands: cleanup lists the source again).
    pinecone = store_specs[0]["kind"] == "pinecone"
    if pinecone:
        request.getfixturevalue("sandbox").set_faults("src", Faults(lsns="none"))
    job = copied_job(ctx, make_spec(store_specs, verify={"count_timeout_s": 5}), {"alpha": make_records(10)})

    report = job.verify()

    assert report["passed"], report
    assert (freshness.UNAWAITED_SOURCE in report["notes"]) is pinecone  # a pgvector source's reads never lag


def test_missing_vector_fails_with_its_id(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)})
    job.target.delete("alpha", ["v-007"])

    report = job.verify()

    assert not report["passed"]
    assert report["missing_ids"] == ["v-007"] and report["missing_count"] == 1
    assert report["target_count"] == 29
    assert job.state() == RunState.VERIFY_FAILED
    assert report["summary"].startswith("FAILED: 29/30 ids present")


def test_changed_value_fails(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)})
    [copy] = job.target.fetch("alpha", ["v-003"])
    values = list(copy.values)
    values[5] += 0.5
    job.target.upsert("alpha", [Record(copy.id, values, copy.metadata)])

    report = job.verify()

    assert not report["passed"]
    assert report["content_mismatches"] == [{"id": "v-003", "reason": "values differ (max |Δ| 0.5 at index 5)"}]
    assert job.state() == RunState.VERIFY_FAILED


def test_one_float32_step_in_one_value_fails_where_nothing_is_tolerated(ctx: WorkerContext, store_specs: tuple) -> None:
    # Unchanged copies are judged by their bytes alone (``vectors.same_bytes``); the one changed by the smallest
    # step a float32 store holds must still be decoded and found.
    job = copied_job(
        ctx, make_spec(store_specs, verify={"count_timeout_s": 5, "tolerance": 0}), {"alpha": make_records(30)}
    )
    [copy] = job.target.fetch("alpha", ["v-011"])
    values = list(copy.values)
    values[2] = float(np.nextafter(np.float32(values[2]), np.float32(np.inf)))
    job.target.upsert("alpha", [Record(copy.id, values, copy.metadata)])
    if store_specs[0]["kind"] == "pinecone":  # each side's fetch sends its values' JSON, compared as bytes first
        sources = {r.id: r for r in job.source.fetch("alpha", ["v-010", "v-011"])}
        copies = {r.id: r for r in job.target.fetch("alpha", ["v-010", "v-011"])}
        assert same_bytes(sources["v-010"].values, copies["v-010"].values)
        assert not same_bytes(sources["v-011"].values, copies["v-011"].values)

    report = job.verify()

    assert not report["passed"]
    [mismatch] = report["content_mismatches"]
    assert mismatch["id"] == "v-011" and mismatch["reason"].startswith("values differ (max |Δ| "), mismatch
    assert mismatch["reason"].endswith("at index 2)") and report["content_checked"] == 30


def test_changed_metadata_fails(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)})
    [copy] = job.target.fetch("alpha", ["v-004"])
    job.target.upsert("alpha", [Record(copy.id, copy.values, {**copy.metadata, "text": "edited"})])

    report = job.verify()

    assert not report["passed"]
    [mismatch] = report["content_mismatches"]
    assert mismatch["id"] == "v-004" and "metadata key 'text'" in mismatch["reason"]


def test_a_vector_written_to_the_source_after_the_copy_fails_verification(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)})
    job.source.upsert("alpha", make_records(1, prefix="late"))
    settle(job.spec.source)  # a lag before the verification: its listing shows the write

    report = job.verify()

    assert not report["passed"]
    assert report["missing_ids"] == ["late-000"]


def test_a_source_still_written_during_verification_fails_at_once_instead_of_waiting_for_the_count(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cut-over's dual write lands in both sides after the listings and before the count: every other check
    # passed and the target's count settles one above the listing. The old code waited all of count_timeout_s.
    job = copied_job(ctx, make_spec(store_specs, verify={"count_timeout_s": 20}), {"alpha": make_records(30)})
    count = verifying._Verifier._count
    written: list[Record] = []

    def dual_write_before_the_first_count(self: verifying._Verifier, ns: str) -> int:
        if not written:
            written.extend(make_records(1, prefix="live"))
            job.source.upsert("alpha", written)
            job.target.upsert("alpha", written)
            settle(job.spec.source, job.spec.target)  # landed before the count reads it
        return count(self, ns)

    monkeypatch.setattr(verifying._Verifier, "_count", dual_write_before_the_first_count)

    report = job.verify()

    assert not report["passed"]
    assert report["source_changed"] and report["source_count_after"] == 31, report
    assert "the source changed during verification (30 → 31 ids): run `nsmigrate sync`" in "; ".join(
        report["reasons"]
    ), report["reasons"]
    assert report["missing_count"] == 0 and report["extra_count"] == 0 and report["content_mismatch_count"] == 0
    assert job.state() == RunState.VERIFY_FAILED


def test_extra_vector_in_an_unshared_target_fails(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)})
    job.target.upsert("alpha", make_records(1, prefix="stray"))
    settle(job.spec.target)  # written by someone else long before the verification

    report = job.verify()

    assert not report["passed"]
    assert report["extra_ids"] == ["stray-000"] and report["extras_fail"]


def test_a_target_the_spec_let_hold_others_ids_reports_them_without_failing(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # `allow_id_overwrite: true` let the job write into a namespace that held other ids: they are not the copy's
    # extras, and its verification failed on them however often it ran (only turning the checks off passed it).
    spec = make_spec(store_specs, allow_id_overwrite=True)
    job = copied_job(ctx, spec, {"alpha": make_records(30)})
    job.target.upsert("alpha", make_records(2, prefix="theirs"))
    settle(job.spec.target)

    report = job.verify()

    assert report["passed"], report["reasons"]
    assert report["extra_ids"] == ["theirs-000", "theirs-001"] and not report["extras_fail"]
    assert report["ids_expected"] == 30 and report["content_checked"] == 30


def test_a_shared_target_reports_other_runs_ids_without_failing(ctx: WorkerContext, store_specs: tuple) -> None:
    spec = make_spec(store_specs, routing={"mode": "explicit", "map": {"alpha": "merged", "beta": "merged"}})
    job = copied_job(
        ctx,
        spec,
        {"alpha": make_records(10, prefix="a"), "beta": make_records(5, prefix="b")},
        targets={"alpha": "merged", "beta": "merged"},
    )

    report = job.verify("alpha")

    assert report["passed"], report
    assert report["extra_count"] == 5 and not report["extras_fail"]
    assert report["target_count"] is None  # a shared target's count says nothing about one source


def test_a_routed_run_is_checked_in_every_namespace_it_routes_to(ctx: WorkerContext, store_specs: tuple) -> None:
    spec = make_spec(store_specs, routing={"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "c1"}}})
    records = make_records(6, prefix="tw", twin_id="t1") + make_records(4, prefix="pub")
    job = copied_job(ctx, spec, {"": records}, targets={"": None}, twins={"t1": "c1"})

    report = job.verify("")
    assert report["passed"], report
    assert report["target_namespaces"] == ["creator_c1_twin_t1", "review"]
    # The routes taken, counted by verification, add up to the source count.
    assert report["routes"] == {"twin_id": 6, "review": 4} and sum(report["routes"].values()) == report["source_count"]
    # Query latency, on by default: a routed run queries the namespace that received most of its vectors.
    assert report["latency"]["samples"] == 10 and report["latency"]["p95_ms"] >= report["latency"]["p50_ms"] > 0
    assert report["latency"]["through"] == "query of 'creator_c1_twin_t1'"

    # The enrichment is part of the contents: a copy without it must fail.
    [copy] = job.target.fetch("creator_c1_twin_t1", ["tw-002"])
    job.target.upsert(
        "creator_c1_twin_t1", [Record(copy.id, copy.values, {"text": "chunk 2", "n": 2, "twin_id": "t1"})]
    )
    report = job.verify("")
    assert not report["passed"]
    assert report["content_mismatches"][0]["id"] == "tw-002"


def test_a_store_error_fails_the_run_instead_of_leaving_it_verifying(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(10)})

    def broken(*_a: Any, **_k: Any) -> Any:
        raise StoreError("target refused fetch", store="dst")

    monkeypatch.setattr(job.target, "fetch", broken)
    report = job.verify()

    assert not report["passed"]
    assert "StoreError: target refused fetch" in report["error"]
    assert job.state() == RunState.VERIFY_FAILED


def test_auto_cleanup_is_enqueued_after_a_passing_verification(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs, cleanup={"mode": "auto"}), {"alpha": make_records(5)})

    job.verify()

    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    assert dispatcher.sent == [("cleanup", job.runs["alpha"], {"job_id": job.job_id, "namespace": "alpha"})]
    # The job stays open until the cleanup it asked for has run.
    assert jobs_and_runs.find_job(ctx.db, job.job_id).state == "running"


# ----------------------------------------------------------------------------------------------------------- cleanup


def test_cleanup_of_an_unverified_run_is_refused_and_deletes_nothing(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(10)})

    result = job.cleanup()

    assert result["action"] == "refused" and "not verified" in result["reason"]
    assert job.source.count("alpha") == 10
    assert job.state() == RunState.COPIED
    assert job.events("cleanup_refused")


def test_cleanup_with_mode_never_is_refused(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs, cleanup={"mode": "never"}), {"alpha": make_records(10)})
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result["action"] == "refused" and "never" in result["reason"]
    assert job.source.count("alpha") == 10
    assert job.state() == RunState.VERIFIED
    assert job.events("cleanup_refused")


def test_cleanup_after_the_source_changed_is_refused_and_deletes_nothing(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(10)})
    assert job.verify()["passed"]
    job.source.upsert("alpha", make_records(1, prefix="late"))
    settle(job.spec.source)  # before the cleanup was asked for

    assert job.cleanup(dry_run=True)["action"] == "refused"
    result = job.cleanup()

    assert result["action"] == "refused"
    assert result["reason"].startswith(cleaning.SOURCE_CHANGED)
    assert job.source.count("alpha") == 11
    assert job.state() == RunState.VERIFY_FAILED
    assert job.events("cleanup_refused")[-1]["detail"]["reason"].startswith(cleaning.SOURCE_CHANGED)


def test_verified_run_with_manual_mode_is_deleted_and_audited(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(12)})
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result == {"run_id": job.runs["alpha"], "namespace": "alpha", "action": "deleted", "count": 12}
    assert job.source.count("alpha") == 0
    assert job.target.count("alpha") == 12
    run = jobs_and_runs.get_run(ctx.db, job.runs["alpha"])
    assert run.state == RunState.CLEANED
    assert run.cleanup is not None and run.cleanup["deleted_count"] == 12 and run.cleanup["dry_run"] is False
    [event] = job.events("source_deleted")
    assert event["actor"] == "tester" and event["detail"]["deleted_count"] == 12
    # A second cleanup finds nothing to do, deletes nothing and says so (no refusal: the run is as it asks).
    assert job.cleanup()["action"] == "cleaned_already"
    assert job.events("cleanup_refused") == [] and len(job.events("source_deleted")) == 1


def changed_copy(job: Job, id_: str, ns: str = "alpha") -> None:
    """The target's copy of ``id_`` written again with one value changed: it no longer equals its original."""
    [copy] = job.target.fetch(ns, [id_])
    values = list(copy.values)
    values[0] += 0.5
    job.target.upsert(ns, [Record(copy.id, values, copy.metadata)])


def counted_fetches(job: Job, monkeypatch: pytest.MonkeyPatch, ns: str = "alpha") -> Counter[str]:
    """How many fetches of ``ns`` each side answers from now on (the stores' own fetch, counted on its way)."""
    fetched: Counter[str] = Counter()
    for side, store in (("source", job.source), ("target", job.target)):

        def counting(namespace: str, ids: Any, *args: Any, _fetch: Any = store.fetch, _side: str = side) -> Any:
            fetched[_side] += namespace == ns
            return _fetch(namespace, ids, *args)

        monkeypatch.setattr(store, "fetch", counting)
    return fetched


def test_a_namespace_of_one_chunk_is_proved_once_right_before_its_delete(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its ids fit one proof: a first pass over all of them would fetch the same chunk of both sides twice.
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(12)})
    assert job.verify()["passed"]
    fetched = counted_fetches(job, monkeypatch)

    assert job.cleanup()["action"] == "deleted"

    assert fetched == {"source": 1, "target": 1}
    assert job.source.count("alpha") == 0 and job.target.count("alpha") == 12


def test_a_namespace_of_one_chunk_with_one_copy_changed_keeps_every_id(ctx: WorkerContext, store_specs: tuple) -> None:
    # Proved and deleted in one pass, the chunk goes whole or not at all: the eleven proven ids are kept with the
    # refused one, so the source stays one whole namespace for sync to repair.
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(12)})
    assert job.verify()["passed"]
    changed_copy(job, "v-007")

    result = job.cleanup()

    assert result["action"] == "refused" and result["count"] == 0, result
    assert "1 ids have no equal copy now, nothing was deleted (e.g. 'v-007'" in result["reason"], result
    assert job.source.count("alpha") == 12
    assert job.state() == RunState.VERIFY_FAILED
    assert job.events("cleanup_refused")[-1]["detail"]["deleted_count"] == 0


def test_a_namespace_of_two_chunks_with_a_copy_changed_in_the_second_keeps_every_id(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # The first pass proves both chunks before either is deleted: a refusal in the second leaves the first too.
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(TWO_CHUNKS)})
    assert job.verify()["passed"]
    last = make_records(TWO_CHUNKS)[-1].id
    changed_copy(job, last)

    result = job.cleanup()

    assert result["action"] == "refused" and result["count"] == 0, result
    assert f"nothing was deleted (e.g. {last!r}" in result["reason"], result
    assert job.source.count("alpha") == TWO_CHUNKS


def test_the_default_namespace_is_emptied_by_id(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(
        ctx,
        make_spec(store_specs, routing={"mode": "explicit", "map": {"": "moved"}}),
        {"": make_records(15)},
        targets={"": "moved"},
    )
    assert job.verify("")["passed"]

    result = job.cleanup("")

    assert result["action"] == "deleted" and result["count"] == 15
    assert job.source.count("") == 0
    assert jobs_and_runs.get_run(ctx.db, job.runs[""]).cleanup["method"] == "delete_ids"  # type: ignore[index]


def test_dry_run_deletes_nothing_and_changes_nothing(ctx: WorkerContext, store_specs: tuple) -> None:
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(10)})
    assert job.verify()["passed"]

    result = job.cleanup(dry_run=True)

    assert result == {"run_id": job.runs["alpha"], "namespace": "alpha", "action": "would_delete", "count": 10}
    assert job.source.count("alpha") == 10
    assert job.state() == RunState.VERIFIED
    assert not job.events("source_deleted")


def test_cleanup_refuses_when_the_source_namespace_is_also_the_target(ctx: WorkerContext, store_specs: tuple) -> None:
    # No enrichment: with the same namespace as source and target, the "copy" is the source itself.
    spec = make_spec((store_specs[0], store_specs[0]), enrich={"migrated_from": False})
    job = copied_job(ctx, spec, {"alpha": make_records(5)}, copy=False)
    assert job.verify()["passed"]  # the data is "in the target": it is the same namespace

    result = job.cleanup()

    assert result["action"] == "refused" and "would delete the migrated data" in result["reason"]
    assert job.source.count("alpha") == 5


# ------------------------------------------------------------------------------------------------- silent write drops


def test_silently_dropped_writes_fail_verification_and_block_cleanup(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.reset()
    sandbox.set_faults("src", Faults())
    sandbox.set_faults("dst", Faults(drop_fraction=0.1))  # upserts acknowledge everything, store 90 %
    monkeypatch.setenv(KEY_ENV, "pcsk-verify-test")
    specs = tuple({"kind": "pinecone", "host": sandbox.host(n), "api_key_env": KEY_ENV} for n in ("src", "dst"))
    try:
        job = copied_job(ctx, make_spec(specs), {"alpha": make_records(50)})
    finally:
        sandbox.set_faults("dst", Faults())

    report = job.verify()

    assert not report["passed"]
    assert report["missing_count"] == 5 and len(report["missing_ids"]) == 5
    assert report["target_count"] == 45
    result = job.cleanup()
    assert result["action"] == "refused"
    assert job.source.count("alpha") == 50


def test_one_twin_run_per_creator_times_the_cross_twin_search(ctx: WorkerContext, store_specs: tuple) -> None:
    # As the application will query: the creator's twins searched together through the tenant guard, timed once
    # per creator (its first twin run); its other runs time a query of their own namespace.
    spec = make_spec(store_specs, routing={"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "c1"}}})
    data = {"t1": make_records(12, prefix="a"), "t2": make_records(12, prefix="b")}
    targets: dict[str, str | None] = {"t1": "creator_c1_twin_t1", "t2": "creator_c1_twin_t2"}
    job = copied_job(ctx, spec, data, targets=targets, pairs={"t1": ("c1", "t1"), "t2": ("c1", "t2")})

    first, second = job.verify("t1"), job.verify("t2")

    assert first["passed"] and second["passed"]
    assert first["latency"]["through"] == "cross-twin search of creator 'c1' over 2 twin(s)"
    assert first["latency"]["samples"] == 10 and first["latency"]["p95_ms"] >= first["latency"]["p50_ms"] > 0
    assert second["latency"]["through"] == "query of 'creator_c1_twin_t2'"


# ------------------------------------------------------------------------ two destructive steps on one namespace


def verified_alpha(ctx: WorkerContext, store_specs: tuple) -> tuple[Job, int, list[str]]:
    """A verified namespace ``alpha`` of 30 records, its run id and the ids of a cleanup's first chunk of 10."""
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(30)}, started=True)
    assert job.verify()["passed"]
    return job, job.runs["alpha"], [f"v-{i:03d}" for i in range(10)]


def test_propagated_deletes_keep_the_copies_of_ids_a_cleanup_under_way_deleted(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two operators: one runs `sync --propagate-deletes`, the other `cleanup`, on the same verified namespace. The
    # cleanup starts after the sync checked the run and deletes its first proven chunk before the sync lists the
    # source: the sync then finds those ids gone from the source, and their copies are the only ones left.
    job, run_id, first_chunk = verified_alpha(ctx, store_specs)
    list_source = syncing.list_all_ids

    def listed_while_a_cleanup_deletes(source: Any, namespace: str) -> list[str]:
        if namespace == "alpha" and jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFIED:
            run, _ = jobs_verdicts.start_cleanup(ctx.db, run_id)  # what cleaning._delete does, up to its first chunk
            proof = cleaning._proof(ctx, run, job.spec, source, first_chunk, delete=True)
            assert proof.proven == first_chunk
            settle(job.spec.source)  # deleted a lag before the sync's listing: it shows them gone
        return list_source(source, namespace)

    monkeypatch.setattr(syncing, "list_all_ids", listed_while_a_cleanup_deletes)

    result = syncing.sync_run(ctx, run_id, propagate_deletes=True, actor="tester")

    assert sorted(r.id for r in job.target.fetch("alpha", first_chunk)) == first_chunk  # the only copies, kept
    assert job.target.count("alpha") == 30
    assert result["action"] == "refused" and result["deleted"] == 0, result
    assert "a cleanup of this namespace is under way" in result["reason"], result


def test_propagated_deletes_keep_the_copies_another_jobs_cleanup_left_as_the_only_ones(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # One spec run twice (the second with `--new`): both jobs copied alpha into the same target namespace. The first
    # job's cleanup deleted the source (an application wrote one vector there since); the second job's `sync
    # --propagate-deletes` then finds its ids gone from the source, and the copies it would delete are the first
    # job's too: the only ones left.
    first, _, _ = verified_alpha(ctx, store_specs)
    second = copied_job(ctx, first.spec, {"alpha": make_records(30)}, started=True)
    assert first.cleanup()["action"] == "deleted"
    first.source.upsert("alpha", make_records(1, prefix="new"))

    result = syncing.sync_run(ctx, second.runs["alpha"], propagate_deletes=True, actor="tester")

    assert result["action"] == "refused" and result.get("deleted", 0) == 0, result
    assert f"a cleanup of job {first.job_id} deleted (or is deleting) this source namespace's ids" in result["reason"]
    assert first.target.count("alpha") == 30  # the only copies, kept


def test_a_cleanup_cut_short_and_then_cancelled_keeps_its_source_deletions_known(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # A cleanup deletes its first proven chunk, then its host is lost: the run stays `cleaning`, and an operator
    # cancels the job to free it (`nsmigrate cancel`, as rollback's refusal suggests). The source lacks those ids on
    # purpose; their copies are the only ones left. Reads may not go back to the source, and the same spec run again
    # with `--new` may not propagate their absence to the target.
    job, run_id, first_chunk = verified_alpha(ctx, store_specs)
    again = copied_job(ctx, job.spec, {"alpha": make_records(30)}, copy=False, started=True)
    run, _ = jobs_verdicts.start_cleanup(ctx.db, run_id)  # what cleaning._delete does, up to its first chunk
    source = ctx.guarded(job.spec.source, job.spec.rate)
    assert cleaning._proof(ctx, run, job.spec, source, first_chunk, delete=True).proven == first_chunk
    jobs_and_runs.cancel_job(ctx.db, job.job_id)

    with pytest.raises(StateError, match=rf"reads of job {job.job_id} cannot go back to its source"):
        rollout_rows.set_rollout(ctx.db, job.job_id, 0, "tester")
    synced = syncing.sync_run(ctx, again.runs["alpha"], propagate_deletes=True, actor="tester")

    assert synced["action"] == "refused" and synced.get("deleted", 0) == 0, synced
    assert f"a cleanup of job {job.job_id}" in synced["reason"], synced
    assert sorted(r.id for r in job.target.fetch("alpha", first_chunk)) == first_chunk  # the only copies, kept


#: A namespace of two chunks of ids, for a cleanup interrupted between its two deletes.
TWO_CHUNKS = PROOF_CHUNK_IDS + 10


def cleanup_of_two_chunks(
    ctx: WorkerContext, store_specs: tuple, between_deletes: Callable[[Job], None]
) -> tuple[Job, dict[str, Any]]:
    """A verified namespace ``alpha`` of ``TWO_CHUNKS`` ids, cleaned up with ``between_deletes`` called once, after
    its first chunk was deleted and before its second; the job and the cleanup's result."""
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(TWO_CHUNKS)}, started=True)
    assert job.verify()["passed"]
    asked = 0

    def stop() -> bool:
        # Asked before each chunk: two of the proof pass, then two of the delete pass.
        nonlocal asked
        asked += 1
        if asked == 4:
            between_deletes(job)
        return False

    return job, job.cleanup(stop=stop)


def test_a_job_cancelled_while_its_cleanup_deletes_stops_the_cleanup_which_keeps_its_count(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # Operator A cleans up a namespace of two chunks; after the first chunk's delete, operator B cancels the job (to
    # roll it back, say). The cleanup must stop there (a rollback may now delete the copies it proves), and what it
    # deleted must stay counted on the cancelled run: its copies are the only ones left.
    job, result = cleanup_of_two_chunks(
        ctx, store_specs, lambda job: jobs_and_runs.cancel_job(ctx.db, job.job_id, actor="B")
    )

    settle(job.spec.source)  # the count lags the cleanup's deletes
    deleted = TWO_CHUNKS - job.source.count("alpha")
    assert deleted == PROOF_CHUNK_IDS, deleted  # the first chunk only
    assert result["action"] == "stopped" and result["count"] == deleted, result
    assert f"job {job.job_id} was cancelled" in result["reason"], result
    run = jobs_and_runs.get_run(ctx.db, job.runs["alpha"])
    assert run.state == RunState.CANCELLED and run.deleted_by_cleanup == deleted
    assert run.source_may_be_deleted
    assert job.target.count("alpha") == TWO_CHUNKS


def test_a_cleanup_cancelled_before_it_deleted_anything_leaves_its_source_known_whole(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # Operator B cancels while operator A's cleanup still proves, before any delete: the cleanup stops and says it
    # deleted nothing, so nothing keeps reads from going back to the source.
    job, run_id, _ = verified_alpha(ctx, store_specs)

    def operator_b_cancels() -> bool:
        jobs_and_runs.cancel_job(ctx.db, job.job_id, actor="B")
        return False  # no Ctrl-C: the cleanup sees the cancel itself

    result = job.cleanup(stop=operator_b_cancels)

    assert result["action"] == "stopped" and result["count"] == 0, result
    run = jobs_and_runs.get_run(ctx.db, run_id)
    assert run.state == RunState.CANCELLED and not run.source_may_be_deleted
    assert job.source.count("alpha") == 30
    rollout_rows.set_rollout(ctx.db, job.job_id, 0, "B")  # reads may go back: the source is whole


def test_a_cleanup_does_not_end_cleaned_over_source_writes_it_did_not_copy(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # While a cleanup deletes a namespace of two chunks, the application (dual writing, its write to the new store
    # failed) writes after the first chunk's delete: a new id, and a new version of an id that chunk deleted. Both
    # are in the source only. The run must not end `cleaned` (sync refuses a cleaned run: they would be stranded
    # there) but say so and go to `verify_failed`, its deletions counted, for sync to copy them.
    written: list[str] = []

    def the_application_writes(job: Job) -> None:
        settle(job.spec.source)  # a lag after the first chunk's delete: the application's listing shows it
        listed = set(verifying.list_all_ids(job.source, "alpha"))
        gone = next(r for r in make_records(TWO_CHUNKS) if r.id not in listed)
        changed = Record(gone.id, [v + 1 for v in gone.values], gone.metadata)
        job.source.upsert("alpha", [changed, *make_records(1, prefix="late")])
        written.extend([changed.id, "late-000"])

    job, result = cleanup_of_two_chunks(ctx, store_specs, the_application_writes)

    assert result["action"] == "refused" and result["count"] == TWO_CHUNKS, result
    assert "2 ids were written to the source during the cleanup" in result["reason"], result
    run = jobs_and_runs.get_run(ctx.db, job.runs["alpha"])
    assert run.state == RunState.VERIFY_FAILED and run.deleted_by_cleanup == TWO_CHUNKS
    assert jobs_sync_rollback.sync_refusal(ctx.db, run.id) is None  # sync may copy them
    assert sorted(r.id for r in job.source.fetch("alpha", written)) == sorted(written)


def test_propagated_deletes_stop_when_the_source_vanishes_while_the_sync_lists_it(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Operator A's `sync --propagate-deletes` lists the source page by page; after its first page, operator B drops
    # the source namespace. The listing ends there, so every id after that page looks deleted in the source, and each
    # is absent again right before its delete. A source that lists no ids is refused at the start unless
    # --allow-vanished-source says it was emptied on purpose; vanished mid-way, it must be refused too.
    job, run_id, _ = verified_alpha(ctx, store_specs)
    first_page, list_source = job.source.list_ids("alpha", limit=10), syncing.list_all_ids

    def b_drops_the_source_after_the_first_page(source: Any, namespace: str) -> list[str]:
        job.source.delete_namespace("alpha")
        settle(job.spec.source)  # dropped a lag before the listing's next page
        return first_page.ids + list_source(source, namespace)  # the rest of the listing: nothing any more

    monkeypatch.setattr(syncing, "list_all_ids", b_drops_the_source_after_the_first_page)

    result = syncing.sync_run(ctx, run_id, propagate_deletes=True, actor="tester")

    assert job.target.count("alpha") == 30  # the only copies left, all kept
    assert result["action"] == "refused" and result.get("deleted", 0) == 0, result
    assert "lists no ids now" in result["reason"], result


def test_rollback_refuses_to_delete_a_copy_whose_original_went_away_after_its_check(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # Between the rollback's last check of the originals and its delete of the copies, an original is deleted (an
    # application, a cleanup): its copy is now the only one, and the rollback must say so, not pass.
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(12)}, started=True)
    assert job.verify()["passed"]
    [run] = jobs_and_runs.runs_of(ctx.db, job.job_id)
    rollback = _Rollback(ctx, job.job_id, "tester")
    check = rollback.check(run, restore=False)
    assert check.passed, check.summary
    job.source.delete("alpha", ["v-004"])

    removed = rollback.delete_targets([run], {run.id: check})

    assert [r.id for r in job.target.fetch("alpha", ["v-004"])] == ["v-004"]  # the only copy, kept
    assert removed["alpha"]["deleted"] == 11 and removed["alpha"]["refused_count"] == 1, removed
    assert removed["alpha"]["refused"][0]["id"] == "v-004"
    assert "no original" in removed["alpha"]["reason"], removed


def test_rollback_keeps_a_routed_copy_whose_original_now_routes_to_another_of_its_namespaces(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # After the rollback's last check, the application moves tw-000 out of its twin (twin_id dropped) and its dual
    # writer puts the copy that routing now gives it into `review`. Proved by its route, tw-000 finds that copy
    # equal; but the rollback deletes it from the twin namespace, whose record (the old version) equals nothing now.
    spec = make_spec(store_specs, routing={"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "c1"}}})
    records = make_records(6, prefix="tw", twin_id="t1") + make_records(4, prefix="pub")
    job = copied_job(ctx, spec, {"": records}, targets={"": None}, twins={"t1": "c1"}, started=True)
    [run] = jobs_and_runs.runs_of(ctx.db, job.job_id)
    rollback = _Rollback(ctx, job.job_id, "tester")
    check = rollback.check(run, restore=False)
    assert check.passed, check.summary
    [old] = job.source.fetch("", ["tw-000"])
    moved = Record(old.id, [v + 1.0 for v in old.values], {k: v for k, v in old.metadata.items() if k != "twin_id"})
    job.source.upsert("", [moved])
    assert list(route_records([moved], rollback._route(run))) == ["review"]
    job.target.upsert("review", route_records([moved], rollback._route(run))["review"])

    removed = rollback.delete_targets([run], {run.id: check})

    assert [r.id for r in job.target.fetch("creator_c1_twin_t1", ["tw-000"])] == ["tw-000"]  # equal to nothing: kept
    assert removed["creator_c1_twin_t1"]["deleted"] == 5, removed
    assert [r["id"] for r in removed["creator_c1_twin_t1"]["refused"]] == ["tw-000"], removed


def test_a_cleanup_that_read_the_run_before_another_stopped_part_way_keeps_that_count(
    ctx: WorkerContext, store_specs: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two operators clean up the same namespace. B reads the run; A's cleanup deletes 10 proven ids and stops (a
    # store error: back to verified, its count recorded); then B goes on and refuses an id whose copy went away. B's
    # record of the run must still say 10 source ids are gone, or `sync --propagate-deletes` deletes their copies.
    job, run_id, first_chunk = verified_alpha(ctx, store_specs)
    delete_after_its_checks = cleaning._delete

    def another_cleanup_stops_part_way_first(*args: Any, **kwargs: Any) -> dict[str, Any]:
        run, _ = jobs_verdicts.start_cleanup(ctx.db, run_id)
        source = ctx.guarded(job.spec.source, job.spec.rate)
        assert cleaning._proof(ctx, run, job.spec, source, first_chunk, delete=True).proven == first_chunk
        jobs_verdicts.abort_cleanup(
            ctx.db, run_id, "delete failed", "A", back_to=RunState.VERIFIED, detail={"deleted_count": 10}
        )
        job.target.delete("alpha", ["v-020"])
        return delete_after_its_checks(*args, **kwargs)

    monkeypatch.setattr(cleaning, "_delete", another_cleanup_stops_part_way_first)
    refused = job.cleanup()
    monkeypatch.undo()

    assert refused["action"] == "refused" and refused["refused_ids"] == ["v-020"], refused
    assert jobs_and_runs.get_run(ctx.db, run_id).deleted_by_cleanup == 10
    synced = syncing.sync_run(ctx, run_id, propagate_deletes=True, actor="tester")
    assert synced["action"] == "refused", synced
    assert sorted(r.id for r in job.target.fetch("alpha", first_chunk)) == first_chunk  # the only copies, kept


def test_a_pgvector_table_that_gained_a_row_after_the_last_listing_is_not_dropped(
    ctx: WorkerContext, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cleanup drops a source namespace it emptied; a row an application writes between the listing that found the
    # table empty and the drop has no copy. Postgres can tell at the drop itself (the table locked, then looked at).
    monkeypatch.setenv(URL_ENV, database_url)
    common = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
    job = copied_job(
        ctx, make_spec(({**common, "table": "src"}, {**common, "table": "dst"})), {"alpha": make_records(8)}
    )
    assert job.verify()["passed"]
    list_source = cleaning.list_all_ids
    listings: list[list[str]] = []

    def a_row_written_right_after_the_last_listing(store: Any, namespace: str) -> list[str]:
        listings.append(list_source(store, namespace))
        if len(listings) == 2:  # the one that finds the namespace empty, right before the drop
            job.source.upsert("alpha", make_records(1, prefix="late"))
        return listings[-1]

    monkeypatch.setattr(cleaning, "list_all_ids", a_row_written_right_after_the_last_listing)

    result = job.cleanup()

    assert listings[1] == []
    assert [r.id for r in job.source.fetch("alpha", ["late-000"])] == ["late-000"]  # no copy: kept
    assert result["action"] == "deleted" and result["count"] == 8, result
    assert jobs_and_runs.get_run(ctx.db, job.runs["alpha"]).cleanup["method"] == "delete_ids"  # type: ignore[index]


def app_tables_job(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, *, apart: bool
) -> Job:
    """A job of the default enrichment between the application's tables ``embeddings_alpha`` (6 rows filling every
    column, NULLs where the DDL allows them, ``metadata`` in rows 0 and 5 among them, and a user's BIGINT column) and
    ``copies_alpha`` (the same columns, empty), copied. ``apart``: the target's URL is spelled otherwise, so the job
    is one between two databases (verified record by record)."""
    monkeypatch.setenv(URL_ENV, database_url)
    monkeypatch.setenv(URL_ENV + "_APART", f"{database_url}?application_name=apart")
    with pg.begin() as conn:
        for table, rows in (("embeddings_alpha", application_rows(6, DIM, seed=41)), ("copies_alpha", [])):
            create_application_table(conn, table, DIM, rows)
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN message_id bigint"))
        conn.execute(sa.text("UPDATE embeddings_alpha SET message_id = 1000 * id"))
    documented = {"kind": "pgvector", "schema": "documented"}
    target_url = URL_ENV + ("_APART" if apart else "")
    spec = make_spec(
        (
            {**documented, "table": "embeddings", "database_url_env": URL_ENV},
            {**documented, "table": "copies", "database_url_env": target_url},
        )
    )
    source = ctx.store(spec.source)
    return copied_job(ctx, spec, {"alpha": source.fetch("alpha", source.list_ids("alpha").ids)})


@pytest.mark.parametrize("apart", [False, True], ids=["one database", "two databases"])
def test_the_application_tables_null_metadata_verifies_and_cleans_up_with_the_default_enrichment(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, apart: bool
) -> None:
    # A row whose metadata is NULL gets the enrichment as its metadata (`migrated_from`, on by default), in Postgres
    # as through records. Verification and the proof before each delete must expect that, or such a row is never
    # cleaned up (one database: verified in SQL, refused at cleanup for ever) or never verified (two databases).
    job = app_tables_job(ctx, pg, database_url, monkeypatch, apart=apart)
    with pg.connect() as conn:
        nulls = {"ids": ["doc-000000#chunk-0", "doc-000000#chunk-5"]}
        sql = "SELECT chunk_id, metadata FROM copies_alpha WHERE chunk_id = ANY(:ids)"
        copied = dict(conn.execute(sa.text(sql), nulls).all())
    assert list(copied.values()) == [{"migrated_from": "pgvector:embeddings_*/alpha"}] * 2

    report = job.verify()
    result = job.cleanup()

    assert report["passed"], report
    assert result["action"] == "deleted" and result["count"] == 6, result


@pytest.mark.parametrize("store_specs", ["pgvector"], indirect=True)
def test_a_cleanup_refuses_a_copy_whose_integer_differs_where_doubles_cannot_tell(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # A metadata integer above 2**53 (another system's message id), where two integers share one float64: a pgvector
    # JSONB keeps it exactly. Verified equal, then one copy's id changes by 1 (another writer, a broken sync): it is
    # no copy any more, and cleanup must not delete its original. (Pinecone keeps a float: no such pair there.)
    records = [Record(r.id, r.values, {"message_id": 2**53 + 4 * i}) for i, r in enumerate(make_records(6))]
    job = copied_job(ctx, make_spec(store_specs), {"alpha": records})
    assert job.verify()["passed"]
    [copy] = job.target.fetch("alpha", ["v-002"])
    job.target.upsert("alpha", [Record(copy.id, copy.values, {**copy.metadata, "message_id": 2**53 + 9})])

    result = job.cleanup()

    assert result["action"] == "refused" and result["refused_ids"] == ["v-002"], result
    assert "metadata key 'message_id': expected 9007199254741000, got 9007199254741001" in result["reason"], result
    assert job.source.count("alpha") == 6


def test_a_cleanup_keeps_an_original_whose_metadata_values_the_enrichment_replaced(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    # The application's own `tier` on one record; this job's enrichment writes its constant there, as asked, and
    # verification passes. The original is then the only record of its tier. (An earlier copy's `migrated_from`
    # is nsmigrate's lineage, not the application's: it gives way to this copy's.)
    records = make_records(4, migrated_from="legacy/alpha")
    records[1] = Record(records[1].id, records[1].values, {**records[1].metadata, "tier": "silver"})
    job = copied_job(ctx, make_spec(store_specs, enrich={"constants": {"tier": "gold"}}), {"alpha": records})
    assert job.verify()["passed"]

    result = job.cleanup()

    assert result["action"] == "refused" and result["refused_ids"] == ["v-001"], result
    assert "its metadata 'tier' hold(s) other values" in result["reason"], result
    assert job.source.count("alpha") == 4  # a refused namespace keeps every original


def test_a_pinecone_copy_of_an_integer_beyond_its_floats_is_no_copy(
    ctx: WorkerContext, database_url: str, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pgvector JSONB keeps 2**53 + 1 exactly; Pinecone keeps every number as a float64, so its copy holds 2**53.
    # The original is the only record of that id: verification fails and cleanup deletes nothing.
    monkeypatch.setenv(URL_ENV, database_url)
    monkeypatch.setenv(KEY_ENV, "pcsk-verify-test")
    source = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
    target = {"kind": "pinecone", "host": sandbox.host("dst"), "api_key_env": KEY_ENV}
    records = [Record(r.id, r.values, {"message_id": 2**53 + i}) for i, r in enumerate(make_records(4))]
    job = copied_job(ctx, make_spec(({**source, "table": "src"}, target)), {"alpha": records})
    [copy] = job.target.fetch("alpha", ["v-001"])
    assert copy.metadata["message_id"] == float(2**53)  # what Pinecone holds of 2**53 + 1

    report = job.verify()
    result = job.cleanup()

    assert not report["passed"] and report["content_mismatch_count"] == 2, report
    assert "metadata key 'message_id': expected 9007199254740993, got 9007199254740992.0" in str(report), report
    assert result["action"] == "refused" and "verify_failed" in result["reason"], result
    assert job.source.count("alpha") == 4


# ------------------------------------------------------------------------ a tolerance too loose to prove a copy


def test_a_job_whose_tolerance_would_pass_other_values_deletes_nothing(
    ctx: WorkerContext, store_specs: tuple[dict[str, Any], ...]
) -> None:
    # A job written before the rule (a new spec is refused at plan: tests/unit/test_spec.py): every value of the
    # copy is off by 0.1, which its tolerance of 0.5 calls equal. Neither cleanup nor rollback may delete on that.
    loose = make_spec(store_specs).model_dump()
    loose["verify"]["tolerance"] = 0.5
    job = copied_job(ctx, JobSpec.model_validate(loose), {"alpha": make_records(20)})
    target, ids = job.target, [r.id for r in make_records(20)]
    other_values = [Record(r.id, [x + 0.1 for x in r.values], r.metadata) for r in target.fetch("alpha", ids)]
    target.upsert("alpha", other_values)
    assert job.verify()["passed"]  # the loose verdict

    result = job.cleanup()

    assert result["action"] == "refused" and "verify.tolerance: 0.5, above 0.001" in result["reason"], result
    assert job.source.count("alpha") == 20
    with pytest.raises(StateError, match=r"verify\.tolerance 0\.5"):
        rollback_job(ctx, job.job_id, actor="tester")
    assert target.count("alpha") == 20


@pytest.mark.parametrize("store_specs", ["pgvector"], indirect=True)
def test_a_row_the_application_writes_between_its_proof_and_its_delete_is_kept(
    ctx: WorkerContext, store_specs: tuple[dict[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinecone has no conditional delete, but Postgres can take a row only as it was proved: its version (ctid,
    xmin) is read before the proof and the delete names it. A row the application changes in between keeps its
    version out: it stays, refused, and the run goes to `verify_failed` for sync."""
    job = copied_job(ctx, make_spec(store_specs), {"alpha": make_records(5)})
    assert job.verify()["passed"]
    edited = Record("v-002", [9.0] * DIM, {"edited": True})
    proofs: list[int] = []
    prove = proving.prove_copies

    def then_the_application_writes(*args: Any, **kwargs: Any) -> Any:
        proof = prove(*args, **kwargs)
        proofs.append(1)
        if len(proofs) == 1:  # a namespace of one chunk is proved once, by the deleting pass: its delete next
            job.source.upsert("alpha", [edited])
        return proof

    monkeypatch.setattr(proving, "prove_copies", then_the_application_writes)

    result = job.cleanup()

    assert result["action"] == "refused" and result["refused_ids"] == ["v-002"], result
    assert [r.metadata for r in job.source.fetch("alpha", ["v-002"])] == [{"edited": True}]
    assert [r.id for r in job.source.fetch("alpha", [f"v-00{i}" for i in range(5)])] == ["v-002"]  # the rest went
    assert job.state() == "verify_failed"

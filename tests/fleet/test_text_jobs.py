"""Jobs that move text, not vectors (issue 17): a vector index into an **integrated** index (the index embeds the text;
records written with ``upsert_records``), and a **re-embedding** into a plain index of another dimension. Real
`nsmigrate worker` processes, Redis, Postgres and the real SDK against the local data plane; each test checks the
target's data itself, read back with the SDK. The kill -9 tests expect Celery's redelivery alone to finish the job
(no `resume`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis as redis_lib
from pinecone import Pinecone

from nsmigrate.cli.fleet import open_control
from nsmigrate.cli.run import before_the_job
from nsmigrate.orchestrator import launch, recovery
from nsmigrate.orchestrator.errors import PlanError, StateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import rate_bucket_key
from nsmigrate.orchestrator.models import BatchState, RunState
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec, TextRecords
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate.workers.transfer.embedders import HashingEmbedder
from nsmigrate.workers.transfer.ratelimit import RateLimiter, embed_scope
from nsmigrate_sandbox.embedding import IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.chaos import (
    FAST_RECOVERY,
    QUICK_RETRIES,
    all_verified,
    fault_landed,
    fetch_all,
    freeze_mid_batch,
    kill_and_lose_its_messages,
    kill_frozen,
    start_standby,
    take_over,
    wait_for,
)
from tests.fleet_jobs import batches
from tests.polling import wait_for_job

SRC, TEXTS, NEW = "vectors", "texts", "reembedded"
DIM, NEW_DIM = 16, 32
WORDS = [
    "river",
    "budget",
    "lantern",
    "orbit",
    "meadow",
    "sonnet",
    "quartz",
    "harbor",
    "piano",
    "ferry",
    "mentor",
    "ledger",
    "compass",
    "archive",
]
#: Source records that have no text to write: the field missing, and blank.
NO_TEXT = {"ns0": ["ns0-notext-a", "ns0-notext-b"]}

Loaded = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SRC, dimension=DIM)]  # the targets are created by the jobs


def source_metadata(rng: np.random.Generator, n: int, count: int) -> dict[str, dict[str, Any]]:
    """Namespace ``ns{n}``'s records: distinct texts of five words, plus the records of ``NO_TEXT``."""
    ns = f"ns{n}"
    texts = (" ".join(WORDS[int(w)] for w in rng.integers(0, len(WORDS), 5)) for _ in range(count))
    metadata = {
        f"{ns}-{i:04d}": {"text": f"{text} item {n} {i}", "chunk": i, "source": f"doc-{i // 4}"}
        for i, text in enumerate(texts)
    }
    for j, vid in enumerate(NO_TEXT.get(ns, [])):
        metadata[vid] = {"chunk": -1} if j == 0 else {"chunk": -2, "text": "   "}
    return metadata


def load_source(stack: Stack, namespaces: int, per_namespace: int) -> Loaded:
    """``source_metadata`` with random vectors in the source index; returns the metadata by namespace."""
    rng = np.random.default_rng(17)
    loaded = {f"ns{n}": source_metadata(rng, n, per_namespace) for n in range(namespaces)}
    for ns, metadata in loaded.items():
        vectors = rng.random((len(metadata), DIM)).astype(np.float32)
        stack.pinecone.load(SRC, ns, [(vid, v, m) for (vid, m), v in zip(metadata.items(), vectors, strict=True)])
    return loaded


#: What every job here shares: small batches of 100 (two upsert_records requests each: 96 + 4), generous rates.
COMMON: dict[str, Any] = {
    "enrich": {"creator_fields": False, "migrated_from": True},
    "batch_size": 100,
    "max_batches_in_flight": 8,
    "rate": {"read_rps": 1000, "list_rps": 1000, "write_rps": 1000},
    "verify": {"text_search_samples": 40},
}


def target_spec(stack: Stack, index: str, create: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"kind": "pinecone", "index": index, "control_host": stack.pinecone.control_host, "create": create, **more}


def text_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    """Into an integrated index the job creates (llama-text-embed-v2, 384 dimensions), text from `text`."""
    records = {"text_from": "text", "field": "chunk_text"}
    integrated = target_spec(stack, TEXTS, {"model": "llama-text-embed-v2", "dimension": 384}, records=records)
    source = {"kind": "pinecone", "host": stack.pinecone.host(SRC)}
    return {"name": "into-integrated", "source": source, "target": integrated, **COMMON, **overrides}


def reembed_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    """Re-embedded with the hashing embedder into a plain index of NEW_DIM dimensions the job creates."""
    reembed = {"embedder": "hashing", "dimension": NEW_DIM}
    plain = target_spec(stack, NEW, {"metric": "cosine"})
    return text_spec(stack, name="reembed", reembed=reembed, target=plain) | overrides


def start_job(stack: Stack, spec_data: dict[str, Any]) -> tuple[jobs_database.Database, Dispatcher, int]:
    """Plan, create the target index and launch, as `nsmigrate run` does."""
    settings = load_settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db, dispatcher = jobs_database.Database(settings.database_url), Dispatcher(settings)
    started = launch.start_or_resume(
        db,
        dispatcher,
        parse_spec(spec_data),
        open_retrying_store,
        stack.workdir,
        open_control,
        new=True,
        before_write=lambda prepared: before_the_job(prepared, settings.database_url),
    )
    return db, dispatcher, started.job_id


def settled(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def reports(db: jobs_database.Database, job_id: int) -> dict[str, dict[str, Any]]:
    return {r.source_namespace: r.verification or {} for r in jobs_and_runs.runs_of(db, job_id)}


def target(stack: Stack, name: str) -> Any:
    return Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(name))


def with_text(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {vid: m for vid, m in records.items() if str(m.get("text", "")).strip()}


def written(stack: Stack, index_name: str, loaded: Loaded) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """(namespace, id, source metadata, the target's record) of every source record with text, once the target was
    found to hold exactly those ids in each namespace (the ones without text are not there at all)."""
    index = target(stack, index_name)
    for ns, records in loaded.items():
        fetched = fetch_all(index, ns, sorted(records))
        assert set(fetched) == set(with_text(records)), ns
        for vid, meta in with_text(records).items():
            yield ns, vid, meta, fetched[vid]


def assert_integrated_target_holds_the_text(stack: Stack, loaded: Loaded) -> None:
    """Every source record with text is in the integrated index: its text under chunk_text, its other fields and the
    enrichment kept, no `text` field."""
    for ns, vid, meta, record in written(stack, TEXTS, loaded):
        expected = {k: v for k, v in meta.items() if k != "text"}
        expected |= {"chunk_text": meta["text"], "migrated_from": f"{stack.pinecone.host(SRC).split('://')[1]}/{ns}"}
        assert record.metadata == expected, vid
    for ns, records in loaded.items():
        assert stack.pinecone.count(TEXTS, ns) == len(with_text(records)), ns
        assert stack.pinecone.count(SRC, ns) == len(records), ns  # the source is untouched


def test_a_vector_index_moves_into_an_integrated_index_the_job_creates(stack: Stack) -> None:
    loaded = load_source(stack, namespaces=3, per_namespace=150)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    db, _, job_id = start_job(stack, text_spec(stack))

    wait_for_job(db, job_id, settled)

    described = stack.pinecone.service(TEXTS).spec
    assert described.embed is not None and (described.embed.model, described.embed.field) == (
        "llama-text-embed-v2",
        "chunk_text",
    )
    assert_integrated_target_holds_the_text(stack, loaded)
    # Text records go out ≤ 96 per request: each batch of 100 is two upsert_records requests, none refused.
    stats = stack.pinecone.stats(TEXTS)
    written = sum(len(with_text(r)) for r in loaded.values())
    assert stats["requests"]["upsert_records"] >= math.ceil(written / 96)
    assert stats["requests"].get("upsert", 0) == 0 and stats["responses_429"] == 0

    found = reports(db, job_id)
    for ns in ("ns1", "ns2"):
        report = found[ns]
        assert report["passed"], report["reasons"]
        assert report["text_search"]["samples"] == 40 and report["text_search"]["hit_rate"] >= 0.9
        assert report["target_count"] == 150 and report["unwritable_count"] == 0
    # The records without text were never written, and are reported by id: in the audit log and the report.
    ns0 = found["ns0"]
    assert not ns0["passed"] and ns0["unwritable_ids"] == NO_TEXT["ns0"]
    assert any("were not written" in reason and "ns0-notext-a" in reason for reason in ns0["reasons"])
    assert ns0["target_count"] == 150 and ns0["missing_count"] == 0 and ns0["content_mismatch_count"] == 0
    events = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "records_not_written"]
    assert sorted(i for e in events for i in e["detail"]["ids"]) == NO_TEXT["ns0"]
    assert all(e["detail"]["namespace"] == "ns0" and "no text" in e["detail"]["reason"] for e in events)


def test_missing_text_skip_passes_verification_and_still_names_the_ids(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    loaded = load_source(stack, namespaces=1, per_namespace=40)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = text_spec(stack, name="skip-missing")
    spec["target"]["records"]["missing_text"] = "skip"
    db, _, job_id = start_job(stack, spec)

    status = wait_for_job(db, job_id, settled)

    assert [r.state for r in status.runs] == [RunState.VERIFIED]
    report = reports(db, job_id)["ns0"]
    assert report["unwritable_ids"] == NO_TEXT["ns0"] and "2 without text, not written" in report["summary"]
    assert_integrated_target_holds_the_text(stack, loaded)
    # The target holds text records, not the originals: a rollback has nothing to restore or compare, and refuses.
    with pytest.raises(StateError, match="wrote text"):
        rollback_job(worker_context(stack.database_url, stack.redis_url), job_id, dry_run=True)


def test_a_record_changed_in_the_target_fails_verification(stack: Stack) -> None:
    """Verification compares text and fields: one record's text overwritten in the target behind the copy's back
    fails its namespace, naming the id; the other namespace passes."""
    load_source(stack, namespaces=2, per_namespace=30)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = text_spec(stack, name="tampered", auto_verify=False)
    spec["target"]["records"]["missing_text"] = "skip"
    db, dispatcher, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, lambda s: all(r.state == RunState.COPIED for r in s.runs))
    idx = target(stack, TEXTS)
    idx.upsert_records(namespace="ns1", records=[{"_id": "ns1-0003", "chunk_text": "something else entirely"}])
    assert launch.request_verification(db, dispatcher, job_id, None)

    wait_for_job(db, job_id, settled)

    found = reports(db, job_id)
    assert not found["ns1"]["passed"]
    assert found["ns1"]["content_mismatches"][0]["id"] == "ns1-0003" and found["ns0"]["passed"]


def test_a_reembedding_job_writes_new_vectors_of_another_dimension(stack: Stack) -> None:
    loaded = load_source(stack, namespaces=2, per_namespace=120)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = reembed_spec(stack)
    spec["reembed"]["missing_text"] = "skip"
    db, _, job_id = start_job(stack, spec)

    status = wait_for_job(db, job_id, settled)

    assert [r.state for r in status.runs] == [RunState.VERIFIED] * 2, reports(db, job_id)
    assert stack.pinecone.service(NEW).spec.dimension == NEW_DIM
    embedder = HashingEmbedder(NEW_DIM)
    for _ns, vid, meta, record in written(stack, NEW, loaded):
        np.testing.assert_allclose(record.values, embedder.vector(meta["text"]), atol=1e-6, err_msg=vid)
        assert {k: record.metadata[k] for k in meta} == meta
    assert reports(db, job_id)["ns0"]["unwritable_ids"] == NO_TEXT["ns0"]


def test_a_reembedding_into_a_target_of_another_dimension_is_refused_at_plan_time(stack: Stack) -> None:
    load_source(stack, namespaces=1, per_namespace=5)
    spec = reembed_spec(stack, name="wrong-dim")
    spec["target"] = {"kind": "pinecone", "host": stack.pinecone.host(SRC)}  # a 16-dimension index
    with pytest.raises(PlanError, match=r"reembed makes 32-dimension vectors, target .* has 16"):
        launch.prepare(parse_spec(spec), open_retrying_store, stack.workdir, open_control)


@pytest.mark.chaos
@pytest.mark.parametrize("kind", ["integrated", "reembed"])
def test_kill_9_of_a_worker_mid_copy_is_recovered_by_redelivery(stack: Stack, kind: str) -> None:
    """SIGKILL of the worker while text batches run: the killed worker's messages come back by Celery's redelivery
    alone (no `resume`), the redone upserts overwrite by id, and every namespace verifies."""
    loaded = load_source(stack, namespaces=3, per_namespace=300)
    spec = text_spec(stack, batch_size=20) if kind == "integrated" else reembed_spec(stack, batch_size=20)
    (spec["target"]["records"] if kind == "integrated" else spec["reembed"]).update(missing_text="skip")
    stack.pinecone.set_faults(SRC, Faults(latency_ms=120))
    # Threads pools: a SIGKILL takes every task slot of the process with it, as it does a prefork pool's children
    # (test_chaos_workers_killed.py kills prefork workers and children).
    first = stack.start_worker("list,copy,verify", 6, pool="threads", name="doomed", **FAST_RECOVERY, **QUICK_RETRIES)
    successor = start_standby(stack, "successor", **FAST_RECOVERY, **QUICK_RETRIES)
    db, _, job_id = start_job(stack, spec)

    freeze_mid_batch(first, db, job_id, total_batches=46)
    orphaned = kill_frozen(stack, first, db, job_id)
    fault_landed(stack)
    take_over(stack, successor)

    def explain() -> object:
        return {b.id: (b.state, b.attempts) for b in batches(db, job_id) if b.state != BatchState.DONE}

    status = wait_for(
        all_verified(db, job_id),
        "every namespace verified after the kill, by redelivery alone",
        timeout_s=120,
        explain=explain,
    )
    assert status.totals.failed == 0
    assert {b.state for b in batches(db, job_id)} == {BatchState.DONE}
    assert all(n >= 2 for b in batches(db, job_id) if b.id in orphaned for n in [b.attempts])
    if kind == "integrated":
        assert_integrated_target_holds_the_text(stack, loaded)
    else:
        for ns, records in loaded.items():
            assert stack.pinecone.count(NEW, ns) == len(with_text(records))


@pytest.mark.chaos
def test_resume_finishes_a_text_job_whose_messages_are_gone_after_a_kill_9(stack: Stack) -> None:
    """SIGKILL of the worker and its messages gone with it (queues and ``unacked`` emptied, as after a broker
    failover; the successor keeps the production visibility timeout): `nsmigrate resume` re-enqueues the text
    batches the job table still has unfinished, and every namespace verifies."""
    loaded = load_source(stack, namespaces=3, per_namespace=300)
    spec = text_spec(stack, batch_size=20)
    spec["target"]["records"]["missing_text"] = "skip"
    stack.pinecone.set_faults(SRC, Faults(latency_ms=120))
    ttl = {"NSMIGRATE_LISTER_LOCK_TTL_S": "3"}
    first = stack.start_worker("list,copy,verify", 6, pool="threads", name="doomed", **ttl, **QUICK_RETRIES)
    successor = start_standby(stack, "successor", NSMIGRATE_LISTER_LOCK_TTL_S="3", **QUICK_RETRIES)
    db, dispatcher, job_id = start_job(stack, spec)

    freeze_mid_batch(first, db, job_id, total_batches=46)
    stuck = kill_and_lose_its_messages(stack, first, db, job_id, successor)

    assert recovery.resume(db, dispatcher, job_id)["batches"] >= len(stuck)

    wait_for(all_verified(db, job_id), "every namespace verified after resume", timeout_s=120)
    assert {b.state for b in batches(db, job_id)} == {BatchState.DONE}
    assert_integrated_target_holds_the_text(stack, loaded)


def test_sync_of_an_integrated_job_copies_only_what_changed_in_the_text_or_fields(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    """A text job's sync judges the target by its text and fields (its values are the model's): one source record
    given new text and one new record are copied, the rest is unchanged, and the namespace verifies again."""
    loaded = load_source(stack, namespaces=1, per_namespace=50)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = text_spec(stack, name="sync-text")
    spec["target"]["records"]["missing_text"] = "skip"
    db, _, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, settled)
    changed = {**loaded["ns0"]["ns0-0007"], "text": "a wholly new text"}
    vectors = np.ones((2, DIM), dtype=np.float32)
    stack.pinecone.load(SRC, "ns0", [("ns0-0007", vectors[0], changed), ("ns0-new", vectors[1], {"text": "new one"})])
    (run,) = jobs_and_runs.runs_of(db, job_id)

    result = sync_run(worker_context(stack.database_url, stack.redis_url), run.id)

    assert (result["new"], result["changed"], result["unchanged"]) == (1, 1, 50 - 1), result
    wait_for_job(db, job_id, lambda s: all(r.state == RunState.VERIFIED for r in s.runs))
    fetched = target(stack, TEXTS).fetch(ids=["ns0-0007", "ns0-new"], namespace="ns0").vectors
    assert fetched["ns0-0007"].metadata["chunk_text"] == "a wholly new text"
    assert fetched["ns0-new"].metadata["chunk_text"] == "new one"


def test_a_guarded_text_upsert_reserves_its_embedding_tokens_and_search_text_finds_it(
    sandbox: PineconeSandbox, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one way to call a store, for an integrated index: an upsert of text records first reserves its estimated
    tokens of the index's embed scope at ``rate.embed_tokens_per_min`` (here 60 a minute, so 30 tokens over the
    one-second burst are waited off: the wait is recorded, not slept), and ``search_text`` is a budgeted read."""
    embed = IntegratedEmbed(model="llama-text-embed-v2", field="chunk_text", dimension=384, metric="cosine")
    sandbox.add_index(IndexSpec("guarded-texts", 384, "cosine", embed=embed))
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    records = TextRecords(text_from="text", field="chunk_text")
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host("guarded-texts"), records=records))
    waits: list[float] = []
    rate = RateBudget(write_rps=100, read_rps=100, embed_tokens_per_min=60)
    client = redis_lib.Redis.from_url(redis_url)
    try:
        guarded = GuardedStore(store, limiter=RateLimiter(client, sleep=waits.append), rate=rate)
        written = [Record("r1", (), {"chunk_text": "lantern harbor", "n": 1})]
        assert guarded.upsert("docs", written, tokens=31) == 1
        assert len(waits) == 1 and 25 < waits[0] <= 30.1  # 31 tokens, 1 of burst, refilled at 1 a second
        assert client.exists(rate_bucket_key(f"tokens:{embed_scope(guarded.budget_key)}"))
        sandbox.settle("guarded-texts")  # searches lag writes
        assert guarded.search_text("docs", "lantern harbor", 3) == ["r1"]
        assert sandbox.stats("guarded-texts")["requests"] == {"upsert_records": 1, "search_records": 1}
    finally:
        store.close()
        client.close()
        sandbox.remove_index("guarded-texts")

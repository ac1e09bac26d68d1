"""Jobs into and out of **document indexes** (Pinecone API 2026-07): a pod index into a document index the job
creates from the schema it derives (a key a document refuses stops the plan, naming the rename); a refactor inside a
document index (UUID namespaces → creator namespaces) followed by a cleanup that proves every document before it
deletes; a hybrid (dense + sparse) index into one, synced and rolled back; to pgvector and back; an integrated index
into one; a creator erased from one; an export and an import. Real `nsmigrate worker` processes, Redis, Postgres
and the real SDK against the local data plane; each test reads the documents back with the SDK's
``index.documents``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.fleet import open_control
from nsmigrate.cli.main import app
from nsmigrate.cli.run import before_the_job
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema, TextField
from nsmigrate_sandbox.documents import document_index, load_documents
from nsmigrate_sandbox.embedding import IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet_jobs import use_stack_env
from tests.polling import wait_for_job

POD, DOCS, TWINS = "legacy-pod", "documents", "twin-documents"
DIM = 8
TWIN_IDS = {"0b6e3f0a-1111-4c1e-9a0e-000000000001": "c.1", "0b6e3f0a-2222-4c1e-9a0e-000000000002": "c.2"}
TWIN_SCHEMA = DocumentSchema(DenseField("embedding", DIM, "cosine"), text=(TextField("chunk_text"),))


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(POD, DIM, "cosine", kind="pod"), document_index(TWINS, TWIN_SCHEMA)]


COMMON: dict[str, Any] = {
    "batch_size": 50,
    "max_batches_in_flight": 8,
    "rate": {"read_rps": 1000, "list_rps": 1000, "write_rps": 1000},
    "verify": {"query_samples": 5, "top_k": 5},
}


def pod_records(namespaces: int, per_namespace: int) -> dict[str, dict[str, tuple[list[float], dict[str, Any]]]]:
    rng = np.random.default_rng(7)
    return {
        f"ns{n}": {
            f"ns{n}-{i:03d}": (
                [float(v) for v in rng.random(DIM).astype(np.float32)],
                {"text": f"chunk {i} of namespace {n}", "_source": f"doc-{i // 3}", "page": i},
            )
            for i in range(per_namespace)
        }
        for n in range(namespaces)
    }


def start_job(stack: Stack, spec_data: dict[str, Any]) -> tuple[jobs_database.Database, int]:
    """Plan, create the target index and launch, as `nsmigrate run` does."""
    settings = load_settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    started = launch.start_or_resume(
        db,
        Dispatcher(settings),
        parse_spec(spec_data),
        open_retrying_store,
        stack.workdir,
        open_control,
        new=True,
        before_write=lambda prepared: before_the_job(prepared, settings.database_url),
    )
    return db, started.job_id


def settled(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def documents_of(stack: Stack, index: str, namespace: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = (
        Pinecone(api_key=SANDBOX_API_KEY)
        .Index(host=stack.pinecone.host(index))
        .documents.fetch(namespace=namespace, ids=ids)
    )
    return {i: d.to_dict() if hasattr(d, "to_dict") else dict(d) for i, d in found.documents.items()}


def pod_spec(stack: Stack, documents: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "pod-to-documents",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(POD), "enumerate": {"mode": "sweep"}},
        "target": {
            "kind": "pinecone",
            "index": DOCS,
            "control_host": stack.pinecone.control_host,
            "documents": documents,
            "create": {"tags": {"migrated-from": POD}},
        },
        "enrich": {"creator_fields": False, "migrated_from": False},
        **COMMON,
    }


def test_a_pod_index_moves_into_a_document_index_and_a_key_a_document_refuses_stops_the_plan(stack: Stack) -> None:
    loaded = pod_records(namespaces=2, per_namespace=60)
    for ns, records in loaded.items():
        stack.pinecone.load(POD, ns, [(vid, values, meta) for vid, (values, meta) in records.items()])
    stack.start_worker("list,copy,verify", 4, pool="threads")
    mapping: dict[str, Any] = {"text_fields": ["chunk_text"], "rename": {"text": "chunk_text"}}

    with pytest.raises(PlanError) as info:
        start_job(stack, pod_spec(stack, mapping))

    assert "'_source': field names starting with '_' are reserved" in str(info.value)
    assert "nothing is dropped" in str(info.value)
    assert "target.documents.rename" in (info.value.hint or "") and "'_source': 'source'" in (info.value.hint or "")
    assert DOCS not in stack.pinecone.names()  # refused before anything was created or written

    mapping["rename"]["_source"] = "source"
    db, job_id = start_job(stack, pod_spec(stack, mapping))
    wait_for_job(db, job_id, settled)

    schema = stack.pinecone.service(DOCS).spec.documents
    assert schema is not None and schema.dense is not None
    assert (schema.dense.name, schema.dense.dimension, schema.text_names) == ("embedding", DIM, {"chunk_text"})
    for run in jobs_and_runs.runs_of(db, job_id):
        report = run.verification or {}
        assert run.state == RunState.VERIFIED, report.get("reasons")
        assert report["target_count"] == 60 and report["content_mismatch_count"] == 0
    for ns, records in loaded.items():
        documents = documents_of(stack, DOCS, ns, sorted(records))
        assert set(documents) == set(records)
        for vid, (values, meta) in records.items():
            document = documents[vid]
            np.testing.assert_allclose(document.pop("embedding"), values, rtol=1e-6)
            assert document == {"_id": vid, "chunk_text": meta["text"], "source": meta["_source"], "page": meta["page"]}
    assert stack.pinecone.stats(DOCS)["requests"].get("upsert", 0) == 0  # never the vectors API


def test_a_refactor_inside_a_document_index_verifies_and_cleanup_proves_each_document(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    rng = np.random.default_rng(3)
    service = stack.pinecone.service(TWINS)
    for twin in TWIN_IDS:
        documents = [
            {"_id": f"{twin[-4:]}-{i}", "embedding": rng.random(DIM).tolist(), "chunk_text": f"text {i}", "n": i}
            for i in range(40)
        ]
        load_documents(service, twin, documents)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    index = {"kind": "pinecone", "index": TWINS, "control_host": stack.pinecone.control_host, "documents": {}}
    spec = {
        "name": "twins-in-documents",
        "source": index,
        "target": index,
        "namespaces": {"exclude": ["creator_*"]},
        "routing": {"mode": "creator", "creators": {"source": "inline", "twins": TWIN_IDS}},
        "cleanup": {"mode": "manual"},
        **COMMON,
    }

    db, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, settled)

    runs = {r.source_namespace: r for r in jobs_and_runs.runs_of(db, job_id)}
    assert all(r.state == RunState.VERIFIED for r in runs.values()), [r.verification for r in runs.values()]
    for twin, creator in TWIN_IDS.items():
        namespace = f"creator_{creator}_twin_{twin}"
        documents = documents_of(stack, TWINS, namespace, [f"{twin[-4:]}-{i}" for i in range(40)])
        assert len(documents) == 40
        assert {d["creator_id"] for d in documents.values()} == {creator}
        assert {d["twin_id"] for d in documents.values()} == {twin}
        assert all(d["chunk_text"] == f"text {int(d['n'])}" for d in documents.values())

    ctx = worker_context(stack.database_url, stack.redis_url)
    for twin in TWIN_IDS:
        cleaning.cleanup_run(ctx, runs[twin].id, actor="tester")

    for twin, creator in TWIN_IDS.items():
        assert stack.pinecone.count(TWINS, twin) == 0
        assert stack.pinecone.count(TWINS, f"creator_{creator}_twin_{twin}") == 40
    assert {r.state for r in jobs_and_runs.runs_of(db, job_id)} == {RunState.CLEANED}


SERVERLESS, HYBRID = "legacy-hybrid", "hybrid-documents"


def test_sync_and_rollback_of_a_copy_into_a_document_index_with_sparse_values(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    """A dotproduct index with sparse values → a document index with a sparse field; a sync copies what changed in
    the source since (a record given other text and values, a new one), and a rollback removes every document."""
    stack.pinecone.add_index(IndexSpec(SERVERLESS, DIM, "dotproduct"))
    rng = np.random.default_rng(11)
    records = [
        (
            f"hybrid-{i:02d}",
            rng.random(DIM).astype(np.float32),
            {"text": f"hybrid {i}"},
            {"indices": [i, 50 + i], "values": [0.5, 1.0]},
        )
        for i in range(30)
    ]
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(SERVERLESS))
    index.upsert(
        vectors=[{"id": i, "values": v.tolist(), "metadata": m, "sparse_values": s} for i, v, m, s in records],
        namespace="ns",
    )
    stack.pinecone.settle()  # written by the application long before the job
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = {
        "name": "hybrid-to-documents",
        "source": {"kind": "pinecone", "index": SERVERLESS, "control_host": stack.pinecone.control_host},
        "target": {
            "kind": "pinecone",
            "index": HYBRID,
            "control_host": stack.pinecone.control_host,
            "documents": {"sparse_field": "keywords", "text_fields": ["text"]},
            "create": {},
        },
        "enrich": {"creator_fields": False, "migrated_from": False},
        **COMMON,
    }
    db, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, settled)
    (run,) = jobs_and_runs.runs_of(db, job_id)
    assert run.state == RunState.VERIFIED, run.verification
    schema = stack.pinecone.service(HYBRID).spec.documents
    assert schema is not None and schema.sparse is not None and schema.sparse.name == "keywords"
    assert documents_of(stack, HYBRID, "ns", ["hybrid-03"])["hybrid-03"]["keywords"] == {
        "indices": [3, 53],
        "values": [0.5, 1.0],
    }

    index.upsert(
        vectors=[
            {"id": "hybrid-03", "values": [1.0] * DIM, "metadata": {"text": "changed"}, "sparse_values": records[3][3]},
            {"id": "hybrid-new", "values": [0.5] * DIM, "metadata": {"text": "new"}, "sparse_values": records[0][3]},
        ],
        namespace="ns",
    )
    ctx = worker_context(stack.database_url, stack.redis_url)
    result = sync_run(ctx, run.id)

    assert (result["new"], result["changed"]) == (1, 1), result
    wait_for_job(db, job_id, lambda s: all(r.state == RunState.VERIFIED for r in s.runs))
    synced = documents_of(stack, HYBRID, "ns", ["hybrid-03", "hybrid-new"])
    assert (synced["hybrid-03"]["text"], synced["hybrid-new"]["text"]) == ("changed", "new")

    rollback_job(ctx, job_id, actor="tester")

    assert stack.pinecone.count(HYBRID, "ns") == 0
    assert stack.pinecone.count(SERVERLESS, "ns") == 31  # the source is untouched


def test_a_document_index_moves_into_pgvector_and_back_into_a_new_document_index(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Document → pgvector (generic tables, one per namespace): each document becomes a row, its fields the
    metadata; then pgvector → a document index the job creates: the documents come back field for field."""
    monkeypatch.setenv("NSMIGRATE_PGVECTOR_URL", stack.database_url)  # the workers get the same (Stack.env)
    rng = np.random.default_rng(5)
    originals = [
        {"_id": f"d-{i:02d}", "embedding": rng.random(DIM).tolist(), "chunk_text": f"text {i}", "n": float(i)}
        for i in range(45)
    ]
    load_documents(stack.pinecone.service(TWINS), "shelf", originals)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    documents = {"kind": "pinecone", "index": TWINS, "control_host": stack.pinecone.control_host, "documents": {}}
    tables = {"kind": "pgvector", "table": "docs", "dimension": DIM}
    common = {"enrich": {"creator_fields": False, "migrated_from": False}, **COMMON}
    back = {
        **documents,
        "index": "documents-again",
        "documents": {"text_fields": ["chunk_text"]},
        "create": {},
    }

    for name, source, target in (("to-pgvector", documents, tables), ("from-pgvector", tables, back)):
        db, job_id = start_job(stack, {"name": name, "source": source, "target": target, **common})
        wait_for_job(db, job_id, settled)
        (run,) = jobs_and_runs.runs_of(db, job_id)
        assert run.state == RunState.VERIFIED, (name, run.verification)

    again = documents_of(stack, "documents-again", "shelf", [d["_id"] for d in originals])
    for original in originals:
        document = again[original["_id"]]
        np.testing.assert_allclose(document.pop("embedding"), original["embedding"], rtol=1e-6)
        assert document == {k: v for k, v in original.items() if k != "embedding"}


def test_an_integrated_index_moves_into_a_document_index_with_its_text_searchable(stack: Stack) -> None:
    """Seed 001's integrated index (its model embedded `chunk_text`) → a document index the job creates: the
    model's vectors go into the dense field, `chunk_text` into a full-text field, every other field kept."""
    embed = IntegratedEmbed(model="llama-text-embed-v2", field="chunk_text", dimension=384, metric="cosine")
    stack.pinecone.add_index(IndexSpec("integrated", 384, "cosine", embed=embed))
    texts = {f"rec-{i:02d}": f"lantern harbor item {i} of the ledger" for i in range(40)}
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("integrated"))
    index.upsert_records(namespace="ns", records=[{"_id": i, "chunk_text": t, "page": 3} for i, t in texts.items()])
    stack.pinecone.settle("integrated")  # written long before the job: its stats show the namespace
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = {
        "name": "integrated-to-documents",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("integrated")},
        "target": {
            "kind": "pinecone",
            "index": "from-integrated",
            "control_host": stack.pinecone.control_host,
            "documents": {"text_fields": ["chunk_text"]},
            "create": {},
        },
        "enrich": {"creator_fields": False, "migrated_from": False},
        **COMMON,
    }

    db, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, settled)

    (run,) = jobs_and_runs.runs_of(db, job_id)
    assert run.state == RunState.VERIFIED, run.verification
    found = (
        Pinecone(api_key=SANDBOX_API_KEY)
        .Index(host=stack.pinecone.host("from-integrated"))
        .documents.search(
            namespace="ns", score_by=[{"type": "text", "fields": ["chunk_text"], "query": "item 7"}], top_k=1
        )
    )
    assert [m.to_dict()["_id"] for m in found.matches] == ["rec-07"]
    documents = documents_of(stack, "from-integrated", "ns", sorted(texts))
    assert {i: (d["chunk_text"], d["page"]) for i, d in documents.items()} == {i: (t, 3) for i, t in texts.items()}


def test_erasing_a_creator_removes_their_documents_everywhere_and_nothing_else(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After a refactor inside a document index, `nsmigrate erase --creator` deletes the creator's documents from
    their creator namespace and their old UUID namespace, checks each place, and leaves the other creator's alone."""
    monkeypatch.chdir(tmp_path)
    use_stack_env(stack, monkeypatch)
    rng = np.random.default_rng(9)
    for twin in TWIN_IDS:
        documents = [
            {"_id": f"{twin[-4:]}-{i}", "embedding": rng.random(DIM).tolist(), "chunk_text": f"text {i}"}
            for i in range(20)
        ]
        load_documents(stack.pinecone.service(TWINS), twin, documents)
    stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    index = {"kind": "pinecone", "index": TWINS, "control_host": stack.pinecone.control_host, "documents": {}}
    spec = {
        "name": "twins-to-erase",
        "source": index,
        "target": index,
        "namespaces": {"exclude": ["creator_*"]},
        "routing": {"mode": "creator", "creators": {"source": "inline", "twins": TWIN_IDS}},
        **COMMON,
    }
    db, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, settled)
    erased, kept = list(TWIN_IDS)

    result = CliRunner().invoke(app, ["erase", "--creator", TWIN_IDS[erased], "--yes", "--receipt", "r.json"])

    assert result.exit_code == 0, result.output
    assert stack.pinecone.count(TWINS, erased) == 0
    assert stack.pinecone.count(TWINS, f"creator_{TWIN_IDS[erased]}_twin_{erased}") == 0
    assert stack.pinecone.count(TWINS, kept) == 20
    assert stack.pinecone.count(TWINS, f"creator_{TWIN_IDS[kept]}_twin_{kept}") == 20
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["verified"] and receipt["vectors_erased"] == 40


def test_a_document_index_exports_to_parquet_and_imports_into_another_document_index(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`nsmigrate export` of a document index writes its documents as records (fields as metadata); `nsmigrate
    import` writes them into another document index, where they are the same documents."""
    monkeypatch.chdir(tmp_path)
    use_stack_env(stack, monkeypatch)
    rng = np.random.default_rng(13)
    originals = [
        {"_id": f"e-{i:02d}", "embedding": rng.random(DIM).tolist(), "chunk_text": f"text {i}", "n": float(i)}
        for i in range(25)
    ]
    load_documents(stack.pinecone.service(TWINS), "shelf", originals)
    stack.pinecone.add_index(document_index("restored", TWIN_SCHEMA))
    store = {"kind": "pinecone", "control_host": stack.pinecone.control_host, "documents": {}}
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(
            {"name": "docs-backup", "source": {**store, "index": TWINS}, "target": {**store, "index": "restored"}}
        )
    )

    exported = CliRunner().invoke(app, ["export", str(spec), "--out", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    imported = CliRunner().invoke(app, ["import", str(tmp_path / "out"), str(spec), "--to-target"])
    assert imported.exit_code == 0, imported.output

    stack.pinecone.settle("restored")  # a document fetch lags the import's writes; import verifies nothing
    again = documents_of(stack, "restored", "shelf", [d["_id"] for d in originals])
    for original in originals:
        document = again[original["_id"]]
        np.testing.assert_allclose(document.pop("embedding"), original["embedding"], rtol=1e-6)
        assert document == {k: v for k, v in original.items() if k != "embedding"}

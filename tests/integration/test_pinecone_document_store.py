"""nsmigrate's store of a Pinecone document index (``workers.stores.pinecone.document_index``) against the local data
plane: records written and read as documents, listed, searched and deleted; records a document index would refuse
are refused by id before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.records.documents import DocumentFields
from nsmigrate.orchestrator.records.vectors import Record, SparseValues
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.pinecone.document_index import PineconeDocumentStore
from nsmigrate_sandbox.document_schema import DocumentSchema, read_schema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox

KEY_ENV = "NSMIGRATE_TEST_PINECONE_KEY"
INDEX = "doc-target"
SCHEMA = {
    "fields": {
        "embedding": {"type": "dense_vector", "dimension": 3, "metric": "dotproduct"},
        "keywords": {"type": "sparse_vector"},
        "chunk_text": {"type": "string", "full_text_search": {"language": "en"}},
    }
}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    schema = read_schema(SCHEMA)
    assert isinstance(schema, DocumentSchema)
    return [document_index(INDEX, schema)]


def described_fields(sandbox: PineconeSandbox) -> DocumentFields:
    headers = {"Api-Key": "k", "X-Pinecone-Api-Version": "2026-07"}
    model = httpx.get(f"{sandbox.control_host}/indexes/{INDEX}", headers=headers, timeout=10).json()
    return DocumentFields.from_schema(model["schema"]["fields"], index=INDEX)


@pytest.fixture
def store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeDocumentStore]:
    monkeypatch.setenv(KEY_ENV, "pcsk-documents-test")
    # By name: the control plane resolves the document index's host, as for any Pinecone store.
    spec = PineconeStoreSpec(index=INDEX, control_host=sandbox.control_host, api_key_env=KEY_ENV)
    opened = PineconeDocumentStore(spec, described_fields(sandbox))
    yield opened
    opened.close()


def record(i: int, **metadata: object) -> Record:
    sparse = SparseValues((i, 100 + i), (0.5, 1.5)) if i % 2 else None
    return Record(f"rec-{i:03d}", [1.0, float(i), 0.5], {"chunk_text": f"chunk {i}", "n": float(i), **metadata}, sparse)


def test_records_go_in_as_documents_and_come_back_equal(store: PineconeDocumentStore, sandbox: PineconeSandbox) -> None:
    records = [record(i, tags=["a", "b"], creator="c1") for i in range(12)]
    assert store.upsert("twin-a", records) == 12
    assert store.upsert("", [record(99)]) == 1  # the default namespace, named __default__ on the wire
    sandbox.settle()  # a document fetch lags writes
    assert store.fetch("twin-a", ["rec-003", "rec-000", "nope", "rec-003"]) == [records[3], records[0]]
    assert store.fetch("", ["rec-099"]) == [record(99)]
    stored = sandbox.service(INDEX).store.fetch("twin-a", ["rec-001"])["rec-001"]
    assert stored.metadata["chunk_text"] == "chunk 1" and stored.sparse == {"indices": [1, 101], "values": [0.5, 1.5]}

    assert store.namespaces() == {"twin-a": 12, "": 1} and store.count("twin-a") == 12
    assert (store.dimension(), store.metric()) == (3, "dotproduct")
    first = store.list_ids("twin-a", limit=5)
    assert first.ids == [f"rec-{i:03d}" for i in range(5)] and first.next_token
    assert store.list_ids("twin-a", limit=5, token=first.next_token).ids == [f"rec-{i:03d}" for i in range(5, 10)]
    assert store.list_ids_by_prefix("twin-a", "rec-01", limit=100).ids == ["rec-010", "rec-011"]

    nearest = store.query_scored("twin-a", [0.0, 1.0, 0.0], 3)
    assert [i for i, _ in nearest] == ["rec-011", "rec-010", "rec-009"] and nearest[0][1] == 11.0

    store.delete("twin-a", ["rec-000", "rec-001", "missing"])
    sandbox.settle()
    assert store.count("twin-a") == 10
    store.delete_namespace("twin-a")
    store.delete_namespace("never-there")
    sandbox.settle()
    assert store.namespaces() == {"": 1}


def test_records_a_document_refuses_are_named_and_nothing_is_written(
    store: PineconeDocumentStore, sandbox: PineconeSandbox
) -> None:
    bad = [
        record(1),
        Record("rec-private", [1.0, 0.0, 0.0], {"_source": "x", "$rank": 1}),
        Record("rec-clash", [1.0, 0.0, 0.0], {"embedding": "old"}),
        Record("réc", [1.0, 0.0, 0.0]),
        Record("rec-text", [1.0, 0.0, 0.0], {"chunk_text": 12}),
    ]
    with pytest.raises(StoreError) as refused:
        store.upsert("twin-a", bad)
    message = str(refused.value)
    assert "4 records cannot be written as documents, nothing of this upsert was written" in message
    assert "'rec-private': metadata keys ['_source', '$rank']" in message
    assert "'rec-clash': metadata keys ['embedding']" in message
    assert "'réc': its id is not 1-512 ASCII characters" in message
    assert "'rec-text': metadata ['chunk_text'] would fill full-text fields but are not text" in message
    assert "rename those metadata keys" in (refused.value.hint or "")
    assert sandbox.count(INDEX) == 0


def test_the_servers_answers_map_to_nsmigrates_errors(store: PineconeDocumentStore, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults(INDEX, Faults(write_rps_per_namespace=0, retry_after_s=0.25))
    with pytest.raises(RetryableError) as limited:
        store.upsert("twin-a", [record(0)])
    assert limited.value.retry_after_s == 0.25 and "rate limited" in str(limited.value)
    sandbox.set_faults(INDEX, Faults())
    with pytest.raises(StoreError, match=r"Pinecone refused upsert_documents \(400\): .*dimension 2 does not match"):
        store.upsert("twin-a", [Record("short", [1.0, 2.0])])
    assert sandbox.count(INDEX) == 0

"""Document indexes on the local data plane through the real ``pinecone`` SDK (API 2026-07): created from a schema
with ``pc.indexes.create``, written and read with ``index.documents``; raw HTTP where the SDK refuses before
sending. Limits, field-name rules, a request refused whole, upsert replacing, 202s, paging, search by dense, sparse
and text, filters, ``include_fields``, and the wrong API refused both ways."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pinecone import ApiError, Pinecone
from pinecone.errors.exceptions import PayloadTooLargeError

from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

DIM = 4
VECTORS = "legacy-vectors"
DOCS = "articles"
SCHEMA = {
    "fields": {
        "embedding": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"},
        "keywords": {"type": "sparse_vector"},
        "body": {"type": "string", "full_text_search": {"language": "en"}},
        "title": {"type": "string", "full_text_search": {}},
    }
}
HEADERS = {"Api-Key": "test-key", "X-Pinecone-Api-Version": "2026-07"}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(VECTORS, DIM)]


@pytest.fixture
def pc(sandbox: PineconeSandbox) -> Iterator[Pinecone]:
    """The SDK on the sandbox's control plane, with the document index created fresh by it."""
    client = Pinecone(api_key="test-key", host=sandbox.control_host)
    client.indexes.create(name=DOCS, schema=SCHEMA, timeout=-1)
    yield client
    if DOCS in sandbox.names():
        sandbox.remove_index(DOCS)


def docs_index(pc: Pinecone, sandbox: PineconeSandbox) -> Any:
    return pc.Index(host=sandbox.host(DOCS))


def article(doc_id: str, vector: list[float], body: str, **fields: Any) -> dict[str, Any]:
    return {"_id": doc_id, "embedding": vector, "body": body, **fields}


ARTICLES = [
    article("a1", [1, 0, 0, 0], "the quick brown fox jumps", topic="animals", year=2020, title="Fox"),
    article("a2", [0.9, 0.1, 0, 0], "a lazy dog sleeps all day", topic="animals", year=2021),
    article("b1", [0, 1, 0, 0], "vector databases search embeddings fast", topic="tech", year=2024),
    article(
        "b2",
        [0, 0, 1, 0],
        "quick search over text and vectors",
        topic="tech",
        keywords={"indices": [7, 9], "values": [0.5, 2.0]},
    ),
]


def raw(sandbox: PineconeSandbox, path: str, body: Any, index: str = DOCS) -> httpx.Response:
    return httpx.post(sandbox.host(index) + path, json=body, headers=HEADERS, timeout=10)


def test_a_schema_index_is_described_by_deployment_and_schema(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    described = pc.describe_index(DOCS)
    assert set(described.schema.fields) == {"embedding", "keywords", "body", "title"}
    assert (described.dimension, described.metric) == (DIM, "cosine")  # the SDK reads both from the schema
    assert type(described.deployment).__name__ == "ManagedDeployment" and described.status.ready
    body = httpx.get(f"{sandbox.control_host}/indexes/{DOCS}", headers=HEADERS, timeout=10).json()
    assert not {"spec", "dimension", "metric", "vector_type"} & set(body)
    assert body["schema"]["fields"]["body"]["full_text_search"] == {
        "language": "en",
        "stemming": False,
        "stop_words": False,
    }


def test_the_sdk_lists_configures_and_deletes_a_document_index(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    listed = {model.name: model for model in pc.indexes.list()}
    assert set(listed) == {VECTORS, DOCS} and set(listed[DOCS].schema.fields) == set(SCHEMA["fields"])
    assert set(listed[VECTORS].schema.fields) == {"_values", "_sparse_values"}
    pc.indexes.configure(DOCS, deletion_protection="enabled", tags={"team": "search"})
    configured = pc.indexes.describe(DOCS)
    assert (configured.deletion_protection, configured.tags) == ("enabled", {"team": "search"})
    with pytest.raises(ApiError, match="Deletion protection is enabled"):
        pc.indexes.delete(DOCS, timeout=-1)
    pc.indexes.configure(DOCS, deletion_protection="disabled")
    pc.indexes.delete(DOCS, timeout=-1)
    sandbox.settle()
    assert DOCS not in sandbox.names()


def test_upsert_fetch_and_replace(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    assert idx.documents.upsert(namespace="news", documents=ARTICLES).upserted_count == 4
    sandbox.settle()
    fetched = idx.documents.fetch(namespace="news", ids=["a1", "b2", "missing"])
    assert set(fetched.documents) == {"a1", "b2"} and fetched.namespace == "news"
    a1 = fetched.documents["a1"].to_dict()
    assert a1 == {"_id": "a1", "embedding": [1.0, 0.0, 0.0, 0.0], "body": "the quick brown fox jumps",
                  "topic": "animals", "year": 2020.0, "title": "Fox"}  # fmt: skip
    assert fetched.documents["b2"].to_dict()["keywords"] == {"indices": [7, 9], "values": [0.5, 2.0]}

    # An upsert replaces the whole document: fields it does not carry are gone.
    idx.documents.upsert(namespace="news", documents=[article("a1", [0, 0, 0, 1], "rewritten")])
    sandbox.settle()
    again = idx.documents.fetch(namespace="news", ids=["a1"], include_fields=["body", "topic"]).documents["a1"]
    assert again.to_dict() == {"_id": "a1", "body": "rewritten"}
    assert sandbox.stats(DOCS)["namespaces"] == {"news": 4}


def test_writes_answer_202_and_reads_200_with_the_namespace(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    upserted = raw(sandbox, "/namespaces/__default__/documents/upsert", {"documents": ARTICLES[:2]})
    sandbox.settle()
    assert (upserted.status_code, upserted.json()) == (202, {"upserted_count": 2})
    listed = raw(sandbox, "/namespaces/__default__/documents/list", {})
    assert listed.status_code == 200
    assert listed.json() == {"documents": [{"_id": "a1"}, {"_id": "a2"}], "namespace": "__default__",
                             "usage": {"read_units": 1}}  # fmt: skip
    updated = raw(sandbox, "/namespaces/__default__/documents/update", {"documents": [{"_id": "a1", "year": 1}]})
    sandbox.settle()
    assert (updated.status_code, updated.json()) == (202, {})
    deleted = raw(sandbox, "/namespaces/__default__/documents/delete", {"filter": {"year": {"$gte": 2021}}})
    sandbox.settle()
    assert (deleted.status_code, deleted.json()) == (202, {"matched_records": 1})
    assert sandbox.count(DOCS, "") == 1


def test_one_bad_document_refuses_the_whole_request(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    bad_documents = [
        ({"_id": "x", "embedding": [1, 0, 0, 0], "_private": 1}, "field names starting with '_' or '$'"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "$op": 1}, "field names starting with '_' or '$'"),
        ({"_id": "x", "embedding": [1, 0, 0]}, "dimension 3 does not match"),
        ({"_id": "x", "body": "no vector"}, "lacks the dense_vector field 'embedding'"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "nested": {"a": 1}}, "string, number, boolean or list of strings"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "body": 7}, "full-text field"),
        ({"_id": "x", "embedding": [1, 0, 0, 0], "body": "word " * 10_001}, "at most 10000 tokens"),
    ]
    for bad, message in bad_documents:
        with pytest.raises(ApiError, match="Document at position 1") as caught:
            idx.documents.upsert(namespace="news", documents=[ARTICLES[0], bad])
        assert caught.value.status_code == 400 and message in str(caught.value), str(caught.value)
    assert sandbox.count(DOCS) == 0  # the good document at position 0 was not stored either

    # What the SDK refuses before sending, the service refuses too.
    for body, message in [
        ({"documents": []}, "1 to 1000 documents"),
        ({"documents": [article(f"d{i}", [1, 0, 0, 0], "x") for i in range(1001)]}, "1 to 1000 documents"),
        ({"documents": [article("é", [1, 0, 0, 0], "x")]}, "ASCII"),
        ({"documents": [article("i" * 513, [1, 0, 0, 0], "x")]}, "ASCII"),
        ({"documents": [ARTICLES[0], ARTICLES[0]]}, "appears twice"),
    ]:
        refused = raw(sandbox, "/namespaces/news/documents/upsert", body)
        sandbox.settle()
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "INVALID_ARGUMENT" and message in refused.json()["error"]["message"]
    assert sandbox.count(DOCS) == 0


def test_two_megabytes_per_request(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    big = [article(f"big{i}", [1, 0, 0, 0], "x", blob="y" * 90_000) for i in range(30)]  # ~2.7 MB
    with pytest.raises(PayloadTooLargeError):
        idx.documents.upsert(namespace="news", documents=big)
    assert sandbox.count(DOCS) == 0


def test_list_and_fetch_by_filter_page(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(
        namespace="p", documents=[article(f"doc-{i:03}", [1, i, 0, 0], f"text {i}", even=i % 2 == 0) for i in range(25)]
    )
    sandbox.settle()
    first = raw(sandbox, "/namespaces/p/documents/list", {"limit": 10, "prefix": "doc-0"})
    assert [d["_id"] for d in first.json()["documents"]] == [f"doc-{i:03}" for i in range(10)]
    token = first.json()["pagination"]["next"]
    second = raw(sandbox, "/namespaces/p/documents/list", {"limit": 10, "prefix": "doc-0", "pagination_token": token})
    assert [d["_id"] for d in second.json()["documents"]] == [f"doc-{i:03}" for i in range(10, 20)]
    assert [d.id for d in idx.documents.list(namespace="p", limit=7)] == [f"doc-{i:03}" for i in range(25)]

    page = idx.documents.fetch(namespace="p", filter={"even": True}, limit=5)
    assert sorted(page.documents) == [f"doc-{i:03}" for i in range(0, 10, 2)] and page.pagination is not None
    rest = idx.documents.fetch(namespace="p", filter={"even": True}, limit=100, pagination_token=page.pagination.next)
    assert sorted(rest.documents) == [f"doc-{i:03}" for i in range(10, 25, 2)] and rest.pagination is None
    for body, message in [
        ({}, "No 'ids' or 'filter' provided"),
        ({"ids": ["doc-001"], "filter": {"even": True}}, "mutually exclusive"),
        ({"filter": {}}, "non-empty"),
        ({"ids": ["doc-001"], "pagination_token": "x"}, "only valid together with filter"),
        ({"filter": {"even": True}, "limit": 10_001}, "limit"),
        ({"ids": [f"i{n}" for n in range(1001)]}, "1 to 1000"),
    ]:
        refused = raw(sandbox, "/namespaces/p/documents/fetch", body)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], refused.text
    assert raw(sandbox, "/namespaces/p/documents/list", {"limit": 101}).status_code == 400


def test_search_by_dense_sparse_and_text(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()

    dense = {"type": "dense_vector", "fields": ["embedding"], "values": [1, 0.05, 0, 0]}
    found = idx.documents.search(namespace="news", score_by=[dense], top_k=2)
    assert [m.to_dict()["_id"] for m in found.matches] == ["a1", "a2"] and found.namespace == "news"
    assert set(found.matches[0].to_dict()) == {"_id", "_score"}  # no include_fields: no fields
    assert found.matches[0].to_dict()["_score"] > found.matches[1].to_dict()["_score"]

    sparse = {"type": "sparse_vector", "fields": ["keywords"], "sparse_values": {"indices": [9], "values": [1.0]}}
    by_sparse = idx.documents.search(namespace="news", score_by=[sparse], top_k=10, include_fields=["topic"])
    assert [m.to_dict() for m in by_sparse.matches] == [{"_id": "b2", "_score": 2.0, "topic": "tech"}]

    text = {"type": "text", "fields": ["body"], "query": "quick search"}
    by_text = idx.documents.search(namespace="news", score_by=[text], top_k=10, include_fields=["*"])
    ranked = [m.to_dict() for m in by_text.matches]
    assert [m["_id"] for m in ranked] == ["b2", "a1", "b1"]  # both words, then the rarer word, then the other
    assert ranked[0]["embedding"] == [0.0, 0.0, 1.0, 0.0] and ranked[0]["body"] == ARTICLES[3]["body"]
    two_fields = {"type": "text", "fields": ["body", "title"], "query": "fox"}
    assert [
        m.to_dict()["_id"] for m in idx.documents.search(namespace="news", score_by=[two_fields], top_k=5).matches
    ] == ["a1"]


def test_search_filters(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()
    dense = {"type": "dense_vector", "fields": ["embedding"], "values": [1, 0, 0, 0]}

    def ids(flt: dict[str, Any]) -> list[str]:
        return [
            m.to_dict()["_id"]
            for m in idx.documents.search(namespace="news", score_by=[dense], top_k=10, filter=flt).matches
        ]

    assert ids({"topic": {"$eq": "tech"}}) == ["b1", "b2"]
    assert ids({"$and": [{"topic": "animals"}, {"year": {"$gt": 2020}}]}) == ["a2"]
    assert ids({"body": {"$match_phrase": "lazy dog"}}) == ["a2"]
    assert ids({"body": {"$match_all": "quick vectors"}}) == ["b2"]
    assert ids({"body": {"$match_any": "fox dog"}}) == ["a1", "a2"]
    for flt, message in [
        ({"body": {"$eq": "lazy"}}, "full-text field"),
        ({"embedding": {"$exists": True}}, "vector field"),
        ({"topic": {"$match_any": "tech"}}, "needs a full-text field"),
    ]:
        with pytest.raises(ApiError) as caught:
            idx.documents.search(namespace="news", score_by=[dense], top_k=10, filter=flt)
        assert caught.value.status_code == 400 and message in str(caught.value)
    refused = raw(sandbox, "/namespaces/news/documents/delete", {"filter": {"body": {"$match_any": "fox"}}})
    sandbox.settle()
    assert refused.status_code == 400 and "only supported in search" in refused.text
    assert sandbox.count(DOCS, "news") == 4


def test_bad_searches_are_refused(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    docs_index(pc, sandbox).documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()
    dense = {"type": "dense_vector", "fields": ["embedding"], "values": [1, 0, 0, 0]}
    for body, message in [
        ({"score_by": [dense], "top_k": 0}, "top_k"),
        ({"score_by": [dense, {"type": "text", "fields": ["body"], "query": "x"}], "top_k": 1}, "on its own"),
        ({"score_by": [{**dense, "fields": ["body"]}], "top_k": 1}, "is not the dense_vector field"),
        ({"score_by": [{"type": "text", "fields": ["topic"], "query": "x"}], "top_k": 1}, "not a full-text field"),
        ({"score_by": [{"type": "text", "fields": ["body"], "query": "   "}], "top_k": 1}, "not empty"),
        ({"score_by": [{"type": "query_string", "query": "body:fox"}], "top_k": 1}, "query_string"),
    ]:
        refused = raw(sandbox, "/namespaces/news/documents/search", body)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], refused.text


def test_update_by_id_and_by_filter(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()
    idx.documents.update(
        namespace="news",
        documents=[{"_id": "a1", "topic": "foxes", "_remove_fields": ["title"]}, {"_id": "nope", "topic": "x"}],
    )
    sandbox.settle()
    a1 = idx.documents.fetch(namespace="news", ids=["a1"]).documents["a1"].to_dict()
    assert a1["topic"] == "foxes" and "title" not in a1 and a1["body"] == ARTICLES[0]["body"]
    assert sandbox.count(DOCS, "news") == 4  # the update of a missing document had no effect

    matched = idx.documents.update(namespace="news", filter={"topic": "tech"}, set_fields={"archived": True})
    sandbox.settle()
    assert matched.matched_records == 2
    archived = idx.documents.fetch(namespace="news", filter={"archived": True}).documents
    assert sorted(archived) == ["b1", "b2"]
    for body, message in [
        ({"documents": [{"_id": "a1", "embedding": [1, 2]}]}, "dimension 2"),
        ({"documents": [{"_id": "a1", "_remove_fields": ["embedding"]}]}, "cannot be removed"),
        ({"documents": [{"_id": "a1", "topic": "x", "_remove_fields": ["topic"]}]}, "both set and removed"),
        ({"filter": {"topic": "tech"}}, "set_fields"),
        ({"documents": [{"_id": "a1"}], "filter": {"topic": "tech"}, "set_fields": {"x": 1}}, "either documents"),
    ]:
        refused = raw(sandbox, "/namespaces/news/documents/update", body)
        sandbox.settle()
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], refused.text
    assert idx.documents.fetch(namespace="news", ids=["a1"]).documents["a1"].to_dict()["topic"] == "foxes"


def test_delete_by_ids_filter_and_all(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()
    idx.documents.delete(namespace="news", ids=["a1"])
    sandbox.settle()
    assert idx.documents.delete(namespace="news", filter={"topic": "animals"}).matched_records == 1
    sandbox.settle()
    assert sorted(d.id for d in idx.documents.list(namespace="news")) == ["b1", "b2"]
    refused = raw(sandbox, "/namespaces/news/documents/delete", {"ids": ["b1"], "delete_all": True})
    sandbox.settle()
    assert refused.status_code == 400 and "Exactly one of ids, filter or delete_all" in refused.text
    idx.documents.delete(namespace="news", delete_all=True)
    sandbox.settle()
    assert sandbox.count(DOCS, "news") == 0


def test_the_wrong_api_is_refused_both_ways(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news", documents=ARTICLES)
    sandbox.settle()
    for call in (
        lambda: idx.upsert(vectors=[("v1", [1, 0, 0, 0])], namespace="news"),
        lambda: idx.query(vector=[1, 0, 0, 0], top_k=1, namespace="news"),
        lambda: idx.fetch(ids=["a1"], namespace="news"),
        lambda: list(idx.list_paginated(namespace="news").vectors),
        lambda: idx.delete(ids=["a1"], namespace="news"),
        lambda: idx.update(id="a1", set_metadata={"x": 1}, namespace="news"),
    ):
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status_code == 400 and "is a document index" in str(caught.value)
        assert "the Documents API (/namespaces/{namespace}/documents/" in str(caught.value)
    assert sandbox.count(DOCS, "news") == 4
    # Stats and namespace operations work on a document index.
    assert idx.describe_index_stats().namespaces["news"].vector_count == 4

    legacy = pc.Index(host=sandbox.host(VECTORS))
    with pytest.raises(ApiError) as refused:
        legacy.documents.upsert(namespace="news", documents=[{"_id": "d", "body": "x"}])
    assert refused.value.status_code == 400 and "is a legacy vector index" in str(refused.value)
    reply = raw(sandbox, "/namespaces/news/documents/search", {"score_by": [], "top_k": 1}, index=VECTORS)
    assert reply.json() == {
        "status": 400,
        "error": {"code": "INVALID_ARGUMENT", "message": reply.json()["error"]["message"]},
    }
    assert "the vectors API" in reply.json()["error"]["message"]
    assert sandbox.count(VECTORS) == 0


def test_documents_read_through_an_alias_and_refuse_writes_to_it(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = docs_index(pc, sandbox)
    idx.documents.upsert(namespace="news-v2", documents=ARTICLES)
    sandbox.settle()
    made = httpx.post(
        sandbox.host(DOCS) + "/namespace-aliases",
        json={"name": "news", "target_namespace": "news-v2"},
        headers=HEADERS,
        timeout=10,
    )
    assert made.status_code in (200, 201), made.text

    fetched = idx.documents.fetch(namespace="news", ids=["a1"])
    assert list(fetched.documents) == ["a1"] and fetched.namespace == "news-v2"
    assert [d.id for d in idx.documents.list(namespace="news")] == ["a1", "a2", "b1", "b2"]
    dense = {"type": "dense_vector", "fields": ["embedding"], "values": [1, 0, 0, 0]}
    found = idx.documents.search(namespace="news", score_by=[dense], top_k=1)
    assert found.namespace == "news-v2" and found.matches[0].to_dict()["_id"] == "a1"

    for action, body, status in [
        ("upsert", {"documents": [article("z1", [1, 0, 0, 0], "x")]}, 409),
        ("delete", {"ids": ["a1"]}, 412),
        ("update", {"documents": [{"_id": "a1", "topic": "x"}]}, 412),
    ]:
        refused = raw(sandbox, f"/namespaces/news/documents/{action}", body)
        assert refused.status_code == status and "namespace alias" in refused.json()["error"]["message"], refused.text
    assert sandbox.stats(DOCS)["namespaces"] == {"news-v2": 4}
    assert idx.documents.fetch(namespace="news-v2", ids=["a1"]).documents["a1"].to_dict()["topic"] == "animals"

"""The local data plane as API 2026-07 answers: its namespace shapes and search answers validated against Pinecone's
2026-07 OpenAPI file, and reads that lag writes with the log sequence numbers Pinecone documents
(``sandbox.freshness``): list, query and counts see a write ``freshness_lag_s`` after it, fetch at once; writes answer
their LSN, lagging reads the LSN they reflect, on serverless only. Through plain HTTP (checked against the spec) and
the real SDK."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from pinecone import Pinecone

from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.embedding import IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import DOCUMENT_LAG_S, VECTOR_LAG_S, Faults, IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import DATA_HOST_URL, checked_call, load_api, sdk_headers
from tests.polling import wait_until

V2026_07 = sdk_headers("2026-07")
LAG_S = 5.0  # long enough that the reads right after a write come before it, on a loaded machine
EMBED = IntegratedEmbed(model="llama-text-embed-v2", field="chunk_text", dimension=384, metric="cosine")


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    return load_api("db_data_2026-07")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("fresh-sl", 4), IndexSpec("fresh-pod", 4, kind="pod"), IndexSpec("fresh-text", 384, embed=EMBED)]


@pytest.fixture(autouse=True)
def seeded(sandbox: PineconeSandbox) -> None:
    sandbox.load("fresh-sl", "ns", [(f"v{i}", [1, i, 0, 0], {"n": i}) for i in range(3)])


def call_2026_07(data_api: OpenAPI, sandbox: PineconeSandbox, method: str, path: str, **kwargs: Any) -> Any:
    base = sandbox.host(kwargs.pop("index", "fresh-sl"))
    return checked_call(data_api, base, DATA_HOST_URL, method, path, headers=V2026_07, **kwargs)


def send(sandbox: PineconeSandbox, method: str, path: str, index: str = "fresh-sl", **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, sandbox.host(index) + path, headers=V2026_07, timeout=10, **kwargs)
    assert response.status_code < 300, response.text
    return response


def lsns(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if "lsn" in k}


def upsert(sandbox: PineconeSandbox, ids: list[str], namespace: str = "ns", index: str = "fresh-sl") -> httpx.Response:
    vectors = [{"id": i, "values": [0.5, 1, 0, 0]} for i in ids]
    return send(sandbox, "POST", "/vectors/upsert", index, json={"vectors": vectors, "namespace": namespace})


def listed(sandbox: PineconeSandbox, namespace: str = "ns", index: str = "fresh-sl") -> list[str]:
    reply = send(sandbox, "GET", "/vectors/list", index, params={"namespace": namespace}).json()
    return [v["id"] for v in reply["vectors"]]


def test_namespace_answers_are_2026_07_shapes(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    # NamespaceDescription.record_count: "A 64-bit integer, serialized as a decimal string".
    listed_ns = call_2026_07(data_api, sandbox, "GET", "/namespaces", query={"limit": 10})
    assert listed_ns["namespaces"] == [{"name": "ns", "record_count": "3"}]
    assert call_2026_07(data_api, sandbox, "GET", "/namespaces/ns") == {"name": "ns", "record_count": "3"}
    created = call_2026_07(data_api, sandbox, "POST", "/namespaces", body={"name": "fresh"})
    assert created == {"name": "fresh", "record_count": "0"}
    stats = call_2026_07(data_api, sandbox, "POST", "/describe_index_stats", body={})
    assert stats["namespaces"]["ns"] == {"vectorCount": 3} and stats["totalVectorCount"] == 3
    # A request of an earlier version keeps that version's integer.
    old = httpx.get(sandbox.host("fresh-sl") + "/namespaces/ns", headers={"Api-Key": "k"}, timeout=10).json()
    assert old == {"name": "ns", "record_count": 3}


def test_a_records_search_names_the_namespace_that_served_it(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    rows = b'{"_id": "d1", "chunk_text": "apples and pears"}\n'
    text_host = sandbox.host("fresh-text")
    headers = {**V2026_07, "Content-Type": "application/x-ndjson"}
    httpx.post(text_host + "/records/namespaces/docs/upsert", content=rows, headers=headers, timeout=10)
    sandbox.settle("fresh-text")
    body = {"query": {"inputs": {"text": "apples"}, "top_k": 1}}
    found = call_2026_07(data_api, sandbox, "POST", "/records/namespaces/docs/search", body=body, index="fresh-text")
    assert found["namespace"] == "docs" and [h["_id"] for h in found["result"]["hits"]] == ["d1"]


def test_writes_answer_their_lsn_and_lagging_reads_the_lsn_they_reflect(sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("fresh-sl", Faults(freshness_lag_s=LAG_S))
    first = upsert(sandbox, ["a"])
    second = send(sandbox, "POST", "/vectors/delete", json={"ids": ["v0"], "namespace": "ns"})
    other = upsert(sandbox, ["b"], namespace="other")

    # Per namespace (the docs: "writes to one namespace do not increase the LSN for other namespaces"), both names.
    assert lsns(first) == {"x-pinecone-request-lsn": "1", "x-pinecone-lsn-committed": "1"}
    assert lsns(second)["x-pinecone-request-lsn"] == "2"
    assert lsns(other)["x-pinecone-request-lsn"] == "1"
    # Neither write is visible to list, query or the counts yet; the reads say they reflect no write of theirs.
    reply = send(sandbox, "GET", "/vectors/list", params={"namespace": "ns"})
    assert [v["id"] for v in reply.json()["vectors"]] == ["v0", "v1", "v2"]
    assert lsns(reply) == {"x-pinecone-max-indexed-lsn": "0", "x-pinecone-lsn-reconciled": "0"}
    query = send(sandbox, "POST", "/query", json={"namespace": "ns", "vector": [0.5, 1, 0, 0], "topK": 10})
    assert "a" not in [m["id"] for m in query.json()["matches"]]
    assert lsns(query)["x-pinecone-max-indexed-lsn"] == "0"
    stats = send(sandbox, "POST", "/describe_index_stats", json={}).json()
    assert stats["namespaces"] == {"ns": {"vectorCount": 3}}
    assert send(sandbox, "GET", "/namespaces/ns").json()["record_count"] == "3"
    # Fetch sees the latest state at once and carries no reconciled LSN (as the SDK says of fetch).
    fetched = send(sandbox, "GET", "/vectors/fetch", params={"ids": ["a", "v0"], "namespace": "ns"})
    assert list(fetched.json()["vectors"]) == ["a"] and lsns(fetched) == {}

    reply = wait_until(
        lambda: send(sandbox, "GET", "/vectors/list", params={"namespace": "ns"}),
        what="both writes listed",
        done=lambda r: lsns(r)["x-pinecone-lsn-reconciled"] == "2",
        timeout_s=LAG_S + 5,
    )
    assert [v["id"] for v in reply.json()["vectors"]] == ["a", "v1", "v2"]
    assert send(sandbox, "POST", "/describe_index_stats", json={}).json()["namespaces"]["ns"] == {"vectorCount": 3}


def test_each_write_is_visible_its_own_lag_after_it_in_order(sandbox: PineconeSandbox) -> None:
    """A write at t is listed from t + lag on, not before, and not all at once: reads see a consistent older state
    (every write before some point, none after it)."""
    sandbox.set_faults("fresh-sl", Faults(freshness_lag_s=LAG_S))
    written_at = {}
    for vector_id in ("w1", "w2", "w3"):
        written_at[vector_id] = time.monotonic()  # before it is sent: the write commits after this, never before
        upsert(sandbox, [vector_id])
        time.sleep(0.4)  # spacing the writes apart, the subject of the test (not a wait for a result)
    seen: dict[str, float] = {}

    def look() -> list[str]:
        now_listed = listed(sandbox)
        new = [i for i in ("w1", "w2", "w3") if i in now_listed]
        assert new == ["w1", "w2", "w3"][: len(new)], now_listed  # a prefix of the writes, never a gap
        for vector_id in new:
            seen.setdefault(vector_id, time.monotonic())
        return new

    wait_until(
        look, what="the three writes listed", done=lambda new: len(new) == 3, timeout_s=LAG_S + 5, interval_s=0.05
    )
    for vector_id, at in written_at.items():
        assert seen[vector_id] - at >= LAG_S, (vector_id, seen[vector_id] - at)


def test_a_pod_lags_too_but_answers_no_lsn(sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("fresh-pod", Faults(freshness_lag_s=LAG_S))
    written = upsert(sandbox, ["p1"], index="fresh-pod")
    assert lsns(written) == {}  # the docs: LSNs are "only available for serverless indexes"
    stats = send(sandbox, "POST", "/describe_index_stats", "fresh-pod", json={}).json()
    assert stats["namespaces"] == {}
    fetched = send(sandbox, "GET", "/vectors/fetch", "fresh-pod", params={"ids": ["p1"], "namespace": "ns"})
    assert list(fetched.json()["vectors"]) == ["p1"]
    wait_until(
        lambda: send(sandbox, "POST", "/describe_index_stats", "fresh-pod", json={}).json()["namespaces"],
        what="the pod's count of ns",
        done=lambda namespaces: namespaces == {"ns": {"vectorCount": 1}},
        timeout_s=LAG_S + 5,
    )


def test_lsns_that_skip_or_are_not_sent_on_request(sandbox: PineconeSandbox) -> None:
    """``Faults.lsns``: the reference does not say a namespace's LSNs count its writes one by one, nor that every
    server sends them; the tool must be tested against both."""
    sandbox.set_faults("fresh-sl", Faults(lsns="skipping"))
    assert [lsns(upsert(sandbox, [i]))["x-pinecone-request-lsn"] for i in ("k1", "k2")] == ["2", "4"]
    sandbox.settle()
    assert lsns(send(sandbox, "GET", "/vectors/list", params={"namespace": "ns"}))["x-pinecone-lsn-reconciled"] == "4"
    sandbox.set_faults("fresh-sl", Faults(lsns="none"))
    assert lsns(upsert(sandbox, ["k3"])) == {}
    assert lsns(send(sandbox, "GET", "/vectors/list", params={"namespace": "ns"})) == {}
    with pytest.raises(ValueError, match="lsns must be one of"):
        Faults(lsns="sometimes")


def test_the_sdk_reads_the_lsns(sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("fresh-sl", Faults(freshness_lag_s=LAG_S))
    index = Pinecone(api_key="test-key").Index(host=sandbox.host("fresh-sl"))
    written = index.upsert(vectors=[("s1", [0, 0, 1, 0])], namespace="ns")
    committed = written.response_info.lsn_committed
    assert committed == 1
    first = index.query(vector=[0, 0, 1, 0], top_k=1, namespace="ns")
    assert not first.response_info.is_reconciled(committed) and first.matches[0].id != "s1"
    caught_up = wait_until(
        lambda: index.query(vector=[0, 0, 1, 0], top_k=1, namespace="ns"),
        what="a query that reflects the upsert",
        done=lambda reply: reply.response_info.is_reconciled(committed),
        timeout_s=LAG_S + 5,
    )
    assert caught_up.matches[0].id == "s1"


def test_the_lag_is_a_constructor_option_checked_like_every_fault() -> None:
    assert PineconeSandbox([IndexSpec("lagged", 2)], freshness_lag_s=7.5).service("lagged").faults.lag_s == 7.5
    with pytest.raises(ValueError, match="freshness_lag_s"):
        Faults(freshness_lag_s=-1)
    with pytest.raises(ValueError, match="freshness_lag_s"):
        PineconeSandbox([IndexSpec("lagged", 2)], freshness_lag_s=-1)


def test_reads_lag_writes_by_the_services_lag_unless_told_otherwise() -> None:
    """Reads lagging writes is the service's behaviour, not a fault: an index whose faults set no lag keeps the
    sandbox's lag, and a sandbox told none keeps Pinecone's (a document index's minute)."""
    documents = DocumentSchema(DenseField("embedding", 2, "cosine"))
    vector, document = IndexSpec("vectors", 2), IndexSpec("documents", 2, documents=documents)
    service = PineconeSandbox([vector, document])
    assert service.service("vectors").faults.lag_s == VECTOR_LAG_S > 0
    assert service.service("documents").faults.lag_s == DOCUMENT_LAG_S
    told = PineconeSandbox([vector, document], freshness_lag_s=0.5)
    assert [told.service(name).faults.lag_s for name in ("vectors", "documents")] == [0.5, 0.5]
    told.set_faults("vectors", Faults(freshness_lag_s=0))  # a lag set on the index wins
    told.set_faults("documents", Faults(latency_ms=1))  # faults that set none keep the sandbox's
    assert [told.service(name).faults.lag_s for name in ("vectors", "documents")] == [0, 0.5]
    assert told.faults("documents").freshness_lag_s is None  # as set; ``GET /_sandbox/faults`` answers the same


def test_a_write_reaches_the_reads_of_a_default_sandbox_after_the_services_lag() -> None:
    with PineconeSandbox([IndexSpec("lagged", 4)]).start() as sandbox:
        written_at = time.monotonic()
        upsert(sandbox, ["w1"], index="lagged")
        assert listed(sandbox, index="lagged") == []  # the write is not visible to list yet
        fetched = send(sandbox, "GET", "/vectors/fetch", "lagged", params={"ids": "w1", "namespace": "ns"})
        assert list(fetched.json()["vectors"]) == ["w1"]  # a vector fetch reads the latest state
        assert wait_until(lambda: listed(sandbox, index="lagged"), what="the write listed", timeout_s=10) == ["w1"]
        assert time.monotonic() - written_at >= VECTOR_LAG_S
        upsert(sandbox, ["w2"], index="lagged")
        sandbox.settle("lagged")  # what a test's setup does instead of waiting
        assert listed(sandbox, index="lagged") == ["w1", "w2"]


def test_a_document_search_and_a_document_fetch_lag_writes(sandbox: PineconeSandbox) -> None:
    """Documents "become searchable within approximately one minute" (Pinecone's documentation): here after the lag.
    Their writes are applied asynchronously (202) and the SDK reads a reconciled LSN on `documents.fetch`: a fetch
    lags as well, and says how far it reflects."""
    sandbox.initial_faults = Faults(freshness_lag_s=LAG_S)  # the index created below lags
    schema = {
        "fields": {
            "embedding": {"type": "dense_vector", "dimension": 4, "metric": "cosine"},
            "body": {"type": "string", "full_text_search": {}},
        }
    }
    Pinecone(api_key="test-key", host=sandbox.control_host).indexes.create(name="fresh-docs", schema=schema, timeout=-1)
    try:
        document = {"_id": "d1", "embedding": [1, 0, 0, 0], "body": "the quick brown fox"}
        written = send(
            sandbox, "POST", "/namespaces/news/documents/upsert", "fresh-docs", json={"documents": [document]}
        )
        assert lsns(written)["x-pinecone-request-lsn"] == "1"
        search = {"score_by": [{"type": "text", "field": "body", "query": "fox"}], "top_k": 3}

        def found() -> list[str]:
            reply = send(sandbox, "POST", "/namespaces/news/documents/search", "fresh-docs", json=search)
            return [m["_id"] for m in reply.json()["matches"]]

        assert found() == []

        def fetch() -> httpx.Response:
            return send(sandbox, "POST", "/namespaces/news/documents/fetch", "fresh-docs", json={"ids": ["d1"]})

        early = fetch()
        assert early.json()["documents"] == {} and lsns(early)["x-pinecone-lsn-reconciled"] == "0"
        assert wait_until(found, what="the document found by its text", timeout_s=LAG_S + 5) == ["d1"]
        late = fetch()
        assert list(late.json()["documents"]) == ["d1"] and lsns(late)["x-pinecone-lsn-reconciled"] == "1"
    finally:
        sandbox.initial_faults = Faults()
        sandbox.remove_index("fresh-docs")

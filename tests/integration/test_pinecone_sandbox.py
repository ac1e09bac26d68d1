"""The local Pinecone data plane, driven by the real ``pinecone`` SDK (and raw HTTP where the SDK checks first).

SDK retries are left at their defaults unless a test injects faults; those tests turn them off with
``set_sdk_retries(idx, 0)`` so one 429/5xx reaches the test instead of being retried for seconds.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pinecone import (
    ApiError,
    NotFoundError,
    Pinecone,
    PineconeApiException,
    PineconeConnectionError,
    PineconeValueError,
    RateLimitError,
    ServiceError,
)

from nsmigrate_sandbox import pinecone_server
from nsmigrate_sandbox.pinecone_server import (
    Faults,
    IndexSpec,
    PineconeSandbox,
    compile_filter,
)
from nsmigrate_sandbox.seed import seed_dataset
from tests.sdk_internals import reset_sdk_host_state, set_sdk_retries
from tests.timing import assert_timing

DIM = 4
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec("seeds-pod", DIM, "cosine", kind="pod"),
        IndexSpec("seeds-serverless", DIM, "dotproduct"),
        IndexSpec("euclid", DIM, "euclidean"),
        IndexSpec("wide", 3072),
    ]


@pytest.fixture(autouse=True)
def clean(sandbox: PineconeSandbox) -> Iterator[None]:
    yield
    reset_sdk_host_state()  # the next module's tests start from a full SDK budget too


@pytest.fixture(scope="module")
def pc() -> Pinecone:
    return Pinecone(api_key="test-key")


def index(pc: Pinecone, sandbox: PineconeSandbox, name: str = "seeds-pod", retries: bool = True) -> Any:
    idx = pc.Index(host=sandbox.host(name))
    if not retries:
        set_sdk_retries(idx, 0)
    return idx


def raw(sandbox: PineconeSandbox, name: str) -> httpx.Client:
    """What the SDK would send, minus its client-side checks, so the server's own refusals can be seen."""
    return httpx.Client(base_url=sandbox.host(name), headers={"Api-Key": "test-key"}, timeout=10)


def unit(*values: float) -> list[float]:
    return (np.asarray(values, dtype=np.float64) / np.linalg.norm(values)).tolist()


# --- round trips ---------------------------------------------------------------------------------------------------


def test_upsert_fetch_round_trip(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    response = idx.upsert(
        vectors=[
            ("a", [0.1, 0.2, 0.3, 0.4], {"text": "hi", "n": 3, "ok": True, "tags": ["x", "y"]}),
            ("b", [1, 0, 0, 0]),
        ],
        namespace="ns1",
    )
    assert response.upserted_count == 2

    fetched = idx.fetch(ids=["a", "b", "missing"], namespace="ns1")
    assert set(fetched.vectors) == {"a", "b"}
    assert fetched.namespace == "ns1"
    assert np.allclose(fetched.vectors["a"].values, [0.1, 0.2, 0.3, 0.4], atol=1e-7)
    assert fetched.vectors["a"].metadata == {"text": "hi", "n": 3, "ok": True, "tags": ["x", "y"]}
    assert fetched.vectors["b"].metadata is None
    # Same id, other namespace: nothing there.
    assert idx.fetch(ids=["a"]).vectors == {}


def test_upsert_overwrites_and_default_namespace_aliases(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    idx.upsert(vectors=[("a", [1, 0, 0, 0], {"v": 1})])
    idx.upsert(vectors=[("a", [0, 1, 0, 0], {"v": 2})], namespace="__default__")
    got = idx.fetch(ids=["a"]).vectors["a"]
    assert got.values == [0, 1, 0, 0] and got.metadata == {"v": 2}
    assert sandbox.count("seeds-pod", "") == 1


def test_list_pagination_is_sorted_and_complete(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox, "seeds-serverless")
    ids = [f"doc-{i}#chunk-{j}" for i in range(25) for j in range(10)]
    sandbox.load("seeds-serverless", "ns", [(i, [1, 0, 0, 0], None) for i in reversed(ids)])

    first = idx.list_paginated(namespace="ns", limit=100)
    assert [v.id for v in first.vectors] == sorted(ids)[:100]
    assert first.pagination is not None and first.pagination.next

    second = idx.list_paginated(namespace="ns", limit=100, pagination_token=first.pagination.next)
    assert [v.id for v in second.vectors] == sorted(ids)[100:200]

    pages = [[v.id for v in page.vectors] for page in idx.list(namespace="ns", limit=100)]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [i for page in pages for i in page] == sorted(ids)

    last = idx.list_paginated(namespace="ns", limit=100, pagination_token=second.pagination.next)
    assert len(last.vectors) == 50 and last.pagination is None

    prefixed = idx.list_paginated(namespace="ns", prefix="doc-1#")
    assert [v.id for v in prefixed.vectors] == [f"doc-1#chunk-{j}" for j in range(10)]
    assert prefixed.pagination is None
    assert idx.list_paginated(namespace="nowhere").vectors == []


def _brute_force(metric: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    if metric == "cosine":
        return matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    if metric == "dotproduct":
        return matrix @ query
    return ((matrix - query) ** 2).sum(axis=1)


@pytest.mark.parametrize(
    ("name", "metric"), [("seeds-pod", "cosine"), ("seeds-serverless", "dotproduct"), ("euclid", "euclidean")]
)
def test_query_ranks_by_metric(pc: Pinecone, sandbox: PineconeSandbox, name: str, metric: str) -> None:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((50, DIM)).astype(np.float32)
    sandbox.load(name, "q", [(f"v{i}", row, {"i": i}) for i, row in enumerate(matrix)])
    query = rng.standard_normal(DIM).astype(np.float32)

    result = index(pc, sandbox, name).query(
        vector=query.tolist(), top_k=5, namespace="q", include_values=True, include_metadata=True
    )

    expected = _brute_force(metric, matrix, query)
    order = np.argsort(expected if metric == "euclidean" else -expected)[:5]
    assert [m.id for m in result.matches] == [f"v{i}" for i in order]
    assert np.allclose([m.score for m in result.matches], expected[order], rtol=1e-4, atol=1e-5)
    assert result.matches[0].metadata == {"i": int(order[0])}
    assert np.allclose(result.matches[0].values, matrix[order[0]])
    assert result.namespace == "q"


@pytest.mark.parametrize(
    ("name", "metric"), [("seeds-pod", "cosine"), ("seeds-serverless", "dotproduct"), ("euclid", "euclidean")]
)
def test_a_query_near_float32s_limits_is_scored(pc: Pinecone, sandbox: PineconeSandbox, name: str, metric: str) -> None:
    # Pinecone stores values up to float32's ±3.4e38; their products overflow float32 (the sandbox died on them).
    matrix = np.array([[3.4028235e38, -3.4028235e38, 1e-45, -0.0], [1.0, 0.5, 0.0, 0.0]], dtype=np.float32)
    sandbox.load(name, "edges", [(f"v{i}", row, None) for i, row in enumerate(matrix)])

    result = index(pc, sandbox, name).query(vector=matrix[0].tolist(), top_k=2, namespace="edges")

    expected = _brute_force(metric, matrix.astype(np.float64), matrix[0].astype(np.float64))
    assert sorted(m.id for m in result.matches) == ["v0", "v1"]
    assert np.allclose([m.score for m in result.matches], [expected[int(m.id[1])] for m in result.matches])


def test_query_by_id_and_without_payload(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    idx.upsert(vectors=[("x", unit(1, 0, 0, 0), {"k": 1}), ("y", unit(1, 1, 0, 0)), ("z", unit(0, 0, 0, 1))])
    sandbox.settle()  # queries lag writes
    result = idx.query(id="x", top_k=2)
    assert [m.id for m in result.matches] == ["x", "y"]
    assert result.matches[0].score == pytest.approx(1.0, abs=1e-6)
    assert result.matches[0].values == [] and result.matches[0].metadata is None
    assert idx.query(id="nope", top_k=2).matches == []
    assert idx.query(vector=[1, 0, 0, 0], top_k=3, namespace="empty").matches == []


RECORDS: dict[str, dict[str, Any]] = {
    "a": {"genre": "drama", "year": 2019, "tags": ["x", "y"], "flag": True},
    "b": {"genre": "comedy", "year": 2021, "tags": ["y"]},
    "c": {"genre": "drama", "year": 2023, "flag": False},
    "d": {"year": 1, "flag": 1},
}

FILTERS = [
    ({"genre": "drama"}, {"a", "c"}),
    ({"genre": {"$eq": "drama"}}, {"a", "c"}),
    ({"genre": {"$ne": "drama"}}, {"b", "d"}),
    ({"genre": {"$in": ["comedy", "horror"]}}, {"b"}),
    ({"genre": {"$nin": ["comedy"]}}, {"a", "c", "d"}),
    ({"year": {"$gt": 2019}}, {"b", "c"}),
    ({"year": {"$gte": 2019}}, {"a", "b", "c"}),
    ({"year": {"$lt": 2021}}, {"a", "d"}),
    ({"year": {"$lte": 2021, "$gt": 1}}, {"a", "b"}),
    ({"flag": {"$exists": True}}, {"a", "c", "d"}),
    ({"flag": {"$exists": False}}, {"b"}),
    ({"flag": True}, {"a"}),  # a boolean never equals the number 1
    ({"tags": "y"}, {"a", "b"}),  # a list of strings matches the strings it contains
    ({"tags": {"$in": ["x"]}}, {"a"}),
    # Pinecone's docs: a filter on a list "matches when any value in the array satisfies it"; $ne and $nin then
    # exclude a list that holds the value (a record without the field matches them).
    ({"tags": {"$eq": "x"}}, {"a"}),
    ({"tags": {"$in": ["z", "y"]}}, {"a", "b"}),
    ({"tags": {"$ne": "x"}}, {"b", "c", "d"}),
    ({"tags": {"$nin": ["y"]}}, {"c", "d"}),
    ({"$and": [{"genre": "drama"}, {"year": {"$gt": 2020}}]}, {"c"}),
    ({"$or": [{"genre": "comedy"}, {"year": 1}]}, {"b", "d"}),
    ({"genre": "drama", "flag": False}, {"c"}),
]


@pytest.mark.parametrize(("flt", "expected"), FILTERS, ids=[json.dumps(f) for f, _ in FILTERS])
def test_query_filters(pc: Pinecone, sandbox: PineconeSandbox, flt: dict[str, Any], expected: set[str]) -> None:
    sandbox.load("seeds-pod", "f", [(i, [1, 0, 0, 0], md) for i, md in RECORDS.items()])
    result = index(pc, sandbox).query(vector=[1, 0, 0, 0], top_k=10, namespace="f", filter=flt)
    assert {m.id for m in result.matches} == expected


@pytest.mark.parametrize(
    "flt", [{"x": {"$regex": "a"}}, {"x": {"$in": "a"}}, {"x": {"$gt": "a"}}, {"$not": {"x": 1}}, {"$or": []}]
)
def test_bad_filters_are_refused(pc: Pinecone, sandbox: PineconeSandbox, flt: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        index(pc, sandbox).query(vector=[1, 0, 0, 0], top_k=1, filter=flt)
    assert caught.value.status_code == 400


def test_delete_by_ids_all_and_filter(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    sandbox.load("seeds-pod", "d", [(i, [1, 0, 0, 0], md) for i, md in RECORDS.items()])
    sandbox.load("seeds-pod", "other", [("keep", [1, 0, 0, 0], None)])

    idx.delete(ids=["a", "missing"], namespace="d")
    assert set(sandbox.snapshot("seeds-pod")["d"]) == {"b", "c", "d"}

    idx.delete(filter={"genre": "drama"}, namespace="d")
    assert set(sandbox.snapshot("seeds-pod")["d"]) == {"b", "d"}

    idx.delete(delete_all=True, namespace="d")
    assert sandbox.count("seeds-pod", "d") == 0
    assert sandbox.count("seeds-pod", "other") == 1


def test_update_values_metadata_and_by_filter(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    sandbox.load("seeds-pod", "u", [(i, [1, 0, 0, 0], md) for i, md in RECORDS.items()])

    idx.update(id="a", values=[0, 0, 1, 0], set_metadata={"genre": "noir", "new": "yes"}, namespace="u")
    got = idx.fetch(ids=["a"], namespace="u").vectors["a"]
    assert got.values == [0, 0, 1, 0]
    assert got.metadata == {**RECORDS["a"], "genre": "noir", "new": "yes"}

    dry = idx.update(filter={"genre": "drama"}, set_metadata={"seen": True}, namespace="u", dry_run=True)
    assert dry.matched_records == 1
    assert "seen" not in idx.fetch(ids=["c"], namespace="u").vectors["c"].metadata

    done = idx.update(filter={"year": {"$gte": 2021}}, set_metadata={"seen": True}, namespace="u")
    assert done.matched_records == 2
    seen = {i for i, (_, md) in sandbox.snapshot("seeds-pod")["u"].items() if md and md.get("seen")}
    assert seen == {"b", "c"}


def test_describe_index_stats_reports_default_as___default__(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.load("seeds-pod", "", [(f"d{i}", [1, 0, 0, 0], {"k": i % 2}) for i in range(3)])
    sandbox.load("seeds-pod", "ns", [(f"n{i}", [1, 0, 0, 0], {"k": 1}) for i in range(5)])
    stats = index(pc, sandbox).describe_index_stats()
    assert stats.dimension == DIM
    assert stats.total_vector_count == 8
    assert {k: v.vector_count for k, v in stats.namespaces.items()} == {"__default__": 3, "ns": 5}

    # Pod indexes filter stats by metadata; serverless ones refuse, as documented.
    filtered = index(pc, sandbox).describe_index_stats(filter={"k": 1})
    assert {k: v.vector_count for k, v in filtered.namespaces.items()} == {"__default__": 1, "ns": 5}
    with pytest.raises(ApiError) as caught:
        index(pc, sandbox, "seeds-serverless").describe_index_stats(filter={"k": 1})
    assert caught.value.status_code == 400


def test_namespaces_list_describe_delete(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox, "seeds-serverless")
    for ns, count in (("", 2), ("b-ns", 3), ("a-ns", 1)):
        sandbox.load("seeds-serverless", ns, [(f"v{i}", [1, 0, 0, 0], None) for i in range(count)])

    pages = list(idx.list_namespaces())
    listed = {n.name: n.record_count for page in pages for n in page.namespaces}
    assert listed == {"__default__": 2, "a-ns": 1, "b-ns": 3}
    page = idx.list_namespaces_paginated(limit=2)
    assert [n.name for n in page.namespaces] == ["__default__", "a-ns"] and page.pagination is not None
    rest = idx.list_namespaces_paginated(limit=2, pagination_token=page.pagination.next)
    assert [n.name for n in rest.namespaces] == ["b-ns"] and rest.pagination is None

    assert idx.describe_namespace(name="b-ns").record_count == 3
    assert idx.describe_namespace(name="__default__").record_count == 2
    idx.delete_namespace(name="b-ns")
    assert sandbox.count("seeds-serverless", "b-ns") == 0
    with pytest.raises(NotFoundError):
        idx.delete_namespace(name="b-ns")
    with pytest.raises(NotFoundError):
        idx.describe_namespace(name="never")


# --- Pinecone's limits -------------------------------------------------------------------------------------------


def test_limits_the_sdk_sends_through(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    too_many_ids = [f"id-{i}" for i in range(1001)]
    cases = [
        lambda: idx.fetch(ids=too_many_ids),
        lambda: idx.delete(ids=too_many_ids),
        lambda: idx.upsert(vectors=[(f"id-{i}", [1, 0, 0, 0]) for i in range(1001)]),
        lambda: idx.upsert(vectors=[("a", [1, 0, 0])]),
        lambda: idx.upsert(vectors=[("a", [1, 0, 0, 0], {"n": None})]),
        lambda: idx.upsert(vectors=[("a", [1, 0, 0, 0], {"t": "x" * 41_000})]),
        lambda: idx.query(vector=[1, 0, 0], top_k=1),
        lambda: idx.query(vector=[1, 0, 0, 0], top_k=1001, include_metadata=True),
        lambda: idx.update(id="a", values=[1, 0]),
    ]
    for case in cases:
        with pytest.raises(PineconeApiException) as caught:
            case()
        assert caught.value.status_code == 400
        assert caught.value.body is not None and caught.value.body["code"] == 3  # gRPC INVALID_ARGUMENT (rpcStatus)
    # Exactly at the limits is fine.
    assert idx.fetch(ids=too_many_ids[:1000]).vectors == {}
    assert idx.upsert(vectors=[(f"id-{i}", [1, 0, 0, 0]) for i in range(1000)]).upserted_count == 1000
    assert idx.upsert(vectors=[("m", [1, 0, 0, 0], {"t": "x" * 40_000})]).upserted_count == 1
    assert sandbox.count("seeds-pod") == 1001


def test_upsert_over_2_mb_is_refused(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox, "wide")
    rng = np.random.default_rng(0)
    vectors = [(f"v{i}", rng.standard_normal(3072).tolist()) for i in range(40)]  # ~2.4 MB of JSON
    with pytest.raises(ApiError) as caught:
        idx.upsert(vectors=vectors)
    assert caught.value.status_code == 400
    assert "exceeds the maximum supported size of 2MB" in caught.value.message
    assert sandbox.count("wide") == 0
    assert idx.upsert(vectors=vectors, batch_size=20).upserted_count == 40


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        ("GET", "/vectors/list?limit=101", None, "limit must be between 1 and 100"),
        ("GET", "/vectors/list?limit=0", None, "limit must be between 1 and 100"),
        ("POST", "/vectors/upsert", {"vectors": [{"id": "", "values": [1, 0, 0, 0]}]}, "non-empty"),
        ("POST", "/vectors/upsert", {"vectors": [{"id": "x" * 513, "values": [1, 0, 0, 0]}]}, "512"),
        (
            "POST",
            "/vectors/upsert",
            {"vectors": [{"id": "a", "values": [1, 0, 0, 0], "metadata": {"o": {"x": 1}}}]},
            "list of strings",
        ),
        (
            "POST",
            "/vectors/upsert",
            {"vectors": [{"id": "a", "values": [1, 0, 0, 0], "metadata": {"l": [1, 2]}}]},
            "list of strings",
        ),
        ("POST", "/vectors/upsert", {"vectors": []}, "non-empty"),
        ("GET", "/vectors/fetch?ids=", None, "non-empty"),
        ("POST", "/vectors/delete", {"ids": ["a"], "deleteAll": True}, "delete_all"),
        ("POST", "/query", {"topK": 0, "vector": [1, 0, 0, 0]}, "topK"),
    ],
)
def test_limits_the_sdk_checks_first_are_also_refused_by_the_server(
    sandbox: PineconeSandbox, method: str, path: str, body: Any, fragment: str
) -> None:
    with raw(sandbox, "seeds-serverless") as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert fragment in response.json()["message"]


SPARSE = {"indices": [1], "values": [0.5]}


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        # Ids: ^[\x01-\x7F]+$ wherever one is given (Vector.id, fetch ids, DeleteRequest.ids, query id, update id).
        ("POST", "/vectors/upsert", {"vectors": [{"id": "caf\u00e9", "values": [1, 0, 0, 0]}]}, "ASCII"),
        ("POST", "/vectors/upsert", {"vectors": [{"id": "a\u0000b", "values": [1, 0, 0, 0]}]}, "without NUL"),
        ("GET", "/vectors/fetch?ids=%C3%A9", None, "ASCII"),
        ("GET", "/vectors/fetch?ids=a%00b", None, "without NUL"),
        ("POST", "/vectors/delete", {"ids": ["ok", "\u00e9"]}, "ASCII"),
        ("POST", "/query", {"topK": 1, "id": "\u00e9"}, "ASCII"),
        ("POST", "/vectors/update", {"id": "\u00e9", "setMetadata": {"a": "b"}}, "ASCII"),
        # Dense values: one of magnitude 1e-8 at least, on upsert and on update.
        ("POST", "/vectors/upsert", {"vectors": [{"id": "z", "values": [0, 0, 0, 0]}]}, "only zeros"),
        ("POST", "/vectors/upsert", {"vectors": [{"id": "z", "values": [1e-9, -1e-9, 0, 9e-9]}]}, "only zeros"),
        ("POST", "/vectors/update", {"id": "z", "values": [0, 0, 0, 0]}, "only zeros"),
        # Metadata field names may not begin with $.
        ("POST", "/vectors/upsert", {"vectors": [{"id": "m", "values": [1, 0, 0, 0], "metadata": {"$in": 1}}]}, "'$'"),
        ("POST", "/vectors/update", {"id": "m", "setMetadata": {"$set": "x"}}, "'$'"),
        # SparseValues: 1 to 2048 indices and values; not on an update by filter.
        (
            "POST",
            "/vectors/upsert",
            {"vectors": [{"id": "s", "values": [1, 0, 0, 0], "sparseValues": {"indices": [], "values": []}}]},
            "1 to 2048",
        ),
        (
            "POST",
            "/vectors/upsert",
            {
                "vectors": [
                    {
                        "id": "s",
                        "values": [1, 0, 0, 0],
                        "sparseValues": {"indices": list(range(2049)), "values": [0.5] * 2049},
                    }
                ]
            },
            "1 to 2048",
        ),
        ("POST", "/vectors/update", {"id": "s", "sparseValues": {"indices": [], "values": []}}, "1 to 2048"),
        ("POST", "/vectors/update", {"filter": {"g": "x"}, "sparseValues": SPARSE}, "sparse vector values"),
        # Namespace names and list prefixes: ASCII without NUL, at most 512.
        ("POST", "/namespaces", {"name": "caf\u00e9"}, "ASCII"),
        ("POST", "/namespaces", {"name": "a\u0000b"}, "without NUL"),
        ("POST", "/namespaces", {"name": "n" * 513}, "512"),
        ("GET", "/vectors/list?prefix=%C3%A9", None, "ASCII"),
        ("GET", "/vectors/list?prefix=a%00", None, "without NUL"),
        ("GET", "/vectors/list?prefix=" + "p" * 513, None, "512"),
    ],
)
def test_what_the_reference_refuses_of_ids_values_keys_sparse_values_and_names(
    sandbox: PineconeSandbox, method: str, path: str, body: Any, fragment: str
) -> None:
    sandbox.load("seeds-serverless", "", [("z", [1, 0, 0, 0], None), ("m", [1, 0, 0, 0], None)])
    with raw(sandbox, "seeds-serverless") as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 3
    assert fragment in response.json()["message"]
    snapshot = sandbox.snapshot("seeds-serverless")
    assert set(snapshot) == {""} and set(snapshot[""]) == {"z", "m"}  # nothing written, nothing created
    assert snapshot[""]["z"][0].tolist() == [1, 0, 0, 0] and snapshot[""]["m"][1] is None


def test_what_the_reference_accepts_next_to_those_refusals(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox, "seeds-serverless")
    tiny = [0.0, 0.0, 0.0, 1e-8]  # the smallest magnitude that counts
    idx.upsert(vectors=[("tiny", tiny, {"_x": "u", "a$": "d", "": "empty", "caf\u00e9": "key"})], namespace="ok")
    wide_sparse = {"indices": list(range(2048)), "values": [0.5] * 2048}
    idx.upsert(vectors=[{"id": "\x01~", "values": [1, 0, 0, 0], "sparse_values": wide_sparse}], namespace="ok")
    idx.update(id="tiny", values=[0, -1e-8, 0, 0], namespace="ok")
    idx.update(id="tiny", sparse_values={"indices": [7], "values": [0.25]}, namespace="ok")
    sandbox.settle("seeds-serverless")
    got = idx.fetch(ids=["tiny", "\x01~"], namespace="ok").vectors
    assert got["tiny"].metadata == {"_x": "u", "a$": "d", "": "empty", "caf\u00e9": "key"}
    assert got["tiny"].values == pytest.approx([0, -1e-8, 0, 0])
    assert len(got["\x01~"].sparse_values.indices) == 2048
    assert [v.id for v in idx.list_paginated(prefix="\x01", namespace="ok").vectors] == ["\x01~"]
    assert idx.query(vector=[0, 0, 0, 0], top_k=1, namespace="ok").matches is not None  # a query vector may be zero


def test_an_upsert_fast_path_finds_zeros_and_values_past_its_first_numbers(sandbox: PineconeSandbox) -> None:
    """Upserted text is read number by number for a value that counts only at its start: a vector whose first
    numbers are zero is decoded whole, refused when every value is, kept as sent when a later one counts."""
    zeros = "[" + ", ".join(["0.0"] * 3071 + ["0.000000001"]) + "]"
    late = "[" + ", ".join(["0"] * 3071 + ["-2.5e-3"]) + "]"
    with raw(sandbox, "wide") as client:
        refused = client.post("/vectors/upsert", content='{"vectors": [{"id": "z", "values": ' + zeros + "}]}")
        kept = client.post("/vectors/upsert", content='{"vectors": [{"id": "l", "values": ' + late + "}]}")
    assert refused.status_code == 400 and "only zeros" in refused.json()["message"]
    assert kept.status_code == 200, kept.text
    assert set(sandbox.snapshot("wide")[""]) == {"l"}
    assert sandbox.snapshot("wide")[""]["l"][0][-1] == np.float32(-2.5e-3)


def test_the_seeding_backdoor_holds_nothing_the_service_would_refuse(sandbox: PineconeSandbox) -> None:
    for record in (("caf\u00e9", [1, 0, 0, 0], None), ("z", [0, 0, 0, 0], None), ("m", [1, 0, 0, 0], {"$a": 1})):
        with pytest.raises(ValueError):
            sandbox.load("seeds-pod", "seeded", [record])
    assert sandbox.count("seeds-pod", "seeded") == 0


def test_sdk_refuses_some_limits_itself(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    with pytest.raises(PineconeValueError):
        idx.list_paginated(limit=101)
    with pytest.raises(PineconeValueError):
        idx.fetch(ids=["x" * 513])
    assert sandbox.stats("seeds-pod")["requests"] == {}


def test_missing_api_key_is_401(sandbox: PineconeSandbox) -> None:
    response = httpx.get(sandbox.host("seeds-pod") + "/vectors/list", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 16


# --- faults ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "call"),
    [
        (Faults(write_rps_per_namespace=2, retry_after_s=0.25), lambda idx: idx.upsert(vectors=[("a", [1, 0, 0, 0])])),
        (Faults(query_rps_per_namespace=2, retry_after_s=0.25), lambda idx: idx.query(vector=[1, 0, 0, 0], top_k=1)),
        (Faults(fetch_rps_per_index=2, retry_after_s=0.25), lambda idx: idx.fetch(ids=["a"])),
        (
            Faults(fetch_rps_per_index=2, retry_after_s=0.25),
            lambda idx: idx.fetch_by_metadata(filter={"genre": {"$eq": "drama"}}),
        ),
        (Faults(list_rps_per_index=2, retry_after_s=0.25), lambda idx: idx.list_paginated()),
        (Faults(stats_rps_per_index=2, retry_after_s=0.25), lambda idx: idx.describe_index_stats()),
    ],
    ids=["write", "query", "fetch", "fetch_by_metadata", "list", "stats"],
)
def test_rate_limit_reaches_the_sdk_as_rate_limit_error(
    pc: Pinecone, sandbox: PineconeSandbox, faults: Faults, call: Any
) -> None:
    sandbox.set_faults("seeds-serverless", faults)  # list is a serverless endpoint
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    call(idx)
    call(idx)
    with pytest.raises(RateLimitError) as caught:
        call(idx)
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 0.25
    stats = sandbox.stats("seeds-serverless")
    assert stats["responses_429"] == 1
    assert sum(stats["rate_limited"].values()) == 1


def test_describing_a_namespace_counts_against_the_index_stats_limit_not_fetch(
    pc: Pinecone, sandbox: PineconeSandbox
) -> None:
    """Pinecone limits describe_index_stats per index apart from fetch; a namespace's description is held to it."""
    sandbox.set_faults("seeds-serverless", Faults(stats_rps_per_index=2, fetch_rps_per_index=1, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    idx.upsert(vectors=[("a", [1, 0, 0, 0])], namespace="ns")
    sandbox.settle()  # the namespace's description lags the write
    idx.fetch(ids=["a"], namespace="ns")  # fetch's own window: the stats below are not refused for it
    idx.describe_index_stats()
    idx.describe_namespace(namespace="ns")
    with pytest.raises(RateLimitError) as caught:
        idx.describe_namespace(namespace="ns")
    assert caught.value.status_code == 429
    assert sandbox.stats("seeds-serverless")["rate_limited"] == {
        "write": 0,
        "query": 0,
        "fetch": 0,
        "list": 0,
        "stats": 1,
        "delete_records": 0,
        "write_bytes": 0,
        "query_read_units": 0,
        "delete_by_metadata": 0,
        "update_by_metadata": 0,
    }


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n}" for n in range(count)]


def test_deletes_are_limited_by_the_records_they_name_per_namespace(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    """Pinecone limits the records deleted a second per namespace, beside the delete requests: the limit is reached
    by ids, not by requests, and a refused delete deletes nothing."""
    sandbox.set_faults("seeds-serverless", Faults(delete_records_per_s_per_namespace=1_500, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    idx.upsert(vectors=[("kept", [1, 0, 0, 0])], namespace="a")
    idx.delete(ids=_ids("x", 1_000), namespace="a")
    with pytest.raises(RateLimitError) as caught:
        idx.delete(ids=["kept", *_ids("y", 999)], namespace="a")  # 2,000 in the second: over 1,500
    assert caught.value.status_code == 429 and caught.value.retry_after == 0.25
    assert "max delete records per second (1500) for this namespace 'a'" in str(caught.value.body)
    assert sandbox.count("seeds-serverless", "a") == 1  # the refused delete deleted nothing
    idx.delete(ids=_ids("z", 1_000), namespace="b")  # another namespace's own window
    idx.delete(ids=["kept"], namespace="a")  # 1,001 in the second: under 1,500
    stats = sandbox.stats("seeds-serverless")
    assert stats["rate_limited"]["delete_records"] == 1
    assert stats["max_admitted_per_second"]["delete_records_per_namespace"] == {"a": 1_001, "b": 1_000}


def test_deletes_are_limited_by_the_records_they_name_per_index(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-serverless", Faults(delete_records_per_s_per_index=1_500, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    idx.delete(ids=_ids("x", 1_000), namespace="a")
    with pytest.raises(RateLimitError) as caught:
        idx.delete(ids=_ids("x", 1_000), namespace="b")
    assert "max delete records per second (1500) for this index" in str(caught.value.body)
    idx.delete(delete_all=True, namespace="b")  # names no record: only its request is counted
    assert sandbox.stats("seeds-serverless")["max_admitted_per_second"]["delete_records_per_index"] == 1_000


def test_upserts_are_limited_by_their_size_per_namespace(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    """Pinecone limits the megabytes upserted a second per namespace, beside the upsert requests."""
    sandbox.set_faults("seeds-serverless", Faults(write_mb_per_s_per_namespace=1, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    vectors = [(f"v{n}", [1.0, 0.0, 0.0, 0.5], {"text": "x" * 500}) for n in range(1_000)]  # ~0.55 MB a request
    idx.upsert(vectors=vectors, namespace="a")
    with pytest.raises(RateLimitError) as caught:
        idx.upsert(vectors=vectors, namespace="a")
    assert caught.value.status_code == 429 and caught.value.retry_after == 0.25
    assert "max upsert size per second (1 MB) for this namespace 'a'" in str(caught.value.body)
    idx.upsert(vectors=vectors, namespace="b")  # another namespace's own window
    stats = sandbox.stats("seeds-serverless")
    assert stats["rate_limited"]["write_bytes"] == 1
    peaks = stats["max_admitted_per_second"]["write_bytes_per_namespace"]
    assert peaks.keys() == {"a", "b"} and 500_000 < peaks["a"] == peaks["b"] <= 1_000_000


def test_updates_and_deletes_by_metadata_are_limited_each_kind_apart(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    """Pinecone limits updates by metadata and deletes by metadata per namespace and per index, each kind apart and
    beside the write requests; an update or a delete by id is not one of them."""
    sandbox.set_faults("seeds-serverless", Faults(by_metadata_rps_per_namespace=2, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    idx.upsert(vectors=[("m", [1, 0, 0, 0], {"genre": "drama"})], namespace="a")
    drama = {"genre": {"$eq": "drama"}}
    for _ in range(2):
        idx.update(filter=drama, set_metadata={"seen": True}, namespace="a")
    with pytest.raises(RateLimitError) as caught:
        idx.update(filter=drama, set_metadata={"seen": False}, namespace="a")
    assert "max update by metadata requests per second (2) for this namespace 'a'" in str(caught.value.body)
    idx.update(id="m", set_metadata={"seen": False}, namespace="a")  # by id: another limit
    idx.delete(filter={"genre": {"$eq": "comedy"}}, namespace="a")  # deletes by metadata: their own window
    idx.update(filter=drama, set_metadata={"seen": False}, namespace="b")  # another namespace's
    stats = sandbox.stats("seeds-serverless")
    assert stats["rate_limited"]["update_by_metadata"] == 1 and stats["rate_limited"]["delete_by_metadata"] == 0
    assert stats["max_admitted_per_second"]["update_by_metadata_per_namespace"] == {"a": 2, "b": 1}
    assert stats["max_admitted_per_second"]["update_by_metadata_per_index"] == 3


def test_queries_are_limited_by_the_read_units_they_take_per_index(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    """Pinecone limits the read units an index's queries take a second, beside the queries per namespace: a query
    takes 1 per GB of the namespace it searches, at least 0.25, so 4 queries of small namespaces fill 1 unit."""
    sandbox.set_faults("seeds-serverless", Faults(query_read_units_per_s_per_index=1, retry_after_s=0.25))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    for ns in ("a", "b"):
        idx.upsert(vectors=[("v", [1, 0, 0, 0])], namespace=ns)
    replies = [idx.query(vector=[1, 0, 0, 0], top_k=1, namespace=ns) for ns in ("a", "a", "b", "b")]
    assert [r.usage.read_units for r in replies] == [1] * 4  # a quarter, answered as a whole unit
    with pytest.raises(RateLimitError) as caught:
        idx.query(vector=[1, 0, 0, 0], top_k=1, namespace="c")  # another namespace, the same index's window
    assert caught.value.status_code == 429 and caught.value.retry_after == 0.25
    assert "max query read units per second (1) for this index" in str(caught.value.body)
    stats = sandbox.stats("seeds-serverless")
    assert stats["rate_limited"]["query_read_units"] == 1
    assert stats["max_admitted_per_second"]["query_read_units_per_index"] == 1.0


def test_a_query_takes_read_units_by_the_size_of_its_namespace() -> None:
    assert pinecone_server.query_read_units(0, 1_536) == pinecone_server.query_read_units(10, 4) == 0.25
    assert pinecone_server.query_read_units(1_000_000, 1_536) == pytest.approx(6.144)  # 6.1 GB of float32 values


def test_the_serverless_limits_hold_deletes_upserted_bytes_writes_by_metadata_and_query_units() -> None:
    limits = Faults.pinecone_serverless_limits()
    assert limits.delete_records_per_s_per_namespace == limits.delete_records_per_s_per_index == 5_000
    assert limits.write_mb_per_s_per_namespace == 50
    assert (limits.by_metadata_rps_per_namespace, limits.by_metadata_rps_per_index) == (5, 500)
    assert limits.query_read_units_per_s_per_index == 2_000


def test_a_serverless_index_keeps_the_service_limits_unless_told_otherwise(
    pc: Pinecone, sandbox: PineconeSandbox
) -> None:
    """Pinecone's rate limits "apply to serverless indexes only": a serverless index keeps them with no fault set, a
    pod index keeps none; one limit set replaces the service's, and ``service_limits=False`` keeps only those set."""
    assert sandbox.faults("seeds-serverless") == Faults()
    vectors = [(f"v{n}", [1, 0, 0, n]) for n in range(1_000)]

    def deletes_refused(name: str) -> int:
        idx = index(pc, sandbox, name, retries=False)
        idx.upsert(vectors=vectors, namespace="a")
        refused = 0
        for _ in range(6):  # 6,000 ids at once: over the 5,000 records a second
            try:
                idx.delete(ids=[v[0] for v in vectors], namespace="a")
            except RateLimitError as e:
                assert "max delete records per second (5000) for this namespace 'a'" in str(e.body)
                refused += 1
        return refused

    assert deletes_refused("seeds-serverless") == 1
    assert deletes_refused("seeds-pod") == 0
    sandbox.set_faults("seeds-serverless", Faults(delete_records_per_s_per_namespace=None, service_limits=False))
    assert deletes_refused("seeds-serverless") == 0
    sandbox.reset("seeds-serverless")  # forgets the last second's deletes
    sandbox.set_faults("seeds-serverless", Faults(delete_records_per_s_per_index=2_000))
    idx = index(pc, sandbox, "seeds-serverless", retries=False)
    idx.delete(ids=[f"x{n}" for n in range(1_000)], namespace="b")
    idx.delete(ids=[f"x{n}" for n in range(1_000)], namespace="c")
    with pytest.raises(RateLimitError, match="max delete records per second \\(2000\\) for this index"):
        idx.delete(ids=["x0"], namespace="d")


def test_write_limit_is_per_namespace(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-pod", Faults(write_rps_per_namespace=1))
    idx = index(pc, sandbox, retries=False)
    for ns in ("a", "b", "c"):
        idx.upsert(vectors=[("v", [1, 0, 0, 0])], namespace=ns)
    with pytest.raises(RateLimitError) as caught:
        idx.delete(ids=["v"], namespace="a")
    # Without retry_after_s the header is whole seconds until the window frees a slot, at least 1.
    assert caught.value.retry_after == 1.0
    assert sandbox.stats("seeds-pod")["max_admitted_per_second"]["write_per_namespace"] == {"a": 1, "b": 1, "c": 1}


@pytest.mark.timing
def test_sdk_retries_honour_retry_after(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-pod", Faults(write_rps_per_namespace=1))
    idx = index(pc, sandbox)  # the SDK's own retry policy
    idx.upsert(vectors=[("a", [1, 0, 0, 0])])
    started = time.monotonic()
    assert idx.upsert(vectors=[("b", [1, 0, 0, 0])]).upserted_count == 1
    # Retry-After: 1 plus the SDK's jitter of up to 50 %; the window reopened, so the retry got in.
    elapsed = time.monotonic() - started
    assert elapsed >= 0.9
    assert_timing(elapsed < 3.0, f"the retried upsert took {elapsed:.2f} s (bound: 3.0 s)")
    stats = sandbox.stats("seeds-pod")
    assert stats["responses_429"] >= 1 and stats["requests"]["upsert"] == 2 + stats["responses_429"]


def test_window_accounting_proves_concurrent_workers_stayed_within_budget(
    pc: Pinecone, sandbox: PineconeSandbox
) -> None:
    sandbox.set_faults("seeds-pod", Faults(write_rps_per_namespace=5, retry_after_s=0.05))
    admitted: list[int] = []
    refused: list[int] = []
    deadline = time.monotonic() + 1.5

    def worker(n: int) -> None:
        idx = index(pc, sandbox, retries=False)
        while time.monotonic() < deadline:
            try:
                idx.upsert(vectors=[(f"w{n}-{time.monotonic_ns()}", [1, 0, 0, 0])], namespace="shared")
                admitted.append(n)
            except RateLimitError:
                refused.append(n)
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    stats = sandbox.stats("seeds-pod")
    assert refused, "four unthrottled workers must exceed 5 writes/s"
    assert stats["max_admitted_per_second"]["write_per_namespace"]["shared"] == 5
    assert stats["rate_limited"]["write"] == len(refused)
    assert stats["vectors_stored"] == len(admitted) == sandbox.count("seeds-pod", "shared")
    # 1.5 s at 5/s allows at most 10 admissions (two full windows).
    assert len(admitted) <= 10


def test_peak_is_tracked_without_a_limit(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    for i in range(7):
        idx.query(vector=[1, 0, 0, 0], top_k=1, namespace="q")
        idx.fetch(ids=[f"x{i}"])
    peaks = sandbox.stats("seeds-pod")["max_admitted_per_second"]
    # Fourteen local round trips finish well inside one second.
    assert peaks["query_per_namespace"] == {"q": 7}
    assert peaks["fetch_per_index"] == 7 and peaks["list_per_index"] == 0


def test_random_5xx_and_429_are_seeded(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    def pattern() -> list[str]:
        sandbox.set_faults("seeds-pod", Faults(error_rate_5xx=0.3, error_rate_429=0.2, seed=42))
        idx = index(pc, sandbox, retries=False)
        seen = []
        for _ in range(30):
            try:
                idx.describe_index_stats()
                seen.append("ok")
            except ServiceError as exc:
                assert exc.status_code == 503
                seen.append("5xx")
            except RateLimitError as exc:
                assert exc.retry_after == 1.0
                seen.append("429")
        return seen

    first = pattern()
    assert first == pattern()
    assert {"ok", "5xx", "429"} <= set(first)
    stats = sandbox.stats("seeds-pod")
    assert stats["injected_5xx"] == 2 * first.count("5xx") == stats["responses_5xx"]
    assert stats["injected_429"] == 2 * first.count("429")


def test_error_rate_one_fails_every_chosen_operation(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-pod", Faults(error_rate_5xx=1.0, status_5xx=500, error_ops=("upsert", "fetch")))
    idx = index(pc, sandbox, retries=False)
    for call in (lambda: idx.fetch(ids=["a"]), lambda: idx.upsert(vectors=[("a", [1, 0, 0, 0])])):
        with pytest.raises(ServiceError) as caught:
            call()
        assert caught.value.status_code == 500
    # Operations outside error_ops are untouched.
    assert idx.describe_index_stats().total_vector_count == 0
    assert idx.query(vector=[1, 0, 0, 0], top_k=1).matches == []
    assert sandbox.stats("seeds-pod")["injected_5xx"] == 2


def test_silent_drops(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-pod", Faults(drop_fraction=0.25, seed=3))
    idx = index(pc, sandbox)
    ids = [f"v{i}" for i in range(100)]
    assert idx.upsert(vectors=[(i, [1, 0, 0, 0]) for i in ids], namespace="d").upserted_count == 100
    found = idx.fetch(ids=ids, namespace="d").vectors
    assert len(found) == 75
    stats = sandbox.stats("seeds-pod")
    assert stats["vectors_dropped"] == 25 and stats["vectors_stored"] == 75
    # A repair pass re-upserting what is missing gets most of it in (drops are random, not sticky).
    missing = [i for i in ids if i not in found]
    idx.upsert(vectors=[(i, [1, 0, 0, 0]) for i in missing], namespace="d")
    assert 75 < sandbox.count("seeds-pod", "d") < 100


def test_latency_is_added(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox)
    sandbox.set_faults("seeds-pod", Faults(latency_ms=150))
    started = time.monotonic()
    idx.describe_index_stats()
    assert time.monotonic() - started >= 0.15


def test_latency_of_some_namespaces_slows_only_what_they_serve_an_alias_included(
    pc: Pinecone, sandbox: PineconeSandbox
) -> None:
    sandbox.load("seeds-serverless", "slow", [("a", [1, 0, 0, 0], None)])
    sandbox.load("seeds-serverless", "fast", [("a", [1, 0, 0, 0], None)])
    served = raw(sandbox, "seeds-serverless")
    alias = {"name": "live", "target_namespace": "slow"}
    created = served.post("/namespace-aliases", json=alias, headers={"X-Pinecone-Api-Version": "2026-07"})
    assert created.status_code == 200, created.text
    idx = index(pc, sandbox, "seeds-serverless")
    sandbox.set_faults("seeds-serverless", Faults(latency_ms=150, latency_namespaces=["slow"]))

    started = time.monotonic()
    idx.query(vector=[1, 0, 0, 0], top_k=1, namespace="live")  # served by "slow"
    assert time.monotonic() - started >= 0.15
    for namespace in ("fast", "slow", "fast"):
        idx.query(vector=[1, 0, 0, 0], top_k=1, namespace=namespace)

    assert sandbox.stats("seeds-serverless")["delayed"] == 2
    assert sandbox.faults("seeds-serverless").to_dict()["latency_namespaces"] == ["slow"]


def test_namespaces_endpoint_switched_off(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-serverless", Faults(namespaces_endpoint=False))
    sandbox.load("seeds-serverless", "ns", [("a", [1, 0, 0, 0], None)])
    idx = index(pc, sandbox, "seeds-serverless")
    with pytest.raises(NotFoundError):
        list(idx.list_namespaces())
    with pytest.raises(NotFoundError):
        idx.describe_namespace(name="ns")
    with pytest.raises(NotFoundError):
        idx.delete_namespace(name="ns")
    # The fallback the design names still works: stats to enumerate, delete_all to empty.
    assert set(idx.describe_index_stats().namespaces) == {"ns"}
    idx.delete(delete_all=True, namespace="ns")
    assert sandbox.count("seeds-serverless") == 0


def test_a_pod_index_refuses_list_and_the_namespace_endpoints(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    """Real pods serve neither ``list`` nor ``/namespaces``: the SDK gets a clear 404 naming what to use instead, and
    ``describe_index_stats`` is how a pod's namespaces are found."""
    sandbox.load("seeds-pod", "ns", [("a", [1, 0, 0, 0], None), ("b", [0, 1, 0, 0], None)])
    idx = index(pc, sandbox, retries=False)
    refusals = [
        lambda: idx.list_paginated(namespace="ns"),
        lambda: list(idx.list(namespace="ns")),
        lambda: list(idx.list_namespaces()),
        lambda: idx.describe_namespace(name="ns"),
        lambda: idx.delete_namespace(name="ns"),
        lambda: idx.create_namespace(name="new"),
    ]
    messages = []
    for call in refusals:
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404
        messages.append(str(caught.value))
    assert "The list endpoint is supported only for serverless indexes" in messages[0]
    assert all("not supported for pod-based indexes" in m for m in messages[2:])
    assert sandbox.count("seeds-pod", "ns") == 2  # the refused delete deleted nothing
    assert {n: s.vector_count for n, s in idx.describe_index_stats().namespaces.items()} == {"ns": 2}
    with raw(sandbox, "seeds-pod") as client:
        body = client.get("/vectors/list", params={"namespace": "ns"}).json()
    assert body == {"code": 5, "message": "The list endpoint is supported only for serverless indexes", "details": []}
    # The same calls on a serverless index are served.
    assert index(pc, sandbox, "seeds-serverless").list_paginated(namespace="ns").vectors == []


def test_admin_endpoints_over_http(sandbox: PineconeSandbox) -> None:
    host = sandbox.host("seeds-pod")
    # No Api-Key needed, and the admin endpoints ignore faults (here: every data request would fail).
    put = httpx.post(f"{host}/_sandbox/faults", json={"error_rate_5xx": 1.0, "latency_ms": 5}, timeout=5)
    assert put.status_code == 200 and put.json()["error_rate_5xx"] == 1.0
    assert sandbox.faults("seeds-pod") == Faults(error_rate_5xx=1.0, latency_ms=5)
    assert httpx.get(f"{host}/_sandbox/faults", timeout=5).json() == Faults(error_rate_5xx=1.0, latency_ms=5).to_dict()

    bad = httpx.post(f"{host}/_sandbox/faults", json={"latency": 5}, timeout=5)
    assert bad.status_code == 400 and "unknown fault keys" in bad.json()["message"]
    bad_op = httpx.post(f"{host}/_sandbox/faults", json={"error_ops": ["upsrt"]}, timeout=5)
    assert bad_op.status_code == 400 and "unknown operations" in bad_op.json()["message"]
    only_upserts = httpx.post(
        f"{host}/_sandbox/faults", json={"error_rate_429": 1.0, "error_ops": ["upsert"]}, timeout=5
    )
    assert only_upserts.json()["error_ops"] == ["upsert"]
    assert sandbox.faults("seeds-pod") == Faults(error_rate_429=1.0, error_ops=("upsert",))
    httpx.post(f"{host}/_sandbox/faults", json={"error_rate_5xx": 1.0, "latency_ms": 5}, timeout=5)

    sandbox.load("seeds-pod", "", [("a", [1, 0, 0, 0], None)])
    stats = httpx.get(f"{host}/_sandbox/stats", timeout=5).json()
    assert stats["vector_count"] == 1 and stats["namespaces"] == {"__default__": 1}
    assert httpx.post(f"{host}/_sandbox/reset", timeout=5).status_code == 200
    assert sandbox.count("seeds-pod") == 0
    assert sandbox.faults("seeds-pod").error_rate_5xx == 1.0  # reset keeps faults


def test_the_stats_keep_each_requests_arrival_until_they_are_reset(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    host = sandbox.host("seeds-pod")
    idx = index(pc, sandbox)
    idx.upsert(vectors=[("a", unit(1, 0, 0, 0))], namespace="n")
    before = time.time()
    for _ in range(3):
        idx.fetch(ids=["a"], namespace="n")
    stats = httpx.get(f"{host}/_sandbox/stats", timeout=5).json()
    fetches = stats["first_request_times"]["fetch"]
    assert len(fetches) == 3 and before <= fetches[0] <= fetches[1] <= fetches[2] <= time.time()
    assert stats["requests"]["fetch"] == 3 and len(stats["first_request_times"]["upsert"]) == 1

    assert httpx.post(f"{host}/_sandbox/stats/reset", timeout=5).status_code == 200
    stats = httpx.get(f"{host}/_sandbox/stats", timeout=5).json()
    assert stats["first_request_times"] == {} and stats["requests"] == {}
    assert stats["vector_count"] == 1  # the data stays


def test_a_reset_of_the_stats_forgives_no_429(sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("seeds-pod", Faults(fetch_rps_per_index=2, retry_after_s=0.25))
    client = raw(sandbox, "seeds-pod")
    for _ in range(2):
        assert client.get("/vectors/fetch", params={"ids": "a", "namespace": "n"}).status_code == 200
    assert client.post("/_sandbox/stats/reset").status_code == 200
    assert client.get("/vectors/fetch", params={"ids": "a", "namespace": "n"}).status_code == 429  # same second
    assert sandbox.stats("seeds-pod")["rate_limited"]["fetch"] == 1


# --- control plane, concurrency, lifecycle, CLI ------------------------------------------------------------------


def test_control_plane_describe_list_and_index_by_name(sandbox: PineconeSandbox) -> None:
    pc = Pinecone(api_key="test-key", host=sandbox.control_host)
    described = pc.describe_index("seeds-pod")
    assert described.host == sandbox.host("seeds-pod")
    assert (described.dimension, described.metric) == (DIM, "cosine")
    assert described.spec.pod is not None
    assert pc.describe_index("seeds-serverless").spec.serverless is not None
    assert {i.name for i in pc.list_indexes()} == set(sandbox.names())
    assert not pc.has_index("nope")
    with pytest.raises(NotFoundError):
        pc.describe_index("nope")

    idx = pc.Index(name="seeds-pod")
    idx.upsert(vectors=[("a", [1, 0, 0, 0])])
    assert sandbox.count("seeds-pod") == 1


def test_control_plane_creates_and_deletes_an_index(sandbox: PineconeSandbox) -> None:
    pc = Pinecone(api_key="test-key", host=sandbox.control_host)
    name = f"created-{uuid.uuid4().hex[:8]}"
    model = pc.indexes.create(
        name=name,
        schema={"fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "euclidean"}}},
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    )
    try:
        assert model.host == sandbox.host(name)
        pc.Index(name=name).upsert(vectors=[("a", [1, 2, 3])])
        assert sandbox.count(name) == 1
        with pytest.raises(ApiError) as caught:
            pc.indexes.create(
                name=name,
                schema={"fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "cosine"}}},
                deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
            )
        assert caught.value.status_code == 409
    finally:
        pc.delete_index(name)
    assert name not in sandbox.names()


def test_concurrent_writers(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    def writer(n: int) -> None:
        idx = index(pc, sandbox)
        for batch in range(5):
            idx.upsert(vectors=[(f"{n}-{batch}-{i}", [1, 0, 0, 0]) for i in range(20)], namespace=f"ns{n % 3}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sandbox.count("seeds-pod") == 8 * 5 * 20
    sandbox.settle()  # the counts lag writes
    assert index(pc, sandbox).describe_index_stats().total_vector_count == 800


def test_stop_closes_keep_alive_connections(pc: Pinecone) -> None:
    sb = PineconeSandbox([IndexSpec("tmp", DIM)]).start()
    idx = pc.Index(host=sb.host("tmp"))
    set_sdk_retries(idx, 0)
    idx.upsert(vectors=[("a", [1, 0, 0, 0])])
    sb.stop()
    with pytest.raises(PineconeConnectionError):
        idx.fetch(ids=["a"])


def test_seed_data_loads_and_matches_through_the_sdk(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    data = seed_dataset(dimension=DIM)
    assert data.load_into(sandbox, "seeds-pod") == 805
    stats = index(pc, sandbox).describe_index_stats()
    assert stats.total_vector_count == 805
    assert stats.namespaces["__default__"].vector_count == 376
    assert len(stats.namespaces) == 31
    twin = next(iter(data.twins))
    some_id, _, metadata = data.namespaces[twin][0]
    assert index(pc, sandbox).fetch(ids=[some_id], namespace=twin).vectors[some_id].metadata == metadata


def test_compile_filter_is_pure() -> None:
    predicate = compile_filter({"$or": [{"a": {"$gt": 1}}, {"b": {"$in": ["x"]}}]})
    assert predicate({"a": 2}) and predicate({"b": ["x", "y"]}) and not predicate({"a": 1, "b": "z"})


def test_seed_dataset_shape() -> None:
    data = seed_dataset(seed=1, dimension=16)
    assert data.total == 805 and data.counts[""] == 376 and len(data.namespaces) == 31
    twin_namespaces = [ns for ns in data.namespaces if ns]
    assert sorted(twin_namespaces) == sorted(data.twins)
    assert all(uuid.UUID(ns).version == 4 for ns in twin_namespaces)
    assert len(set(data.counts[ns] for ns in twin_namespaces)) > 5  # uneven
    assert {"sainath.no.1", "a.1", "a.10"} <= set(data.creators) and len(data.creators) == 8
    assert set(data.twins.values()) == set(data.creators)  # every creator owns a twin
    assert data.twins_of("a.1") and data.twins_of("a.10")
    all_ids = [r[0] for records in data.namespaces.values() for r in records]
    assert len(all_ids) == len(set(all_ids))  # unique in the whole data set, so namespaces can be merged
    for ns, records in data.namespaces.items():
        for vector_id, values, metadata in records:
            assert isinstance(values, list) and len(values) == 16
            assert abs(np.linalg.norm(values) - 1) < 1e-5
            assert metadata["source"] == vector_id.split("#")[0] and isinstance(metadata["chunk"], int)
            assert ("twin_id" in metadata) == (ns == "")
            if ns == "":
                assert metadata["twin_id"] in data.twins


def test_seed_dataset_is_deterministic_and_scales() -> None:
    a, b, c = seed_dataset(seed=5, dimension=8), seed_dataset(seed=5, dimension=8), seed_dataset(seed=6, dimension=8)
    assert a.namespaces == b.namespaces and a.twins == b.twins
    assert a.twins != c.twins
    big = seed_dataset(n_vectors=20_000, dimension=1536, n_twin_namespaces=50, default_count=8_000, values_as="numpy")
    assert big.total == 20_000 and len(big.namespaces) == 51
    first = big.namespaces[""][0][1]
    assert isinstance(first, np.ndarray) and first.dtype == np.float32 and first.shape == (1536,)


# --- upserted values are checked as JSON text, and fetched as float32 --------------------------------------------


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ("[0.5, true, 0.25, 1]", "must all be numbers"),
        ('[0.5, "0.5", 0.25, 1]', "must all be numbers"),
        ("[0.5, null, 0.25, 1]", "must all be numbers"),
        ("[[0.5, 0.5], 0.25, 1, 1]", "must all be numbers"),
        ('"0.5,0.5,0.25,1"', "must be an array of numbers"),
        ("null", "must be an array of numbers"),
        ("[0.5, 0.25, 1]", "dimension 3 does not match the dimension of the index 4"),
        ("[]", "dimension 0 does not match the dimension of the index 4"),
        ("[0.5, 1e39, 0.25, 1]", "finite"),
        ("[0.5, 1" + "0" * 40 + ", 0.25, 1]", "finite"),
        ("[0.5, 1" + "0" * 30 + "e10, 0.25, 1]", "finite"),  # 1e40 with a small exponent
        ("[0.5, " + "9" * 38 + ".9e1, 0.25, 1]", "finite"),
    ],
)
def test_upserted_values_are_refused_as_before_without_being_decoded(
    sandbox: PineconeSandbox, values: str, fragment: str
) -> None:
    body = '{"vectors": [{"id": "v", "values": ' + values + '}], "namespace": "text-check"}'
    with raw(sandbox, "seeds-pod") as client:
        response = client.post("/vectors/upsert", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]
    assert sandbox.count("seeds-pod", "text-check") == 0


def test_values_upserted_as_text_are_fetched_and_queried_as_float32(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    precise = [0.1234567890123, -2.5e-3, 3.0, 1e-40]  # 1e-40 is below float32's normal range
    body = '{"vectors": [{"id": "p", "values": [0.1234567890123, -2.5e-3, 3, 1e-40]}], "namespace": "text-f32"}'
    with raw(sandbox, "seeds-pod") as client:
        assert client.post("/vectors/upsert", content=body).status_code == 200
        served = client.get("/vectors/fetch", params={"ids": "p", "namespace": "text-f32"}).json()

    expected = np.asarray(precise, dtype=np.float32)
    got = served["vectors"]["p"]["values"]
    assert np.asarray(got, dtype=np.float32).tolist() == expected.tolist()  # what Pinecone returns: float32 values
    assert got[0] == 0.12345679  # in float32's shortest form, not the digits sent
    idx = index(pc, sandbox)
    sandbox.settle()  # queries lag writes
    match = idx.query(vector=precise, top_k=1, namespace="text-f32", include_values=True).matches[0]
    assert match.id == "p" and np.asarray(match.values, dtype=np.float32).tolist() == expected.tolist()

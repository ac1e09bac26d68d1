"""What the local data plane's ``POST /query`` answers, held to real Pinecone (API 2026-07): matches carry what a
``ScoredVector`` carries (values exactly as fetch sends them, sparse values), the 4 MB result-size limit is kept, and
the ``query_miss_fraction`` fault makes a search approximate the way serverless queries are.

Driven over real HTTP (``httpx``, to see the bytes and the server's own refusals) and with the real ``pinecone`` SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from pinecone import Pinecone, PineconeApiException

from nsmigrate_sandbox.pinecone_server import MAX_QUERY_RESULT_BYTES, Faults, IndexSpec, PineconeSandbox
from tests.sdk_internals import reset_sdk_host_state

DIM = 8
WIDE = 3072


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec("exact", DIM, "cosine"),
        IndexSpec("exact-pod", DIM, "cosine", kind="pod"),
        IndexSpec("hybrid", DIM, "dotproduct"),
        IndexSpec("wide", WIDE, "cosine"),
    ]


@pytest.fixture(autouse=True)
def clean(sandbox: PineconeSandbox) -> Iterator[None]:
    yield
    reset_sdk_host_state()  # the next module's tests start from a full SDK budget too


@pytest.fixture(scope="module")
def pc() -> Pinecone:
    return Pinecone(api_key="test-key")


def index(pc: Pinecone, sandbox: PineconeSandbox, name: str) -> Any:
    return pc.Index(host=sandbox.host(name))


def raw(sandbox: PineconeSandbox, name: str) -> httpx.Client:
    """What the SDK would send, minus its client-side checks, so the server's own answers can be seen as bytes."""
    return httpx.Client(base_url=sandbox.host(name), headers={"Api-Key": "test-key"}, timeout=30)


# The JSON of query and fetch answers with each vector's values kept as the bytes the server sent.
class _RawMatch(msgspec.Struct):
    id: str
    values: msgspec.Raw
    sparseValues: msgspec.Raw = msgspec.Raw()  # the wire's name; empty when absent


class _RawQuery(msgspec.Struct):
    matches: list[_RawMatch]


class _RawVector(msgspec.Struct):
    values: msgspec.Raw
    sparseValues: msgspec.Raw = msgspec.Raw()


class _RawFetch(msgspec.Struct):
    vectors: dict[str, _RawVector]


def raw_query(client: httpx.Client, **body: Any) -> _RawQuery:
    response = client.post("/query", json=body)
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=_RawQuery)


def raw_fetch(client: httpx.Client, ids: list[str], namespace: str) -> _RawFetch:
    response = client.get("/vectors/fetch", params={"ids": ids, "namespace": namespace})
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=_RawFetch)


#: Values whose JSON differs as soon as they are not sent as float32's shortest form: digits float32 cannot hold, a
#: subnormal, float32's extremes, a negative zero.
AWKWARD = [
    [0.1, -0.2, 0.3333333333333333, 1e-40, -3.4028235e38, 3.4028235e38, -0.0, 0.7],
    [0.1234567890123, 2.5e-3, 1.0, 1e-45, 0.5, -0.25, 123456.789, 3.0],
    [1e-8, 1.0, -1.0, 0.999999999, 16777217.0, -7.0, 2.0, 0.1],
]


@pytest.mark.parametrize("name", ["exact", "exact-pod", "hybrid"])
def test_query_values_are_fetchs_values_byte_for_byte(pc: Pinecone, sandbox: PineconeSandbox, name: str) -> None:
    ids = [f"v{i}" for i in range(len(AWKWARD))]
    with raw(sandbox, name) as client:
        # Upserted over HTTP: kept as their text until first read, the path a migration's writes take.
        upserted = client.post(
            "/vectors/upsert",
            json={"vectors": [{"id": i, "values": v} for i, v in zip(ids, AWKWARD, strict=True)], "namespace": "b"},
        )
        assert upserted.status_code == 200, upserted.text
        sandbox.settle()  # queries lag writes
        # Queried before anything fetched them: the match's values are not taken from a cache fetch filled.
        queried = raw_query(client, vector=[1.0] * DIM, topK=10, namespace="b", includeValues=True)
        fetched = raw_fetch(client, ids, "b")

    assert sorted(m.id for m in queried.matches) == ids
    for match in queried.matches:
        assert bytes(match.values) == bytes(fetched.vectors[match.id].values), match.id
    # And the SDK reads the same numbers from both.
    idx = index(pc, sandbox, name)
    sdk_matches = idx.query(vector=[1.0] * DIM, top_k=10, namespace="b", include_values=True).matches
    sdk_fetched = idx.fetch(ids=ids, namespace="b").vectors
    assert {m.id: m.values for m in sdk_matches} == {i: v.values for i, v in sdk_fetched.items()}
    assert np.asarray(sdk_fetched["v0"].values, np.float32).tolist() == np.asarray(AWKWARD[0], np.float32).tolist()


def test_query_values_of_seeded_records_are_fetchs_too(sandbox: PineconeSandbox) -> None:
    rng = np.random.default_rng(11)
    sandbox.load("wide", "seeded", [(f"s{i}", rng.standard_normal(WIDE), None) for i in range(5)])
    with raw(sandbox, "wide") as client:
        fetched = raw_fetch(client, [f"s{i}" for i in range(5)], "seeded")
        queried = raw_query(client, vector=[0.5] * WIDE, topK=5, namespace="seeded", includeValues=True)
    assert len(queried.matches) == 5
    for match in queried.matches:
        assert bytes(match.values) == bytes(fetched.vectors[match.id].values), match.id


def test_sparse_values_come_back_with_values_of_a_hybrid_record(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    idx = index(pc, sandbox, "hybrid")
    sparse = {"indices": [3, 70000, 2**32 - 1], "values": [0.1, -2.5, 0.3333333333333333]}
    idx.upsert(
        vectors=[
            {"id": "hybrid", "values": [1.0] * DIM, "sparse_values": sparse, "metadata": {"kind": "hybrid"}},
            {"id": "dense", "values": [0.5] * DIM, "metadata": {"kind": "dense"}},
        ],
        namespace="h",
    )
    sandbox.settle()

    with raw(sandbox, "hybrid") as client:
        queried = raw_query(client, vector=[1.0] * DIM, topK=2, namespace="h", includeValues=True)
        fetched = raw_fetch(client, ["hybrid", "dense"], "h")
        without = client.post("/query", json={"vector": [1.0] * DIM, "topK": 2, "namespace": "h"})
        metadata_only = client.post(
            "/query", json={"vector": [1.0] * DIM, "topK": 2, "namespace": "h", "includeMetadata": True}
        )
    by_id = {m.id: m for m in queried.matches}
    assert bytes(by_id["hybrid"].sparseValues).startswith(b'{"indices":[3,70000,4294967295]')
    assert bytes(by_id["hybrid"].sparseValues) == bytes(fetched.vectors["hybrid"].sparseValues)
    assert bytes(by_id["dense"].sparseValues) == b""  # a dense-only record has none to send
    # Without includeValues: neither values nor sparse values, whatever else is asked for.
    for response in (without, metadata_only):
        assert response.status_code == 200, response.text
        for match in response.json()["matches"]:
            assert match["values"] == [] and "sparseValues" not in match
    assert {m["id"]: m["metadata"]["kind"] for m in metadata_only.json()["matches"]} == {
        "hybrid": "hybrid",
        "dense": "dense",
    }

    matches = {m.id: m for m in idx.query(vector=[1.0] * DIM, top_k=2, namespace="h", include_values=True).matches}
    got = matches["hybrid"].sparse_values
    assert got is not None and got.indices == sparse["indices"]
    assert np.asarray(got.values, np.float32).tolist() == np.asarray(sparse["values"], np.float32).tolist()
    assert matches["dense"].sparse_values is None
    assert idx.query(vector=[1.0] * DIM, top_k=2, namespace="h").matches[0].sparse_values is None


# --- the result-size limit ---------------------------------------------------------------------------------------


def _at_the_limit(client: httpx.Client, body: dict[str, Any], most: int) -> tuple[int, int]:
    """The largest topK whose answer to ``body`` is within the limit, found by bisection, and its answer's size."""
    low, high, size = 1, most, 0
    while low < high:
        top_k = (low + high + 1) // 2
        response = client.post("/query", json={**body, "topK": top_k})
        if response.status_code == 200:
            low, size = top_k, len(response.content)
        else:
            assert response.status_code == 400, response.text
            high = top_k - 1
    if size == 0:
        size = len(client.post("/query", json={**body, "topK": low}).content)
    return low, size


def test_a_query_answer_over_4_mb_is_refused_and_one_at_the_limit_answered(
    pc: Pinecone, sandbox: PineconeSandbox
) -> None:
    assert MAX_QUERY_RESULT_BYTES == 4_000_000
    rng = np.random.default_rng(5)
    count = 140  # ~34 KB of JSON per match with values: ~4.7 MB for all of them
    sandbox.load("wide", "big", [(f"r{i:03d}", rng.standard_normal(WIDE), {"pad": ""}) for i in range(count)])
    vector = rng.standard_normal(WIDE).tolist()
    body = {"vector": vector, "namespace": "big", "includeValues": True, "includeMetadata": True}

    with raw(sandbox, "wide") as client:
        top_k, size = _at_the_limit(client, body, count)
        assert 50 < top_k < count and size <= MAX_QUERY_RESULT_BYTES
        # Fill the answer of that topK to the byte: its best match's metadata takes up the rest.
        first = client.post("/query", json={**body, "topK": 1}).json()["matches"][0]["id"]
        gap = MAX_QUERY_RESULT_BYTES - size
        assert len(f'{{"pad":"{"x" * gap}"}}') <= 40960  # metadata the service would hold

        def pad(length: int) -> None:
            sandbox.load("wide", "big", [(first, sandbox.snapshot("wide")["big"][first][0], {"pad": "x" * length})])

        pad(gap)
        at_limit = client.post("/query", json={**body, "topK": top_k})
        assert at_limit.status_code == 200, at_limit.text
        assert len(at_limit.content) == MAX_QUERY_RESULT_BYTES
        assert len(at_limit.json()["matches"]) == top_k

        pad(gap + 1)
        over = client.post("/query", json={**body, "topK": top_k})
        assert over.status_code == 400, over.text[:300]
        error = over.json()
        assert error["code"] == 3 and error["details"] == []  # INVALID_ARGUMENT, the data plane's rpcStatus
        assert error["message"] == (
            f"Query result size of {MAX_QUERY_RESULT_BYTES + 1} bytes exceeds the maximum result size of 4MB "
            f"({MAX_QUERY_RESULT_BYTES} bytes). Choose a lower topK, or leave out values or metadata "
            "(includeValues=false or includeMetadata=false)."
        )
        # What the message advises is answered.
        assert client.post("/query", json={**body, "topK": top_k - 1}).status_code == 200
        assert client.post("/query", json={**body, "topK": top_k, "includeValues": False}).status_code == 200
        assert client.post("/query", json={**body, "topK": count, "includeMetadata": False}).status_code == 400
        no_data = client.post("/query", json={"vector": vector, "namespace": "big", "topK": count})
        assert no_data.status_code == 200 and len(no_data.json()["matches"]) == count

    # The SDK sees the refusal as the service's 400.
    idx = index(pc, sandbox, "wide")
    with pytest.raises(PineconeApiException) as caught:
        idx.query(vector=vector, top_k=top_k, namespace="big", include_values=True, include_metadata=True)
    assert caught.value.status_code == 400
    assert caught.value.body is not None and caught.value.body["code"] == 3
    assert "maximum result size of 4MB" in caught.value.body["message"]
    answered = idx.query(vector=vector, top_k=top_k - 1, namespace="big", include_values=True, include_metadata=True)
    assert len(answered.matches) == top_k - 1


# --- approximate search ------------------------------------------------------------------------------------------


def _load_forty(sandbox: PineconeSandbox, name: str = "exact") -> list[str]:
    rng = np.random.default_rng(3)
    ids = [f"m{i:02d}" for i in range(40)]
    sandbox.load(name, "a", [(i, rng.standard_normal(DIM), {"half": n % 2 == 0}) for n, i in enumerate(ids)])
    return ids


def test_an_exact_search_is_the_default(pc: Pinecone, sandbox: PineconeSandbox) -> None:
    ids = _load_forty(sandbox)
    idx = index(pc, sandbox, "exact")
    for _ in range(3):
        assert sorted(m.id for m in idx.query(vector=[1.0] * DIM, top_k=100, namespace="a").matches) == ids


@pytest.mark.parametrize("name", ["exact", "exact-pod"])
def test_a_query_misses_its_fraction_of_the_records(pc: Pinecone, sandbox: PineconeSandbox, name: str) -> None:
    ids = _load_forty(sandbox, name)
    sandbox.set_faults(name, Faults(query_miss_fraction=0.25, seed=7))
    idx = index(pc, sandbox, name)

    # topK covers the namespace, yet a quarter of its 40 records are missed, others each time.
    seen: list[set[str]] = []
    for _ in range(4):
        matches = idx.query(vector=[1.0] * DIM, top_k=100, namespace="a").matches
        assert len(matches) == 30
        seen.append({m.id for m in matches})
    assert set().union(*seen) > seen[0] and set().union(*seen) <= set(ids)

    # Of the 20 a filter admits, 5 are missed.
    filtered = idx.query(vector=[1.0] * DIM, top_k=100, namespace="a", filter={"half": True}).matches
    assert len(filtered) == 15 and all(int(m.id[1:]) % 2 == 0 for m in filtered)

    # A smaller topK is still filled, by records ranked below the missed ones.
    assert len(idx.query(vector=[1.0] * DIM, top_k=10, namespace="a").matches) == 10

    # The misses are seeded: the same faults again miss the same records, query by query.
    sandbox.set_faults(name, Faults(query_miss_fraction=0.25, seed=7))
    again = [{m.id for m in idx.query(vector=[1.0] * DIM, top_k=100, namespace="a").matches} for _ in range(4)]
    assert again == seen


def test_the_miss_fraction_is_set_over_http_and_checked(sandbox: PineconeSandbox) -> None:
    _load_forty(sandbox)
    with raw(sandbox, "exact") as client:
        assert client.post("/_sandbox/faults", json={"query_miss_fraction": 0.5}).status_code == 200
        assert client.get("/_sandbox/faults").json()["query_miss_fraction"] == 0.5
        assert len(raw_query(client, vector=[1.0] * DIM, topK=100, namespace="a").matches) == 20
        assert client.post("/_sandbox/faults", json={"query_miss_fraction": 1.5}).status_code == 400
        assert client.post("/_sandbox/faults", json={"query_miss_fraction": 1.0}).status_code == 200
        assert raw_query(client, vector=[1.0] * DIM, topK=100, namespace="a").matches == []
    with pytest.raises(ValueError, match="query_miss_fraction"):
        Faults(query_miss_fraction=-0.1)

"""The local control plane speaks API 2026-07's index model: creation by schema only (no dimension, metric or
spec; no pods), descriptions by ``deployment`` and ``schema``, legacy indexes that exist described as the 2026-07
spec says; through the real SDK, and raw HTTP where the SDK refuses before sending."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pinecone import ApiError, Pinecone

from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

DIM = 4
POD, SERVERLESS = "old-pod", "old-serverless"
DENSE = {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(POD, DIM, "dotproduct", kind="pod"), IndexSpec(SERVERLESS, DIM, "euclidean")]


@pytest.fixture
def control(sandbox: PineconeSandbox) -> Iterator[PineconeSandbox]:
    before = set(sandbox.names())
    yield sandbox
    for name in set(sandbox.names()) - before:
        sandbox.remove_index(name)


def raw(sandbox: PineconeSandbox, method: str, path: str, body: Any = None, version: str = "2026-07") -> httpx.Response:
    headers = {"Api-Key": "test-key", "X-Pinecone-Api-Version": version}
    return httpx.request(method, sandbox.control_host + path, json=body, headers=headers, timeout=10)


def test_legacy_indexes_are_described_as_2026_07_writes_them(control: PineconeSandbox) -> None:
    pod = raw(control, "GET", f"/indexes/{POD}").json()
    assert not {"spec", "dimension", "metric", "vector_type"} & set(pod)
    assert pod["deployment"] == {
        "deployment_type": "pod",
        "environment": "us-east-1-aws",
        "pod_type": "p1.x1",
        "replicas": 1,
        "shards": 1,
    }
    assert pod["schema"]["fields"] == {
        "_values": {"type": "dense_vector", "dimension": DIM, "metric": "dotproduct"},
        "_sparse_values": {"type": "sparse_vector"},
    }
    serverless = raw(control, "GET", f"/indexes/{SERVERLESS}").json()
    assert serverless["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert serverless["read_capacity"]["mode"] == "OnDemand" and "spec" not in serverless
    listed = raw(control, "GET", "/indexes").json()["indexes"]
    assert all("spec" not in model and "deployment" in model for model in listed)

    # The SDK reads the old attributes back from deployment and schema.
    pc = Pinecone(api_key="test-key", host=control.control_host)
    described = pc.describe_index(POD)
    assert (described.dimension, described.metric, described.spec.pod.pod_type) == (DIM, "dotproduct", "p1.x1")
    # An older API version still gets the older shape.
    older = raw(control, "GET", f"/indexes/{POD}", version="2026-04").json()
    assert older["spec"]["pod"]["pod_type"] == "p1.x1" and older["dimension"] == DIM


def test_a_2026_07_create_takes_a_schema_and_nothing_of_2026_04(control: PineconeSandbox) -> None:
    legacy = {
        "name": "by-dimension",
        "dimension": DIM,
        "metric": "cosine",
        "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}},
    }
    refused = raw(control, "POST", "/indexes", legacy)
    assert refused.status_code == 422 and "unknown field `dimension`" in refused.json()["error"]["message"]
    missing = raw(control, "POST", "/indexes", {"name": "no-schema"})
    assert missing.status_code == 422 and "missing field `schema`" in missing.json()["error"]["message"]
    pod = {
        "name": "new-pod",
        "schema": {"fields": {"_values": DENSE}},
        "deployment": {"deployment_type": "pod", "environment": "us-east-1-aws", "pod_type": "p1.x1"},
    }
    refused_pod = raw(control, "POST", "/indexes", pod)
    assert refused_pod.status_code == 400
    assert refused_pod.json()["error"]["message"] == "deployment_type 'pod' is not supported on this API version"
    assert {"by-dimension", "no-schema", "new-pod"}.isdisjoint(control.names())
    # The same body under 2026-04 still creates a serverless index (older clients).
    assert raw(control, "POST", "/indexes", legacy, version="2026-04").status_code == 201


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "at least one"),
        ({"_id": DENSE}, "reserved"),
        ({"_values": DENSE, "body": {"type": "string", "full_text_search": {}}}, "only as the whole schema"),
        ({"$price": DENSE}, "must not start with '$'"),
        ({"x" * 65: DENSE}, "longer than 64 bytes"),
        ({"a": DENSE, "b": DENSE}, "at most one dense_vector"),
        ({"a": {"type": "sparse_vector"}, "b": {"type": "sparse_vector"}}, "one sparse_vector"),
        ({"a": DENSE, "genre": {"type": "string"}}, "needs a full_text_search object"),
        ({"a": DENSE, "price": {"type": "float"}}, "metadata"),
        ({"a": DENSE, "tags": {"type": "string_list"}}, "metadata"),
        ({"text": {"type": "semantic_text", "model": "multilingual-e5-large"}}, "create-for-model"),
        ({"a": {**DENSE, "dimension": 0}}, "dimension must be an integer from 1 to 20000"),
        ({"a": {**DENSE, "metric": "manhattan"}}, "metric must be one of"),
        ({"b": {"type": "string", "full_text_search": {"stop_words": True}}}, "stop_words requires stemming"),
        ({"b": {"type": "string", "full_text_search": {}, "description": "d" * 257}}, "at most 256 bytes"),
        ({"_values": {**DENSE, "description": "mine"}}, "does not accept a description"),
        ({f"t{i}": {"type": "string", "full_text_search": {}} for i in range(101)}, "at most 100 full_text_search"),
    ],
)
def test_schema_rules(control: PineconeSandbox, fields: dict[str, Any], message: str) -> None:
    refused = raw(control, "POST", "/indexes", {"name": "ruled", "schema": {"fields": fields}})
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]["message"]
    assert "ruled" not in control.names()


def test_a_reserved_schema_makes_a_classic_vector_index(control: PineconeSandbox) -> None:
    pc = Pinecone(api_key="test-key", host=control.control_host)
    # The SDK's 9.x-style arguments become the reserved schema.
    model = pc.indexes.create(name="classic", dimension=DIM, metric="dotproduct", timeout=-1)
    assert (model.dimension, model.metric) == (DIM, "dotproduct")
    fields = raw(control, "GET", "/indexes/classic").json()["schema"]["fields"]
    assert set(fields) == {"_values", "_sparse_values"}
    index = pc.Index(host=control.host("classic"))
    index.upsert(vectors=[("v1", [1, 0, 0, 0])], namespace="ns")
    assert index.fetch(ids=["v1"], namespace="ns").vectors["v1"].values == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ApiError, match="legacy vector index"):
        index.documents.upsert(namespace="ns", documents=[{"_id": "d1", "_values": [1, 0, 0, 0]}])


def test_defaults_and_what_the_local_data_plane_does_not_host(control: PineconeSandbox) -> None:
    schema = {"fields": {"body": {"type": "string", "full_text_search": {"language": "en"}}}}
    created = raw(control, "POST", "/indexes", {"schema": schema})
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["name"].startswith("index-") and model["name"] in control.names()  # a name was generated
    assert model["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    for body, status, message in [
        (
            {"schema": schema, "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "mars-1"}},
            404,
            "region: mars-1 not found",
        ),
        (
            {"schema": schema, "deployment": {"deployment_type": "byoc", "environment": "aws-us-east-1-b921"}},
            400,
            "BYOC",
        ),
        ({"schema": schema, "read_capacity": {"mode": "Dedicated"}}, 403, "Dedicated read capacity"),
        ({"schema": schema, "cmek_id": "arn:aws:kms:us-east-1:1:key/k"}, 400, "customer-managed encryption"),
        ({"schema": {"fields": {"_sparse_values": {"type": "sparse_vector"}}}}, 400, "sparse-only"),
    ]:
        refused = raw(control, "POST", "/indexes", {"name": "hosted-not", **body})
        assert refused.status_code == status and message in refused.json()["error"]["message"], refused.text
    assert "hosted-not" not in control.names()

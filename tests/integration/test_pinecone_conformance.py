"""Responses of the local Pinecone sandbox validated against Pinecone's own OpenAPI files (2026-04).

Each request is sent over plain HTTP the way the SDK sends it, checked against the spec as a request, and its real
response is checked against the response schema the spec gives for that operation and status (``openapi-core``).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import InvalidData

from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import CONTROL_HOST_URL, DATA_HOST_URL, checked_call, load_api, sdk_headers

HEADERS = sdk_headers("2026-04")


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    return load_api("db_data_2026-04")


@pytest.fixture(scope="module")
def control_api() -> OpenAPI:
    return load_api("db_control_2026-04")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("conf-sl", 4), IndexSpec("conf-pod", 4, "dotproduct", kind="pod")]


@pytest.fixture(autouse=True)
def seeded(sandbox: PineconeSandbox) -> None:
    sandbox.load("conf-sl", "", [("d1", [1, 0, 0, 0], {"genre": "drama", "year": 2020})])
    sandbox.load("conf-sl", "ns", [(f"v{i}", [1, i, 0, 0], {"tags": ["a", "b"], "ok": True}) for i in range(5)])


#: One request checked against the 2026-04 spec; ``headers=`` sends others.
call = functools.partial(checked_call, headers=HEADERS)


def data_call(data_api: OpenAPI, sandbox: PineconeSandbox, method: str, path: str, **kwargs: Any) -> Any:
    return call(data_api, sandbox.host(kwargs.pop("index", "conf-sl")), DATA_HOST_URL, method, path, **kwargs)


def test_upsert(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    body = {"vectors": [{"id": "n1", "values": [0.1, 0.2, 0.3, 0.4], "metadata": {"k": "v"}}], "namespace": "ns"}
    assert data_call(data_api, sandbox, "POST", "/vectors/upsert", body=body) == {"upsertedCount": 1}


def test_fetch(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    got = data_call(data_api, sandbox, "GET", "/vectors/fetch", query={"ids": ["v1", "v2", "zz"], "namespace": "ns"})
    assert set(got["vectors"]) == {"v1", "v2"}
    assert got["vectors"]["v1"]["metadata"] == {"tags": ["a", "b"], "ok": True}


def test_list_with_pagination(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    first = data_call(data_api, sandbox, "GET", "/vectors/list", query={"namespace": "ns", "limit": 3})
    assert [v["id"] for v in first["vectors"]] == ["v0", "v1", "v2"]
    query = {"namespace": "ns", "limit": 3, "paginationToken": first["pagination"]["next"]}
    rest = data_call(data_api, sandbox, "GET", "/vectors/list", query=query)
    assert [v["id"] for v in rest["vectors"]] == ["v3", "v4"] and "pagination" not in rest


def test_query(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    body = {
        "namespace": "ns",
        "vector": [1, 0, 0, 0],
        "topK": 2,
        "includeValues": True,
        "includeMetadata": True,
        "filter": {"tags": {"$in": ["a"]}},
    }
    got = data_call(data_api, sandbox, "POST", "/query", body=body)
    assert [m["id"] for m in got["matches"]] == ["v0", "v1"]


def test_describe_index_stats(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    got = data_call(data_api, sandbox, "POST", "/describe_index_stats", body={})
    assert got["namespaces"] == {"__default__": {"vectorCount": 1}, "ns": {"vectorCount": 5}}
    assert got["totalVectorCount"] == 6 and got["dimension"] == 4


def test_update_and_delete(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    body = {"namespace": "ns", "filter": {"ok": True}, "setMetadata": {"seen": True}}
    assert data_call(data_api, sandbox, "POST", "/vectors/update", body=body) == {"matchedRecords": 5}
    assert data_call(data_api, sandbox, "POST", "/vectors/update", body={"id": "v1", "values": [0, 0, 0, 1]}) == {}
    assert data_call(data_api, sandbox, "POST", "/vectors/delete", body={"ids": ["v1"], "namespace": "ns"}) == {}


def test_namespaces(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    listed = data_call(data_api, sandbox, "GET", "/namespaces", query={"limit": 10})
    assert listed["namespaces"] == [{"name": "__default__", "record_count": 1}, {"name": "ns", "record_count": 5}]
    assert data_call(data_api, sandbox, "GET", "/namespaces/ns") == {"name": "ns", "record_count": 5}
    assert data_call(data_api, sandbox, "DELETE", "/namespaces/ns") == {}
    created = data_call(data_api, sandbox, "POST", "/namespaces", body={"name": "fresh"})
    assert created == {"name": "fresh", "record_count": 0}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/vectors/upsert", {"body": {"vectors": [{"id": "a", "values": [1, 2]}]}}, 400),
        ("GET", "/vectors/fetch", {"query": {"ids": [f"i{n}" for n in range(1001)]}}, 400),
        ("GET", "/namespaces/nope", {}, 404),
        ("DELETE", "/namespaces/nope", {}, 404),
    ],
)
def test_error_responses(
    data_api: OpenAPI, sandbox: PineconeSandbox, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    error = data_call(data_api, sandbox, method, path, expect=status, **kwargs)
    assert set(error) == {"code", "message", "details"} and error["message"]


def test_rate_limit_and_injected_5xx_responses(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("conf-sl", Faults(fetch_rps_per_index=0))
    limited = data_call(data_api, sandbox, "GET", "/vectors/fetch", query={"ids": ["v1"]}, expect=429)
    assert limited["code"] == 8
    sandbox.set_faults("conf-sl", Faults(error_rate_5xx=1.0))
    failed = data_call(data_api, sandbox, "POST", "/query", body={"topK": 1, "vector": [1, 0, 0, 0]}, expect=503)
    assert failed["code"] == 14


def test_the_validator_is_not_a_rubber_stamp(data_api: OpenAPI) -> None:
    request = MockRequest(DATA_HOST_URL, "POST", "/vectors/upsert", headers=HEADERS, data=b'{"vectors": []}')
    with pytest.raises(InvalidData, match="is not of type 'integer'"):
        data_api.validate_response(request, MockResponse(b'{"upsertedCount": "one"}'))


def test_control_plane(control_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    base = sandbox.control_host
    listed = call(control_api, base, CONTROL_HOST_URL, "GET", "/indexes")
    assert {i["name"] for i in listed["indexes"]} == {"conf-sl", "conf-pod"}
    described = call(control_api, base, CONTROL_HOST_URL, "GET", "/indexes/conf-pod")
    assert described["host"] == sandbox.host("conf-pod") and described["spec"]["pod"]["pod_type"] == "p1.x1"
    missing = call(control_api, base, CONTROL_HOST_URL, "GET", "/indexes/nope", expect=404)
    assert missing == {"error": {"code": "NOT_FOUND", "message": "Resource nope not found"}, "status": 404}

    body = {
        "name": "conf-new",
        "dimension": 8,
        "metric": "euclidean",
        "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}},
    }
    created = call(control_api, base, CONTROL_HOST_URL, "POST", "/indexes", body=body, expect=201)
    try:
        assert (created["dimension"], created["metric"]) == (8, "euclidean")
        assert created["host"] == sandbox.host("conf-new")
    finally:
        sandbox.remove_index("conf-new")


def test_collections_and_an_index_from_a_collection(control_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    base = sandbox.control_host
    sandbox.load("conf-pod", "ns", [(f"p{i}", [0, 1, i, 0], {"i": i}) for i in range(3)])
    created = call(
        control_api,
        base,
        CONTROL_HOST_URL,
        "POST",
        "/collections",
        body={"name": "conf-snap", "source": "conf-pod"},
        expect=201,
    )
    try:
        assert created["name"] == "conf-snap" and created["status"] == "Ready"  # no delay configured here
        listed = call(control_api, base, CONTROL_HOST_URL, "GET", "/collections")
        assert [c["name"] for c in listed["collections"]] == ["conf-snap"]
        described = call(control_api, base, CONTROL_HOST_URL, "GET", "/collections/conf-snap")
        assert (described["vector_count"], described["dimension"]) == (3, 4)
        missing = call(control_api, base, CONTROL_HOST_URL, "GET", "/collections/nope", expect=404)
        assert missing["error"] == {"code": "NOT_FOUND", "message": "Collection nope not found."}

        body = {
            "name": "conf-restored",
            "dimension": 4,
            "metric": "dotproduct",
            "deletion_protection": "enabled",
            "spec": {"serverless": {"cloud": "aws", "region": "us-east-1", "source_collection": "conf-snap"}},
        }
        restored = call(control_api, base, CONTROL_HOST_URL, "POST", "/indexes", body=body, expect=201)
        assert restored["deletion_protection"] == "enabled" and sandbox.count("conf-restored") == 3
        protected = call(control_api, base, CONTROL_HOST_URL, "DELETE", "/indexes/conf-restored", expect=403)
        assert protected["error"]["code"] == "FORBIDDEN"
    finally:
        if "conf-restored" in sandbox.names():
            sandbox.remove_index("conf-restored")
    call(control_api, base, CONTROL_HOST_URL, "DELETE", "/collections/conf-snap", expect=202)

"""Responses of the local Pinecone sandbox validated against Pinecone's own OpenAPI files (2026-07): the Documents
API on a document index, the wrong API refused, and the control plane's schema-based create, describe and list.

As for 2026-04 (``test_pinecone_conformance.py``): each request is sent over plain HTTP, checked against the spec as a
request, and its real response is checked against the response schema the spec gives for that operation and status.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import InvalidData

from nsmigrate_sandbox.document_schema import read_schema
from nsmigrate_sandbox.documents import document_index, load_documents
from nsmigrate_sandbox.embedding import IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import CONTROL_HOST_URL, DATA_HOST_URL, checked_call, load_api, sdk_headers

HEADERS = sdk_headers("2026-07")
SCHEMA = {
    "fields": {
        "embedding": {"type": "dense_vector", "dimension": 4, "metric": "dotproduct"},
        "keywords": {"type": "sparse_vector"},
        "body": {"type": "string", "full_text_search": {"language": "en", "stemming": True}},
    }
}


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    return load_api("db_data_2026-07")


@pytest.fixture(scope="module")
def control_api() -> OpenAPI:
    return load_api("db_control_2026-07")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    schema = read_schema(SCHEMA)
    assert not isinstance(schema, type(None))
    texts = IndexSpec("conf-texts", 384, embed=IntegratedEmbed("llama-text-embed-v2", "chunk_text", 384, "cosine"))
    return [document_index("conf-docs", schema), IndexSpec("conf-vec", 4), IndexSpec("conf-pod", 4, kind="pod"), texts]  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def seeded(sandbox: PineconeSandbox) -> None:
    documents = [
        {"_id": f"d{i}", "embedding": [1, i, 0, 0], "body": f"document number {i}", "even": i % 2 == 0}
        for i in range(5)
    ]
    documents.append({"_id": "s1", "embedding": [0, 0, 1, 0], "keywords": {"indices": [3], "values": [0.5]}})
    load_documents(sandbox.service("conf-docs"), "ns", documents)
    sandbox.settle("conf-docs")  # the tests read what was there before them


#: One request checked against the 2026-07 spec.
call = functools.partial(checked_call, headers=HEADERS)


def docs(data_api: OpenAPI, sandbox: PineconeSandbox, action: str, body: Any, expect: int = 200, **kw: Any) -> Any:
    index = kw.get("index", "conf-docs")
    path = f"/namespaces/{kw.get('namespace', 'ns')}/documents/{action}"
    valid = kw.get("valid_request", True)
    return call(
        data_api, sandbox.host(index), DATA_HOST_URL, "POST", path, body=body, expect=expect, valid_request=valid
    )


def test_upsert_documents(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    body = {"documents": [{"_id": "n1", "embedding": [0.1, 0.2, 0.3, 0.4], "body": "new", "tags": ["a"]}]}
    assert docs(data_api, sandbox, "upsert", body, 202) == {"upserted_count": 1}


def test_fetch_documents_by_ids_and_by_filter(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    by_ids = docs(data_api, sandbox, "fetch", {"ids": ["d1", "zz"], "include_fields": ["body"]})
    assert by_ids["documents"] == {"d1": {"_id": "d1", "body": "document number 1"}} and "pagination" not in by_ids
    page = docs(data_api, sandbox, "fetch", {"filter": {"even": {"$eq": True}}, "limit": 2})
    assert sorted(page["documents"]) == ["d0", "d2"] and page["pagination"]["next"]
    last = docs(data_api, sandbox, "fetch", {"filter": {"even": True}, "pagination_token": page["pagination"]["next"]})
    assert sorted(last["documents"]) == ["d4"] and "pagination" not in last


def test_list_documents(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    first = docs(data_api, sandbox, "list", {"limit": 4})
    assert [d["_id"] for d in first["documents"]] == ["d0", "d1", "d2", "d3"] and first["namespace"] == "ns"
    rest = docs(data_api, sandbox, "list", {"limit": 4, "pagination_token": first["pagination"]["next"]})
    assert [d["_id"] for d in rest["documents"]] == ["d4", "s1"] and "pagination" not in rest


@pytest.mark.parametrize(
    ("clause", "first"),
    [
        ({"type": "dense_vector", "fields": ["embedding"], "values": [0, 1, 0, 0]}, "d4"),
        ({"type": "sparse_vector", "field": "keywords", "sparse_values": {"indices": [3], "values": [2.0]}}, "s1"),
        ({"type": "text", "fields": ["body"], "query": "number 3"}, "d3"),
    ],
)
def test_search_documents(data_api: OpenAPI, sandbox: PineconeSandbox, clause: dict[str, Any], first: str) -> None:
    body = {"score_by": [clause], "top_k": 3, "include_fields": ["*"], "filter": {"even": {"$exists": True}}}
    if clause["type"] == "sparse_vector":
        body.pop("filter")
    found = docs(data_api, sandbox, "search", body)
    assert found["matches"][0]["_id"] == first and found["namespace"] == "ns"


def test_update_and_delete_documents(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    assert (
        docs(data_api, sandbox, "update", {"documents": [{"_id": "d1", "body": "x", "_remove_fields": ["even"]}]}, 202)
        == {}
    )
    by_filter = {"filter": {"even": True}, "set_fields": {"flag": "on"}, "remove_fields": ["even"]}
    assert docs(data_api, sandbox, "update", by_filter, 202) == {"matched_records": 3}
    assert docs(data_api, sandbox, "delete", {"ids": ["d1"]}, 202) == {}
    assert docs(data_api, sandbox, "delete", {"filter": {"flag": {"$eq": "on"}}}, 202) == {"matched_records": 3}
    assert docs(data_api, sandbox, "delete", {"delete_all": True}, 202) == {}
    assert sandbox.count("conf-docs", "ns") == 0


@pytest.mark.parametrize(
    ("action", "body", "status", "index"),
    [
        ("fetch", {"include_fields": ["body"]}, 400, "conf-docs"),
        ("upsert", {"documents": [{"_id": "x", "embedding": [1, 2, 3, 4], "_secret": "s"}]}, 400, "conf-docs"),
        ("search", {"score_by": [{"type": "text", "fields": ["body"], "query": "x"}], "top_k": 1}, 400, "conf-vec"),
        ("list", {}, 400, "conf-pod"),
        ("fetch", {"ids": ["r1"]}, 400, "conf-texts"),
    ],
)
def test_error_responses(
    data_api: OpenAPI, sandbox: PineconeSandbox, action: str, body: Any, status: int, index: str
) -> None:
    error = docs(data_api, sandbox, action, body, status, index=index, valid_request=action != "fetch")
    assert set(error) == {"status", "error"} and error["status"] == status and error["error"]["message"]
    if index == "conf-texts":
        assert "legacy integrated index, read and written through the records API" in error["error"]["message"]


def test_a_vectors_call_on_a_document_index(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    body = {"vectors": [{"id": "v", "values": [1, 2, 3, 4]}], "namespace": "ns"}
    error = call(data_api, sandbox.host("conf-docs"), DATA_HOST_URL, "POST", "/vectors/upsert", body=body, expect=400)
    assert set(error) == {"code", "message", "details"} and "is a document index" in error["message"]


def test_the_validator_is_not_a_rubber_stamp(data_api: OpenAPI) -> None:
    request = MockRequest(DATA_HOST_URL, "POST", "/namespaces/ns/documents/list", headers=HEADERS, data=b"{}")
    with pytest.raises(InvalidData, match="'namespace' is a required property"):
        data_api.validate_response(request, MockResponse(b'{"documents": [], "usage": {"read_units": 1}}'))


def test_control_plane(control_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    base = sandbox.control_host
    listed = call(control_api, base, CONTROL_HOST_URL, "GET", "/indexes")
    assert {i["name"] for i in listed["indexes"]} == {"conf-docs", "conf-vec", "conf-pod", "conf-texts"}
    for name in ("conf-docs", "conf-vec", "conf-pod", "conf-texts"):
        described = call(control_api, base, CONTROL_HOST_URL, "GET", f"/indexes/{name}")
        assert described["host"] == sandbox.host(name)
    body = {
        "name": "conf-new",
        "schema": SCHEMA,
        "deployment": {"deployment_type": "managed", "cloud": "gcp", "region": "us-central1"},
    }
    created = call(control_api, base, CONTROL_HOST_URL, "POST", "/indexes", body=body, expect=201)
    try:
        assert set(created["schema"]["fields"]) == {"embedding", "keywords", "body"}
        refused = call(control_api, base, CONTROL_HOST_URL, "POST", "/indexes", body=body, expect=409)
        assert refused["error"]["code"] == "ALREADY_EXISTS"
        unprocessable = call(
            control_api, base, CONTROL_HOST_URL, "POST", "/indexes", body={"name": "x"}, expect=422, valid_request=False
        )
        assert unprocessable["error"]["code"] == "UNPROCESSABLE_ENTITY"
    finally:
        sandbox.remove_index("conf-new")

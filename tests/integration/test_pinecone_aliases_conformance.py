"""The local data plane's namespace aliases validated against Pinecone's own OpenAPI file (2026-07): every
``/namespace-aliases`` path and every error reason the spec names for it, and the answers of the operations an alias
changes (reads through an alias, writes and namespace operations refused).

As for 2026-04 (``test_pinecone_conformance.py``): each request is sent over plain HTTP, checked against the spec as a
request (unless it is meant to break the spec's own request rules, which the server must refuse), and its real
response is checked against the response schema the spec gives for that operation and status (``openapi-core``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from nsmigrate_sandbox.documents import load_documents
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import DATA_HOST_URL, checked_call, dense_document_index, load_api, sdk_headers

HEADERS = sdk_headers("2026-07")


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    return load_api("db_data_2026-07")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("alias-sl", 4), IndexSpec("alias-pod", 4, kind="pod"), dense_document_index("alias-docs")]


@pytest.fixture(autouse=True)
def seeded(sandbox: PineconeSandbox) -> None:
    sandbox.load("alias-sl", "v1", [(f"a{i}", [1, i, 0, 0], {"gen": 1}) for i in range(3)])
    sandbox.load("alias-sl", "v2", [(f"b{i}", [0, 1, i, 0], {"gen": 2}) for i in range(2)])
    sandbox.load("alias-sl", "", [("d", [0, 0, 0, 1], None)])
    documents = [{"_id": f"doc{i}", "embedding": [1, i, 0, 0], "gen": 1} for i in range(3)]
    load_documents(sandbox.service("alias-docs"), "v1", documents)


def call(api: OpenAPI, sandbox: PineconeSandbox, method: str, path: str, *, index: str = "alias-sl", **kw: Any) -> Any:
    """One request to ``index`` checked against the 2026-07 spec (``openapi_checks.checked_call``'s options)."""
    return checked_call(api, sandbox.host(index), DATA_HOST_URL, method, path, **{"headers": HEADERS, **kw})


def reason(error: dict[str, Any]) -> str:
    assert set(error) == {"code", "message", "details"} and error["message"]
    return str(error["details"][0]["reason"])


def create(api: OpenAPI, sandbox: PineconeSandbox, name: str, target: str, **kwargs: Any) -> Any:
    return call(api, sandbox, "POST", "/namespace-aliases", body={"name": name, "target_namespace": target}, **kwargs)


def test_create_describe_list_repoint_delete(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    created = create(data_api, sandbox, "live", "v1")
    assert created["name"] == "live" and created["target_namespace"] == "v1"
    assert created["created_at"] == created["updated_at"] and created["created_at"].endswith("Z")
    assert call(data_api, sandbox, "GET", "/namespace-aliases/live") == created
    create(data_api, sandbox, "home", "__default__")
    listed = call(data_api, sandbox, "GET", "/namespace-aliases")
    assert [a["name"] for a in listed["namespace_aliases"]] == ["home", "live"] and listed["total_count"] == 2
    assert listed["namespace_aliases"][0]["target_namespace"] == "__default__" and "pagination" not in listed

    moved = call(data_api, sandbox, "PATCH", "/namespace-aliases/live", body={"target_namespace": "v2"})
    assert moved["target_namespace"] == "v2" and moved["created_at"] == created["created_at"]
    assert moved["updated_at"] > created["updated_at"]
    again = call(data_api, sandbox, "PATCH", "/namespace-aliases/live", body={"target_namespace": "v2"})
    assert again["updated_at"] > moved["updated_at"]  # every repoint advances it, to the same target too

    assert call(data_api, sandbox, "DELETE", "/namespace-aliases/live") == {}
    assert reason_or_none(call(data_api, sandbox, "DELETE", "/namespace-aliases/live", expect=404)) is None


def reason_or_none(error: dict[str, Any]) -> str | None:
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error["details"][0]["reason"] if error["details"] else None


def test_list_pages_and_filters(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    for name, target in (("ds-a", "v1"), ("ds-b", "v2"), ("ds-c", "v1"), ("other", "v1")):
        create(data_api, sandbox, name, target)
    first = call(
        data_api, sandbox, "GET", "/namespace-aliases", query={"limit": 1, "prefix": "ds-", "target_namespace": "v1"}
    )
    assert [a["name"] for a in first["namespace_aliases"]] == ["ds-a"] and first["total_count"] == 2
    token = first["pagination"]["next"]
    # The filters ride in the token: repeated they must match, left out they still apply.
    rest = call(data_api, sandbox, "GET", "/namespace-aliases", query={"limit": 1, "paginationToken": token})
    assert [a["name"] for a in rest["namespace_aliases"]] == ["ds-c"] and "pagination" not in rest
    by_target = call(data_api, sandbox, "GET", "/namespace-aliases", query={"target_namespace": "v2"})
    assert [a["name"] for a in by_target["namespace_aliases"]] == ["ds-b"]
    # An alias is never a target, so filtering by one matches nothing.
    assert call(data_api, sandbox, "GET", "/namespace-aliases", query={"target_namespace": "ds-a"})["total_count"] == 0


def _token(data_api: OpenAPI, sandbox: PineconeSandbox, query: dict[str, Any]) -> str:
    for name in ("p1", "p2"):
        create(data_api, sandbox, name, "v1")
    return str(call(data_api, sandbox, "GET", "/namespace-aliases", query={"limit": 1, **query})["pagination"]["next"])


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        ({"prefix": "p"}, {"prefix": "q"}, "LIST_INVALID_TOKEN_WITH_PREFIX"),
        ({"target_namespace": "v1"}, {"target_namespace": "v2"}, "LIST_INVALID_TOKEN_WITH_TARGET"),
        ({}, {"prefix": "p"}, "LIST_INVALID_TOKEN_WITH_NEW_PREFIX"),
        ({}, {"target_namespace": "v1"}, "LIST_INVALID_TOKEN_WITH_NEW_TARGET"),
    ],
)
def test_list_token_and_filters_disagree(
    data_api: OpenAPI, sandbox: PineconeSandbox, first: dict[str, Any], then: dict[str, Any], expected: str
) -> None:
    token = _token(data_api, sandbox, first)
    query = {"paginationToken": token, **then}
    assert reason(call(data_api, sandbox, "GET", "/namespace-aliases", query=query, expect=400)) == expected


@pytest.mark.parametrize(
    ("query", "expected", "valid"),
    [
        ({"limit": 0}, "LIST_INVALID_LIMIT", False),
        ({"limit": 101}, "LIST_INVALID_LIMIT", False),
        ({"paginationToken": "bm90LWEtdG9rZW4="}, "INVALID_PAGINATION_TOKEN", True),
        ({"target_namespace": ""}, "TARGET_FILTER_EMPTY", False),
        ({"prefix": "p" * 513}, "PREFIX_TOO_LONG", False),
        ({"prefix": "é"}, "PREFIX_MUST_BE_ASCII", False),
        ({"prefix": "a\0b"}, "PREFIX_MUST_NOT_CONTAIN_NULL_CHARACTER", False),
    ],
)
def test_list_refusals(
    data_api: OpenAPI, sandbox: PineconeSandbox, query: dict[str, Any], expected: str, valid: bool
) -> None:
    error = call(data_api, sandbox, "GET", "/namespace-aliases", query=query, expect=400, valid_request=valid)
    assert reason(error) == expected


def test_list_refuses_an_unknown_parameter_and_a_vectors_token(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    call(data_api, sandbox, "GET", "/namespace-aliases", query={"namespace": "v1"}, expect=400, valid_request=False)
    vectors_page = call(data_api, sandbox, "GET", "/vectors/list", query={"namespace": "v1", "limit": 1})
    query = {"paginationToken": vectors_page["pagination"]["next"]}
    assert reason(call(data_api, sandbox, "GET", "/namespace-aliases", query=query, expect=400)) == (
        "INVALID_PAGINATION_TOKEN"
    )


#: Requests of each alias operation, and what each must refuse with. ``None``: the request breaks the spec's own
#: request schema (that is the point), so only the response is validated.
_TARGET_REFUSALS = [
    ({}, "TARGET_NAMESPACE_REQUIRED", False),
    ({"target_namespace": ""}, "TARGET_NAMESPACE_REQUIRED", False),
    ({"target_namespace": "n" * 513}, "NAMESPACE_TOO_LONG", False),
    ({"target_namespace": "café"}, "NAMESPACE_INVALID", False),
    ({"target_namespace": "nope"}, "TARGET_NAMESPACE_NOT_FOUND", True),
    ({"target_namespace": "held"}, "TARGET_NAMESPACE_NOT_ACTIVE", True),
    ({"target_namespace": "live"}, "TARGET_IS_ALIAS", True),
]


@pytest.mark.parametrize(("body", "expected", "valid"), _TARGET_REFUSALS)
def test_create_refuses_a_target(
    data_api: OpenAPI, sandbox: PineconeSandbox, body: dict[str, Any], expected: str, valid: bool
) -> None:
    create(data_api, sandbox, "live", "v1")
    sandbox.load("alias-sl", "held", [("h", [1, 1, 1, 1], None)])
    sandbox.service("alias-sl").aliases.inactive.add("held")
    error = call(
        data_api,
        sandbox,
        "POST",
        "/namespace-aliases",
        body={"name": "new", **body},
        expect=400,
        valid_request=valid,
    )
    assert reason(error) == expected
    assert call(data_api, sandbox, "GET", "/namespace-aliases/new", expect=404)["details"] == []


@pytest.mark.parametrize(("body", "expected", "valid"), _TARGET_REFUSALS)
def test_a_refused_repoint_keeps_the_old_target(
    data_api: OpenAPI, sandbox: PineconeSandbox, body: dict[str, Any], expected: str, valid: bool
) -> None:
    create(data_api, sandbox, "live", "v1")
    create(data_api, sandbox, "moving", "v1")
    sandbox.load("alias-sl", "held", [("h", [1, 1, 1, 1], None)])
    sandbox.service("alias-sl").aliases.inactive.add("held")
    error = call(data_api, sandbox, "PATCH", "/namespace-aliases/moving", body=body, expect=400, valid_request=valid)
    assert reason(error) == expected
    assert call(data_api, sandbox, "GET", "/namespace-aliases/moving")["target_namespace"] == "v1"


@pytest.mark.parametrize("name", ["has space", "a/b", "q?", "50%", "a+b", "__default__", ".", "..", "x" * 513, "é"])
def test_create_refuses_an_invalid_name(data_api: OpenAPI, sandbox: PineconeSandbox, name: str) -> None:
    error = create(data_api, sandbox, name, "v1", expect=400, valid_request=False)
    assert reason(error) == "ALIAS_NAME_INVALID"


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("DELETE", None), ("PATCH", {"target_namespace": "v1"})])
def test_one_alias_paths_refuse_an_invalid_name_and_an_unknown_alias(
    data_api: OpenAPI, sandbox: PineconeSandbox, method: str, body: Any
) -> None:
    invalid = call(data_api, sandbox, method, "/namespace-aliases/a%3Bb", body=body, expect=400, valid_request=False)
    assert reason(invalid) == "ALIAS_NAME_INVALID"
    missing = call(data_api, sandbox, method, "/namespace-aliases/nobody", body=body, expect=404)
    assert missing["details"] == [] and "nobody" in missing["message"]


def test_create_conflicts(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    create(data_api, sandbox, "live", "v1")
    again = create(data_api, sandbox, "live", "v2", expect=409)
    assert reason(again) == "ALIAS_ALREADY_EXISTS"
    assert again["details"][0]["metadata"] == {"target_namespace": "v1"}  # its current target: a retry can tell
    assert reason(create(data_api, sandbox, "v2", "v1", expect=409)) == "NAME_IN_USE_BY_NAMESPACE"


def test_alias_limit(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    sandbox.service("alias-sl").aliases.limit = 1
    create(data_api, sandbox, "one", "v1")
    assert reason(create(data_api, sandbox, "two", "v1", expect=400)) == "ALIASES_PER_INDEX_EXCEEDED"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/namespace-aliases", None),
        ("POST", "/namespace-aliases", {"name": "x", "target_namespace": "v1"}),
        ("GET", "/namespace-aliases/x", None),
        ("PATCH", "/namespace-aliases/x", {"target_namespace": "v1"}),
        ("DELETE", "/namespace-aliases/x", None),
    ],
)
def test_every_alias_path_needs_api_2026_07(
    data_api: OpenAPI, sandbox: PineconeSandbox, method: str, path: str, body: Any
) -> None:
    for headers in ({**HEADERS, "X-Pinecone-Api-Version": "2026-04"}, {"Api-Key": "test-key"}):
        error = call(data_api, sandbox, method, path, body=body, headers=headers, expect=400, valid_request=False)
        assert reason(error) == "API_VERSION_TOO_OLD"


def test_reads_through_an_alias_name_the_namespace_that_served_them(
    data_api: OpenAPI, sandbox: PineconeSandbox
) -> None:
    create(data_api, sandbox, "live", "v1")
    fetched = call(data_api, sandbox, "GET", "/vectors/fetch", query={"ids": ["a1", "b1"], "namespace": "live"})
    assert set(fetched["vectors"]) == {"a1"} and fetched["namespace"] == "v1"
    listed = call(data_api, sandbox, "GET", "/vectors/list", query={"namespace": "live"})
    assert [v["id"] for v in listed["vectors"]] == ["a0", "a1", "a2"] and listed["namespace"] == "v1"
    queried = call(data_api, sandbox, "POST", "/query", body={"namespace": "live", "vector": [1, 0, 0, 0], "topK": 1})
    assert [m["id"] for m in queried["matches"]] == ["a0"] and queried["namespace"] == "v1"
    body = {"namespace": "live", "filter": {"gen": 1}, "limit": 2}
    by_filter = call(data_api, sandbox, "POST", "/vectors/fetch_by_metadata", body=body)
    assert len(by_filter["vectors"]) == 2 and by_filter["namespace"] == "v1"
    search = {"query": {"top_k": 1, "vector": {"values": [1, 0, 0, 0]}}}
    searched = call(data_api, sandbox, "POST", "/records/namespaces/live/search", body=search)
    assert [h["_id"] for h in searched["result"]["hits"]] == ["a0"] and searched["namespace"] == "v1"


def test_writes_and_namespace_operations_on_an_alias_are_refused(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    create(data_api, sandbox, "live", "v1")
    upsert = {"namespace": "live", "vectors": [{"id": "n", "values": [1, 1, 1, 1]}]}
    assert reason(call(data_api, sandbox, "POST", "/vectors/upsert", body=upsert, expect=409)) == "NAME_IN_USE_BY_ALIAS"
    update = {"namespace": "live", "id": "a1", "setMetadata": {"gen": 3}}
    assert reason(call(data_api, sandbox, "POST", "/vectors/update", body=update, expect=400)) == "WRITE_TO_ALIAS"
    delete = {"namespace": "live", "ids": ["a1"]}
    assert reason(call(data_api, sandbox, "POST", "/vectors/delete", body=delete, expect=400)) == "WRITE_TO_ALIAS"
    created = call(data_api, sandbox, "POST", "/namespaces", body={"name": "live"}, expect=409)
    assert reason(created) == "NAME_IN_USE_BY_ALIAS"
    for method in ("GET", "DELETE"):
        error = call(data_api, sandbox, method, "/namespaces/live", expect=400)
        assert reason(error) == "NAMESPACE_OPERATION_ON_ALIAS"
    assert reason(call(data_api, sandbox, "DELETE", "/namespaces/v1", expect=400)) == "NAMESPACE_TARGETED_BY_ALIAS"
    assert sandbox.count("alias-sl", "v1") == 3  # nothing was written or deleted


def test_records_upsert_to_an_alias_is_refused_in_the_records_error_shape(
    data_api: OpenAPI, sandbox: PineconeSandbox
) -> None:
    create(data_api, sandbox, "live", "v1")
    response = httpx.post(
        sandbox.host("alias-sl") + "/records/namespaces/live/upsert",
        content=b'{"_id": "r1", "text": "hello"}\n',
        headers={**HEADERS, "Content-Type": "application/x-ndjson"},
        timeout=10,
    )
    assert response.status_code == 409
    request = MockRequest(
        DATA_HOST_URL, "POST", "/records/namespaces/live/upsert", headers=HEADERS, data=response.request.content
    )
    data_api.validate_response(request, MockResponse(response.content, status_code=409))
    assert response.json()["status"] == 409 and "alias" in response.json()["error"]["message"]


def test_a_pod_index_serves_no_aliases(data_api: OpenAPI, sandbox: PineconeSandbox) -> None:
    error = call(data_api, sandbox, "GET", "/namespace-aliases", expect=404, index="alias-pod")
    assert error["details"] == [] and "pod-based" in error["message"]


def test_document_reads_through_an_alias_name_the_namespace_that_served_them(
    data_api: OpenAPI, sandbox: PineconeSandbox
) -> None:
    create(data_api, sandbox, "live", "v1", index="alias-docs")
    path = "/namespaces/live/documents"
    fetched = call(data_api, sandbox, "POST", f"{path}/fetch", body={"ids": ["doc1", "x"]}, index="alias-docs")
    assert list(fetched["documents"]) == ["doc1"] and fetched["namespace"] == "v1"
    listed = call(data_api, sandbox, "POST", f"{path}/list", body={}, index="alias-docs")
    assert [d["_id"] for d in listed["documents"]] == ["doc0", "doc1", "doc2"] and listed["namespace"] == "v1"
    search = {"score_by": [{"type": "dense_vector", "field": "embedding", "values": [1, 0, 0, 0]}], "top_k": 1}
    searched = call(data_api, sandbox, "POST", f"{path}/search", body=search, index="alias-docs")
    assert searched["namespace"] == "v1" and len(searched["matches"]) == 1


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [
        ("upsert", {"documents": [{"_id": "n", "embedding": [1, 1, 1, 1]}]}, 409),
        ("update", {"documents": [{"_id": "doc1", "gen": 2}]}, 412),
        ("delete", {"ids": ["doc1"]}, 412),
    ],
)
def test_document_writes_to_an_alias_are_refused(
    data_api: OpenAPI, sandbox: PineconeSandbox, action: str, body: dict[str, Any], status: int
) -> None:
    create(data_api, sandbox, "live", "v1", index="alias-docs")
    path = f"/namespaces/live/documents/{action}"
    error = call(data_api, sandbox, "POST", path, body=body, expect=status, index="alias-docs")
    assert error["status"] == status and "namespace alias" in error["error"]["message"]
    assert sandbox.service("alias-docs").store.counts(latest=True) == {"v1": 3}  # nothing written or deleted

"""The local control plane's convert (API 2026-07), as Pinecone documents it and never kinder: the request and its
answer, the conversion job's fields and progress, the snapshot (a write after the request never reaches the new index),
the new index Initializing then Ready (or InitializationFailed), and every refusal: pods, document indexes, an index
not Ready, a taken name, a plan below Standard, a schema that cannot hold the records, an earlier API version.

The 2026-07 OpenAPI files of ``tests/fixtures/reference`` predate convert (the brief ``pinecone-2026-07.md``, section
3, cites the doc pages): the conversion job is checked against the fields the docs' ``describe_conversion_job`` and
``list_conversion_jobs`` show, every error against the spec's ``ErrorResponse``, the new index against its
``IndexModel`` (``describe_index``). Last, nsmigrate's own client of these calls reads them as written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from openapi_core import OpenAPI

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.planning.target_indexes import IndexShape
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.pinecone.control import PineconeControl
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import CONTROL_HOST_URL, REFERENCE, checked_call, load_api, sdk_headers

HEADERS = sdk_headers("2026-07")
SOURCE, POD, DOCS = "conv-src", "conv-pod", "conv-docs"
DIM = 4
SCHEMA = {
    "fields": {
        "embedding": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"},
        "chunk_text": {"type": "string", "full_text_search": {"language": "en"}},
    }
}
#: A conversion job as the docs' describe_conversion_job and list_conversion_jobs show it.
CONVERSION_JOB = {
    "type": "object",
    "required": [
        "conversion_job_id",
        "created_at",
        "error_mode",
        "percent_complete",
        "records_converted",
        "records_skipped",
        "source_index_id",
        "source_index_name",
        "status",
        "target_index_id",
        "target_index_name",
    ],
    "properties": {
        "conversion_job_id": {"type": "string", "minLength": 1},
        "created_at": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"},
        "error_mode": {
            "type": "object",
            "required": ["on_error"],
            "properties": {"on_error": {"enum": ["abort", "continue"]}},
        },
        "percent_complete": {"type": "number", "minimum": 0, "maximum": 100},
        "records_converted": {"type": "integer", "minimum": 0},
        "records_skipped": {"type": "integer", "minimum": 0},
        "status": {"enum": ["InProgress", "Completed", "Failed", "Cancelled"]},
        "finished_at": {"type": ["string", "null"]},
    },
}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    docs = document_index("conv-existing-docs", DocumentSchema(DenseField("embedding", DIM, "cosine")))
    return [IndexSpec(SOURCE, DIM), IndexSpec(POD, DIM, kind="pod"), docs]


@pytest.fixture(scope="module")
def control_api() -> OpenAPI:
    return load_api("db_control_2026-07")


@pytest.fixture(scope="module")
def error_schema() -> dict[str, Any]:
    spec = yaml.safe_load((REFERENCE / "db_control_2026-07.oas.yaml").read_text())
    return dict(spec["components"]["schemas"]["ErrorResponse"])


@pytest.fixture
def source(sandbox: PineconeSandbox) -> Iterator[PineconeSandbox]:
    """The source loaded (two namespaces and an empty one); the indexes a test converted into removed after it."""
    sandbox.load(SOURCE, "a", [(f"a{i}", [1.0, i, 0, 0], {"chunk_text": f"text {i}", "i": i}) for i in range(5)])
    sandbox.load(SOURCE, "", [("d0", [0, 0, 1.0, 0], {"tags": ["x"]})])
    sandbox.service(SOURCE).store.create_namespace("never-written")
    sandbox.control.set_delays(conversion_delay_s=0.0)
    sandbox.control.conversions.set_plan("standard")
    yield sandbox
    for name in sandbox.names():
        if name.startswith(DOCS):
            sandbox.remove_index(name)


def convert(sandbox: PineconeSandbox, body: dict[str, Any], index: str = SOURCE, **headers: str) -> httpx.Response:
    url = f"{sandbox.control_host}/indexes/{index}/convert"
    return httpx.post(url, json=body, headers={**HEADERS, **headers}, timeout=10)


def job(sandbox: PineconeSandbox, job_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{sandbox.control_host}/conversion-jobs/{job_id}", headers=HEADERS, timeout=10)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    jsonschema.validate(body, CONVERSION_JOB)
    return body


def described(control_api: OpenAPI, sandbox: PineconeSandbox, name: str) -> dict[str, Any]:
    """``describe_index``, its answer checked against the spec's ``IndexModel``."""
    base = sandbox.control_host
    body: dict[str, Any] = checked_call(control_api, base, CONTROL_HOST_URL, "GET", f"/indexes/{name}", headers=HEADERS)
    return body


def documents(sandbox: PineconeSandbox, index: str, namespace: str, action: str, body: dict[str, Any]) -> Any:
    path = f"/namespaces/{namespace}/documents/{action}"
    return httpx.post(sandbox.host(index) + path, json=body, headers=HEADERS, timeout=10)


def test_a_conversion_is_a_snapshot_of_every_namespace_holding_records(
    control_api: OpenAPI, source: PineconeSandbox
) -> None:
    reply = convert(source, {"name": DOCS, "schema": SCHEMA, "tags": {"team": "search"}})
    assert reply.status_code == 202, reply.text
    started = reply.json()
    jsonschema.validate(started, CONVERSION_JOB)
    assert (started["source_index_name"], started["target_index_name"]) == (SOURCE, DOCS)
    assert started["error_mode"] == {"on_error": "abort"}  # the default
    # Written after the request: not in the snapshot.
    source.load(SOURCE, "a", [("late", [0, 1.0, 0, 0], {"chunk_text": "late"})])

    done = job(source, started["conversion_job_id"])
    assert (done["status"], done["percent_complete"], done["records_converted"]) == ("Completed", 100.0, 6)
    assert done["finished_at"] is not None
    model = described(control_api, source, DOCS)
    assert model["status"] == {"ready": True, "state": "Ready"} and model["tags"] == {"team": "search"}
    assert set(model["schema"]["fields"]) == {"embedding", "chunk_text"}
    source.settle(DOCS)  # the converted documents are one write, read after the lag
    fetched = documents(source, DOCS, "a", "fetch", {"ids": ["a1", "late"]}).json()["documents"]
    assert fetched == {"a1": {"_id": "a1", "embedding": [1.0, 1.0, 0.0, 0.0], "chunk_text": "text 1", "i": 1.0}}
    stats = httpx.post(f"{source.host(DOCS)}/describe_index_stats", json={}, headers=HEADERS, timeout=10).json()
    assert set(stats["namespaces"]) == {"a", "__default__"}  # never-written is skipped
    # The source is unchanged, and still a vector index.
    assert source.count(SOURCE, "a") == 6 and source.service(SOURCE).spec.documents is None


def test_a_conversion_takes_time_its_index_initializing_and_its_reads_lag_its_writes(
    control_api: OpenAPI, source: PineconeSandbox
) -> None:
    source.control.set_delays(conversion_delay_s=600.0)
    started = convert(source, {"name": DOCS, "schema": SCHEMA}).json()
    running = job(source, started["conversion_job_id"])
    assert running["status"] == "InProgress" and running["finished_at"] is None
    assert 0 <= running["percent_complete"] < 100 and running["records_converted"] < 6
    assert described(control_api, source, DOCS)["status"] == {"ready": False, "state": "Initializing"}
    assert documents(source, DOCS, "a", "fetch", {"ids": ["a1"]}).status_code == 503

    # Converted with the index's reads lagging: the documents are one write at completion, listed only after the lag.
    source.control.set_delays(conversion_delay_s=0.0)
    source.initial_faults = Faults(freshness_lag_s=600.0)
    try:
        lagging = convert(source, {"name": f"{DOCS}-lag", "schema": SCHEMA}).json()
    finally:
        source.initial_faults = Faults()
    assert job(source, lagging["conversion_job_id"])["status"] == "Completed"
    # A document index's fetch lags as its list does (its writes are applied asynchronously).
    assert documents(source, f"{DOCS}-lag", "a", "fetch", {"ids": ["a1"]}).json()["documents"] == {}
    assert documents(source, f"{DOCS}-lag", "a", "list", {}).json()["documents"] == []


def test_a_record_the_index_cannot_take_fails_the_job_or_is_skipped(
    control_api: OpenAPI, source: PineconeSandbox
) -> None:
    source.load(SOURCE, "a", [("bad", [1.0, 0, 0, 0], {"_source": "doc-1"})])
    failed = job(source, convert(source, {"name": DOCS, "schema": SCHEMA}).json()["conversion_job_id"])
    assert failed["status"] == "Failed"
    assert "record 'bad' of namespace 'a'" in failed["error"] and "'_source'" in failed["error"]
    assert described(control_api, source, DOCS)["status"] == {"ready": False, "state": "InitializationFailed"}
    assert documents(source, DOCS, "a", "fetch", {"ids": ["a1"]}).status_code == 503  # no usable data

    body = {"name": f"{DOCS}-skip", "schema": SCHEMA, "error_mode": {"on_error": "continue"}}
    skipped = job(source, convert(source, body).json()["conversion_job_id"])
    assert (skipped["status"], skipped["records_converted"], skipped["records_skipped"]) == ("Completed", 6, 1)


def test_conversion_jobs_are_listed_newest_first_a_page_at_a_time(source: PineconeSandbox) -> None:
    first = convert(source, {"name": DOCS, "schema": SCHEMA}).json()["conversion_job_id"]
    second = convert(source, {"name": f"{DOCS}-2", "schema": SCHEMA}).json()["conversion_job_id"]
    url = f"{source.control_host}/conversion-jobs"
    page = httpx.get(url, params={"limit": 1}, headers=HEADERS, timeout=10).json()
    assert [j["conversion_job_id"] for j in page["data"]] == [second]
    token = page["pagination"]["next"]
    rest = httpx.get(url, params={"limit": 100, "paginationToken": token}, headers=HEADERS, timeout=10).json()
    assert rest["data"][0]["conversion_job_id"] == first
    for found in page["data"] + rest["data"]:
        jsonschema.validate(found, CONVERSION_JOB)


@pytest.mark.parametrize(
    ("index", "body", "status", "code", "words"),
    [
        (POD, {"name": DOCS, "schema": SCHEMA}, 400, "INVALID_ARGUMENT", "is a pod-based index; only serverless"),
        ("conv-existing-docs", {"name": DOCS, "schema": SCHEMA}, 400, "INVALID_ARGUMENT", "is already a document"),
        ("nope", {"name": DOCS, "schema": SCHEMA}, 404, "NOT_FOUND", "Resource nope not found"),
        (SOURCE, {"name": POD, "schema": SCHEMA}, 409, "ALREADY_EXISTS", "Resource already exists"),
        (SOURCE, {"name": DOCS}, 422, "UNPROCESSABLE_ENTITY", "missing `schema`"),
        (SOURCE, {"name": DOCS, "schema": SCHEMA, "cloud": "aws"}, 422, "UNPROCESSABLE_ENTITY", "unknown field"),
        (
            SOURCE,
            {
                "name": DOCS,
                "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}}},
            },
            400,
            "INVALID_ARGUMENT",
            "A converted index is a document index",
        ),
        (
            SOURCE,
            {"name": DOCS, "schema": {"fields": {"body": {"type": "string", "full_text_search": {}}}}},
            400,
            "INVALID_ARGUMENT",
            "needs a dense_vector field",
        ),
        (
            SOURCE,
            {"name": DOCS, "schema": {"fields": {"e": {"type": "dense_vector", "dimension": 8, "metric": "cosine"}}}},
            400,
            "INVALID_ARGUMENT",
            "Field 'e' is 8-dim cosine; the records of index conv-src are 4-dim cosine",
        ),
        (
            SOURCE,
            {"name": DOCS, "schema": SCHEMA, "error_mode": {"on_error": "ignore"}},
            400,
            "INVALID_ARGUMENT",
            "error_mode must be",
        ),
        (SOURCE, {"name": "Not_A_Name", "schema": SCHEMA}, 400, "INVALID_ARGUMENT", "Index name must contain only"),
    ],
)
def test_what_the_service_refuses(
    source: PineconeSandbox,
    error_schema: dict[str, Any],
    index: str,
    body: dict[str, Any],
    status: int,
    code: str,
    words: str,
) -> None:
    jobs = len(source.control.conversions.names())
    reply = convert(source, body, index)
    assert reply.status_code == status, reply.text
    jsonschema.validate(reply.json(), error_schema)
    assert reply.json()["error"]["code"] == code and words in reply.json()["error"]["message"]
    assert DOCS not in source.names() and len(source.control.conversions.names()) == jobs


def test_a_plan_below_standard_an_index_not_ready_and_an_earlier_api_version_are_refused(
    source: PineconeSandbox, error_schema: dict[str, Any]
) -> None:
    jobs = len(source.control.conversions.names())
    source.control.conversions.set_plan("starter")
    refused = convert(source, {"name": DOCS, "schema": SCHEMA})
    assert refused.status_code == 403 and "Standard and Enterprise plans" in refused.json()["error"]["message"]
    jsonschema.validate(refused.json(), error_schema)
    source.control.conversions.set_plan("standard")

    source.control.set_delays(ready_delay_s=600.0)
    vectors = {"_values": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}}
    body = {"name": f"{DOCS}-young", "schema": {"fields": vectors}}
    created = httpx.post(f"{source.control_host}/indexes", json=body, headers=HEADERS, timeout=10)
    source.control.set_delays(ready_delay_s=0.0)
    assert created.status_code == 201, created.text
    young = convert(source, {"name": DOCS, "schema": SCHEMA}, f"{DOCS}-young")
    assert young.status_code == 412 and "Initializing; only an index in the Ready state" in young.text

    older = convert(source, {"name": DOCS, "schema": SCHEMA}, **{"X-Pinecone-Api-Version": "2026-04"})
    assert older.status_code == 404
    assert DOCS not in source.names() and len(source.control.conversions.names()) == jobs


def test_nsmigrates_client_starts_finds_and_reads_a_conversion(source: PineconeSandbox) -> None:
    target = f"{DOCS}-client"  # a name no earlier test converted into: conversion jobs are never forgotten
    spec = PineconeStoreSpec(index=target, control_host=source.control_host, api_key_env="CONVERT_TEST_KEY")
    control = PineconeControl(spec, allowed_key_vars="CONVERT_TEST_KEY")
    shape = IndexShape(DIM, "cosine", dense_field="embedding", text_fields=("chunk_text",), tags={"a": "b"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVERT_TEST_KEY", "test-key")
        assert control.newest_conversion(SOURCE, target) is None
        started = control.start_conversion(SOURCE, target, shape)
        found = control.newest_conversion(SOURCE, target)
        assert found is not None and found.job_id == started.job_id
        assert (found.status, found.percent_complete, found.records_converted) == ("Completed", 100.0, 6)
        assert control.describe_conversion(started.job_id) == found
        assert control.describe_conversion("no-such-job") is None
        index = control.describe_index(target)
        assert index is not None and (index.dense_field, index.cloud, index.region) == ("embedding", "aws", "us-east-1")
        with pytest.raises(StoreError, match=r"Pinecone refused convert_index \(400\).*pod-based index"):
            control.start_conversion(POD, f"{DOCS}-pod", shape)
    control.close()

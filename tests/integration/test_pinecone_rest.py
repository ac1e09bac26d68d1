"""``workers.stores.pinecone.rest``, nsmigrate's own data-plane client, against the local data plane and Pinecone's
published OpenAPI files (2026-07, the version it sends).

Every request the Pinecone store sends — each operation it has, on a serverless, a pod and an integrated index — and
every answer it gets are recorded (the real transport, wrapped) and validated against the reference:
path, query, headers and body as a request of that operation, status and body as one of its responses. The headers
are the ones the SDK itself sends (seen by a recording server); statuses become the errors the retry policy reads;
the key never shows in an error or a ``repr``; one connection serves a run of requests.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from pinecone import Index

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec, TextRecords
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.pinecone import store as pinecone_store_module
from nsmigrate.workers.stores.pinecone.http11 import Answer, Exchange, Headers, OriginPool
from nsmigrate.workers.stores.pinecone.rest import API_VERSION, DataPlane, DataPlaneError
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.embedding import IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import DATA_HOST_URL, REFERENCE
from tests.sdk_internals import set_sdk_retries

DIM = 4
KEY_ENV = "PINECONE_API_KEY"
KEY = "pk-rest-contract-0123456789"  # not a credential: the sandbox takes any key
EMBED = IntegratedEmbed(model="llama-text-embed-v2", field="chunk_text", dimension=384, metric="cosine")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec("rest-sl", DIM),
        IndexSpec("rest-pod", DIM, kind="pod"),
        IndexSpec("rest-text", 384, "cosine", embed=EMBED),
    ]


def _ndjson(body: bytes, **_: Any) -> list[Any]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    """The reference, reading the records API's NDJSON bodies (one object a line) as the array they stand for."""
    config = Config(extra_media_type_deserializers={"application/x-ndjson": _ndjson})
    return OpenAPI.from_file_path(str(REFERENCE / "db_data_2026-07.oas.yaml"), config=config)


class Recording:
    """Every exchange of the real transports kept, as httpx's request and response objects with both bodies."""

    def __init__(self) -> None:
        self.seen: list[tuple[httpx.Request, httpx.Response]] = []

    def to(self, host: str, timeout_s: float) -> Exchange:
        return _Recorded(self, host, timeout_s)


class _Recorded:
    """The transport a ``DataPlane`` builds for ``host`` (``http11.OriginPool``), its exchanges kept."""

    def __init__(self, recording: Recording, host: str, timeout_s: float) -> None:
        self.recording, self.host = recording, host
        self.inner = OriginPool(host, timeout_s=timeout_s, max_connections=4)

    def send(self, method: str, target: str, headers: Headers, body: bytes | None) -> Answer:
        answer = self.inner.send(method, target, headers, body)
        request = httpx.Request(method, self.host + target, headers=headers, content=body)
        response = httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)
        self.recording.seen.append((request, response))
        return answer

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Recording:
    """Every ``DataPlane`` the store builds sends through one ``Recording``."""
    recording = Recording()

    def recorded_plane(host: str, api_key: str, *, timeout_s: float) -> DataPlane:
        return DataPlane(host, api_key, timeout_s=timeout_s, transport=recording.to(host, timeout_s))

    monkeypatch.setattr(pinecone_store_module, "DataPlane", recorded_plane)
    monkeypatch.setenv(KEY_ENV, KEY)
    return recording


def store_of(sandbox: PineconeSandbox, index: str, **spec: Any) -> PineconeStore:
    return PineconeStore(PineconeStoreSpec(index=index, control_host=sandbox.control_host, api_key_env=KEY_ENV, **spec))


def check_against_reference(data_api: OpenAPI, exchange: tuple[httpx.Request, httpx.Response]) -> None:
    request, response = exchange
    query = {name: request.url.params.get_list(name) for name in request.url.params}
    mock = MockRequest(
        DATA_HOST_URL,
        request.method,
        request.url.raw_path.decode().split("?")[0],
        args=query or None,
        headers=dict(request.headers),
        data=request.content or None,
        content_type=request.headers.get("content-type", "application/json"),
    )
    data_api.validate_request(mock)
    data_api.validate_response(
        mock, MockResponse(response.content, status_code=response.status_code, headers=dict(response.headers))
    )


def test_every_request_of_the_store_and_every_answer_match_the_reference(
    sandbox: PineconeSandbox, wire: Recording, data_api: OpenAPI
) -> None:
    serverless = store_of(sandbox, "rest-sl")
    # By host, the pod is not known as one: it is found out from its refusals (404), which are checked too.
    pod = PineconeStore(PineconeStoreSpec(host=sandbox.host("rest-pod"), api_key_env=KEY_ENV))
    records = [Record(f"id-{n}", [1.0, float(n), 0.5, 0.25], {"n": n, "tag": "x"}) for n in range(5)]
    for store in (serverless, pod):
        assert store.upsert("ns", records) == 5
        assert store.upsert("", records[:1]) == 1
        assert [r.id for r in store.fetch("ns", ["id-1", "nope", "id-3"])] == ["id-1", "id-3"]
        assert store.fetch("ns", ["id-2"])[0].metadata == {"n": 2, "tag": "x"}
        sandbox.settle()  # counts lag writes
        assert store.count("ns") == 5
        assert store.namespaces() == {"": 1, "ns": 5}
        assert store.dimension() == DIM and store.metric() == "cosine"
        assert store.query("ns", [1.0, 4.0, 0.5, 0.25], 1) == ["id-4"]
        store.delete("ns", ["id-0"])
    sandbox.settle()  # listings lag writes
    first = serverless.list_ids("ns", limit=2)
    rest = serverless.list_ids("ns", limit=100, token=first.next_token)
    assert first.ids + rest.ids == ["id-1", "id-2", "id-3", "id-4"] and rest.next_token is None
    assert serverless.list_ids_by_prefix("ns", "id-3").ids == ["id-3"]
    assert serverless.can_list() and not pod.can_list()
    serverless.delete_namespace("ns")  # DELETE /namespaces/ns
    pod.delete_namespace("ns")  # a pod refuses /namespaces: emptied with deleteAll
    sandbox.settle()
    assert serverless.namespaces() == pod.namespaces() == {"": 1}

    text = store_of(sandbox, "rest-text", records=TextRecords(text_from="body", field="chunk_text"))
    assert text.upsert("docs", [Record("d1", [], {"chunk_text": "apples and pears", "lang": "en"})]) == 1
    sandbox.settle()  # searches lag writes
    assert text.search_text("docs", "apples", 1) == ["d1"]

    paths = {(request.method, request.url.path) for request, _ in wire.seen}
    assert paths >= {
        ("POST", "/vectors/upsert"),
        ("GET", "/vectors/fetch"),
        ("GET", "/vectors/list"),
        ("GET", "/namespaces/ns"),
        ("DELETE", "/namespaces/ns"),
        ("POST", "/describe_index_stats"),
        ("POST", "/query"),
        ("POST", "/vectors/delete"),
        ("POST", "/records/namespaces/docs/upsert"),
        ("POST", "/records/namespaces/docs/search"),
    }
    statuses = {response.status_code for _, response in wire.seen}
    assert 404 in statuses
    for exchange in wire.seen:
        check_against_reference(data_api, exchange)


def test_namespaces_of_any_spelling_reach_the_server_as_one_path_segment(
    sandbox: PineconeSandbox, wire: Recording
) -> None:
    store = store_of(sandbox, "rest-sl")
    odd = [".", "..", "a/b", "a b?c=d", "%41", "x" * 300]
    for n, namespace in enumerate(odd):
        store.upsert(namespace, [Record(f"v{n}", [1.0, 0.0, 0.0, float(n)], {})])
    sandbox.settle()  # counts lag writes
    for namespace in odd:
        assert store.count(namespace) == 1, namespace
    store.delete_namespace("a/b")
    assert set(sandbox.snapshot("rest-sl")) == set(odd) - {"a/b"}
    described = [request.url.raw_path for request, _ in wire.seen if request.url.path.startswith("/namespaces/")]
    assert b"/namespaces/%2E" in described and b"/namespaces/%2E%2E" in described and b"/namespaces/a%2Fb" in described


def test_statuses_become_the_errors_the_retry_policy_reads(sandbox: PineconeSandbox, wire: Recording) -> None:
    store = store_of(sandbox, "rest-sl")
    store.upsert("ns", [Record("a", [1.0, 0.0, 0.0, 0.0], {})])

    sandbox.set_faults("rest-sl", Faults(error_rate_429=1.0, retry_after_s=1.5))
    with pytest.raises(RetryableError) as limited:
        store.fetch("ns", ["a"])
    assert (limited.value.status, limited.value.retry_after_s) == (429, 1.5)
    sandbox.set_faults("rest-sl", Faults(error_rate_5xx=1.0, status_5xx=503))
    with pytest.raises(RetryableError) as unavailable:
        store.upsert("ns", [Record("b", [1.0, 0.0, 0.0, 0.0], {})])
    assert unavailable.value.status == 503 and unavailable.value.retry_after_s is None
    sandbox.set_faults("rest-sl", Faults())
    with pytest.raises(StoreError, match=r"Pinecone refused upsert \(400\): .*dimension") as refused:
        store.upsert("ns", [Record("c", [1.0, 0.0], {})])
    assert refused.value.ids == {"store": store.name, "op": "upsert", "namespace": "ns"}
    # One request each: this client never retries (tenacity, around the store, is the only retry layer).
    assert [response.status_code for _, response in wire.seen[-3:]] == [429, 503, 400]


def test_a_refused_key_and_a_closed_port_never_show_the_key() -> None:
    guarded = PineconeSandbox([IndexSpec("guarded", DIM)], api_key="the-one-key-it-takes").start()
    try:
        with pytest.raises(DataPlaneError) as unauthorized:
            DataPlane(guarded.host("guarded"), KEY, timeout_s=5).get("/vectors/list")
    finally:
        guarded.stop()
    assert unauthorized.value.status == 401 and unauthorized.value.message
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    plane = DataPlane(closed, KEY, timeout_s=2)
    with pytest.raises(httpx.TransportError) as failed:
        plane.get("/vectors/list")
    shown = [str(unauthorized.value), str(failed.value), repr(failed.value), repr(plane)]
    assert not any(KEY in text for text in shown), shown


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty list; keeps which connection carried each request, its headers and target."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, dict[str, str], str]] = []

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append((id(self.connection), headers, self.path))
        body = b'{"vectors": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_it_sends_the_key_and_the_api_version_the_sdk_sends_over_one_pooled_connection(recorder: str) -> None:
    sdk = Index(host=recorder, api_key=KEY, ssl_verify=False)
    set_sdk_retries(sdk, 0)
    sdk.list_paginated(namespace="ns", limit=1)
    sdk.close()
    plane = DataPlane(recorder, KEY, timeout_s=5)
    for _ in range(5):
        plane.get("/vectors/list", {"namespace": "ns", "limit": 1})
    plane.close()

    (_, by_sdk, _), *ours = _Recorder.seen
    assert by_sdk["api-key"] == KEY and by_sdk["x-pinecone-api-version"] == API_VERSION
    assert all(headers["api-key"] == KEY for _, headers, _ in ours)
    assert all(headers["x-pinecone-api-version"] == by_sdk["x-pinecone-api-version"] for _, headers, _ in ours)
    assert len({connection for connection, _, _ in ours}) == 1  # five requests, one kept-alive connection


def test_the_proxy_the_environment_names_carries_the_requests(recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", recorder)  # the recording server plays the proxy
    plane = DataPlane("http://index.example:8080", KEY, timeout_s=5)
    assert plane.get("/vectors/list", {"limit": 1}) == b'{"vectors": []}'
    plane.close()
    monkeypatch.setenv("NO_PROXY", "index.example")
    exempt = DataPlane("http://index.example:8080", KEY, timeout_s=1)
    with pytest.raises(httpx.TransportError):  # straight to the host, which does not exist
        exempt.get("/vectors/list")
    assert [target for _, _, target in _Recorder.seen] == ["http://index.example:8080/vectors/list?limit=1"]


@pytest.mark.parametrize("bad", [KEY + "\n", f" {KEY}", KEY[:4] + "\r\nX-Other: 1", KEY + "é"])
def test_a_key_that_cannot_be_a_header_is_refused_by_its_variable_never_shown(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(StoreError, match=f"environment variable {KEY_ENV} cannot be sent as an Api-Key header") as e:
        store_of(sandbox, "rest-sl").count("ns")
    with pytest.raises(ValueError) as plane:
        DataPlane(sandbox.host("rest-sl"), bad, timeout_s=5)
    assert KEY[:4] not in str(e.value) and KEY[:4] not in str(plane.value)

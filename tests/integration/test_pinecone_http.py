"""``workers.stores.pinecone_http``: a GET that skips ``httpx.Client``'s per-request layers sends what the SDK's own
``get`` sends and fails as it fails. A recording HTTP server sees both requests byte for byte; the local data plane
answers them (the SDK's client, its real transport); a closed port and refusals give the SDK's exception types."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pinecone import Index, NotFoundError, PineconeConnectionError, RateLimitError, ServiceError

from orchestrator.errors import RetryableError
from orchestrator.spec.jobspec import PineconeStoreSpec
from sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from sandbox.stack import SANDBOX_API_KEY
from workers.stores.pinecone import PineconeStore, disable_sdk_retries
from workers.stores.pinecone_http import RawGet, raw_http

DIM = 4
ODD = ["é ü/&=?+", "a b", "%41", "日本", "x" * 300]  # encoded by httpx either way, whatever the characters


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("raw", DIM)]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, list[tuple[str, str]]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.command, self.path, sorted((k.lower(), v) for k, v in self.headers.items())))
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


def index_at(host: str) -> Index:
    index = Index(host=host, api_key=SANDBOX_API_KEY, ssl_verify=False)
    assert disable_sdk_retries(index)
    return index


def test_the_fast_get_sends_what_the_sdks_get_sends(recorder: str) -> None:
    index = index_at(recorder)
    raw = raw_http(index)
    assert isinstance(raw, RawGet) and raw.fast  # the installed SDK has the shape: the fast path is what runs
    for value in ODD:
        params = {"ids": [value, "plain"], "namespace": value, "limit": 5}
        index._http.get("/vectors/fetch", params=params)
        raw("/vectors/fetch", params)
        index._http.get("/namespaces/.")  # a dot segment, kept as the SDK keeps it
        raw("/namespaces/.")

    sdk, ours = _Recorder.seen[0::2], _Recorder.seen[1::2]
    assert ours == sdk
    headers = dict(ours[0][2])
    assert headers["api-key"] == SANDBOX_API_KEY and "x-pinecone-api-version" in headers
    assert "gzip" in headers["accept-encoding"]  # a large fetch may come compressed, as with the SDK's get


def test_the_fast_get_answers_the_data_planes_bytes(sandbox: PineconeSandbox) -> None:
    sandbox.load("raw", "ns", [(f"id-{i}", [float(i + 1)] * DIM, {"i": i}) for i in range(3)])
    index = index_at(sandbox.host("raw"))
    raw = raw_http(index)
    assert raw is not None
    for path, params in [
        ("/vectors/fetch", {"ids": ["id-0", "id-2", "missing"], "namespace": "ns"}),
        ("/vectors/list", {"namespace": "ns", "limit": 2}),
        ("/namespaces/ns", None),
    ]:
        assert raw(path, params) == index._http.get(path, params=params or {}).content


def test_the_fast_get_fails_with_the_sdks_exceptions(sandbox: PineconeSandbox) -> None:
    raw = raw_http(index_at(sandbox.host("raw")))
    assert raw is not None
    with pytest.raises(NotFoundError):
        raw("/namespaces/no-such-namespace")
    sandbox.set_faults("raw", Faults(error_rate_5xx=1.0, status_5xx=503))
    with pytest.raises(ServiceError):
        raw("/vectors/list", {"namespace": "ns"})
    sandbox.set_faults("raw", Faults(error_rate_429=1.0))
    with pytest.raises(RateLimitError):
        raw("/vectors/list", {"namespace": "ns"})

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    dead = raw_http(index_at(closed))
    assert dead is not None
    with pytest.raises(PineconeConnectionError, match=r"127\.0\.0\.1"):
        dead("/vectors/list")


def test_a_client_of_another_shape_gets_the_sdks_get(sandbox: PineconeSandbox) -> None:
    sandbox.load("raw", "ns", [("only", [1.0] * DIM, {})])
    index = index_at(sandbox.host("raw"))
    slow = RawGet(index._http)
    slow._parts = None  # as for an SDK whose client has none of the parts
    assert not slow.fast
    fast = raw_http(index)
    assert fast is not None and fast.fast
    assert slow("/vectors/list", {"namespace": "ns"}) == fast("/vectors/list", {"namespace": "ns"})


@pytest.mark.parametrize("namespace", [".", "..", "a b/c", "%2E", "x" * 512])
def test_a_namespace_count_is_read_for_any_name_the_endpoint_takes(
    sandbox: PineconeSandbox, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dot segments, slashes and escapes reach the server as the name they are; the count is the namespace's."""
    sandbox.load("raw", namespace, [(f"v{i}", [1.0] * DIM, {}) for i in range(4)])
    sandbox.load("raw", "other", [("w", [1.0] * DIM, {})])
    monkeypatch.setenv("PINECONE_API_KEY", SANDBOX_API_KEY)
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host("raw")))
    described = sandbox.stats("raw")["requests"].get("describe_namespace", 0)
    assert store.count(namespace) == 4
    assert sandbox.stats("raw")["requests"].get("describe_namespace", 0) == described + 1  # not from the stats
    assert store.count("no-such") == 0
    sandbox.set_faults("raw", Faults(error_rate_429=1.0))
    with pytest.raises(RetryableError) as info:
        store.count(namespace)
    assert info.value.status == 429

"""``workers.stores.pinecone.http11``: the data plane's HTTP/1.1 connections, against a loopback server that writes
exactly the bytes each test scripts (every framing of an answer, closed and broken connections) and against the local
data plane over TLS.

What goes on the wire is read back byte for byte; failures must be httpx's ``TransportError`` types, which the store
turns into retryable errors, as they were with httpx's own transport.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nsmigrate.workers.stores.pinecone import http11
from nsmigrate.workers.stores.pinecone.http11 import OriginPool
from nsmigrate.workers.stores.pinecone.rest import DataPlane
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.services_host import make_certificate

HEADERS = (("Api-Key", "k-0123"), ("Accept", "application/json"))
#: What a scripted answer is: the bytes to send for a request, or a function doing anything with the socket.
Reply = bytes | Callable[[socket.socket], None]


class Scripted:
    """A loopback server answering the n-th request it reads with ``replies[n]`` (or what ``reply`` makes of it);
    keeps ``(connection number, raw request)``. A reply of bytes leaves the connection open for the next request."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.seen: list[tuple[int, bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections - 1), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffered = b""
        with conn:
            while self.replies:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                reply = self.replies.pop(0)
                if callable(reply):  # it reads (or not) the body itself
                    self.seen.append((number, head + b"\r\n\r\n"))
                    reply(conn)
                    return
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                self.seen.append((number, head + b"\r\n\r\n" + buffered[:length]))
                buffered = buffered[length:]
                conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Reply]], Scripted]]:
    servers: list[Scripted] = []

    def start(replies: list[Reply]) -> Scripted:
        servers.append(Scripted(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (*headers, f"Content-Length: {len(body)}"))
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


def pool(origin: str, **kwargs: float) -> OriginPool:
    return OriginPool(origin, timeout_s=kwargs.get("timeout_s", 5.0), max_connections=int(kwargs.get("size", 4)))


def test_requests_go_out_as_http11_and_one_connection_carries_them(scripted: Callable[..., Scripted]) -> None:
    big = b"[" + b"0.125," * 50_000 + b"1]"
    server = scripted([ok(b'{"a":1}', "X-Pinecone-Request-Lsn: 7"), ok(b"{}"), ok(big)])
    plane = pool(server.origin)

    answer = plane.send("GET", "/vectors/fetch?ids=a&ids=b%23c", HEADERS, None)
    assert (answer.status, answer.reason, answer.body) == (200, "OK", b'{"a":1}')
    assert answer.headers == {"x-pinecone-request-lsn": "7", "content-length": "7"}
    assert plane.send("POST", "/vectors/upsert", HEADERS, b'{"vectors":[]}').body == b"{}"
    assert plane.send("POST", "/vectors/upsert", HEADERS, big).body == big

    port = server.origin.rsplit(":", 1)[1]
    fixed = f"Host: 127.0.0.1:{port}\r\nApi-Key: k-0123\r\nAccept: application/json\r\n".encode()
    assert server.seen == [
        (0, b"GET /vectors/fetch?ids=a&ids=b%23c HTTP/1.1\r\n" + fixed + b"\r\n"),
        (0, b"POST /vectors/upsert HTTP/1.1\r\n" + fixed + b'Content-Length: 14\r\n\r\n{"vectors":[]}'),
        (0, b"POST /vectors/upsert HTTP/1.1\r\n" + fixed + f"Content-Length: {len(big)}\r\n\r\n".encode() + big),
    ]


def test_every_framing_of_an_answer_is_read(scripted: Callable[..., Scripted]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    continued = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after")
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    repeated = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc"
    until_close = b"HTTP/1.1 200 OK\r\n\r\nto the end"

    def close_after(conn: socket.socket) -> None:
        conn.sendall(until_close)

    server = scripted([chunked, continued, no_content, repeated, close_after, ok(b"next")])
    plane = pool(server.origin)
    bodies = [plane.send("GET", "/", HEADERS, None) for _ in range(6)]
    assert [a.body for a in bodies] == [b"abcdef", b"after", b"", b"abc", b"to the end", b"next"]
    assert bodies[3].headers["x-a"] == "1, 2"
    # The answer read until the server closed its connection leaves it unusable: the next request opens another.
    assert [n for n, _ in server.seen] == [0, 0, 0, 0, 0, 1]


def test_gzip_and_deflate_bodies_are_decoded(scripted: Callable[..., Scripted]) -> None:
    text = b'{"vectors": {}}' * 100
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    server = scripted(
        [
            ok(gzip.compress(text), "Content-Encoding: gzip"),
            ok(zlib.compress(text), "Content-Encoding: deflate"),
            ok(raw_deflate.compress(text) + raw_deflate.flush(), "Content-Encoding: deflate"),
            ok(text, "Content-Encoding: identity"),
            ok(b"not gzip", "Content-Encoding: gzip"),
        ]
    )
    plane = pool(server.origin)
    assert [plane.send("GET", "/", HEADERS, None).body for _ in range(4)] == [text] * 4
    with pytest.raises(httpx.DecodingError):
        plane.send("GET", "/", HEADERS, None)


def test_a_connection_is_not_reused_once_closed_or_idle_too_long(
    scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer_and_close(conn: socket.socket) -> None:
        conn.sendall(ok(b"bye"))  # no "Connection: close": the client finds out when it next looks

    server = scripted([ok(b"1", "Connection: close"), answer_and_close, ok(b"3"), ok(b"4"), ok(b"5")])
    plane = pool(server.origin)
    assert plane.send("GET", "/", HEADERS, None).body == b"1"
    assert plane.send("GET", "/", HEADERS, None).body == b"bye"
    time.sleep(0.2)  # the server's close reaches the client
    assert plane.send("GET", "/", HEADERS, None).body == b"3"
    monkeypatch.setattr(http11, "KEEPALIVE_EXPIRY_S", 0.0)
    assert plane.send("GET", "/", HEADERS, None).body == b"4"
    assert [n for n, _ in server.seen] == [0, 1, 2, 3]
    plane.close()


def test_failures_are_httpx_transport_errors(scripted: Callable[..., Scripted]) -> None:
    def hang_up(conn: socket.socket) -> None:
        pass

    def truncated(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    def garbled(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

    def silent(conn: socket.socket) -> None:
        time.sleep(1.0)

    server = scripted([hang_up, truncated, garbled, silent])
    plane = pool(server.origin, timeout_s=0.3)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        plane.send("GET", "/", HEADERS, None)
    with pytest.raises(httpx.RemoteProtocolError, match="received 3 bytes, expected 10"):
        plane.send("GET", "/", HEADERS, None)
    with pytest.raises(httpx.RemoteProtocolError, match="did not answer in HTTP/1"):
        plane.send("GET", "/", HEADERS, None)
    with pytest.raises(httpx.ReadTimeout):
        plane.send("GET", "/", HEADERS, None)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(httpx.ConnectError):
        pool(closed).send("GET", "/", HEADERS, None)


def test_a_request_waits_for_a_free_connection_up_to_the_timeout(scripted: Callable[..., Scripted]) -> None:
    def trickle(conn: socket.socket) -> None:  # a byte every 0.1 s: never a read timeout, the connection held 0.8 s
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for byte in b"trickled":
            time.sleep(0.1)
            conn.sendall(bytes([byte]))

    server = scripted([trickle])
    plane = pool(server.origin, timeout_s=0.3, size=1)
    first: list[bytes] = []
    holder = threading.Thread(target=lambda: first.append(plane.send("GET", "/", HEADERS, None).body))
    holder.start()
    time.sleep(0.1)
    with pytest.raises(httpx.PoolTimeout):
        plane.send("GET", "/", HEADERS, None)
    holder.join(5)
    assert first == [b"trickled"]


def test_an_answer_sent_before_the_body_was_read_is_returned(scripted: Callable[..., Scripted]) -> None:
    def refuse_unread(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.3)  # the body is never read: the client's write fails once the socket closes

    server = scripted([refuse_unread, ok(b"after")])
    plane = pool(server.origin)
    answer = plane.send("POST", "/vectors/upsert", HEADERS, b"x" * 8_000_000)
    assert (answer.status, answer.body) == (413, b"too large")
    assert plane.send("GET", "/", HEADERS, None).body == b"after"


def test_an_https_index_is_reached_with_the_trusted_certificate_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate("127.0.0.1", tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    sandbox = PineconeSandbox([IndexSpec("tls", 4)], tls=tls).start()
    try:
        host = sandbox.host("tls")
        assert host.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            DataPlane(host, "k-0123", timeout_s=5).post("/describe_index_stats", {})
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted as httpx trusts a CA bundle
        plane = DataPlane(host, "k-0123", timeout_s=5)
        assert b'"dimension":4' in plane.post("/describe_index_stats", {}).replace(b" ", b"")
        plane.close()
    finally:
        sandbox.stop()

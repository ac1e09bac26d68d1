"""The hand-off's Redis commands (``orchestrator.messaging.resp``) against a real Redis, read back with redis-py."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis

from nsmigrate.orchestrator.messaging.resp import Connection, RedisFailed
from nsmigrate_sandbox.services import RedisServer


def test_the_hand_offs_commands_do_what_redis_py_sees(redis_url: str) -> None:
    other = redis.Redis.from_url(redis_url)
    other.set("resp:beat", "é".encode())
    conn = Connection(redis_url, connect_timeout_s=2, timeout_s=5)

    assert conn.get("resp:beat") == "é".encode() and conn.get("resp:none") is None
    assert conn.rpush("resp:list", "a") == 1 and conn.rpush("resp:list", b"b\r\nc") == 2
    assert other.lrange("resp:list", 0, -1) == [b"a", b"b\r\nc"]
    assert conn.lrem("resp:list", 1, "a") == 1 and conn.exists("resp:list") == 1
    assert conn.blpop(["resp:empty", "resp:list"], timeout=1) == (b"resp:list", b"b\r\nc")
    assert conn.blpop(["resp:list"], timeout=0.1) is None and conn.exists("resp:list") == 0


def test_an_error_answer_and_a_refused_connection_are_redis_failed(redis_url: str) -> None:
    conn = Connection(redis_url, connect_timeout_s=2, timeout_s=5)
    conn.command("SET", "resp:string", "x")

    with pytest.raises(RedisFailed, match="WRONGTYPE"):
        conn.rpush("resp:string", "y")
    assert conn.get("resp:string") == b"x"  # still in step after the error
    with pytest.raises(RedisFailed):
        Connection("redis://127.0.0.1:1/0", connect_timeout_s=2, timeout_s=5).get("resp:beat")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "redis://h/x"])
def test_a_url_it_does_not_read_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        Connection(url, connect_timeout_s=2, timeout_s=5)


def test_a_password_in_the_query_string_is_sent_as_redis_py_sends_it(password_redis_server: RedisServer) -> None:
    server = password_redis_server
    assert server.password is not None
    redis.Redis.from_url(server.url).set("resp:secret", "seen")
    in_query = f"redis://127.0.0.1:{server.port}/0?password={quote(server.password, safe='')}"

    assert Connection(in_query, connect_timeout_s=2, timeout_s=5).get("resp:secret") == b"seen"
    with pytest.raises(RedisFailed, match="NOAUTH"):  # the server does want it
        Connection(f"redis://127.0.0.1:{server.port}/0", connect_timeout_s=2, timeout_s=5).get("resp:secret")

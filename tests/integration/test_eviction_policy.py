"""A worker refuses a Redis that evicts keys when full (any ``maxmemory-policy`` but ``noeviction``): it would drop
queued tasks silently. On a real Redis: the worker exits 2 naming the policy and the fix before consuming anything,
and a Redis that will not say its policy (CONFIG not granted) gets a warning, not a refusal."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.workers import eviction_policy


@pytest.fixture
def evicting_redis(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield redis_url
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


def test_a_worker_refuses_a_redis_that_evicts_keys(evicting_redis: str, job_table_url: str) -> None:
    result = CliRunner().invoke(
        app,
        ["worker", "-Q", "copy", "--pool", "threads", "--redis-url", evicting_redis, "--database-url", job_table_url],
    )

    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "has maxmemory-policy allkeys-lru" in text and "set it to noeviction" in text
    assert "Traceback" not in result.output
    assert redis.Redis.from_url(evicting_redis).llen("copy") == 0


def test_the_default_policy_passes_and_an_unreadable_one_is_warned_about(redis_url: str) -> None:
    assert eviction_policy.check(redis_url) == (None, None)

    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        "no-config", enabled=True, passwords=["+pw"], commands=["+@all", "-config"], keys=["*"], channels=["*"]
    )
    try:
        address = urlsplit(redis_url)
        refusal, warning = eviction_policy.check(f"redis://no-config:pw@{address.hostname}:{address.port}/0")
    finally:
        admin.acl_deluser("no-config")
        admin.close()

    assert refusal is None
    assert warning is not None and "does not say its maxmemory-policy" in warning and "noeviction" in warning
    assert "pw@" not in warning

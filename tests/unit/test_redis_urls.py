"""A Redis URL's credentials where kombu, redis-py and the hand-off's RESP client all read them: the user info."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.connections.redis_urls import credentials_in_userinfo

MOVED = [
    ("redis://127.0.0.1:6379/0?password=s3cret", "redis://:s3cret@127.0.0.1:6379/0"),
    ("redis://127.0.0.1:6379/0?username=app&password=s3cret", "redis://app:s3cret@127.0.0.1:6379/0"),
    (
        "redis://app@h:1/2?password=a%2Bb%40c%2Fd&db=3",
        "redis://app:a%2Bb%40c%2Fd@h:1/2?db=3",
    ),  # quoted in the user info
    ("rediss://h:6380/0?password=p&ssl_cert_reqs=required", "rediss://:p@h:6380/0?ssl_cert_reqs=required"),
    ("unix:///run/redis.sock?password=p&db=2", "unix://:p@/run/redis.sock?db=2"),
    ("redis://:same@h/0?password=same", "redis://:same@h/0"),  # once in each place, equal: one
]
UNCHANGED = ["redis://127.0.0.1:6379/0", "redis://:p@h:6379/0", "redis://h/0?db=1", "unix:///run/redis.sock?db=2"]


@pytest.mark.parametrize(("url", "moved"), MOVED)
def test_credentials_in_the_query_string_move_into_the_user_info(url: str, moved: str) -> None:
    assert credentials_in_userinfo(url) == moved


@pytest.mark.parametrize("url", UNCHANGED)
def test_a_url_without_them_is_left_as_it_is(url: str) -> None:
    assert credentials_in_userinfo(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://:first-pw@h/0?password=second-pw",
        "redis://h/0?password=first-pw&password=second-pw",
        "redis://one-user:p@h/0?username=second-user",
    ],
)
def test_two_different_values_are_refused_without_showing_either(url: str) -> None:
    with pytest.raises(ValueError, match="twice") as info:
        credentials_in_userinfo(url)

    assert not any(secret in str(info.value) for secret in ("first-pw", "second-pw", "one-user", "second-user"))

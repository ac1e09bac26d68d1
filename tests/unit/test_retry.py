"""The retry policy as a table: what is retried, how long it waits, when it gives up. No test sleeps."""

from __future__ import annotations

import logging

import pytest

from nsmigrate.orchestrator.errors import PermanentError, RetryableError, StoreError
from nsmigrate.orchestrator.retry_policy import call_with_retry, retrying
from nsmigrate.orchestrator.settings import DEFAULTS


class Flaky:
    """Raises the given errors in turn, then returns "ok"; counts calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def rate_limited(after: float | None = None) -> RetryableError:
    return RetryableError("rate limited", status=429, retry_after_s=after, op="upsert", namespace="ns1")


@pytest.mark.parametrize(
    ("errors", "calls"),
    [
        ([], 1),
        ([rate_limited()], 2),
        ([RetryableError("503", status=503)] * 3, 4),
        ([RetryableError("connection reset")] * 7, 8),
    ],
)
def test_retryable_errors_are_retried_until_success(errors: list[Exception], calls: int) -> None:
    fn = Flaky(*errors)
    waits: list[float] = []

    assert call_with_retry(fn, policy=retrying(sleep=waits.append)) == "ok"

    assert fn.calls == calls
    assert len(waits) == calls - 1


@pytest.mark.parametrize(
    "error",
    [StoreError("400 bad request"), PermanentError("dimension mismatch"), ValueError("bug"), KeyError("x")],
)
def test_other_errors_are_raised_at_once(error: Exception) -> None:
    fn = Flaky(error)
    waits: list[float] = []

    with pytest.raises(type(error)) as info:
        call_with_retry(fn, policy=retrying(sleep=waits.append))

    assert info.value is error
    assert fn.calls == 1
    assert waits == []


@pytest.mark.parametrize("attempts", [1, 2, 5, 8])
def test_gives_up_after_attempts_and_reraises_the_last_original_error(attempts: int) -> None:
    errors = [RetryableError(f"attempt {i}", status=503) for i in range(attempts + 3)]
    fn = Flaky(*errors)
    waits: list[float] = []

    with pytest.raises(RetryableError) as info:
        call_with_retry(fn, policy=retrying(attempts=attempts, sleep=waits.append))

    assert info.value is errors[attempts - 1]
    assert fn.calls == attempts
    assert len(waits) == attempts - 1


@pytest.mark.parametrize(
    ("retry_after_s", "max_wait_s", "low", "high"),
    [
        (5.0, 1.0, 5.0, 5.0),  # the server asked for more than the backoff: exactly what it asked
        (0.0, 1.0, 0.0, 1.0),  # Retry-After: 0 → the jittered backoff alone
        (None, 2.0, 0.0, 2.0),  # no Retry-After → the jittered backoff, capped
        (1e9, 1.0, DEFAULTS.retry_after_cap_s, DEFAULTS.retry_after_cap_s),  # absurd header → capped
    ],
)
def test_waits_at_least_retry_after(retry_after_s: float | None, max_wait_s: float, low: float, high: float) -> None:
    fn = Flaky(*[rate_limited(retry_after_s) for _ in range(5)])
    waits: list[float] = []

    call_with_retry(fn, policy=retrying(max_wait_s=max_wait_s, sleep=waits.append))

    assert len(waits) == 5
    assert all(low <= w <= high for w in waits), waits


def test_the_retry_after_cap_is_the_settings() -> None:
    fn = Flaky(*[rate_limited(1e9) for _ in range(3)])
    waits: list[float] = []

    call_with_retry(fn, policy=retrying(retry_after_cap_s=7.0, sleep=waits.append))

    assert waits == [7.0, 7.0, 7.0]


def test_backoff_grows_and_is_capped() -> None:
    fn = Flaky(*[RetryableError("503", status=503) for _ in range(40)])
    waits: list[float] = []

    with pytest.raises(RetryableError):
        call_with_retry(fn, policy=retrying(attempts=40, max_wait_s=3, sleep=waits.append))

    # wait_random_exponential: uniform(0, min(3, 0.25 * 2**n)) — the first waits are short, none above the cap.
    assert all(0 <= w <= 3 for w in waits)
    assert all(w <= 0.25 * 2**i for i, w in enumerate(waits[:3]))
    assert max(waits) > 1  # 39 draws from uniform(0, 3): practically certain


def test_each_retry_is_logged_with_op_and_namespace(caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky(rate_limited(0.5), rate_limited(0.5))

    with caplog.at_level(logging.WARNING, logger="nsmigrate.orchestrator.retry_policy"):
        call_with_retry(fn, policy=retrying(sleep=lambda _s: None))

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert all("op=upsert" in m and "namespace=ns1" in m and "status=429" in m for m in messages)


def test_policy_object_is_reusable_and_the_default_policy_works() -> None:
    policy = retrying(sleep=lambda _s: None)
    for _ in range(3):
        assert call_with_retry(Flaky(rate_limited()), policy=policy) == "ok"
    assert call_with_retry(lambda a, b=0: a + b, 1, b=2) == 3


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        retrying(attempts=0)


def test_nested_use_of_one_policy_keeps_separate_counts() -> None:
    policy = retrying(attempts=3, sleep=lambda _s: None)
    inner = Flaky(rate_limited(), rate_limited())

    def outer() -> str:
        return call_with_retry(inner, policy=policy)

    assert call_with_retry(outer, policy=policy) == "ok"
    assert inner.calls == 3

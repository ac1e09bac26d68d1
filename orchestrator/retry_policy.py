"""The retry policy for one request to a store or service, as data (tenacity), built in one place: ``retrying``.

Which layer retries what is decided in ``workers.stores.guarded`` (every store call of the fleet and of the
commands); planning's reads outside a store (the creator mapping and sources tables in Supabase,
``orchestrator.tenancy.creator_mapping``) use the same policy. Clients' own hidden retries are off (the Pinecone
SDK's, the supabase client's: ``orchestrator.connections.supabase_queries``) so each attempt is counted, budgeted
and logged here. ``PermanentError`` (``StoreError``, ``SpecError``…) is never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity
from tenacity import RetryCallState

from nsmigrate.orchestrator.errors import RetryableError
from nsmigrate.orchestrator.settings import DEFAULTS, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _NoAnswer(tenacity.stop.stop_base):
    """Stop condition: the last attempt got no answer at all (refused, unresolvable, timed out): ``status`` None."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        return isinstance(exc, RetryableError) and exc.status is None


class wait_retry_after(tenacity.wait.wait_base):
    """Wait ``max(Retry-After, fallback)``: never sooner than the server asked, never in lockstep with the fleet.

    Use this around calls to a shared, rate-limited API: ``Retry-After`` (carried as ``RetryableError.retry_after_s``)
    is the floor, and ``fallback`` (a jittered exponential) spreads processes that were throttled together.
    """

    def __init__(self, fallback: tenacity.wait.wait_base, cap_s: float = DEFAULTS.retry_after_cap_s) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is None:
            return backoff
        return max(min(float(retry_after), self.cap_s), backoff)


def _log_before_sleep(retry_state: RetryCallState) -> None:
    """One WARNING per retry naming the operation and the identifiers the error carries (never a key: store errors
    never contain one, and arguments are not logged)."""
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    op = getattr(retry_state.fn, "__qualname__", None) or "call"
    ids = getattr(exc, "ids", {}) or {}
    where = " ".join(f"{k}={v}" for k, v in ids.items())
    wait_s = retry_state.upcoming_sleep
    logger.warning(
        "retrying %s%s after attempt %d in %.2f s: %s (status=%s)",
        op,
        f" [{where}]" if where else "",
        retry_state.attempt_number,
        wait_s,
        getattr(exc, "message", type(exc).__name__ if exc is not None else "?"),
        getattr(exc, "status", None),
    )


def retrying(
    *,
    attempts: int = DEFAULTS.retry_attempts,
    max_wait_s: float = DEFAULTS.retry_max_wait_s,
    retry_after_cap_s: float = DEFAULTS.retry_after_cap_s,
    no_answer_attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """The retry policy for one store call inside a task.

    Parameters:
        attempts: total attempts, the first included (8 → up to 7 retries).
        max_wait_s: cap of the random exponential backoff, in seconds (``Retry-After`` may ask for more; it wins,
            up to ``retry_after_cap_s``).
        retry_after_cap_s: the longest ``Retry-After`` honoured, in seconds.
        no_answer_attempts: attempts when the host did not answer at all (``status`` None; default: ``attempts``),
            so a wrong host fails in seconds rather than after the whole backoff.
        sleep: how to wait; tests pass a recorder so they never sleep.

    Returns:
        A ``tenacity.Retrying`` that retries only ``RetryableError``, waits
        ``max(retry_after_s, wait_random_exponential(multiplier=0.25, max=max_wait_s))`` between attempts, logs each
        retry at WARNING and, after ``attempts``, re-raises the last ``RetryableError`` itself (not a ``RetryError``).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be ≥ 1, got {attempts}")
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
    if no_answer_attempts is not None and no_answer_attempts < attempts:
        stop = stop | (tenacity.stop_after_attempt(no_answer_attempts) & _NoAnswer())
    return tenacity.Retrying(
        stop=stop,
        wait=wait_retry_after(tenacity.wait_random_exponential(multiplier=0.25, max=max_wait_s), retry_after_cap_s),
        retry=tenacity.retry_if_exception_type(RetryableError),
        before_sleep=_log_before_sleep,
        reraise=True,
        sleep=sleep,
    )


def call_with_retry(fn: Callable[..., T], *args: Any, policy: tenacity.Retrying | None = None, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` under ``policy`` (default: ``retrying()``).

    Raises:
        RetryableError: the last one, once the attempts are used up.
        Exception: anything else ``fn`` raised, at once and unchanged.
    """
    # copy(): tenacity keeps per-call state on the policy object; a copy makes one shared policy safe to reuse, even
    # from a function that is itself running under it.
    runner = (policy or retrying()).copy()
    return runner(fn, *args, **kwargs)


def one_off(settings: Settings = DEFAULTS, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """The policy for a request outside the fleet's tasks (a command, planning): ``settings.one_off_*``."""
    return retrying(
        attempts=settings.one_off_attempts,
        max_wait_s=settings.one_off_max_wait_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        no_answer_attempts=settings.one_off_no_answer_attempts,
        sleep=sleep,
    )

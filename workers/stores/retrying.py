"""A store whose every call is retried with backoff on ``RetryableError`` (429, 5xx, lost connections).

For one-off calls outside the copy path — planning's inventory reads, the CLI — where no fleet-wide rate budget
applies. Tasks use ``WorkerContext.call`` instead, which also takes a token from the budget for every attempt.

A server that *answered* (429, 5xx: the error has a ``status``) gets up to ``attempts`` tries; one that did not answer
at all (connection refused, DNS, timeout: ``status`` is None) gets at most ``no_answer_attempts``, so a wrong host in
a spec fails `nsmigrate plan`/`run` within a few seconds instead of after the full backoff (≈15 s with 6 attempts).
"""

from __future__ import annotations

import functools
from typing import Any

import tenacity
from tenacity import RetryCallState

from orchestrator.errors import RetryableError
from workers.retry import retrying
from workers.stores.base import VectorStore


class _NoAnswer(tenacity.stop.stop_base):
    """Stop condition: the last attempt got no HTTP answer at all (refused, unresolvable, timed out)."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        return isinstance(exc, RetryableError) and exc.status is None


_no_answer = _NoAnswer()


class RetryingStore:
    def __init__(
        self, store: VectorStore, attempts: int = 6, max_wait_s: float = 10, no_answer_attempts: int = 3
    ) -> None:
        self._store = store
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        self._no_answer_attempts = min(no_answer_attempts, attempts)
        self.name = store.name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._store, attr)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            policy = retrying(attempts=self._attempts, max_wait_s=self._max_wait_s)
            policy = policy.copy(
                stop=tenacity.stop_after_attempt(self._attempts)
                | (tenacity.stop_after_attempt(self._no_answer_attempts) & _no_answer)
            )
            return policy(value, *args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"RetryingStore({self._store!r})"

"""A store whose every call is retried with backoff on ``RetryableError`` (429, 5xx, lost connections).

For one-off calls outside the copy path — planning's inventory reads, the CLI — where no fleet-wide rate budget
applies. Tasks use ``WorkerContext.call`` instead, which also takes a token from the budget for every attempt.
"""

from __future__ import annotations

import functools
from typing import Any

from workers.retry import retrying
from workers.stores.base import VectorStore


class RetryingStore:
    def __init__(self, store: VectorStore, attempts: int = 6, max_wait_s: float = 10) -> None:
        self._store = store
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        self.name = store.name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._store, attr)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            policy = retrying(attempts=self._attempts, max_wait_s=self._max_wait_s)
            return policy(value, *args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"RetryingStore({self._store!r})"


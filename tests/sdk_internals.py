"""Test helpers that reach into the Pinecone SDK's private parts (SDK 10.2.0): tests that drive the SDK itself against
the sandbox need its own retries off and its process-global host state cleared. Product code never does this
(``tests/unit/test_no_sdk_internals.py``): its data plane is ``workers.stores.pinecone.rest``.
"""

from __future__ import annotations

from typing import Any


def set_sdk_retries(index: Any, max_retries: int = 0, backoff_factor: float = 0.01, max_wait: float = 60.0) -> None:
    """Give a ``pinecone.Index`` (REST) its own retry policy; ``max_retries=0`` turns the SDK's retries off.

    SDK 10.2.0 builds every data-plane ``Index`` with the default ``RetryConfig`` and offers no argument or
    environment variable to change it, so this replaces the config on the transport the ``Index`` owns.
    """
    from pinecone._internal.config import RetryConfig

    transport = index._http._client._transport
    transport._config = RetryConfig(max_retries=max_retries, backoff_factor=backoff_factor, max_wait=max_wait)


def reset_sdk_host_state() -> None:
    """Forget the SDK's process-global per-hostname retry budget and bulk-upsert gate (throttle holds, stalls)."""
    from pinecone._internal.bulk import get_registry
    from pinecone._internal.http_client import get_budget_registry

    get_budget_registry()._reset()
    get_registry()._reset()

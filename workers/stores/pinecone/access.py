"""Access to Pinecone shared by its data and control planes: the API key read from the variable a spec names (when
the operator allows that variable) and checked, the addresses a key may be sent to, Pinecone's answers made
nsmigrate's errors (pinecone_errors), and the SDK's response types made safe to decode from threads
(prime_sdk_decoding).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
from pinecone import (
    ApiError,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
    ResponseParsingError,
)

from nsmigrate.orchestrator.connections.keys import key_destination_refusal, key_var_refusal
from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.pinecone.rest import DataPlaneError, key_refusal

logger = logging.getLogger(__name__)


_RETRYABLE_STATUSES = frozenset({408, 429})


def _retry_after(e: ApiError) -> float | None:
    value = getattr(e, "retry_after", None)
    if value is None:
        raw = (e.headers or {}).get("retry-after") or (e.headers or {}).get("Retry-After")
        with contextlib.suppress(TypeError, ValueError):
            value = float(raw) if raw is not None else None
    return value if value is not None and value >= 0 else None


def _answered(op: str, status: int, message: str, retry_after_s: float | None, ids: dict[str, Any]) -> Exception:
    """The error of an answer other than 2xx: retryable for 408, 429 and 5xx, else a refusal."""
    if status in _RETRYABLE_STATUSES or status >= 500:
        what = "was rate limited" if status == 429 else f"failed ({status})"
        return RetryableError(f"Pinecone {op} {what}: {message}", status=status, retry_after_s=retry_after_s, **ids)
    return StoreError(f"Pinecone refused {op} ({status}): {message}", **ids)


def api_key(spec: PineconeStoreSpec, who: str, allowed_key_vars: str) -> str:
    """The key from the environment variable ``spec`` names, read when it is needed (never kept in a message), if
    the operator's ``allowed_key_vars`` (``orchestrator.connections.keys``) let a spec name that variable."""
    refusal = key_var_refusal(spec.api_key_env, allowed_key_vars)
    if refusal is not None:  # no env_var id: the variable is refused, not missing (a planner must not hand it on)
        raise StoreError(refusal, store=who)
    key = os.environ.get(spec.api_key_env, "")
    if not key.strip():
        raise StoreError(
            f"environment variable {spec.api_key_env} is not set (or empty)",
            hint=f"put the Pinecone API key in {spec.api_key_env} in the environment of nsmigrate and its workers",
            store=who,
            env_var=spec.api_key_env,
        )
    refusal = key_refusal(key)
    if refusal is not None:
        raise StoreError(
            f"environment variable {spec.api_key_env} cannot be sent as an Api-Key header: {refusal}",
            hint=f"set {spec.api_key_env} to the key exactly as Pinecone's console shows it (no newline at its end)",
            store=who,
            env_var=spec.api_key_env,
        )
    return key


def check_key_destination(url: str, who: str) -> None:
    """Refuses to send a key to ``url`` unless over TLS or to loopback (``orchestrator.connections.keys``)."""
    refusal = key_destination_refusal(url)
    if refusal is not None:
        raise StoreError(f"the index address {refusal}", store=who)


@contextlib.contextmanager
def pinecone_errors(op: str, *, store: str, **more: Any) -> Iterator[None]:
    """Turn the data plane's errors (``DataPlaneError``, httpx) and the SDK's (the control plane) into nsmigrate's:
    429 → ``RetryableError`` with ``retry_after_s``; 408, 5xx, timeouts and connection errors → ``RetryableError``;
    any other refusal, and an answer that is not JSON, → ``StoreError`` with what was answered."""
    ids: dict[str, Any] = {"store": store, "op": op, **more}
    try:
        yield
    except (RetryableError, StoreError):
        raise
    except DataPlaneError as e:
        raise _answered(op, e.status, e.message, e.retry_after_s, ids) from e
    except ApiError as e:  # the control plane, through the SDK
        raise _answered(op, e.status_code, e.message, _retry_after(e), ids) from e
    except (PineconeTimeoutError, PineconeConnectionError, httpx.TransportError) as e:
        raise RetryableError(f"Pinecone {op} did not complete: {e}", **ids) from e
    except ResponseParsingError as e:
        raise StoreError(
            f"Pinecone {op} was answered with something that is not the service's JSON ({e}), so whether it was done "
            "is unknown",
            hint="something between nsmigrate and Pinecone (a proxy, a load balancer) answered in its place: check "
            "the host and the network path to it",
            **ids,
        ) from e
    except PineconeError as e:
        raise StoreError(f"Pinecone {op} could not be made: {e}", **ids) from e


_primed_in_pid: int | None = None


def prime_sdk_decoding() -> None:
    """Build msgspec's decoding information of every ``Struct`` type the loaded SDK modules define, once per process.

    The SDK decodes each response with ``msgspec.json.decode(data, type=…)``, and msgspec builds a type's decoding
    information on its first decode. That is not safe when threads do it at once: threads making their first decode
    together crash the process (SIGSEGV in ``msgspec._core``, msgspec 0.22). A threads worker does that, and so does
    planning, which reads both stores at once. Built here, in one thread, when the first client is built (or when a
    worker starts: ``workers.fleet.tuning.preload_sdk``), the information is only ever read afterwards."""
    global _primed_in_pid
    if _primed_in_pid == os.getpid():
        return
    primed = 0
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "pinecone" or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and issubclass(value, msgspec.Struct) and value.__module__ == name:
                with contextlib.suppress(TypeError):  # request-only types msgspec cannot decode into
                    msgspec.json.Decoder(value)
                    primed += 1
    _primed_in_pid = os.getpid()
    logger.debug("primed msgspec decoding of %d Pinecone SDK types", primed)

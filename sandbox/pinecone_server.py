"""A local Pinecone data plane (plus a minimal control plane) that the real ``pinecone`` SDK talks to unmodified.

Each index is served on its own loopback port, in memory, by a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive,
daemon threads, one lock per index). The wire shapes follow the OpenAPI specs in
``tests/fixtures/reference/pinecone-api`` as the request's ``X-Pinecone-Api-Version`` asks (2026-07, what SDK 10.x
sends; an earlier version gets the earlier shapes) and what SDK 10.2.0 parses. Reads lag writes as the service's do
(``Faults.freshness_lag_s``, ``sandbox.freshness``: list, query and counts see a write :data:`VECTOR_LAG_S` after
it, :data:`DOCUMENT_LAG_S` on a document index, fetch at once; LSN headers on serverless; ``settle()`` waits it
out). A serverless index keeps Pinecone's serverless rate limits, answered with 429 + ``Retry-After``
(``Faults.service_limits``, on unless turned off). Fault injection (latency, other per-scope limits, random 429/5xx,
silent write drops, the ``/namespaces`` endpoints switched off) can be changed at runtime, in process or over HTTP,
so Celery workers and benchmarks in other processes see it.

Use it from Python::

    from nsmigrate_sandbox.pinecone_server import PineconeSandbox, IndexSpec, Faults
    sb = PineconeSandbox(indexes=[IndexSpec("seeds-pod", 3072, "cosine", kind="pod"),
                                  IndexSpec("seeds-serverless", 3072)]).start()
    from pinecone import Pinecone
    idx = Pinecone(api_key="any").Index(host=sb.host("seeds-pod"))     # always with the http:// scheme
    pc = Pinecone(api_key="any", host=sb.control_host)                  # pc.Index(name="seeds-pod") works too
    sb.set_faults("seeds-pod", Faults(latency_ms=20, write_rps_per_namespace=100))
    sb.stats("seeds-pod"); sb.reset(); sb.stop()

or as a separate process (serves until SIGTERM, prints the hosts as one JSON line)::

    python -m nsmigrate_sandbox.pinecone_server --index seeds-pod:3072:cosine:pod --index seeds-serverless:3072 \\
        --port-file F

Admin endpoints on every data-plane port (never subject to faults; they need the Api-Key only when the sandbox was
started with one, ``--api-key``):

- ``GET /_sandbox/faults`` -> the current :class:`Faults` as JSON; ``POST /_sandbox/faults`` with a JSON object
  *replaces* them (omitted keys take their defaults, unknown keys are refused with 400).
- ``GET /_sandbox/stats`` -> :meth:`PineconeSandbox.stats`; ``POST /_sandbox/stats/reset`` clears the stats (the last
  second's requests still count against the limits); ``POST /_sandbox/reset`` clears data and stats (faults stay);
  ``POST /_sandbox/settle`` lets lagging reads see every write made so far (a test's setup, instead of a sleep).

The control plane (indexes, collections, API versions, readiness, deletion protection: ``sandbox.pinecone_control``)
also answers ``GET /_sandbox/hosts`` -> ``{"control": url, "indexes": {name: url}}`` (the Api-Key likewise).

Choices where the real service is not pinned down by the spec:

- Data-plane errors use the spec's ``rpcStatus`` shape ``{"code": <gRPC int>, "message": str, "details": []}``, as the
  real grpc-gateway does (so the SDK's ``exc.error_code`` is ``None`` and ``exc.body["code"]`` is e.g. 3). Control-plane
  errors use ``{"error": {"code": "NOT_FOUND", "message": ...}, "status": 404}``.
- A request body over 2 MiB is refused with ``OVERSIZE_STATUS`` (400, gRPC code 3, "Request size ... exceeds the maximum
  supported size of 2MB"). The SDK's docs expect 413 (``PayloadTooLargeError``) for this; change the constant to 413 to
  test that path. With 3072-dim float vectors the JSON is ~60 KB per vector, so ~30 vectors fill 2 MB.
- A query whose JSON answer would exceed :data:`MAX_QUERY_RESULT_BYTES` (the docs' "Max result size 4MB") is refused
  with 400, gRPC code 3, a message saying to lower topK or leave out values or metadata (the docs give no status).
  With values, ~120 matches of 3072-dim vectors fill it, well under ``MAX_TOP_K_WITH_DATA``.
- The default namespace is stored as ``""``; ``"__default__"`` is accepted as its name everywhere and is how
  ``describe_index_stats``, ``GET /namespaces`` and the stats report it.
- A ``pod`` index refuses ``GET /vectors/list`` and every ``/namespaces`` endpoint, as real pods do (the API reference:
  "``list`` is supported only for serverless indexes"; the namespace operations are "not supported for pod-based
  indexes"): 404, gRPC code 5, with that sentence as the message (``POD_LIST_REFUSAL``, ``POD_NAMESPACES_REFUSAL``).
  The status is not pinned down by the spec; 404 is what a pod's data plane answers for a route it does not have,
  the same answer Pinecone Local gives for ``/namespaces`` (``Faults(namespaces_endpoint=False)`` switches those off
  on serverless too). On a pod, namespaces are found with ``describe_index_stats``. ``describe_index_stats`` with a
  filter is refused on serverless (as documented).
- Euclidean scores are squared distances, ascending (Pinecone's convention); cosine/dotproduct descending.

The SDK's own retries (found in ``pinecone/_internal/http_client.py``):

- ``Index`` (REST) always uses the default ``RetryConfig`` (3 retries = 4 attempts on 408/429/500/502/503/504,
  honouring ``Retry-After`` parsed as float seconds, capped at ``max_wait=60``, plus up to 50 % jitter). The
  ``retry_config`` passed to ``Pinecone(...)`` reaches only the control plane and gRPC, not data-plane REST, and
  there is no environment variable. ``tests/sdk_internals.set_sdk_retries`` swaps the config on an ``Index``'s
  transport (private attributes, for tests only); patching ``pinecone._internal.http_client._retry_sleep`` (the
  SDK's own seam) makes retries instant. nsmigrate's own data-plane client (``workers.stores.pinecone.rest``) never
  retries.
- Process-global state per *bare hostname* (``127.0.0.1``, port ignored, so every sandbox index shares it): a retry
  budget (100 tokens, -1 per retryable failure, +0.1 per success, no retries at or below 50) and an adaptive bulk gate
  (``Retry-After`` sets a hold, 429s halve concurrency, a stall detector refuses batches for 30 s). After ~50 429/5xx
  answers in one process the SDK stops retrying. ``tests/sdk_internals.reset_sdk_host_state`` clears both.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import itertools
import json
import math
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
import numpy as np
import orjson

from nsmigrate_sandbox.embedding import IntegratedEmbed, TokenWindow, search_records, upsert_records
from nsmigrate_sandbox.freshness import Freshness
from nsmigrate_sandbox.memory import keep_freed_memory, prefault_heap
from nsmigrate_sandbox.namespace_aliases import ALIAS_OPS, AliasTable
from nsmigrate_sandbox.serving import serve_in_thread, stop_serving

if TYPE_CHECKING:
    from nsmigrate_sandbox.document_schema import DocumentSchema

# --- Pinecone's limits ------------------------------------------------------------------------------------------

# The server's own declarations, not orchestrator.limits: a wrong client constant must not be shared silently with
# the stand-in for the server; the tests compare these with the reference spec.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_UPSERT_VECTORS = 1000
MAX_IDS_PER_REQUEST = 1000  # fetch and delete
MAX_ID_LENGTH = 512
MAX_METADATA_BYTES = 40960
MAX_LIST_LIMIT = 100
MAX_TOP_K = 10_000
MAX_TOP_K_WITH_DATA = 1000  # topK when includeValues or includeMetadata is set
MAX_QUERY_RESULT_BYTES = 4_000_000  # Pinecone docs, "Query limits": "Max result size 4MB" (the query's JSON answer)
MAX_FETCH_BY_METADATA_LIMIT = 10_000
MAX_SPARSE_VALUES = 2048  # indices (and values) of one SparseValues
#: A dense vector needs one value at least this large in magnitude (Vector.values): else it is "only zeros".
MIN_DENSE_MAGNITUDE = 1e-8
OVERSIZE_STATUS = 400  # see the module docstring: 400 INVALID_ARGUMENT, or 413 as the SDK's docs expect
#: What a pod index answers for the serverless-only endpoints (see the module docstring).
POD_REFUSAL_STATUS = 404
POD_LIST_REFUSAL = "The list endpoint is supported only for serverless indexes"
POD_NAMESPACES_REFUSAL = "This operation is not supported for pod-based indexes"
POD_CAPACITY_VECTORS = 1_000_000  # what indexFullness is measured against for kind="pod" (one p1.x1 pod)

DEFAULT_NAMESPACE_NAME = "__default__"
#: The environment variable of the command line's ``--freshness-lag-s`` default.
FRESHNESS_LAG_ENV = "NSMIGRATE_SANDBOX_FRESHNESS_LAG_S"
#: The bulk import operations (``sandbox.bulk_imports``).
IMPORT_OPS = frozenset({"start_import", "list_imports", "describe_import", "cancel_import"})
DATA_PLANE_OPS = frozenset(
    {
        *("upsert", "fetch", "fetch_by_metadata", "list", "query", "delete", "update", "describe_index_stats"),
        *("list_namespaces", "create_namespace", "describe_namespace", "delete_namespace"),
        *("upsert_records", "search_records"),
        *("upsert_documents", "update_documents", "delete_documents"),
        *("search_documents", "fetch_documents", "list_documents"),
        *ALIAS_OPS,
        *IMPORT_OPS,
    }
)
METRICS = ("cosine", "dotproduct", "euclidean")
LSN_MODES = frozenset({"contiguous", "skipping", "none"})  # ``Faults.lsns``
KINDS = ("pod", "serverless")

#: The type of an error's ``details`` entry that carries its ``reason`` (grpc-gateway's JSON of a google.rpc.ErrorInfo).
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
# HTTP status -> gRPC status code, for the data plane's rpcStatus error body.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 6, 413: 3, 429: 8, 500: 2, 503: 14}
# HTTP status -> the control plane's string error code.
_CONTROL_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    422: "UNPROCESSABLE_ENTITY",
}


# --- public configuration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    """One in-memory index: ``kind`` is ``"pod"`` or ``"serverless"``, ``metric`` one of cosine/dotproduct/euclidean.
    ``embed``: an integrated index (Pinecone embeds the text of its records; ``sandbox.embedding``), of the model's
    dimension and metric. ``documents``: a document index (API 2026-07, ``sandbox.documents``) of that schema, whose
    dimension and metric are its dense field's (0 and dotproduct without one)."""

    name: str
    dimension: int
    metric: str = "cosine"
    kind: str = "serverless"
    embed: IntegratedEmbed | None = None
    documents: DocumentSchema | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("IndexSpec.name must not be empty")
        if self.documents is not None:
            if (self.dimension, self.metric) != (self.documents.dimension, self.documents.metric):
                raise ValueError("a document IndexSpec has its dense field's dimension and metric")
            if self.kind != "serverless" or self.embed is not None:
                raise ValueError("a document index is serverless, without integrated embedding")
        elif not 1 <= self.dimension <= 20_000:
            raise ValueError(f"IndexSpec.dimension must be 1..20000, got {self.dimension}")
        if self.metric not in METRICS:
            raise ValueError(f"IndexSpec.metric must be one of {METRICS}, got {self.metric!r}")
        if self.kind not in KINDS:
            raise ValueError(f"IndexSpec.kind must be one of {KINDS}, got {self.kind!r}")
        if self.embed is not None and (self.embed.dimension, self.embed.metric) != (self.dimension, self.metric):
            raise ValueError("an integrated IndexSpec has its model's dimension and metric")
        if self.embed is not None and self.kind != "serverless":
            raise ValueError("only a serverless index can have integrated embedding")


#: Pinecone's serverless per-second limits (docs "Rate limits": they "apply to serverless indexes only"): upsert,
#: update and delete requests 100 and query 100 per namespace; fetch 100, list 200 and describe_index_stats 100 per
#: index; 5,000 deleted records per namespace and per index; 50 MB upserted per namespace; updates and deletes by
#: metadata 5 per namespace and 500 per index; 2,000 query read units per index.
SERVERLESS_LIMITS: Mapping[str, Any] = MappingProxyType(
    {
        "write_rps_per_namespace": 100,
        "query_rps_per_namespace": 100,
        "fetch_rps_per_index": 100,
        "list_rps_per_index": 200,
        "stats_rps_per_index": 100,
        "delete_records_per_s_per_namespace": 5_000,
        "delete_records_per_s_per_index": 5_000,
        "write_mb_per_s_per_namespace": 50,
        "by_metadata_rps_per_namespace": 5,
        "by_metadata_rps_per_index": 500,
        "query_read_units_per_s_per_index": 2_000,
    }
)

#: What a query costs (Pinecone docs, "Understanding cost"): 1 read unit per GB of the namespace it searches, at least
#: a quarter of one. The windows count quarters, so every cost is a whole number of them.
QUERY_MIN_READ_UNITS = 0.25
QUARTERS_PER_READ_UNIT = 4
#: Bytes a stored record weighs toward its namespace's size: its dense values as 32-bit floats.
BYTES_PER_VALUE = 4

#: How long the service's reads lag its writes (``sandbox.freshness``): a vector index's "slight delay" (the docs give
#: no figure; a second here), and a document index's "approximately one minute".
VECTOR_LAG_S = 1.0
DOCUMENT_LAG_S = 60.0


@dataclass(frozen=True)
class Faults:
    """What an index does wrong on purpose, and the limits it keeps. The defaults do nothing wrong and keep the
    service's limits.

    - ``service_limits``: a serverless index keeps Pinecone's serverless rate limits (:data:`SERVERLESS_LIMITS`,
      those of :meth:`pinecone_serverless_limits`) in every limit left at ``None`` below, as the service does: its
      limits "apply to serverless indexes only", so a pod index keeps none it was not given. ``False``: only the
      limits set here (a test that measures one limit alone, a bench of an unlimited server).

    - ``latency_ms``: added to every data-plane request (admin endpoints excepted); with ``latency_namespaces``, only
      to the requests of those namespaces, as served (a read through an alias is slow when the namespace it resolves
      to is): one target namespace of an index slowed while the rest answer as before.
    - ``*_rps_*``: requests admitted per sliding 1-second window for that Pinecone scope, ``None`` = the service's
      (above).
      Writes are upsert/update/delete per namespace, queries per namespace, fetch, list and stats per index (stats:
      ``describe_index_stats`` and, held to the same limit, ``describe_namespace``). A refused request gets 429 and
      ``Retry-After``.
    - ``delete_records_per_s_per_namespace`` / ``_per_index``: ids deleted per sliding 1-second window, beside the
      delete requests' own limit (a delete by filter or of everything names none); ``None`` = the service's.
    - ``write_mb_per_s_per_namespace``: megabytes (10^6 bytes) of upsert bodies (vectors, records, documents) per
      namespace per sliding 1-second window; ``None`` = the service's.
    - ``by_metadata_rps_per_namespace`` / ``_per_index``: updates by metadata, and deletes by metadata, each kind
      admitted per sliding 1-second window (a metadata filter instead of ids), beside the write limit; ``None`` =
      the service's.
    - ``query_read_units_per_s_per_index``: read units the queries of an index (vector queries, records and
      document searches) take per sliding 1-second window, beside the per-namespace query limit; each takes 1 per GB
      of the namespace it searches, at least 0.25 (:func:`query_read_units`); ``None`` = the service's.
    - ``retry_after_s``: the ``Retry-After`` value sent; ``None`` = whole seconds until the window frees a slot
      (at least 1, as HTTP wants). The SDK parses it as a float, so fractions work and keep tests fast.
    - ``error_rate_429`` / ``error_rate_5xx``: fraction of data-plane requests answered 429 / ``status_5xx`` at random
      (seeded by ``seed``; deterministic for a sequential client). ``error_ops`` limits them to some operations
      (e.g. ``("upsert",)``; names as in the stats' ``requests``); ``None`` = every data-plane operation.
    - ``refuse_ids``: an upsert holding any of these ids is answered ``status_5xx`` (a record the server cannot take,
      whatever the rate: one batch fails and its neighbours go through).
    - ``drop_fraction``: upserts answer the full ``upsertedCount`` but silently do not store this fraction of the
      vectors (chosen with a seeded RNG; exact when ``n * drop_fraction`` is a whole number).
    - ``query_miss_fraction``: each vector query (``POST /query``) searches without this fraction of the ``n``
      records it would otherwise search (those its filter admits; chosen anew for each query with an RNG seeded by
      ``seed``, deterministic for a sequential client; exact when ``n * query_miss_fraction`` is a whole number), as
      Pinecone's approximate search may miss records: a query whose ``topK`` covers them all answers that many fewer
      matches, one with a smaller ``topK`` lower-ranked records in the missed ones' places. ``0.0`` (the default): an
      exact search.
    - ``namespaces_endpoint``: when ``False`` the ``/namespaces`` endpoints answer 404, as Pinecone Local does.
    - ``embed_tokens_per_min``: embedding tokens an integrated index's model takes per 60 s (records upsert and text
      search); ``None`` = unlimited. Over it: 429 with ``Retry-After`` (``sandbox.embedding``).
    - ``stats_offset`` / ``stats_flicker``: the counts the index reports (``describe_index_stats``, ``GET
      /namespaces`` and ``/namespaces/{ns}``) are off by ``stats_offset`` (a view that settled on a wrong number),
      or, reading after reading, alternately one more than the namespace holds and its count (a count that never
      settles). Pinecone's counts are eventually consistent; the sandbox's are exact unless told otherwise.
    - ``stats_new_namespace_lag_s``: a namespace the other lagging reads show appears in those counts only this many
      seconds later (2026-07's ``NamespaceSummary.vectorCount``: "updates to this field may lag behind updates to the
      underlying index and corresponding query results").
    - ``freshness_lag_s``: each write becomes visible to ``list``, ``query``, records search and the counts this many
      seconds after it was answered (a vector ``fetch`` sees it at once, a document fetch lags), as Pinecone's reads
      lag its writes (``sandbox.freshness``). Not a fault: the real service's behaviour. ``None`` = the sandbox's lag
      (``PineconeSandbox(freshness_lag_s=…)``), by default the service's: :data:`VECTOR_LAG_S` on a vector index,
      :data:`DOCUMENT_LAG_S` on a document index.
    - ``lsns``: the LSN headers a serverless index answers (``sandbox.freshness``): ``"contiguous"`` (each write to a
      namespace takes its next number), ``"skipping"`` (each takes the one after next: LSNs that order writes but do
      not count them, which the reference leaves open) or ``"none"`` (no LSN headers, as a server that sends none).
    """

    service_limits: bool = True
    latency_ms: float = 0.0
    latency_namespaces: tuple[str, ...] | None = None
    write_rps_per_namespace: int | None = None
    query_rps_per_namespace: int | None = None
    fetch_rps_per_index: int | None = None
    list_rps_per_index: int | None = None
    stats_rps_per_index: int | None = None
    delete_records_per_s_per_namespace: int | None = None
    delete_records_per_s_per_index: int | None = None
    write_mb_per_s_per_namespace: int | None = None
    by_metadata_rps_per_namespace: int | None = None
    by_metadata_rps_per_index: int | None = None
    query_read_units_per_s_per_index: int | None = None
    retry_after_s: float | None = None
    error_rate_429: float = 0.0
    error_rate_5xx: float = 0.0
    status_5xx: int = 503
    error_ops: tuple[str, ...] | None = None
    refuse_ids: tuple[str, ...] = ()
    drop_fraction: float = 0.0
    query_miss_fraction: float = 0.0
    namespaces_endpoint: bool = True
    embed_tokens_per_min: int | None = None
    stats_offset: int = 0
    stats_flicker: bool = False
    stats_new_namespace_lag_s: float = 0.0
    freshness_lag_s: float | None = None
    lsns: str = "contiguous"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.freshness_lag_s is not None and not _is_lag(self.freshness_lag_s):
            raise ValueError(f"freshness_lag_s must be within 0..3600 seconds, got {self.freshness_lag_s!r}")
        if self.lsns not in LSN_MODES:
            raise ValueError(f"lsns must be one of {sorted(LSN_MODES)}, got {self.lsns!r}")
        if not isinstance(self.service_limits, bool):
            raise ValueError(f"service_limits must be true or false, got {self.service_limits!r}")
        for name in (*SERVERLESS_LIMITS, "embed_tokens_per_min"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
        if isinstance(self.stats_offset, bool) or not isinstance(self.stats_offset, int):
            raise ValueError(f"stats_offset must be an integer, got {self.stats_offset!r}")
        if not self.stats_new_namespace_lag_s >= 0:
            raise ValueError("stats_new_namespace_lag_s must be >= 0")
        for name in ("error_rate_429", "error_rate_5xx", "drop_fraction", "query_miss_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if self.error_rate_429 + self.error_rate_5xx > 1.0:
            raise ValueError("error_rate_429 + error_rate_5xx must not exceed 1")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        if not 500 <= self.status_5xx <= 599:
            raise ValueError("status_5xx must be a 5xx status")
        object.__setattr__(self, "refuse_ids", tuple(self.refuse_ids))  # a tuple however it was given, as below
        if self.latency_namespaces is not None:
            object.__setattr__(self, "latency_namespaces", tuple(self.latency_namespaces))
        if self.error_ops is not None:
            # JSON gives a list; keep a tuple so Faults stays hashable and compares equal however it was built.
            object.__setattr__(self, "error_ops", tuple(self.error_ops))
            unknown = sorted(set(self.error_ops) - DATA_PLANE_OPS)
            if unknown:
                raise ValueError(f"error_ops has unknown operations {unknown}; known: {sorted(DATA_PLANE_OPS)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from JSON; unknown keys raise ``ValueError`` so a typo is not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["refuse_ids"] = list(self.refuse_ids)
        if self.latency_namespaces is not None:
            data["latency_namespaces"] = list(self.latency_namespaces)
        if self.error_ops is not None:
            data["error_ops"] = list(self.error_ops)
        return data

    @classmethod
    def pinecone_serverless_limits(cls, **overrides: Any) -> Faults:
        """The documented serverless per-second limits (:data:`SERVERLESS_LIMITS`) set on any index, a pod too."""
        return replace(cls(**SERVERLESS_LIMITS), **overrides)

    def for_index(self, spec: IndexSpec, default_lag_s: float | None = None) -> Faults:
        """These faults as index ``spec`` keeps them: its lag (this one, else ``default_lag_s``, else the service's
        for its kind), and on a serverless index the service's limit in each limit left at ``None``
        (``service_limits``)."""
        lag_s = self.freshness_lag_s
        if lag_s is None:
            lag_s = default_lag_s if default_lag_s is not None else service_lag_s(spec)
        limits: dict[str, Any] = {}
        if self.service_limits and spec.kind == "serverless":
            limits = {name: value for name, value in SERVERLESS_LIMITS.items() if getattr(self, name) is None}
        return replace(self, freshness_lag_s=lag_s, **limits)


def service_lag_s(spec: IndexSpec) -> float:
    """How long Pinecone's reads of an index like ``spec`` lag its writes (:data:`VECTOR_LAG_S`,
    :data:`DOCUMENT_LAG_S`)."""
    return DOCUMENT_LAG_S if spec.documents is not None else VECTOR_LAG_S


def _is_lag(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 3600


# --- errors ------------------------------------------------------------------------------------------------------


class _Refusal(Exception):
    """A request refused with an HTTP status; turned into the plane's error body at the edge. ``reason`` (and its
    ``metadata``): the machine-readable cause, sent as ``details[0]``; ``records_shape``: answered in the records and
    documents operations' ``ErrorResponse`` shape instead of ``rpcStatus``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        records_shape: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.records_shape = records_shape


def _bad(message: str) -> _Refusal:
    return _Refusal(400, message)


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _data_error(refusal: _Refusal) -> _Reply:
    if refusal.records_shape:
        return _control_error(refusal)  # the same {"error": {"code", "message"}, "status"} shape
    details: list[dict[str, Any]] = []
    if refusal.reason is not None:
        details.append({"@type": ERROR_INFO_TYPE, "reason": refusal.reason, "domain": "pinecone.io"})
        if refusal.metadata:
            details[0]["metadata"] = refusal.metadata
    body = {"code": _GRPC_CODES.get(refusal.status, 2), "message": refusal.message, "details": details}
    return _Reply(refusal.status, body, refusal.headers)


def _control_error(refusal: _Refusal) -> _Reply:
    code = _CONTROL_CODES.get(refusal.status, "UNKNOWN")
    return _Reply(refusal.status, {"error": {"code": code, "message": refusal.message}, "status": refusal.status})


# --- metadata and filters (pure) ---------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metadata_value(key: str, value: Any) -> None:
    """A 400 refusal unless *value* is a string, finite number, boolean or list of strings."""
    ok = (
        isinstance(value, (str, bool))
        or (_is_number(value) and math.isfinite(value))
        or (isinstance(value, list) and all(isinstance(item, str) for item in value))
    )
    if not ok:
        # Worded like the service (the SDK's client-side check copies it): the value as JSON, then the field.
        shown = orjson.dumps(value).decode()[:64]
        raise _bad(
            f"Metadata value must be a string, number, boolean or list of strings, got '{shown}' for field '{key}'"
        )


def validate_metadata(metadata: Any) -> dict[str, Any] | None:
    """Return *metadata* as Pinecone keeps it if it would accept it, else raise a 400 refusal saying which field is
    wrong. Pinecone keeps every number as a 64-bit float: an integer comes back as a float (``1`` as ``1.0``), and one
    beyond 2**53 as another number, so it does here too."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _bad(f"Metadata must be a JSON object, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if key.startswith("$"):
            raise _bad(f"Metadata field name '{key}' may not begin with '$', which is reserved for filter operators")
        check_metadata_value(key, value)
    size = len(orjson.dumps(metadata))
    if size > MAX_METADATA_BYTES:
        raise _bad(f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector")
    return {key: float(value) if _is_number(value) else value for key, value in metadata.items()}


Predicate = Callable[[Mapping[str, Any]], bool]
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _scalar_matches(value: Any, operand: Any) -> bool:
    """Equality as Pinecone filters see it: a list of strings matches if it contains the operand; bool != 1."""
    if isinstance(value, list):
        return isinstance(operand, str) and operand in value
    if isinstance(value, bool) or isinstance(operand, bool):
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    if _is_number(value) and _is_number(operand):
        return value == operand
    return isinstance(value, str) and isinstance(operand, str) and value == operand


def _require_scalar(op: str, operand: Any) -> None:
    if not (isinstance(operand, (str, bool)) or _is_number(operand)):
        raise _bad(f"Filter operator {op} needs a string, number or boolean, got {type(operand).__name__}")


def _operator(field_name: str, op: str, operand: Any) -> Predicate:
    if op in ("$eq", "$ne", "$in", "$nin"):
        operands = operand if op in ("$in", "$nin") else [operand]
        if not isinstance(operands, list):
            raise _bad(f"Filter operator {op} needs an array, got {type(operand).__name__}")
        for item in operands:
            _require_scalar(op, item)
        negate = op in ("$ne", "$nin")

        def matches(md: Mapping[str, Any]) -> bool:
            found = field_name in md and any(_scalar_matches(md[field_name], item) for item in operands)
            # A record without the field matches $ne and $nin, as in MongoDB-style filters.
            return found != negate

        return matches
    if op in _COMPARISONS:
        if not _is_number(operand):
            raise _bad(f"Filter operator {op} needs a number, got {type(operand).__name__}")
        compare = _COMPARISONS[op]
        return lambda md: _is_number(md.get(field_name)) and compare(md[field_name], operand)
    if op == "$exists":
        if not isinstance(operand, bool):
            raise _bad(f"Filter operator $exists needs a boolean, got {type(operand).__name__}")
        return lambda md: (field_name in md) == operand
    raise _bad(f"Unsupported filter operator {op!r} on field '{field_name}'")


def _combine(op: str, subs: list[Predicate]) -> Predicate:
    if op == "$and":
        return lambda md: all(p(md) for p in subs)
    return lambda md: any(p(md) for p in subs)


def compile_filter(expression: Any) -> Predicate:
    """Turn a Pinecone metadata filter into a predicate over a metadata dict (validating it on the way).

    Supports ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or`` and the implicit ``{"field": value}`` equality.
    """
    if not isinstance(expression, dict):
        raise _bad(f"Filter must be a JSON object, got {type(expression).__name__}")
    parts: list[Predicate] = []
    for key, condition in expression.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise _bad(f"Filter operator {key} needs a non-empty array of filters")
            parts.append(_combine(key, [compile_filter(sub) for sub in condition]))
        elif key.startswith("$"):
            raise _bad(f"Unsupported top-level filter operator {key!r}")
        elif isinstance(condition, dict):
            if not condition:
                raise _bad(f"Filter for field '{key}' must not be empty")
            parts.extend(_operator(key, op, operand) for op, operand in condition.items())
        else:
            parts.append(_operator(key, "$eq", condition))
    return lambda md: all(p(md) for p in parts)


# --- storage -----------------------------------------------------------------------------------------------------


class _Record:
    """One stored vector. Values upserted over HTTP stay the JSON text they arrived as (checked, not decoded) until
    something needs them as numbers: a query, an update, a snapshot or the first fetch. The float32 array and its
    JSON (what Pinecone returns: the float32 values) are then made once and kept. On one machine the sandbox's CPU
    competes with the clients it serves; checking the text costs ~40 µs per 1536-dim vector, decoding it ~120."""

    __slots__ = ("_json", "_text", "_values", "metadata", "sparse")

    def __init__(
        self, values: np.ndarray | bytes, metadata: dict[str, Any] | None = None, sparse: dict[str, Any] | None = None
    ) -> None:
        #: float32, shape (dimension,); and the values as upserted (a checked JSON array of numbers)
        self._values: np.ndarray | None = None if isinstance(values, bytes) else values
        self._text: bytes | None = values if isinstance(values, bytes) else None
        self._json: bytes | None = None  # the float32 values as JSON
        self.metadata = metadata
        self.sparse = sparse

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            assert self._text is not None
            self._values = np.array(orjson.loads(self._text), dtype=np.float32)
            self._text = None
        return self._values

    def values_json(self) -> orjson.Fragment:
        if self._json is None:
            self._json = orjson.dumps(self.values, option=orjson.OPT_SERIALIZE_NUMPY)
        return orjson.Fragment(self._json)


def _copy(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if metadata is None else {k: list(v) if isinstance(v, list) else v for k, v in metadata.items()}


class _Namespace:
    """The records of one namespace, with the sorted-id list and the value matrix cached until the next write."""

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self._sorted: list[str] | None = None
        self._matrix: tuple[list[str], np.ndarray] | None = None

    def touched(self) -> None:
        self._sorted = None
        self._matrix = None

    def sorted_ids(self) -> list[str]:
        if self._sorted is None:
            # Pinecone lists in bitwise "C" collation, i.e. by UTF-8 bytes.
            self._sorted = sorted(self.records, key=lambda i: i.encode())
        return self._sorted

    def matrix(self, dimension: int) -> tuple[list[str], np.ndarray]:
        if self._matrix is None:
            ids = list(self.records)
            mat = np.stack([self.records[i].values for i in ids]) if ids else np.empty((0, dimension), np.float32)
            self._matrix = (ids, mat)
        return self._matrix


def _namespace_name(value: Any) -> str:
    """The stored name of a namespace as given in a request; ``__default__`` and absent both mean ``""``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"namespace must be a string, got {type(value).__name__}")
    return "" if value == DEFAULT_NAMESPACE_NAME else value


def _display_name(namespace: str) -> str:
    return namespace or DEFAULT_NAMESPACE_NAME


def _encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"Invalid pagination token {token!r}") from exc


def _page(names: list[str], prefix: str, token: str | None, limit: int) -> tuple[list[str], str | None]:
    """One page of *names* (sorted by their UTF-8 bytes) that start with *prefix*, after the token's position; the
    next token, or None when nothing is left. Names with one prefix are one run of that order: found by bisection,
    so a page costs the same at the start of a large namespace as at its end."""
    start = bisect.bisect_left(names, prefix.encode(), key=str.encode)
    if token:
        start = max(start, bisect.bisect_right(names, _decode_token(token).encode(), key=str.encode))
    page: list[str] = []
    for name in itertools.islice(names, start, None):
        if not name.startswith(prefix):
            break
        if len(page) == limit:  # one more matches: there is a next page
            return page, _encode_token(page[-1])
        page.append(name)
    return page, None


def _as_vector(values: Any, dimension: int, what: str) -> np.ndarray:
    if not isinstance(values, list):
        raise _bad(f"{what} values must be an array of numbers")
    if len(values) != dimension:
        raise _bad(f"{what} dimension {len(values)} does not match the dimension of the index {dimension}")
    # One numpy conversion: numbers come out as kind "i"/"f"; a string, null or nested list anywhere makes the whole
    # array "U" or "O" (or fails). Booleans mixed with numbers would be coerced to floats, so they are looked for
    # (upserts rarely get here: their values are checked as text, see ``_checked_vector_text``).
    try:
        raw = np.asarray(values)
    except (ValueError, TypeError):
        raise _bad(f"{what} values must all be numbers") from None
    if raw.ndim != 1 or raw.dtype.kind not in "iuf" or any(v is True or v is False for v in values):
        raise _bad(f"{what} values must all be numbers")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
        array = raw.astype(np.float32)
    if not np.isfinite(array).all():
        raise _bad(f"{what} values must be finite")
    return array


#: The first bytes of every JSON value that is not a number: a string, an object, an array, true, false, null.
_NOT_A_NUMBER = (b'"', b"{", b"[", b"t", b"f", b"n")
#: A number beyond float32's range (3.4e38) has an exponent that is not negative ("1e39", but also
#: "1000000000000000000000000000000e10"), or 39 digits before its point (nothing smaller can reach it).
_DIGITS_AS_9 = bytes.maketrans(b"0123456789", b"9" * 10)
_TOO_MANY_DIGITS = b"9" * 39


def _dense_values(values: np.ndarray, what: str) -> np.ndarray:
    """*values* unless Pinecone refuses them as only zeros (upsert and update; a query vector may be all zeros)."""
    if not values.size or float(np.abs(values).max()) < np.float32(MIN_DENSE_MAGNITUDE):
        raise _bad(
            f"{what} values must contain at least one value with a magnitude of {MIN_DENSE_MAGNITUDE:g} or greater: "
            "a vector of only zeros is not accepted"
        )
    return values


#: Number tokens of an upsert's text read to find a value that is not zero, before it is decoded whole.
_LEADING_TOKENS = 4


def _leads_with_a_value(text: bytes) -> bool:
    """Whether one of the first few numbers of a JSON array of numbers (checked: nothing else is in it) is at least
    ``MIN_DENSE_MAGNITUDE`` in magnitude. Embeddings almost always show one at once, so the whole text is decoded
    (``_dense_values``) only for the rare vector whose first values are all (near) zero."""
    start = 1
    for _ in range(_LEADING_TOKENS):
        end = text.find(b",", start)
        token = text[start:end] if end >= 0 else text[start : text.rfind(b"]")]
        try:
            if abs(float(token)) >= MIN_DENSE_MAGNITUDE:
                return True
        except ValueError:  # not a plain number after all: decoded whole
            return False
        if end < 0:
            return False
        start = end + 1
    return False


def _checked_vector_text(text: bytes, dimension: int, what: str) -> bytes | np.ndarray:
    """Values given as JSON text (the upsert fast path): the same checks as ``_as_vector`` and ``_dense_values``
    without decoding them, when the text is plainly an array of ordinary numbers, one of the first few not zero.
    Anything else goes through ``_as_vector`` and ``_dense_values``, with their messages.

    The JSON parser already vouched for the syntax, so an array in which no other kind of value starts holds only
    numbers. Every check is a byte search or a translate (never a regex over the whole text, nor numpy, which costs
    more per call than it saves at this size): this runs for every vector of every upsert.
    """
    body = text[1:]
    if text[:1] != b"[" or any(marker in body for marker in _NOT_A_NUMBER):
        return _dense_values(_as_vector(_parse_json(text), dimension, what), what)
    count = text.count(b",") + 1 if text.strip(b"[] \t\r\n") else 0
    if count != dimension:
        raise _bad(f"{what} dimension {count} does not match the dimension of the index {dimension}")
    overflows = _has_exponent_not_negative(text) or _TOO_MANY_DIGITS in text.translate(_DIGITS_AS_9)
    if overflows or not _leads_with_a_value(text):  # may overflow float32, or be only zeros: decode and see
        return _dense_values(_as_vector(_parse_json(text), dimension, what), what)
    return text


def _has_exponent_not_negative(text: bytes) -> bool:
    """Whether a number has an exponent of 0 or more: small values are written with a negative one ("1.5e-07"), which
    only makes a number smaller, so they keep the fast path."""
    for marker in (b"e", b"E"):
        at = text.find(marker)
        while at >= 0:
            if text[at + 1 : at + 2] != b"-":
                return True
            at = text.find(marker, at + 1)
    return False


def is_ascii_name(value: str) -> bool:
    """Whether *value* holds only what an id or a namespace name may (``^[\\x01-\\x7F]*$``): ASCII, no NUL."""
    return value.isascii() and "\x00" not in value


def _valid_id(value: Any, what: str = "Vector id") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise _bad(f"{what} length {len(value)} exceeds the maximum length of {MAX_ID_LENGTH} characters")
    if not is_ascii_name(value):
        raise _bad(f"{what} {value[:80]!r} must be 1-{MAX_ID_LENGTH} ASCII characters, without NUL")
    return value


def _scores(metric: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Each row's score against ``query``, in float32; a row whose score overflows there (values near float32's
    ±3.4e38, which Pinecone stores and scores) is scored again in float64, only the rows that need it."""
    with np.errstate(over="ignore", invalid="ignore"):
        scores, exact = _scores_as(metric, matrix, query)
    if not exact.all():
        scores = scores.astype(np.float64)
        scores[~exact], _ = _scores_as(metric, matrix[~exact].astype(np.float64), query.astype(np.float64))
    return scores


def _scores_as(metric: str, matrix: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scores in the arrays' own precision, and which rows were computed without overflow."""
    if metric == "euclidean":
        diff = matrix - query
        scores = np.einsum("ij,ij->i", diff, diff)
        return scores, np.isfinite(scores)
    dots = matrix @ query
    if metric == "dotproduct":
        return dots, np.isfinite(dots)
    query_norm = float(np.linalg.norm(query))
    norms = np.linalg.norm(matrix, axis=1) * query_norm
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return scores, np.isfinite(dots) & np.isfinite(norms)


class IndexStore:
    """The data of one index and the operations the endpoints need. Every method takes the index lock.

    Writes are applied at once; ``list_ids``, ``query`` and ``counts`` read what ``freshness`` lets them see
    (``sandbox.freshness``: reads that lag writes, and the LSNs), ``fetch`` and ``matching`` the latest state."""

    def __init__(self, spec: IndexSpec, *, replica: bool = False) -> None:
        self.spec = spec
        self.lock = threading.RLock()
        self.namespaces: dict[str, _Namespace] = {}
        #: Whether a namespace stays one when emptied (an alias targets it: ``sandbox.namespace_aliases``).
        self.kept: Callable[[str], bool] = lambda _namespace: False
        self.freshness = None if replica else Freshness(self._replica)

    def clear(self) -> None:
        with self.lock:
            self.namespaces.clear()
            if self.freshness is not None:
                self.freshness.clear()

    def _replica(self) -> IndexStore:
        """The store lagging reads see (``freshness``): it keeps the namespaces this one keeps."""
        replica = IndexStore(self.spec, replica=True)
        replica.kept = lambda namespace: self.kept(namespace)
        return replica

    def _wrote(self, namespace: str, apply: Callable[[IndexStore], Any], at_once: bool = False) -> None:
        if self.freshness is not None:
            self.freshness.wrote(namespace, apply, at_once=at_once)

    def _before_write(self) -> None:
        if self.freshness is not None:
            self.freshness.before_write(self)

    def settle(self) -> None:
        """Let every lagging read see every write made so far (``Freshness.settle``)."""
        with self.lock:
            if self.freshness is not None:
                self.freshness.settle()

    def lagging(self, namespace: str) -> IndexStore:
        """The state a lagging read of ``namespace`` sees now, for a read made of other reads (a search by text)."""
        with self.lock:
            return self._view(namespace)

    def _view(self, namespace: str | None, latest: bool = False) -> IndexStore:
        """The state a lagging read of ``namespace`` (None: the whole index) sees."""
        if self.freshness is None or latest:
            return self
        view: IndexStore = self.freshness.view(self, namespace)
        return view

    def _ns(self, namespace: str, create: bool = False) -> _Namespace | None:
        ns = self.namespaces.get(namespace)
        if ns is None and create:
            ns = self.namespaces[namespace] = _Namespace()
        return ns

    def _drop_if_empty(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is not None and not ns.records and not self.kept(namespace):
            del self.namespaces[namespace]

    def put(self, namespace: str, records: Iterable[tuple[str, _Record]], *, at_once: bool = False) -> int:
        """Store ``records``; ``at_once``: visible to lagging reads at once (the sandbox's own loading)."""
        records = list(records)
        with self.lock:
            self._before_write()
            ns = self._ns(namespace, create=True)
            assert ns is not None
            for vector_id, record in records:
                ns.records[vector_id] = record
            ns.touched()
            self._wrote(namespace, lambda store: store.put(namespace, records), at_once)
            return len(records)

    def fetch(self, namespace: str, ids: list[str]) -> dict[str, _Record]:
        with self.lock:
            ns = self._ns(namespace)
            if ns is None:
                return {}
            return {i: ns.records[i] for i in ids if i in ns.records}

    def list_ids(self, namespace: str, prefix: str, token: str | None, limit: int) -> tuple[list[str], str | None]:
        with self.lock:
            ns = self._view(namespace)._ns(namespace)
            names = ns.sorted_ids() if ns is not None else []
            return _page(names, prefix, token, limit)

    def matching(self, namespace: str, predicate: Predicate | None) -> list[str]:
        with self.lock:
            ns = self._ns(namespace)
            if ns is None:
                return []
            if predicate is None:
                return list(ns.records)
            return [i for i, r in ns.records.items() if predicate(r.metadata or {})]

    def query(
        self,
        namespace: str,
        vector: np.ndarray,
        top_k: int,
        predicate: Predicate | None,
        misses: Callable[[int], list[int]] | None = None,
    ) -> list[tuple[str, float, _Record]]:
        """The ``top_k`` records nearest ``vector`` among those ``predicate`` admits, ranked; ``misses``: given how
        many records the query searches, the positions of those it leaves out (``FaultState.query_misses``)."""
        with self.lock:
            ns = self._view(namespace)._ns(namespace)
            if ns is None or not ns.records:
                return []
            ids, matrix = ns.matrix(self.spec.dimension)
            if predicate is not None:
                keep = np.fromiter((predicate(ns.records[i].metadata or {}) for i in ids), bool, len(ids))
                ids = [i for i, k in zip(ids, keep, strict=True) if k]
                matrix = matrix[keep]
            if misses is not None and ids:
                keep = np.ones(len(ids), bool)
                keep[misses(len(ids))] = False
                ids = [i for i, k in zip(ids, keep, strict=True) if k]
                matrix = matrix[keep]
            if not ids:
                return []
            scores = _scores(self.spec.metric, matrix, vector)
            order = scores if self.spec.metric == "euclidean" else -scores
            k = min(top_k, len(ids))
            top = np.argpartition(order, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
            ranked = sorted(top, key=lambda j: (order[j], ids[j]))
            return [(ids[j], float(scores[j]), ns.records[ids[j]]) for j in ranked]

    def delete(self, namespace: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self.lock:
            self._before_write()
            self._wrote(namespace, lambda store: store.delete(namespace, ids))
            ns = self._ns(namespace)
            if ns is None:
                return 0
            removed = sum(1 for i in ids if ns.records.pop(i, None) is not None)
            ns.touched()
            self._drop_if_empty(namespace)
            return removed

    def delete_namespace(self, namespace: str) -> bool:
        with self.lock:
            self._before_write()
            self._wrote(namespace, lambda store: store.delete_namespace(namespace))
            if namespace in self.namespaces and self.kept(namespace):
                self.namespaces[namespace] = _Namespace()  # emptied, still a namespace
                return True
            return self.namespaces.pop(namespace, None) is not None

    def create_namespace(self, namespace: str) -> bool:
        with self.lock:
            if namespace in self.namespaces:
                return False
            self._before_write()
            self.namespaces[namespace] = _Namespace()
            self._wrote(namespace, lambda store: store.create_namespace(namespace))
            return True

    def update(
        self,
        namespace: str,
        ids: list[str],
        values: np.ndarray | None,
        set_metadata: dict[str, Any] | None,
        sparse: dict[str, Any] | None,
    ) -> int:
        """Apply values/metadata/sparse changes to existing *ids* (all checked first, so nothing half-applies)."""
        with self.lock:
            self._before_write()
            ns = self._ns(namespace)
            if ns is None:
                self._wrote(namespace, lambda store: None)
                return 0
            present = [i for i in ids if i in ns.records]
            merged = {}
            for i in present:
                old = ns.records[i].metadata
                merged[i] = validate_metadata({**(old or {}), **set_metadata}) if set_metadata else old
            for i in present:
                record = ns.records[i]
                ns.records[i] = _Record(
                    values if values is not None else record.values,
                    merged[i],
                    sparse if sparse is not None else record.sparse,
                )
            ns.touched()
            # The replica holds the same records at this point of the log: it takes the updated ones as they are.
            changed = [(i, ns.records[i]) for i in present]
            self._wrote(namespace, lambda store: store.put(namespace, changed) if changed else None)
            return len(present)

    def counts(self, predicate: Predicate | None = None, *, latest: bool = False) -> dict[str, int]:
        """Records per namespace as a lagging read sees them (``latest``: as stored)."""
        with self.lock:
            namespaces = self._view(None, latest).namespaces
            if predicate is None:
                return {name: len(ns.records) for name, ns in namespaces.items()}
            return {
                name: sum(1 for r in ns.records.values() if predicate(r.metadata or {}))
                for name, ns in namespaces.items()
            }

    def snapshot(self) -> dict[str, dict[str, tuple[np.ndarray, dict[str, Any] | None]]]:
        with self.lock:
            return {
                name: {i: (r.values.copy(), _copy(r.metadata)) for i, r in ns.records.items()}
                for name, ns in self.namespaces.items()
            }


# --- faults ------------------------------------------------------------------------------------------------------

#: The Documents API (``sandbox.documents``): operation → (path action, rate scope).
_DOCUMENT_OPS = {
    "upsert_documents": ("upsert", "write"),
    "update_documents": ("update", "write"),
    "delete_documents": ("delete", "write"),
    "search_documents": ("search", "query"),
    "fetch_documents": ("fetch", "fetch"),
    "list_documents": ("list", "list"),
}

# Which Pinecone rate scope each data-plane operation falls under, and whether it is per namespace.
_SCOPES: dict[str, tuple[str, bool]] = {
    "upsert": ("write", True),
    "upsert_records": ("write", True),
    "update": ("write", True),
    "delete": ("write", True),
    "query": ("query", True),
    "search_records": ("query", True),
    "fetch": ("fetch", False),
    # A fetch too: Pinecone's limits name no other scope for it, and the sandbox is never kinder than the service.
    "fetch_by_metadata": ("fetch", False),
    "list": ("list", False),
    "describe_index_stats": ("stats", False),
    "describe_namespace": ("stats", False),
    **{op: (scope, scope in ("write", "query")) for op, (_, scope) in _DOCUMENT_OPS.items()},
}
_SCOPE_LIMIT = {
    "write": "write_rps_per_namespace",
    "query": "query_rps_per_namespace",
    "fetch": "fetch_rps_per_index",
    "list": "list_rps_per_index",
    "stats": "stats_rps_per_index",
}
_SCOPE_STAT = {
    "write": "write_per_namespace",
    "query": "query_per_namespace",
    "fetch": "fetch_per_index",
    "list": "list_per_index",
    "stats": "stats_per_index",
}
#: The scope of the records deletes name (Pinecone limits them per namespace and per index, beside the requests).
_DELETE_RECORDS = "delete_records"
_DELETE_OPS = frozenset({"delete", "delete_documents"})
#: The scope of the bytes upserts send (Pinecone: upsert size per second per namespace).
_WRITE_BYTES = "write_bytes"
_UPSERT_OPS = frozenset({"upsert", "upsert_records", "upsert_documents"})
#: The scope of the read units queries take (Pinecone: per index, beside the query requests per namespace).
_QUERY_READ_UNITS = "query_read_units"
#: Updates and deletes by metadata (a filter instead of ids): Pinecone limits each kind per namespace and per index.
_BY_METADATA = {
    "update": "update_by_metadata",
    "update_documents": "update_by_metadata",
    "delete": "delete_by_metadata",
    "delete_documents": "delete_by_metadata",
}


def _by_metadata_scope(op: str, payload: Any) -> str | None:
    """The by-metadata scope of an update or delete that names a filter, None for any other request."""
    scope = _BY_METADATA.get(op)
    return scope if scope is not None and isinstance(payload, dict) and payload.get("filter") is not None else None


class _Check(NamedTuple):
    """One window a request must fit: its scope, its namespace (None: the index's), the limit and what it takes."""

    scope: str
    namespace: str | None
    limit: int | None
    amount: int

    def refusal(self) -> str:
        where = "index" if self.namespace is None else f"namespace '{_display_name(self.namespace)}'"
        if self.scope == _WRITE_BYTES:
            what, limit = "upsert size", f"{(self.limit or 0) // 1_000_000} MB"
        elif self.scope == _QUERY_READ_UNITS:
            what, limit = "query read units", str((self.limit or 0) // QUARTERS_PER_READ_UNIT)
        else:
            what = "delete records" if self.scope == _DELETE_RECORDS else f"{self.scope.replace('_', ' ')} requests"
            limit = str(self.limit)
        return (
            f"Request failed. You've reached the max {what} per second ({limit}) for this {where}. "
            "Retry after the Retry-After interval."
        )


def query_read_units(records: int, dimension: int) -> float:
    """Read units of one query of a namespace of ``records`` records of ``dimension`` values."""
    return max(QUERY_MIN_READ_UNITS, records * max(dimension, 1) * BYTES_PER_VALUE / 1e9)


def _quarters(read_units: float) -> int:
    return math.ceil(read_units * QUARTERS_PER_READ_UNIT)


def _deleted_records(op: str, payload: Any) -> int:
    """Ids a delete request names; a delete by filter or of everything names none (its requests are limited)."""
    ids = payload.get("ids") if op in _DELETE_OPS and isinstance(payload, dict) else None
    return len(ids) if isinstance(ids, list) else 0


class _Window:
    """What was admitted in the last second for one scope key (requests, the records deletes name or the bytes
    upserts send), and the most ever admitted within one second."""

    __slots__ = ("entries", "peak", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()  # (arrival, amount)
        self.total = 0
        self.peak = 0

    def wait(self, now: float, limit: int | None, amount: int = 1) -> float | None:
        """None when ``amount`` more fits under ``limit`` now, else the seconds until it does (1 s if it never
        does: more than the limit at once, or a limit of 0)."""
        while self.entries and self.entries[0][0] <= now - 1.0:
            self.total -= self.entries.popleft()[1]
        if limit is None or self.total + amount <= limit:
            return None
        over = self.total + amount - limit
        for arrival, admitted in self.entries:
            over -= admitted
            if over <= 0:
                return arrival + 1.0 - now
        return 1.0

    def admit(self, now: float, limit: int | None, amount: int = 1) -> float | None:
        """Admit ``amount`` and return None, or admit nothing and return the seconds until it fits."""
        wait = self.wait(now, limit, amount)
        if wait is None:
            self.add(now, amount)
        return wait

    def add(self, now: float, amount: int = 1) -> None:
        self.entries.append((now, amount))
        self.total += amount
        # The busiest 1-second window always ends at an admission, so checking here finds the true maximum.
        self.peak = max(self.peak, self.total)


#: Requests of each operation whose arrival the stats keep, one by one, from a reset of the stats.
FIRST_TIMES = 256


class FaultState:
    """Faults of one index plus everything the stats report. Thread-safe. ``default_lag_s``: the lag of faults that
    set none (``Faults.for_index``)."""

    def __init__(self, faults: Faults | None, spec: IndexSpec, default_lag_s: float | None = None) -> None:
        self.spec = spec  # what limits and lag the index keeps (``Faults.for_index``)
        self.default_lag_s = default_lag_s
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str | None], _Window] = {}  # each rate scope's admissions in the last second
        self._in_flight = 0
        self._first_counted: dict[str, float] = {}  # namespace → when the counts first held it
        self.configure(faults or Faults())
        self.reset_stats()

    def configure(self, faults: Faults, counted: Iterable[str] = ()) -> None:
        """Take ``faults``; ``counted``: the namespaces the index's counts hold now, there long since for
        ``stats_new_namespace_lag_s``."""
        with self._lock:
            self._first_counted = dict.fromkeys(counted, -math.inf)
            self.faults = faults  # as given (``GET /_sandbox/faults``)
            self.effective = faults.for_index(self.spec, self.default_lag_s)  # what the index keeps
            self._error_rng = random.Random(faults.seed)
            self._stats_readings = 0
            self._drop_rng = random.Random(faults.seed + 1)
            self._miss_rng = random.Random(faults.seed + 2)

    @property
    def lag_s(self) -> float:
        """How long the index's reads lag its writes now."""
        lag_s = self.effective.freshness_lag_s
        assert lag_s is not None  # ``Faults.for_index`` resolved it
        return lag_s

    def reset_stats(self, *, keep_limits: bool = False) -> None:
        """Every count from zero. ``keep_limits`` (a reset of the stats alone): the requests of the last second still
        count against the limits, and those in flight stay in flight, so a reset forgives no 429."""
        with self._lock:
            windows = self._windows if keep_limits else {}
            for window in windows.values():
                window.peak = window.total
            self._windows = windows
            self._requests: dict[str, int] = {}
            #: op → [first, last] arrival of its requests (epoch seconds): when a client's work reached the index.
            self._request_times: dict[str, list[float]] = {}
            #: op → arrival of its first ``FIRST_TIMES`` requests: how fast a client filled its budget's first window.
            self._first_times: dict[str, list[float]] = {}
            self._counters = dict.fromkeys(
                (
                    "responses_429",
                    "responses_5xx",
                    "injected_429",
                    "injected_5xx",
                    "vectors_stored",
                    "vectors_dropped",
                    "delayed",
                ),
                0,
            )
            self._rate_limited = dict.fromkeys(
                [*_SCOPE_LIMIT, _DELETE_RECORDS, _WRITE_BYTES, _QUERY_READ_UNITS, *sorted(set(_BY_METADATA.values()))],
                0,
            )
            self._in_flight = self._in_flight if keep_limits else 0
            self._max_in_flight = self._in_flight
            self._error_rng = random.Random(self.faults.seed)
            self._drop_rng = random.Random(self.faults.seed + 1)
            self._miss_rng = random.Random(self.faults.seed + 2)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Counts a data-plane request as in flight while it is served, its added latency included."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def stats_skew(self) -> int:
        """How far off the counts of this reading are (``stats_offset``, ``stats_flicker``)."""
        with self._lock:
            if not self.faults.stats_flicker:
                return self.faults.stats_offset
            self._stats_readings += 1
            return self.faults.stats_offset + self._stats_readings % 2

    def stats_shown(self, counts: dict[str, int]) -> dict[str, int]:
        """``counts`` without the namespaces first counted less than ``stats_new_namespace_lag_s`` ago."""
        lag_s, now = self.faults.stats_new_namespace_lag_s, time.monotonic()
        with self._lock:
            for gone in set(self._first_counted).difference(counts):
                del self._first_counted[gone]
            first = {n: self._first_counted.setdefault(n, now) for n in counts}
        return {n: c for n, c in counts.items() if now - first[n] >= lag_s} if lag_s else counts

    def count_request(self, op: str) -> None:
        now = time.time()
        with self._lock:
            self._requests[op] = self._requests.get(op, 0) + 1
            self._request_times.setdefault(op, [now, now])[1] = now
            first = self._first_times.setdefault(op, [])
            if len(first) < FIRST_TIMES:
                first.append(now)

    def delay(self, namespace: str | None) -> None:
        """Add ``latency_ms`` to this request: every one (``namespace`` None, before it is known) when no
        ``latency_namespaces`` are set, else those served from one of them (once the namespace is known)."""
        faults = self.faults
        wanted = faults.latency_namespaces
        if not faults.latency_ms or (namespace is None) != (wanted is None):
            return
        if wanted is not None and namespace not in wanted:
            return
        with self._lock:
            self._counters["delayed"] += 1
        time.sleep(faults.latency_ms / 1000.0)

    def count_reply(self, status: int) -> None:
        with self._lock:
            if status == 429:
                self._counters["responses_429"] += 1
            elif status >= 500:
                self._counters["responses_5xx"] += 1

    def count_stored(self, stored: int, dropped: int) -> None:
        with self._lock:
            self._counters["vectors_stored"] += stored
            self._counters["vectors_dropped"] += dropped

    def _retry_after(self, wait_s: float) -> str:
        if self.faults.retry_after_s is not None:
            return f"{self.faults.retry_after_s:g}"
        return str(max(1, math.ceil(wait_s)))

    def inject(self, op: str) -> _Refusal | None:
        """Maybe answer this request with a random 5xx or 429."""
        with self._lock:
            faults = self.faults
            if faults.error_rate_5xx == 0 and faults.error_rate_429 == 0:
                return None
            if faults.error_ops is not None and op not in faults.error_ops:
                return None
            draw = self._error_rng.random()
            if draw < faults.error_rate_5xx:
                self._counters["injected_5xx"] += 1
                return _Refusal(faults.status_5xx, "Service unavailable (sandbox fault injection)")
            if draw < faults.error_rate_5xx + faults.error_rate_429:
                self._counters["injected_429"] += 1
                return _Refusal(
                    429, "Too many requests (sandbox fault injection)", {"Retry-After": self._retry_after(1.0)}
                )
            return None

    def refuse(self, ids: Iterable[str]) -> _Refusal | None:
        """Answer an upsert holding one of ``refuse_ids`` with ``status_5xx``."""
        with self._lock:
            refused = self.faults.refuse_ids
            if not refused or set(refused).isdisjoint(ids):
                return None
            self._counters["injected_5xx"] += 1
            return _Refusal(self.faults.status_5xx, "Service unavailable (sandbox fault injection: a refused id)")

    def admit(
        self,
        op: str,
        namespace: str,
        records: int = 0,
        nbytes: int = 0,
        by_metadata: str | None = None,
        read_units: float = 0.0,
    ) -> _Refusal | None:
        """Count this request against its rate scope, a delete's ``records`` against the deleted-records limits, an
        upsert's ``nbytes`` against the upsert-size limit, an update or delete by metadata against its kind's
        limits (``by_metadata``: its scope) and a query's ``read_units`` against the index's; a 429 refusal,
        admitting nothing, when one of those windows is full."""
        faults = self.effective
        checks: list[_Check] = []
        if op in _SCOPES:
            scope, per_namespace = _SCOPES[op]
            checks.append(_Check(scope, namespace if per_namespace else None, getattr(faults, _SCOPE_LIMIT[scope]), 1))
        if records:
            checks.append(_Check(_DELETE_RECORDS, namespace, faults.delete_records_per_s_per_namespace, records))
            checks.append(_Check(_DELETE_RECORDS, None, faults.delete_records_per_s_per_index, records))
        if by_metadata is not None:
            checks.append(_Check(by_metadata, namespace, faults.by_metadata_rps_per_namespace, 1))
            checks.append(_Check(by_metadata, None, faults.by_metadata_rps_per_index, 1))
        if nbytes:
            megabytes = faults.write_mb_per_s_per_namespace
            checks.append(_Check(_WRITE_BYTES, namespace, None if megabytes is None else megabytes * 1_000_000, nbytes))
        if read_units:
            units = faults.query_read_units_per_s_per_index
            limit = None if units is None else units * QUARTERS_PER_READ_UNIT
            checks.append(_Check(_QUERY_READ_UNITS, None, limit, _quarters(read_units)))
        now = time.monotonic()
        with self._lock:
            windows = [self._windows.setdefault((check.scope, check.namespace), _Window()) for check in checks]
            for window, check in zip(windows, checks, strict=True):
                wait = window.wait(now, check.limit, check.amount)
                if wait is not None:
                    self._rate_limited[check.scope] += 1
                    return _Refusal(429, check.refusal(), {"Retry-After": self._retry_after(wait)})
            for window, check in zip(windows, checks, strict=True):
                window.add(now, check.amount)
        return None

    def choose_drops(self, count: int) -> set[int]:
        """Positions of the vectors an upsert of *count* vectors silently drops."""
        with self._lock:
            fraction = self.faults.drop_fraction
            if fraction <= 0 or count == 0:
                return set()
            exact = count * fraction
            # Stochastic rounding keeps the long-run fraction right even for one-vector upserts.
            k = int(exact) + (1 if self._drop_rng.random() < exact - int(exact) else 0)
            return set(self._drop_rng.sample(range(count), min(k, count)))

    def query_misses(self) -> Callable[[int], list[int]] | None:
        """What one vector query leaves out (``query_miss_fraction``): a function from the number of records it
        searches to the positions of those it misses; None when it misses none. Drawn here, under this lock, so the
        store's lock never waits for it."""
        with self._lock:
            fraction = self.faults.query_miss_fraction
            if fraction <= 0:
                return None
            rng = random.Random(self._miss_rng.getrandbits(64))

        def misses(count: int) -> list[int]:
            exact = count * fraction
            # Stochastic rounding, as for drops: the long-run fraction holds for small result sets too.
            k = int(exact) + (1 if rng.random() < exact - int(exact) else 0)
            return rng.sample(range(count), min(k, count))

        return misses

    def stats(self) -> dict[str, Any]:
        with self._lock:
            peaks: dict[str, Any] = {
                "write_per_namespace": {},
                "query_per_namespace": {},
                "fetch_per_index": 0,
                "list_per_index": 0,
                "stats_per_index": 0,
                "delete_records_per_namespace": {},
                "delete_records_per_index": 0,
                "write_bytes_per_namespace": {},
                "query_read_units_per_index": 0,
                **{
                    f"{scope}_per_{where}": {} if where == "namespace" else 0
                    for scope in sorted(set(_BY_METADATA.values()))
                    for where in ("namespace", "index")
                },
            }
            for (scope, namespace), window in self._windows.items():
                # The request scopes have a name each; the others, one per namespace and one per index.
                name = _SCOPE_STAT.get(scope) or f"{scope}_per_{'index' if namespace is None else 'namespace'}"
                if scope == _QUERY_READ_UNITS:
                    peaks[name] = window.peak / QUARTERS_PER_READ_UNIT
                elif namespace is None:
                    peaks[name] = window.peak
                else:
                    peaks[name][_display_name(namespace)] = window.peak
            return {
                "requests": dict(self._requests),
                "request_times": {op: {"first": t[0], "last": t[1]} for op, t in self._request_times.items()},
                "first_request_times": {op: list(times) for op, times in self._first_times.items()},
                **self._counters,
                "rate_limited": dict(self._rate_limited),
                "max_admitted_per_second": peaks,
                "max_requests_in_flight": self._max_in_flight,
            }


# --- the data-plane service (request in, reply out; no sockets) --------------------------------------------------

_NAMESPACE_OPS = frozenset({"list_namespaces", "create_namespace", "describe_namespace", "delete_namespace"})
_SERVERLESS_ONLY_OPS = _NAMESPACE_OPS | ALIAS_OPS | {"list"}
_RECORDS_OPS = frozenset({"upsert_records", "search_records"})


Handler = Callable[[Any, dict[str, list[str]], str | None], Any]


class IndexService:
    """Routes one index's requests: admin, then latency, injected errors, rate limits, validation, the operation."""

    def __init__(
        self,
        spec: IndexSpec,
        faults: Faults | None = None,
        api_key: str | None = None,
        default_lag_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.store = IndexStore(spec)
        self.aliases = AliasTable(self.store)  # sandbox.namespace_aliases
        self.faults = FaultState(faults, spec, default_lag_s)
        self.tokens = TokenWindow()  # embedding tokens of an integrated index's model (sandbox.embedding)
        self.api_key = api_key
        #: monotonic time from which the index is Ready; until then its data plane answers 503 (see pinecone_control)
        self.ready_at = 0.0
        #: Called before each request once it is Ready: a converted index's documents arrive then at the latest
        #: (``sandbox.conversions``), whoever asks first.
        self.on_ready: Callable[[], None] | None = None
        self._routes: dict[tuple[str, str], tuple[str, Handler]] = {
            ("POST", "/vectors/upsert"): ("upsert", self._upsert),
            ("GET", "/vectors/fetch"): ("fetch", self._fetch),
            ("POST", "/vectors/fetch_by_metadata"): ("fetch_by_metadata", self._fetch_by_metadata),
            ("GET", "/vectors/list"): ("list", self._list),
            ("POST", "/query"): ("query", self._query),
            ("POST", "/vectors/delete"): ("delete", self._delete),
            ("POST", "/vectors/update"): ("update", self._update),
            ("POST", "/describe_index_stats"): ("describe_index_stats", self._describe_index_stats),
            ("GET", "/describe_index_stats"): ("describe_index_stats", self._describe_index_stats),
            ("GET", "/namespaces"): ("list_namespaces", self._list_namespaces),
            ("POST", "/namespaces"): ("create_namespace", self._create_namespace),
            ("GET", "/namespaces/{}"): ("describe_namespace", self._describe_namespace),
            ("DELETE", "/namespaces/{}"): ("delete_namespace", self._delete_namespace),
            ("POST", "/records/namespaces/{}/upsert"): ("upsert_records", self._upsert_records),
            ("POST", "/records/namespaces/{}/search"): ("search_records", self._search_records),
            **self.aliases.routes(),
        }
        from nsmigrate_sandbox.bulk_imports import BulkImports  # they build on this module's plumbing
        from nsmigrate_sandbox.documents import DocumentsApi

        self._routes.update(DocumentsApi(self).routes())
        self.imports = BulkImports(self)
        self._routes.update(self.imports.routes())

    # -- entry point

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        if path.startswith("/_sandbox/"):
            return self._admin(method, path, headers, body)
        if time.monotonic() < self.ready_at:
            reply = _data_error(_Refusal(503, f"Index {self.spec.name} is not ready yet (Initializing)"))
        else:
            if self.on_ready is not None:
                self.on_ready()
            with self.faults.serving():
                reply = self._data_plane(method, path, query, headers, body)
        self.faults.count_reply(reply.status)
        return reply

    def _data_plane(
        self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        from nsmigrate_sandbox.documents import document_error, wrong_api

        op = ""
        try:
            op, handler, arg = self._route(method, path)
            self.faults.count_request(op)
            faults = self.faults.effective
            self.faults.delay(None)
            _check_api_key(headers, self.api_key)
            refused = wrong_api(self.spec, op)
            if refused is not None:
                raise refused
            if self.spec.kind == "pod" and op in _SERVERLESS_ONLY_OPS:
                raise _Refusal(POD_REFUSAL_STATUS, POD_LIST_REFUSAL if op == "list" else POD_NAMESPACES_REFUSAL)
            if op in _NAMESPACE_OPS and not faults.namespaces_endpoint:
                raise _Refusal(404, "Not Found")
            injected = self.faults.inject(op)
            if injected is not None:
                raise injected
            if op in ("upsert_records", "upsert_documents"):
                payload: Any = body  # NDJSON, or a body whose size the handler checks
            else:
                payload = (_parse_upsert(body) if op == "upsert" else _parse_json(body)) if body else None
            if op in ALIAS_OPS:
                self.aliases.check_version(headers)
            payload, arg = self.aliases.route(op, payload, query, arg)  # reads through an alias, writes refused
            in_path = op in _RECORDS_OPS or op in _DOCUMENT_OPS
            scope_ns = _namespace_name(arg) if in_path else self._scope_namespace(op, payload, query)
            self.faults.delay(scope_ns)  # with latency_namespaces: once an alias resolved, the namespace serving it
            nbytes = len(body) if op in _UPSERT_OPS else 0
            by_metadata = _by_metadata_scope(op, payload)
            read_units = self.query_read_units(scope_ns) if _SCOPES.get(op, ("",))[0] == "query" else 0.0
            refusal = self.faults.admit(op, scope_ns, _deleted_records(op, payload), nbytes, by_metadata, read_units)
            if refusal is not None:
                raise refusal
            if op == "upsert" and len(body) > MAX_REQUEST_BYTES:
                size_mb = len(body) / (1024 * 1024)
                raise _Refusal(
                    OVERSIZE_STATUS,
                    f"Request size {size_mb:.1f}MB exceeds the maximum supported size of 2MB. "
                    "Please try to reduce your batch size.",
                )
            freshness = self.store.freshness
            assert freshness is not None  # only a replica has none
            freshness.lag_s = self.faults.lag_s
            freshness.lsn_step = 2 if faults.lsns == "skipping" else 1
            with freshness.request() as lsn_headers:
                result = handler(payload, query, arg)
            # The docs: serverless only.
            lsns = lsn_headers if self.spec.kind == "serverless" and faults.lsns != "none" else {}
            if isinstance(result, _Reply):
                result.headers.update(lsns)
                return result
            if op in _NAMESPACE_OPS:
                result = _namespace_answer(result, headers)
            return _Reply(201, None, lsns) if op == "upsert_records" else _Reply(200, result, lsns)
        except _Refusal as refusal:
            return document_error(refusal) if op in _DOCUMENT_OPS else _data_error(refusal)

    def _route(self, method: str, path: str) -> tuple[str, Handler, str | None]:
        arg: str | None = None
        key = (method, path)
        if path.startswith(("/namespaces/", "/namespace-aliases/")) and path.count("/") == 2:
            collection, name = path[1:].split("/")
            arg = unquote(name)
            key = (method, f"/{collection}/{{}}")
        elif path.startswith("/namespaces/") and path.count("/") == 4 and path.split("/")[3] == "documents":
            _, _, name, _, action = path.split("/")
            arg = unquote(name)
            key = (method, f"/namespaces/{{}}/documents/{action}")
        elif path.startswith("/bulk/imports/") and path.count("/") == 3:
            arg = unquote(path.rsplit("/", 1)[1])
            key = (method, "/bulk/imports/{}")
        elif path.startswith("/records/namespaces/") and path.count("/") == 4:
            _, _, _, name, action = path.split("/")
            arg = unquote(name)
            key = (method, f"/records/namespaces/{{}}/{action}")
        if key in self._routes:
            op, handler = self._routes[key]
            return op, handler, arg
        if any(p == key[1] for _, p in self._routes):
            raise _Refusal(405, f"Method {method} not allowed on {path}")
        raise _Refusal(404, f"Not Found: {path}")

    def query_read_units(self, namespace: str) -> float:
        """What one query of ``namespace`` costs, by the size it has as stored."""
        with self.store.lock:
            ns = self.store.namespaces.get(namespace)
            records = len(ns.records) if ns is not None else 0
        return query_read_units(records, self.spec.dimension)

    @staticmethod
    def _scope_namespace(op: str, payload: Any, query: dict[str, list[str]]) -> str:
        with contextlib.suppress(_Refusal):
            if isinstance(payload, dict):
                return _namespace_name(payload.get("namespace"))
            return _namespace_name(_one(query, "namespace"))
        return ""

    # -- admin

    def _admin(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        try:
            if self.api_key is not None:
                # Faults and resets are worth more than the data: a sandbox started with --api-key guards them too.
                _check_api_key(headers, self.api_key)
            if path == "/_sandbox/faults" and method == "GET":
                return _Reply(200, self.faults.faults.to_dict())
            if path == "/_sandbox/faults" and method == "POST":
                payload = _parse_json(body) if body else {}
                if not isinstance(payload, dict):
                    raise _bad("faults must be a JSON object")
                try:
                    faults = Faults.from_dict(payload)
                except (TypeError, ValueError) as exc:
                    raise _bad(str(exc)) from exc
                self.faults.configure(faults, self.store.counts())
                return _Reply(200, faults.to_dict())
            if path == "/_sandbox/object-storage" and method == "POST":
                from nsmigrate_sandbox.bulk_imports import ObjectStorage

                self.imports.storage = ObjectStorage.from_dict(_parse_json(body) if body else None)
                return _Reply(200, {})
            if path == "/_sandbox/stats" and method == "GET":
                return _Reply(200, self.stats())
            if path == "/_sandbox/stats/reset" and method == "POST":
                self.faults.reset_stats(keep_limits=True)
                return _Reply(200, {})
            if path == "/_sandbox/reset" and method == "POST":
                self.reset()
                return _Reply(200, {})
            if path == "/_sandbox/settle" and method == "POST":
                self.store.settle()  # a test's setup waits out the lag at once
                return _Reply(200, {})
            raise _Refusal(404, f"Not Found: {method} {path}")
        except _Refusal as refusal:
            return _data_error(refusal)

    def stats(self) -> dict[str, Any]:
        counts = self.store.counts(latest=True)
        return {
            "index": self.spec.name,
            "kind": self.spec.kind,
            "vector_count": sum(counts.values()),
            "namespaces": {_display_name(n): c for n, c in sorted(counts.items())},
            "freshness_lag_s": self.faults.lag_s,  # what its reads keep (``Faults.for_index``)
            **self.faults.stats(),
        }

    def reset(self) -> None:
        self.store.clear()
        self.aliases.clear()
        self.imports.clear()
        self.faults.reset_stats()
        self.tokens.clear()

    # -- operations

    def _upsert(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        body = _object(payload)
        namespace = _namespace_name(body.get("namespace"))
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise _bad("vectors must be a non-empty array")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise _bad(f"Upsert request contains {len(vectors)} vectors; the maximum is {MAX_UPSERT_VECTORS} vectors")
        records = [self._record(v) for v in vectors]
        refusal = self.faults.refuse(vector_id for vector_id, _ in records)
        if refusal is not None:
            raise refusal
        dropped = self.faults.choose_drops(len(records))
        kept = [r for position, r in enumerate(records) if position not in dropped]
        self.store.put(namespace, kept)
        self.faults.count_stored(len(kept), len(dropped))
        return {"upsertedCount": len(records)}

    def _record(self, vector: Any) -> tuple[str, _Record]:
        if not isinstance(vector, dict):
            raise _bad("each vector must be a JSON object")
        vector_id = _valid_id(vector.get("id"))
        raw = vector.get("values")
        if isinstance(raw, msgspec.Raw):
            values = _checked_vector_text(bytes(raw), self.spec.dimension, "Vector")
        else:
            values = _dense_values(_as_vector(raw, self.spec.dimension, "Vector"), "Vector")
        sparse = _sparse_values(vector.get("sparseValues"), self.spec.metric)
        return vector_id, _Record(values, validate_metadata(vector.get("metadata")), sparse)

    def _fetch(self, _payload: Any, query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        ids = query.get("ids", [])
        if not ids:
            raise _bad("ids must contain at least one vector id")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise _bad(f"Fetch request contains {len(ids)} ids; the maximum is {MAX_IDS_PER_REQUEST} ids")
        for vector_id in ids:
            _valid_id(vector_id)
        namespace = _namespace_name(_one(query, "namespace"))
        found = self.store.fetch(namespace, ids)
        return {
            "vectors": {i: _vector_json(i, r) for i, r in found.items()},
            "namespace": namespace,
            "usage": {"readUnits": max(1, len(found) // 10)},
        }

    def _fetch_by_metadata(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        body = _object(payload)
        namespace = _namespace_name(body.get("namespace"))
        if not body.get("filter"):
            raise _bad("Empty filter provided for fetch by metadata request")
        predicate = compile_filter(body["filter"])
        limit = _int_in(body.get("limit", 100), "limit", 1, MAX_FETCH_BY_METADATA_LIMIT)
        ids = sorted(self.store.matching(namespace, predicate), key=lambda i: i.encode())
        page, token = _page(ids, "", body.get("paginationToken"), limit)
        found = self.store.fetch(namespace, page)
        reply: dict[str, Any] = {
            "vectors": {i: _vector_json(i, r) for i, r in found.items()},
            "namespace": namespace,
            "usage": {"readUnits": max(1, len(found) // 10)},
        }
        if token:
            reply["pagination"] = {"next": token}
        return reply

    def _list(self, _payload: Any, query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        namespace = _namespace_name(_one(query, "namespace"))
        limit = _int_in(_one(query, "limit") or MAX_LIST_LIMIT, "limit", 1, MAX_LIST_LIMIT)
        prefix = _one(query, "prefix") or ""
        if len(prefix) > MAX_ID_LENGTH or not is_ascii_name(prefix):
            raise _bad(f"prefix {prefix[:80]!r} must be at most {MAX_ID_LENGTH} ASCII characters, without NUL")
        ids, token = self.store.list_ids(namespace, prefix, _one(query, "paginationToken") or None, limit)
        reply: dict[str, Any] = {"vectors": [{"id": i} for i in ids], "namespace": namespace, "usage": {"readUnits": 1}}
        if token:
            reply["pagination"] = {"next": token}
        return reply

    def _query(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> _Reply:
        body = _object(payload)
        namespace = _namespace_name(body.get("namespace"))
        if "topK" not in body:
            raise _bad("topK is required")
        top_k = _int_in(body["topK"], "topK", 1, MAX_TOP_K)
        include_values = bool(body.get("includeValues", False))
        include_metadata = bool(body.get("includeMetadata", False))
        if (include_values or include_metadata) and top_k > MAX_TOP_K_WITH_DATA:
            raise _bad(
                f"topK must be at most {MAX_TOP_K_WITH_DATA} when includeValues or includeMetadata is true, got {top_k}"
            )
        predicate = compile_filter(body["filter"]) if body.get("filter") is not None else None
        vector = self._query_vector(body, namespace)
        misses = self.faults.query_misses()
        matches = [] if vector is None else self.store.query(namespace, vector, top_k, predicate, misses)
        reply = {
            "matches": [_match_json(i, s, r, include_values, include_metadata) for i, s, r in matches],
            "namespace": namespace,
            "usage": {"readUnits": math.ceil(self.query_read_units(namespace))},
        }
        # Serialized here, once, to hold the answer to the service's result-size limit; sent as these bytes.
        data = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
        if len(data) > MAX_QUERY_RESULT_BYTES:
            raise _bad(
                f"Query result size of {len(data)} bytes exceeds the maximum result size of 4MB "
                f"({MAX_QUERY_RESULT_BYTES} bytes). Choose a lower topK, or leave out values or metadata "
                "(includeValues=false or includeMetadata=false)."
            )
        return _Reply(200, data)

    def _query_vector(self, body: dict[str, Any], namespace: str) -> np.ndarray | None:
        has_vector, has_id = body.get("vector") is not None, body.get("id") is not None
        if has_vector and has_id:
            raise _bad("Cannot provide both 'ID' and 'vector' at the same time")
        if has_vector:
            return _as_vector(body["vector"], self.spec.dimension, "Query vector")
        if has_id:
            found = self.store.fetch(namespace, [_valid_id(body["id"])])
            return next(iter(found.values())).values if found else None
        raise _bad("No query provided: one of 'vector' or 'id' is required")

    def _delete(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        body = _object(payload)
        namespace = _namespace_name(body.get("namespace"))
        ids, delete_all, flt = body.get("ids"), bool(body.get("deleteAll", False)), body.get("filter")
        if delete_all and ids:
            raise _bad("No explicit IDs allowed when delete_all=true")
        if delete_all and flt:
            raise _bad("No filter allowed when delete_all=true")
        if delete_all:
            self.store.delete_namespace(namespace)
            return {}
        if flt is not None:
            if not flt:
                raise _bad("Delete with empty metadata filter is not allowed")
            self.store.delete(namespace, self.store.matching(namespace, compile_filter(flt)))
            return {}
        if not isinstance(ids, list) or not ids:
            raise _bad("Must specify one of ids, deleteAll, or filter")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise _bad(f"Delete request contains {len(ids)} ids; the maximum is {MAX_IDS_PER_REQUEST} ids")
        self.store.delete(namespace, [_valid_id(i) for i in ids])
        return {}

    def _update(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        body = _object(payload)
        namespace = _namespace_name(body.get("namespace"))
        has_id, flt = body.get("id") is not None, body.get("filter")
        if has_id == (flt is not None):
            raise _bad("Exactly one of id or filter must be provided")
        set_metadata = body.get("setMetadata")
        if set_metadata is not None:
            validate_metadata(set_metadata)
        values = None
        if body.get("values") is not None:
            if flt is not None:
                raise _bad("Update by metadata request does not support updating vector values.")
            values = _dense_values(_as_vector(body["values"], self.spec.dimension, "Vector"), "Vector")
        if flt is not None and body.get("sparseValues") is not None:
            raise _bad("Update by metadata request does not support updating sparse vector values.")
        if has_id:
            sparse = _sparse_values(body.get("sparseValues"), self.spec.metric)
            self.store.update(namespace, [_valid_id(body["id"])], values, set_metadata, sparse)
            return {}
        if not flt:
            raise _bad("Update with empty metadata filter is not allowed")
        matched = self.store.matching(namespace, compile_filter(flt))
        if not body.get("dryRun", False):
            self.store.update(namespace, matched, None, set_metadata, None)
        return {"matchedRecords": len(matched)}

    def _describe_index_stats(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        flt = payload.get("filter") if isinstance(payload, dict) else None
        if flt is not None and self.spec.kind == "serverless":
            raise _bad("Serverless indexes do not support describe_index_stats with metadata filtering")
        counts = self.store.counts(compile_filter(flt) if flt is not None else None)
        total = sum(self.store.counts().values())
        counts = self._skewed(counts)
        return {
            "namespaces": {_display_name(n): {"vectorCount": c} for n, c in sorted(counts.items())},
            "dimension": self.spec.dimension,
            "indexFullness": total / POD_CAPACITY_VECTORS if self.spec.kind == "pod" else 0.0,
            "totalVectorCount": total,
            "metric": self.spec.metric,
            "vectorType": "dense",
        }

    def _skewed(self, counts: dict[str, int]) -> dict[str, int]:
        counts, skew = self.faults.stats_shown(counts), self.faults.stats_skew()
        return {n: max(0, c + skew) for n, c in counts.items()} if skew else counts

    def _namespace_json(self, namespace: str, count: int) -> dict[str, Any]:
        return {"name": _display_name(namespace), "record_count": count}

    def _list_namespaces(self, _payload: Any, query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        limit = _int_in(_one(query, "limit") or MAX_LIST_LIMIT, "limit", 1, MAX_LIST_LIMIT)
        counts = self._skewed(self.store.counts())
        by_name = {_display_name(n): c for n, c in counts.items()}
        prefix = _one(query, "prefix") or ""
        names = sorted(by_name, key=lambda n: n.encode())
        page, token = _page(names, prefix, _one(query, "paginationToken") or None, limit)
        reply: dict[str, Any] = {
            "namespaces": [{"name": n, "record_count": by_name[n]} for n in page],
            "total_count": sum(1 for n in names if n.startswith(prefix)),
        }
        if token:
            reply["pagination"] = {"next": token}
        return reply

    def _describe_namespace(self, _payload: Any, _query: dict[str, list[str]], arg: str | None) -> dict[str, Any]:
        namespace = _namespace_name(arg)
        counts = self._skewed(self.store.counts())
        if namespace not in counts:
            raise _Refusal(404, f"Namespace '{arg}' not found")
        return self._namespace_json(namespace, counts[namespace])

    def _delete_namespace(self, _payload: Any, _query: dict[str, list[str]], arg: str | None) -> dict[str, Any]:
        with self.store.lock:  # no alias can take it as its target in between
            self.aliases.refuse_deleting(_namespace_name(arg))
            if not self.store.delete_namespace(_namespace_name(arg)):
                raise _Refusal(404, f"Namespace '{arg}' not found")
        return {}

    def _upsert_records(self, payload: Any, _query: dict[str, list[str]], arg: str | None) -> dict[str, Any]:
        upsert_records(self, _namespace_name(arg), payload or b"")
        return {}

    def _search_records(self, payload: Any, _query: dict[str, list[str]], arg: str | None) -> dict[str, Any]:
        return search_records(self, _namespace_name(arg), payload)

    def _create_namespace(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        body = _object(payload)
        name = body.get("name")
        if not isinstance(name, str) or not name or name == DEFAULT_NAMESPACE_NAME:
            raise _bad("name must be a non-empty namespace name other than __default__")
        if len(name) > MAX_ID_LENGTH or not is_ascii_name(name):
            raise _bad(f"name {name[:80]!r} must be 1-{MAX_ID_LENGTH} ASCII characters, without NUL")
        if not self.store.create_namespace(name):
            raise _Refusal(409, f"Namespace '{name}' already exists")
        return self._namespace_json(name, 0)


def _namespace_answer(result: Any, headers: Mapping[str, str]) -> Any:
    """A namespace answer as the request's API version writes it: from 2026-07 a ``record_count`` is a decimal
    string (``NamespaceDescription``), before it an integer."""
    from nsmigrate_sandbox.pinecone_control import api_version, is_2026_07_or_later

    if not is_2026_07_or_later(api_version(headers)) or not isinstance(result, dict):
        return result
    described = result.get("namespaces", [result])
    for namespace in described:
        if isinstance(namespace.get("record_count"), int):
            namespace["record_count"] = str(namespace["record_count"])
    return result


def _sparse_values(sparse: Any, metric: str) -> dict[str, Any] | None:
    """Checked sparse values as the index keeps and returns them (values as float32), or None when absent. Only a
    dotproduct index holds them; the message is Pinecone's."""
    if sparse is None:
        return None
    if metric != "dotproduct":
        raise _bad("Index configuration does not support sparse values")
    if not isinstance(sparse, dict) or not isinstance(sparse.get("indices"), list):
        raise _bad("sparseValues must be an object with indices and values")
    indices, values = sparse["indices"], sparse.get("values")
    if not isinstance(values, list) or len(values) != len(indices):
        raise _bad("sparse values must have the same length as sparse indices")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 2**32 for i in indices):
        raise _bad("sparse indices must be unsigned 32-bit integers")
    if not 0 < len(indices) <= MAX_SPARSE_VALUES:
        raise _bad(f"sparseValues must hold 1 to {MAX_SPARSE_VALUES} indices and values, got {len(indices)}")
    if len(set(indices)) != len(indices):
        raise _bad("sparse indices must be unique")
    as_float32 = _as_vector(values, len(values), "Sparse")
    return {"indices": list(indices), "values": as_float32.tolist()}


def _check_api_key(headers: Mapping[str, str], expected: str | None) -> None:
    key = headers.get("Api-Key") or headers.get("api-key")
    if not key or (expected is not None and key != expected):
        raise _Refusal(401, "Invalid API Key" if key else "No API key provided")


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"Invalid JSON body: {exc}") from exc


class _UpsertVector(msgspec.Struct):
    id: Any = None
    values: msgspec.Raw = msgspec.Raw(b"null")
    sparseValues: Any = None
    metadata: Any = None


class _UpsertBody(msgspec.Struct):
    vectors: list[_UpsertVector]
    namespace: Any = None


_UPSERT_BODY = msgspec.json.Decoder(_UpsertBody)


def _parse_upsert(body: bytes) -> Any:
    """An upsert body with each vector's values left as JSON text (see ``_Record``). A body of another shape is
    parsed as any other, so the handler refuses it with its usual messages."""
    try:
        parsed = _UPSERT_BODY.decode(body)
    except msgspec.MsgspecError:
        return _parse_json(body)
    vectors = [
        {"id": v.id, "values": v.values, "sparseValues": v.sparseValues, "metadata": v.metadata} for v in parsed.vectors
    ]
    return {"vectors": vectors, "namespace": parsed.namespace}


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _bad("Request body must be a JSON object")
    return payload


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{name} must be an integer, got {value!r}") from exc
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise _bad(f"{name} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise _bad(f"{name} must be between {low} and {high}, got {number}")
    return number


def _vector_json(vector_id: str, record: _Record) -> dict[str, Any]:
    out: dict[str, Any] = {"id": vector_id, "values": record.values_json()}
    if record.sparse is not None:
        out["sparseValues"] = record.sparse
    if record.metadata is not None:
        out["metadata"] = record.metadata
    return out


def _match_json(vector_id: str, score: float, record: _Record, values: bool, metadata: bool) -> dict[str, Any]:
    """One ScoredVector: with ``values``, the dense values as fetch sends them (:func:`_vector_json`) and the sparse
    values the record has; without, ``values`` is ``[]`` and no sparse values are sent."""
    out: dict[str, Any] = {"id": vector_id, "score": score, "values": record.values_json() if values else []}
    if values and record.sparse is not None:
        out["sparseValues"] = record.sparse
    if metadata and record.metadata is not None:
        out["metadata"] = record.metadata
    return out


# --- HTTP plumbing -----------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the server's service for a reply, writes it. Quiet unless the server is verbose."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    # Headers and body go out as two writes; with Nagle on, the body waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        reply = self.server.service.handle(self.command, self.path, self.headers, body)
        if isinstance(reply.body, bytes):  # a body sent as it is (a fault's page that is not JSON)
            data = reply.body
        else:
            data = orjson.dumps(reply.body, option=orjson.OPT_SERIALIZE_NUMPY) if reply.body is not None else b""
        self.send_response(reply.status)
        if "Content-Type" not in reply.headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # Only the request line and status are ever logged, never headers (so never the Api-Key).
        if self.server.verbose:
            sys.stderr.write(f"[{self.server.label}] {format % args}\n")


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its open connections so ``close`` can cut keep-alive clients off."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a fleet whose threads connect at once overflowed it, and each dropped SYN
    # cost its client a 1 s retransmit (seen as sporadic 1 s stalls of whole jobs).
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self, address: tuple[str, int], service: Any, label: str, verbose: bool, tls: ssl.SSLContext | None = None
    ) -> None:
        self.service = service
        self.label = label
        self.verbose = verbose
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        if tls is not None:
            # The handshake happens on the connection's first read, in its own thread, not in the accepting one.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def start(self) -> _Server:
        serve_in_thread(self, f"sandbox-{self.label}")
        return self

    def close(self) -> None:
        stop_serving(self)
        self.server_close()
        with self._connections_lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


# --- the public facade -------------------------------------------------------------------------------------------


class PineconeSandbox:
    """Several in-memory Pinecone indexes, each on its own loopback port, plus a control plane on another.

    ``api_key=None`` accepts any non-empty ``Api-Key`` header (a missing one gets 401, as Pinecone answers).
    ``ready_delay_s`` / ``collection_delay_s``: how long an index created over the control plane, and a collection,
    stay ``Initializing`` (see ``sandbox.pinecone_control``; ``self.control.set_delays`` changes them later).
    ``tls``: serve https with this server context (as Pinecone does; a key is only sent over TLS off loopback).
    ``freshness_lag_s``: every index's reads lag its writes by this much unless its faults set a lag
    (``Faults.freshness_lag_s``; the command line's ``--freshness-lag-s``, or ``NSMIGRATE_SANDBOX_FRESHNESS_LAG_S``);
    ``None``, the service's lag for each index's kind. ``settle()`` lets a test's setup wait it out at once.
    """

    def __init__(
        self,
        indexes: Iterable[IndexSpec] = (),
        *,
        bind: str = "127.0.0.1",
        api_key: str | None = None,
        verbose: bool = False,
        ready_delay_s: float = 0.0,
        collection_delay_s: float = 0.0,
        tls: ssl.SSLContext | None = None,
        freshness_lag_s: float | None = None,
    ) -> None:
        from nsmigrate_sandbox.pinecone_control import ControlPlane  # it builds on this module's request plumbing

        self.bind = bind
        self.api_key = api_key
        self.verbose = verbose
        self.tls = tls
        if freshness_lag_s is not None and not _is_lag(freshness_lag_s):
            raise ValueError(f"freshness_lag_s must be within 0..3600 seconds, got {freshness_lag_s!r}")
        self.freshness_lag_s = freshness_lag_s
        self.initial_faults = Faults()  # what an index created later starts with
        self._lock = threading.RLock()
        self._services: dict[str, IndexService] = {}
        self._servers: dict[str, _Server] = {}
        self._control: _Server | None = None
        #: The project's object storage (``set_object_storage(None, …)``): what every index imports from, one
        #: created later too, as a storage integration belongs to the project, not to one index.
        self._project_storage: dict[str, Any] | None = None
        #: Index metadata (protection, tags, readiness) and collections; serves the control-plane port.
        self.control = ControlPlane(self, ready_delay_s=ready_delay_s, collection_delay_s=collection_delay_s)
        for spec in indexes:
            if spec.name in self._services:
                raise ValueError(f"duplicate index name {spec.name!r}")
            self._services[spec.name] = self._index_service(spec)

    # -- lifecycle

    def start(self) -> PineconeSandbox:
        """Bind free ports on ``bind`` and serve every index and the control plane in daemon threads."""
        with self._lock:
            if self._control is not None:
                return self
            self._control = _Server((self.bind, 0), self.control, "control", self.verbose, self.tls).start()
            for name in self._services:
                self._serve(name)
        return self

    def _index_service(self, spec: IndexSpec) -> IndexService:
        return IndexService(spec, self.initial_faults, api_key=self.api_key, default_lag_s=self.freshness_lag_s)

    def _serve(self, name: str) -> None:
        self._servers[name] = _Server((self.bind, 0), self._services[name], name, self.verbose, self.tls).start()

    def stop(self) -> None:
        with self._lock:
            servers = [*self._servers.values(), *([self._control] if self._control else [])]
            self._servers.clear()
            self._control = None
        for server in servers:
            server.close()

    def __enter__(self) -> PineconeSandbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- indexes and hosts

    def add_index(self, spec: IndexSpec, *, ready_at: float = 0.0) -> str:
        """Add an index (served at once if the sandbox is running); returns its host, or ``""`` before ``start``.
        Its data plane answers 503 until ``time.monotonic()`` reaches ``ready_at``."""
        with self._lock:
            if spec.name in self._services:
                raise ValueError(f"index {spec.name!r} already exists")
            service = self._services[spec.name] = self._index_service(spec)
            service.ready_at = ready_at
            if self._project_storage is not None:
                self.set_object_storage(spec.name, self._project_storage)
            if self._control is not None:
                self._serve(spec.name)
                return self.host(spec.name)
            return ""

    def remove_index(self, name: str) -> None:
        with self._lock:
            self._services.pop(name)
            server = self._servers.pop(name, None)
        self.control.forget(name)
        if server is not None:
            server.close()

    def names(self) -> list[str]:
        with self._lock:
            return list(self._services)

    def specs(self) -> list[IndexSpec]:
        with self._lock:
            return [s.spec for s in self._services.values()]

    def service(self, name: str) -> IndexService:
        with self._lock:
            if name not in self._services:
                raise KeyError(f"no index named {name!r}; have {sorted(self._services)}")
            return self._services[name]

    def host(self, name: str) -> str:
        """``http://127.0.0.1:PORT`` of *name*'s data plane (pass it to ``Index(host=...)`` as it is)."""
        self.service(name)
        with self._lock:
            if name not in self._servers:
                raise RuntimeError("the sandbox is not started; call start() first")
            return self._servers[name].url

    @property
    def control_host(self) -> str:
        """``http://127.0.0.1:PORT`` of the control plane, for ``Pinecone(api_key=..., host=...)``."""
        with self._lock:
            if self._control is None:
                raise RuntimeError("the sandbox is not started; call start() first")
            return self._control.url

    def describe_hosts(self) -> dict[str, Any]:
        return {"control": self.control_host, "indexes": {name: self.host(name) for name in self.names()}}

    # -- faults, stats, data

    def set_faults(self, name: str, faults: Faults) -> None:
        """Replace *name*'s faults (same as ``POST /_sandbox/faults``); also reseeds the fault RNGs."""
        service = self.service(name)
        service.faults.configure(faults, service.store.counts())

    def set_object_storage(self, name: str | None, storage: dict[str, Any]) -> None:
        """Where index ``name``'s bulk imports read from (``sandbox.bulk_imports.ObjectStorage``'s fields); ``name``
        None: the project's, for every index, those created later too."""
        from nsmigrate_sandbox.bulk_imports import ObjectStorage

        if name is None:
            with self._lock:
                self._project_storage = storage
            for index_name in self.names():
                self.set_object_storage(index_name, storage)
            return
        self.service(name).imports.storage = ObjectStorage.from_dict(storage)

    def faults(self, name: str) -> Faults:
        """*name*'s faults as set (``Faults.for_index`` gives what it keeps)."""
        return self.service(name).faults.faults

    def settle(self, *names: str) -> None:
        """Let the reads of these indexes (all when none is named) see every write made so far: a test's setup
        waits out the lag at once, instead of sleeping."""
        for name in names or self.names():
            self.service(name).store.settle()

    def stats(self, name: str) -> dict[str, Any]:
        """Request counts per operation, 429/5xx answered, vectors stored/dropped, per-scope peak admissions, the most
        requests served at once, and how long the index's reads lag its writes."""
        return self.service(name).stats()

    def reset(self, name: str | None = None) -> None:
        """Clear data and stats of one index, or of all of them; faults stay as they are."""
        for index_name in [name] if name is not None else self.names():
            self.service(index_name).reset()

    def load(self, name: str, namespace: str, records: Iterable[tuple[str, Any, Mapping[str, Any] | None]]) -> int:
        """Store ``(id, values, metadata)`` records directly, without HTTP or faults; returns how many."""
        service = self.service(name)
        dimension = service.spec.dimension

        def convert(record: tuple[str, Any, Mapping[str, Any] | None]) -> tuple[str, _Record]:
            vector_id, values, metadata = record
            array = np.asarray(values, dtype=np.float32)
            if array.shape != (dimension,):
                raise ValueError(f"vector {vector_id!r} has shape {array.shape}; index {name!r} wants ({dimension},)")
            if not (isinstance(vector_id, str) and 0 < len(vector_id) <= MAX_ID_LENGTH and is_ascii_name(vector_id)):
                raise ValueError(f"vector id must be 1..{MAX_ID_LENGTH} ASCII characters, no NUL, got {vector_id!r}")
            # What the service could never hold is not seeded either.
            if not np.abs(array).max() >= np.float32(MIN_DENSE_MAGNITUDE):
                raise ValueError(f"vector {vector_id!r} holds only zeros, which Pinecone refuses")
            if metadata is not None and any(key.startswith("$") for key in metadata):
                raise ValueError(f"vector {vector_id!r} has a metadata key starting with '$', which Pinecone refuses")
            return vector_id, _Record(array, dict(metadata) if metadata is not None else None)

        return service.store.put(_namespace_name(namespace), (convert(r) for r in records), at_once=True)

    def count(self, name: str, namespace: str | None = None) -> int:
        """Vectors stored in one namespace (``""`` or ``"__default__"`` for the default) or in the whole index."""
        counts = self.service(name).store.counts(latest=True)
        return sum(counts.values()) if namespace is None else counts.get(_namespace_name(namespace), 0)

    def snapshot(self, name: str) -> dict[str, dict[str, tuple[np.ndarray, dict[str, Any] | None]]]:
        """A copy of everything stored: ``{namespace: {id: (float32 values, metadata)}}``, default namespace ``""``."""
        return self.service(name).store.snapshot()


# --- command line ------------------------------------------------------------------------------------------------


def parse_index_arg(text: str) -> IndexSpec:
    """``name:dimension[:metric[:kind]]`` -> IndexSpec, e.g. ``seeds-pod:3072:cosine:pod``."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise argparse.ArgumentTypeError(f"--index wants name:dimension[:metric[:kind]], got {text!r}")
    try:
        return IndexSpec(parts[0], int(parts[1]), *parts[2:4])  # type: ignore[arg-type]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _lag_seconds(text: str) -> float | None:
    if text == "service":
        return None
    try:
        lag_s = float(text)
    except ValueError:
        lag_s = -1.0
    if not _is_lag(lag_s):
        raise argparse.ArgumentTypeError(
            f"the freshness lag is seconds within 0..3600, or 'service' (--freshness-lag-s or ${FRESHNESS_LAG_ENV}), "
            f"got {text!r}"
        )
    return lag_s


def environment_lag_s() -> float | None:
    """The lag ``$NSMIGRATE_SANDBOX_FRESHNESS_LAG_S`` sets; None when it is unset or ``service``."""
    try:
        return _lag_seconds(os.environ.get(FRESHNESS_LAG_ENV) or "service")
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from exc


def _write_port_file(path: Path, hosts: dict[str, Any]) -> None:
    # Write then rename, so a process polling for the file never reads half of it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(hosts))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsmigrate_sandbox.pinecone_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--index",
        action="append",
        type=parse_index_arg,
        required=True,
        help="name:dimension[:metric[:kind]], repeatable (metric cosine, kind serverless by default)",
    )
    parser.add_argument("--port-file", type=Path, help="also write the hosts here as JSON")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--api-key", help="accept only this Api-Key (default: any non-empty key)")
    parser.add_argument("--verbose", action="store_true", help="log one line per request (never headers)")
    parser.add_argument(
        "--freshness-lag-s",
        type=_lag_seconds,
        default=os.environ.get(FRESHNESS_LAG_ENV) or "service",  # a string default goes through the type too
        help=f"reads (list, query, counts) see each write this many seconds after it (default: ${FRESHNESS_LAG_ENV} "
        f"or 'service': Pinecone's, {VECTOR_LAG_S:g} s on a vector index and {DOCUMENT_LAG_S:g} s on a document "
        "index); a vector fetch sees it at once, a document fetch lags too",
    )
    parser.add_argument(
        "--prefault-mb",
        type=int,
        default=0,
        help="keep freed memory as the workers do and touch this much heap at start, so that storing vectors does "
        "not fault it in page by page later (the bench: this process shares its cores with the fleet)",
    )
    args = parser.parse_args(argv)
    if args.prefault_mb > 0:
        keep_freed_memory()
        prefault_heap(args.prefault_mb)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = PineconeSandbox(
        args.index, bind=args.bind, api_key=args.api_key, verbose=args.verbose, freshness_lag_s=args.freshness_lag_s
    ).start()
    try:
        hosts = sandbox.describe_hosts()
        print(json.dumps(hosts), flush=True)
        if args.port_file:
            _write_port_file(args.port_file, hosts)
        stop.wait()
    finally:
        sandbox.stop()
        if args.port_file:
            with contextlib.suppress(FileNotFoundError):
                args.port_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

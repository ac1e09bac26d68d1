"""Integrated indexes in the local data plane: the hosted embedding models (stood in for by a deterministic hashing
embedder), and the records endpoints ``POST /records/namespaces/{ns}/upsert`` and ``/search`` as the 2026-04 spec
describes them and SDK 10.2 calls them (``Index.upsert_records`` / ``Index.search``).

What the real service does, and so this stand-in (never kinder):

- **Upsert** takes NDJSON, one record per line: ``_id`` (``id`` is an alias) and the text field the index's
  ``field_map`` names; every other field is kept as the record's metadata (filterable, returned by fetch and search),
  the text field too. At most ``MAX_RECORDS_PER_UPSERT`` (96: the hosted models' batch size) records and 2 MB per
  request; a record without its text field, or with text that is not a non-empty string, fails the whole request
  (400 naming the record). The text is truncated at the model's input limit (``truncate: END``). Answer: 201, empty.
- **Search** by ``query.inputs.text`` (integrated indexes only), ``query.vector`` or ``query.id``; ``top_k`` required
  (1..``MAX_SEARCH_TOP_K``), ``filter``, ``fields`` (default: every field). Reranking is refused: the sandbox hosts
  no reranker. Answer: ``{"result": {"hits": [{"_id", "_score", "fields"}]}, "usage": {"read_units",
  "embed_total_tokens"}}``.
- **Embedding tokens per minute** per model (``Faults.embed_tokens_per_min``, off by default): a request whose tokens
  do not fit in the last 60 s is refused with 429 and ``Retry-After``. A model counts a token per word (a run of
  letters, digits or ``_``), each text at most its input limit.
- A records endpoint on an index without integrated embedding answers 400 for text, as Pinecone's does.

The models are stood in for by ``ModelStandIn``: words and neighbouring word pairs hashed (keyed by the model's
name) into a unit vector. Deterministic and offline; a record's own text finds it first. The sandbox imports nothing
of the product, so this is its own, not nsmigrate's re-embedding ``workers.transfer.embedders``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_server import IndexService

#: Records per upsert_records request (Pinecone docs, "Upsert limits": 96 records of text per request).
MAX_RECORDS_PER_UPSERT = 96
#: Bytes per upsert_records request (the same 2 MB as a vector upsert).
MAX_RECORDS_REQUEST_BYTES = 2 * 1024 * 1024
MAX_SEARCH_TOP_K = 10_000
NOT_INTEGRATED = "Integrated inference is not configured for this index"


_WORD = re.compile(r"\w+")


def model_tokens(text: str, limit: int | None) -> list[str]:
    """The tokens a stand-in model reads of ``text``: its lower-cased words, cut at the model's input limit."""
    return _WORD.findall(text.lower())[:limit]


class ModelStandIn:
    """A hosted model's stand-in: hashed words and word pairs, summed and normalised (see the module docstring)."""

    def __init__(self, name: str, dimension: int, max_input_tokens: int | None) -> None:
        self.dimension, self.limit = dimension, max_input_tokens
        self._salt = name.encode()

    def vector(self, text: str) -> np.ndarray:
        tokens = model_tokens(text, self.limit)
        grams = [*tokens, *(" ".join(pair) for pair in itertools.pairwise(tokens))] or [""]
        digests = [hashlib.blake2b(g.encode(), digest_size=8, salt=self._salt[:16]).digest() for g in grams]
        numbers = np.array([int.from_bytes(d, "big") for d in digests], dtype=np.uint64)
        signs = np.where((numbers & np.uint64(1)) == 1, 1.0, -1.0)
        out = np.zeros(self.dimension, dtype=np.float64)
        np.add.at(out, (numbers >> np.uint64(1)) % np.uint64(self.dimension), signs)
        norm = float(np.linalg.norm(out))
        return (out / norm if norm else out).astype(np.float32)


@dataclass(frozen=True)
class HostedModel:
    """An embedding model Pinecone hosts, as far as an index uses it."""

    name: str
    dimensions: tuple[int, ...]  # the first is the default
    metrics: tuple[str, ...]  # the first is the default
    max_input_tokens: int


#: The dense models an integrated index may be created for (a subset of Pinecone's, with their documented shapes).
HOSTED_MODELS = {
    m.name: m
    for m in (
        HostedModel("multilingual-e5-large", (1024,), ("cosine", "euclidean", "dotproduct"), 507),
        HostedModel("llama-text-embed-v2", (1024, 2048, 768, 512, 384), ("cosine", "dotproduct"), 2048),
    )
}


@dataclass(frozen=True)
class IntegratedEmbed:
    """The embedding configuration of an integrated index: its model and the record field holding the text."""

    model: str
    field: str
    dimension: int
    metric: str

    @property
    def input_limit(self) -> int | None:
        return HOSTED_MODELS[self.model].max_input_tokens if self.model in HOSTED_MODELS else None

    def embedder(self) -> ModelStandIn:
        return ModelStandIn(self.model, self.dimension, self.input_limit)

    def tokens(self, text: str) -> int:
        return len(model_tokens(text, self.input_limit))


def read_embed_config(embed: Any) -> IntegratedEmbed:
    """The ``embed`` object of a create-for-model request, checked as the control plane does.

    Raises:
        ValueError: unknown model, no ``field_map.text``, or a dimension or metric the model does not support.
    """
    if not isinstance(embed, dict):
        raise ValueError("embed must be an object with model and field_map")
    model = HOSTED_MODELS.get(str(embed.get("model")))
    if model is None:
        raise ValueError(f"Model '{embed.get('model')}' not found; available: {', '.join(sorted(HOSTED_MODELS))}")
    field_map = embed.get("field_map")
    field = field_map.get("text") if isinstance(field_map, dict) else None
    if not isinstance(field, str) or not field:
        raise ValueError("embed.field_map must map 'text' to the name of the record field holding the text")
    dimension = int(embed.get("dimension") or model.dimensions[0])
    if dimension not in model.dimensions:
        raise ValueError(f"Model {model.name} does not support dimension {dimension}; supported: {model.dimensions}")
    metric = str(embed.get("metric") or model.metrics[0])
    if metric not in model.metrics:
        raise ValueError(f"Model {model.name} does not support metric {metric}; supported: {model.metrics}")
    return IntegratedEmbed(model=model.name, field=field, dimension=dimension, metric=metric)


class TokenWindow:
    """Embedding tokens used in the last 60 s, against a per-minute limit. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: deque[tuple[float, int]] = deque()

    def admit(self, tokens: int, per_minute: int | None) -> float | None:
        """Count ``tokens`` and return None, or refuse and return the seconds until they would fit."""
        now = time.monotonic()
        with self._lock:
            while self._used and self._used[0][0] <= now - 60.0:
                self._used.popleft()
            if per_minute is None:
                self._used.append((now, tokens))
                return None
            used = sum(n for _, n in self._used)
            if used + tokens <= per_minute:
                self._used.append((now, tokens))
                return None
            if tokens > per_minute:
                return 60.0
            # Wait until enough of the oldest usage has left the window.
            need, freed = used + tokens - per_minute, 0
            for at, n in self._used:
                freed += n
                if freed >= need:
                    return max(0.001, at + 60.0 - now)
            return 60.0

    def clear(self) -> None:
        with self._lock:
            self._used.clear()


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    from nsmigrate_sandbox.pinecone_server import _Refusal

    return _Refusal(status, message, headers)


def _integrated(service: IndexService) -> IntegratedEmbed:
    if service.spec.embed is None:
        raise _refuse(400, NOT_INTEGRATED)
    return service.spec.embed


def _charge_tokens(service: IndexService, tokens: int) -> None:
    limit = service.faults.faults.embed_tokens_per_min
    wait = service.tokens.admit(tokens, limit)
    if wait is not None:
        raise _refuse(
            429,
            f"Request failed. You've reached the max embedding tokens per minute ({limit}) for model "
            f"{_integrated(service).model}. Retry after the Retry-After interval.",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )


def parse_ndjson(body: bytes) -> list[Any]:
    records = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as e:
            raise _refuse(400, f"Invalid NDJSON on line {number}: {e}") from e
    return records


def upsert_records(service: IndexService, namespace: str, body: bytes) -> None:
    """``POST /records/namespaces/{namespace}/upsert`` (see the module docstring)."""
    from nsmigrate_sandbox.pinecone_server import MAX_ID_LENGTH, _Record, _valid_id, validate_metadata

    embed = _integrated(service)
    if len(body) > MAX_RECORDS_REQUEST_BYTES:
        raise _refuse(
            400,
            f"Request size {len(body) / (1024 * 1024):.1f}MB exceeds the maximum supported size of 2MB. "
            "Please try to reduce your batch size.",
        )
    rows = parse_ndjson(body)
    if not rows:
        raise _refuse(400, "No records provided: the body must hold at least one record")
    if len(rows) > MAX_RECORDS_PER_UPSERT:
        raise _refuse(
            400, f"Upsert request contains {len(rows)} records; the maximum is {MAX_RECORDS_PER_UPSERT} records"
        )
    texts: list[tuple[str, str, dict[str, Any]]] = []
    for row in rows:
        if not isinstance(row, dict):
            raise _refuse(400, "each record must be a JSON object")
        fields = dict(row)
        record_id = fields.pop("_id", None)
        alias = fields.pop("id", None)
        record_id = _valid_id(record_id if record_id is not None else alias, "Record _id")
        if len(record_id) > MAX_ID_LENGTH:
            raise _refuse(400, f"Record _id is longer than {MAX_ID_LENGTH} characters")
        text = fields.get(embed.field)
        if not isinstance(text, str) or not text.strip():
            raise _refuse(
                400,
                f"Record '{record_id}' is missing the field '{embed.field}' to embed (a non-empty string, as the "
                "index's field_map says)",
            )
        metadata = validate_metadata(fields) or {}
        texts.append((record_id, text, metadata))
    _charge_tokens(service, sum(embed.tokens(t) for _, t, _ in texts))
    embedder = embed.embedder()
    stored = [(i, _Record(embedder.vector(t), m)) for i, t, m in texts]
    dropped = service.faults.choose_drops(len(stored))
    kept = [r for position, r in enumerate(stored) if position not in dropped]
    service.store.put(namespace, kept)
    service.faults.count_stored(len(kept), len(dropped))


def search_records(service: IndexService, namespace: str, payload: Any) -> dict[str, Any]:
    """``POST /records/namespaces/{namespace}/search`` (see the module docstring)."""
    from nsmigrate_sandbox.pinecone_server import _as_vector, _int_in, _valid_id, compile_filter

    if not isinstance(payload, dict) or not isinstance(payload.get("query"), dict):
        raise _refuse(400, "query is required: an object with top_k and one of inputs, vector or id")
    if payload.get("rerank") is not None:
        raise _refuse(400, "Reranking is not available for this index (the local data plane hosts no reranker)")
    query = payload["query"]
    if "top_k" not in query:
        raise _refuse(400, "query.top_k is required")
    top_k = _int_in(query["top_k"], "top_k", 1, MAX_SEARCH_TOP_K)
    sources = [k for k in ("inputs", "vector", "id") if query.get(k) is not None]
    if len(sources) != 1:
        raise _refuse(400, "give exactly one of query.inputs, query.vector or query.id")
    tokens = 0
    if sources == ["inputs"]:
        embed = _integrated(service)
        text = query["inputs"].get("text") if isinstance(query["inputs"], dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _refuse(400, "query.inputs.text must be a non-empty string")
        tokens = embed.tokens(text)
        _charge_tokens(service, tokens)
        vector: np.ndarray | None = embed.embedder().vector(text)
    elif sources == ["vector"]:
        raw = query["vector"]
        values = raw.get("values") if isinstance(raw, dict) else raw
        vector = _as_vector(values, service.spec.dimension, "Query vector")
    else:
        found = service.store.fetch(namespace, [_valid_id(query["id"])])
        vector = next(iter(found.values())).values if found else None
    predicate = compile_filter(query["filter"]) if query.get("filter") is not None else None
    wanted = payload.get("fields")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(f, str) for f in wanted)):
        raise _refuse(400, "fields must be an array of field names")
    matches = [] if vector is None else service.store.query(namespace, vector, top_k, predicate)
    hits = []
    for record_id, score, record in matches:
        fields = dict(record.metadata or {})
        if wanted is not None:
            fields = {k: v for k, v in fields.items() if k in wanted}
        hits.append({"_id": record_id, "_score": score, "fields": fields})
    usage: dict[str, Any] = {"read_units": max(1, math.ceil(len(hits) / 10))}
    if tokens:
        usage["embed_total_tokens"] = tokens
    # The namespace that served the search: the alias's target when the request named an alias (API 2026-07).
    return {"result": {"hits": hits}, "usage": usage, "namespace": namespace or "__default__"}

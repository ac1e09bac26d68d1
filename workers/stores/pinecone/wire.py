"""The data plane's wire format as nsmigrate reads and writes it: each reply decoded into just what nsmigrate uses
(list: the ids and the token; describe_namespace: the count), an upsert's body with values kept as the JSON
the server sent (upsert_json), and what an index refuses of a record before it is sent (over_limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import (
    RECORD_ID_MAX_CHARS,
    RECORD_METADATA_MAX_BYTES,
)
from nsmigrate.orchestrator.records.vectors import BinaryValues, JsonValues, SparseValues
from nsmigrate.workers.stores.base import Record


class _ListedId(msgspec.Struct):
    id: str


class _Pagination(msgspec.Struct):
    next: str | None = None


class _ListReply(msgspec.Struct):
    """What a ``list`` request answers, of it what nsmigrate reads (``usage`` and ``namespace`` are ignored)."""

    vectors: list[_ListedId] = []
    pagination: _Pagination | None = None


_LIST_REPLY = msgspec.json.Decoder(_ListReply)


class _NamespaceReply(msgspec.Struct):
    """What ``describe_namespace`` answers, of it the count (Pinecone sends it as a string: ``"3"``)."""

    record_count: int | str | None = None


_NAMESPACE_REPLY = msgspec.json.Decoder(_NamespaceReply)


class _NamespaceSummary(msgspec.Struct):
    vectorCount: int = 0  # the wire's name


class _StatsReply(msgspec.Struct):
    """What ``describe_index_stats`` answers, of it what nsmigrate reads."""

    namespaces: dict[str, _NamespaceSummary] = {}
    dimension: int | None = None
    metric: str | None = None


_STATS_REPLY = msgspec.json.Decoder(_StatsReply)


class _UpsertReply(msgspec.Struct):
    upsertedCount: int = 0


_UPSERT_REPLY = msgspec.json.Decoder(_UpsertReply)


class _Match(msgspec.Struct):
    id: str
    score: float | None = None


class _QueryReply(msgspec.Struct):
    matches: list[_Match] = []


_QUERY_REPLY = msgspec.json.Decoder(_QueryReply)


class _Hit(msgspec.Struct):
    id: str = msgspec.field(name="_id")


class _SearchResult(msgspec.Struct):
    hits: list[_Hit] = []


class _SearchReply(msgspec.Struct):
    result: _SearchResult = msgspec.field(default_factory=_SearchResult)


_SEARCH_REPLY = msgspec.json.Decoder(_SearchReply)


def _read(decoder: msgspec.json.Decoder[Any], content: bytes, op: str) -> Any:
    """A reply read as ``decoder``'s type; a ``StoreError`` naming the operation when it is not one."""
    try:
        return decoder.decode(content)
    except (msgspec.MsgspecError, ValueError) as e:
        raise StoreError(f"Pinecone {op} answered something that is not a {op} response: {e}") from e


def _values_json(values: Sequence[float]) -> bytes | memoryview:
    """Fetched values go back verbatim (see the module docstring); a pgvector table's are written from their
    float32s, never made floats first."""
    if isinstance(values, JsonValues):
        return values.json
    return values.as_json() if isinstance(values, BinaryValues) else orjson.dumps(list(values))


def _wire_values(values: Sequence[float]) -> Any:
    """The values as orjson writes them into a larger body: fetched JSON as it came (an ``orjson.Fragment``)."""
    if isinstance(values, JsonValues | BinaryValues):
        return orjson.Fragment(bytes(_values_json(values)))
    return list(values)


def upsert_json(namespace: str, records: Sequence[Record]) -> bytes:
    """The body of ``POST /vectors/upsert`` (the OpenAPI ``UpsertRequest``), as compact JSON: the request
    ``workers.transfer.chunking`` keeps under Pinecone's limits. Written as orjson would write
    ``{"vectors": [{"id", "values", "sparseValues"?, "metadata"?}, …], "namespace"?}``, but joined once from its
    parts, so the fetched values (views into their response) are copied once, into the body, and no larger buffer
    is grown record by record."""
    parts: list[bytes | memoryview] = [b'{"vectors":[']
    for n, record in enumerate(records):
        parts += (b'{"id":' if n == 0 else b',{"id":', orjson.dumps(record.id), b',"values":')
        parts.append(_values_json(record.values))
        if record.sparse_values is not None:
            sparse = record.sparse_values
            sparse_json = orjson.dumps({"indices": list(sparse.indices), "values": list(sparse.values)})
            parts += (b',"sparseValues":', sparse_json)
        if record.metadata:
            parts += (b',"metadata":', orjson.dumps(dict(record.metadata)))
        parts.append(b"}")
    parts.append(b'],"namespace":' + orjson.dumps(namespace) + b"}" if namespace else b"]}")
    return b"".join(parts)


def _sparse(found: Any) -> SparseValues | None:
    """The sparse values of a fetched vector, None when it has none."""
    if found is None or not list(found.indices or []):
        return None
    return SparseValues(tuple(int(i) for i in found.indices), tuple(float(v) for v in found.values))


def _shown_id(record_id: str) -> str:
    return repr(record_id) if len(record_id) <= 40 else f"{record_id[:40]!r}…"


def over_limits(records: Sequence[Record]) -> list[str]:
    """One line per record a Pinecone index would refuse: an id over ``RECORD_ID_MAX_CHARS`` characters, metadata
    over ``RECORD_METADATA_MAX_BYTES`` bytes as JSON (how Pinecone measures it)."""
    problems = []
    for r in records:
        if len(r.id) > RECORD_ID_MAX_CHARS:
            problems.append(f"id {_shown_id(r.id)} is {len(r.id)} characters (at most {RECORD_ID_MAX_CHARS})")
        size = len(orjson.dumps(dict(r.metadata))) if r.metadata else 0
        if size > RECORD_METADATA_MAX_BYTES:
            problems.append(f"id {_shown_id(r.id)} has {size} bytes of metadata (at most {RECORD_METADATA_MAX_BYTES})")
    return problems

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
    DENSE_VALUE_MIN_MAGNITUDE,
    RECORD_METADATA_MAX_BYTES,
)
from nsmigrate.orchestrator.records.vectors import BinaryValues, JsonValues, SparseValues, pinecone_id_problem
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.pinecone.fetch_body import RawSparse


class _ListedId(msgspec.Struct):
    id: str


class Pagination(msgspec.Struct):
    """The ``pagination`` of a Pinecone list answer (ids, aliases, imports): the next page's token, if any."""

    next: str | None = None


class _ListReply(msgspec.Struct):
    """What a ``list`` request answers, of it what nsmigrate reads (``usage`` and ``namespace`` are ignored)."""

    vectors: list[_ListedId] = []
    pagination: Pagination | None = None


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


class _RecordMatch(msgspec.Struct):
    """A match of a query that asked for values and metadata: a record as fetch gives it, its values left as the
    JSON the server sent."""

    id: str
    values: msgspec.Raw = msgspec.Raw(b"[]")
    sparseValues: RawSparse | None = None  # the wire's name
    metadata: dict[str, Any] | None = None


class _RecordsReply(msgspec.Struct):
    matches: list[_RecordMatch] = []


_RECORDS_REPLY = msgspec.json.Decoder(_RecordsReply)


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


def _only_zeros(values: Sequence[float]) -> bool:
    """Whether dense ``values`` are all below ``DENSE_VALUE_MIN_MAGNITUDE`` in magnitude. Values fetched from Pinecone
    (``JsonValues``) are never read: it holds no such vector, and decoding them would cost every copy."""
    if isinstance(values, JsonValues) or not len(values):
        return False
    if isinstance(values, BinaryValues):
        import numpy as np  # only for a pgvector source's values

        floats = np.frombuffer(values.binary, dtype=">f4", count=len(values), offset=4)
        # As float32s: each goes out as its shortest decimal, at least 1e-8 exactly when the float32 is.
        return not bool((np.abs(floats) >= np.float32(DENSE_VALUE_MIN_MAGNITUDE)).any())
    return not any(abs(v) >= DENSE_VALUE_MIN_MAGNITUDE for v in values)  # stops at the first value that counts


def over_limits(records: Sequence[Record], dense: bool = True) -> list[str]:
    """One line per record a Pinecone index would refuse: an id over ``RECORD_ID_MAX_CHARS`` characters or not ASCII
    (or holding NUL), metadata over ``RECORD_METADATA_MAX_BYTES`` bytes as JSON (how Pinecone measures it) or with a
    key starting with ``$`` (reserved for filter operators) and, when ``dense`` values are sent, values all zero."""
    problems = []
    for r in records:
        id_problem = pinecone_id_problem(r.id)
        if id_problem is not None:
            problems.append(f"id {_shown_id(r.id)} {id_problem}")
        size = len(orjson.dumps(dict(r.metadata))) if r.metadata else 0
        if size > RECORD_METADATA_MAX_BYTES:
            problems.append(f"id {_shown_id(r.id)} has {size} bytes of metadata (at most {RECORD_METADATA_MAX_BYTES})")
        reserved = [key for key in r.metadata if key.startswith("$")] if r.metadata else []
        if reserved:
            keys = ", ".join(repr(key) for key in reserved[:5])
            problems.append(f"id {_shown_id(r.id)} has metadata key(s) {keys} starting with '$' (reserved by Pinecone)")
        if dense and _only_zeros(r.values):
            problems.append(
                f"id {_shown_id(r.id)} has only zeros as values (Pinecone needs one of magnitude "
                f"{DENSE_VALUE_MIN_MAGNITUDE:g} or more)"
            )
    return problems

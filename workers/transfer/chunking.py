"""Split records into upsert requests that stay under Pinecone's limits (≤ 1,000 vectors and ≤ 2 MB per request),
and ids into chunks of a request's size (``chunks``: fetches, proofs, deletes).

Pure: no I/O. The size is an *upper bound* of the JSON body the SDK sends (orjson, compact), so a chunk that fits here
fits on the wire: ids and metadata are measured exactly (with the SDK's own encoder), values kept as fetched JSON
(``JsonValues``) are measured exactly too, and any other value is charged the longest compact JSON form of a double
with its comma (``orchestrator.limits.JSON_NUMBER_MAX_BYTES``), about twice what a typical float32 embedding needs,
rather than risking a 413 that fails a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import orjson

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import (
    JSON_NUMBER_MAX_BYTES,
    PGVECTOR_BINARY_HEADER_BYTES,
    PGVECTOR_BINARY_VALUE_BYTES,
    UPSERT_MAX_BYTES,
    UPSERT_MAX_VECTORS,
)
from nsmigrate.orchestrator.records.vectors import JsonValues, Record

#: ``{"id":,"values":[],"metadata":}`` plus the comma between records.
RECORD_OVERHEAD_BYTES = 32
#: ``{"vectors":[],"namespace":"…"}`` with room for a 512-character namespace (JSON-escaped).
ENVELOPE_BYTES = 2_048


T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _json_len(value: object) -> int:
    return len(orjson.dumps(value))


def estimate_bytes(record: Record) -> int:
    """Upper bound of the bytes ``record`` adds to an upsert request body.

    Raises:
        StoreError: the metadata is not JSON (e.g. holds a datetime); no store would accept it.
    """
    values = record.values
    values_bytes = len(values.json) if isinstance(values, JsonValues) else JSON_NUMBER_MAX_BYTES * len(values)
    return values_bytes + _rest_bytes(record)


def binary_bytes(record: Record) -> int:
    """The bytes ``record`` adds to a write into a pgvector table (``workers.stores.pgvector.binary``'s binary COPY):
    its values as float32s and their header, its id and metadata as above. What the write budget of a pgvector target
    counts: the JSON bound of a Pinecone request charged it about six times what it sends.

    Raises:
        StoreError: the metadata is not JSON.
    """
    return PGVECTOR_BINARY_VALUE_BYTES * len(record.values) + PGVECTOR_BINARY_HEADER_BYTES + _rest_bytes(record)


def _rest_bytes(record: Record) -> int:
    """Upper bound of what ``record`` adds besides its dense values: its id, sparse values and metadata as JSON."""
    size = RECORD_OVERHEAD_BYTES + _json_len(record.id)
    if record.sparse_values is not None:
        size += _json_len(record.sparse_values.to_json())
    if record.metadata:
        try:
            size += _json_len(record.metadata)
        except (TypeError, orjson.JSONEncodeError) as e:
            raise StoreError(
                f"metadata of record {record.id!r} is not JSON: {e}",
                hint="metadata values must be strings, numbers, booleans or lists of strings",
                record_id=record.id,
            ) from e
    return size


def chunk_for_upsert(
    records: Sequence[Record], max_count: int = UPSERT_MAX_VECTORS, max_bytes: int = UPSERT_MAX_BYTES
) -> list[list[Record]]:
    """Split ``records`` in order into chunks of ≤ ``max_count`` records whose request body is ≤ ``max_bytes``.

    Every record lands in exactly one chunk and the order is kept (a later duplicate id still wins).

    Raises:
        StoreError: a single record is too large for one request on its own (its id is named).
        ValueError: the limits leave no room for any record.
    """
    return [chunk for chunk, _ in sized_chunks(records, max_count, max_bytes)]


def sized_chunks(
    records: Sequence[Record],
    max_count: int = UPSERT_MAX_VECTORS,
    max_bytes: int = UPSERT_MAX_BYTES,
    measure: Callable[[Record], int] = estimate_bytes,
) -> list[tuple[list[Record], int]]:
    """``chunk_for_upsert`` with each chunk's estimated bytes (the sum of ``measure`` of its records: ``estimate_bytes``
    for a Pinecone request, ``binary_bytes`` for a pgvector table), for the byte budget, so a copy measures every
    record once."""
    if max_count < 1 or max_bytes <= ENVELOPE_BYTES:
        raise ValueError(f"max_count must be ≥ 1 and max_bytes > {ENVELOPE_BYTES}, got {max_count} and {max_bytes}")
    budget = max_bytes - ENVELOPE_BYTES
    chunks: list[tuple[list[Record], int]] = []
    current: list[Record] = []
    current_bytes = 0
    for record in records:
        size = measure(record)
        if size > budget:
            raise StoreError(
                f"record {record.id!r} needs ~{size:,} bytes, more than one upsert request may carry "
                f"({max_bytes:,} bytes)",
                hint="shrink its metadata (Pinecone allows 40 KB of metadata per vector) or its dimension",
                record_id=record.id,
            )
        if current and (len(current) >= max_count or current_bytes + size > budget):
            chunks.append((current, current_bytes))
            current, current_bytes = [], 0
        current.append(record)
        current_bytes += size
    if current:
        chunks.append((current, current_bytes))
    return chunks

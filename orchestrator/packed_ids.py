"""A batch's ids stored compactly: one ``bytea`` per batch instead of a JSON array.

The value is one format byte, then the ids as UTF-8, each followed by a NUL byte (no id holds NUL: Postgres text and
JSON refuse it, and Pinecone's ids are strings of printable characters): format 0 stores that as it is, format 1
zlib-compresses it. A JSON array costs each id its quotes and JSONB's per-element header, and Postgres compresses
only values of more than ~2 kB with pglz, which gains nothing on random hexadecimal ids; zlib halves them
(figures: ``bench/README.md``). Format 0 is also what the upgrade from a JSONB column writes, in SQL.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

RAW, ZLIB = 0, 1
#: Below this many bytes zlib's header and checksum outweigh what it saves.
_WORTH_COMPRESSING = 64


def pack_ids(ids: Sequence[str]) -> bytes:
    """The stored form of ``ids`` (any strings without NUL, in order; duplicates and empty strings kept)."""
    payload = "".join(f"{i}\0" for i in ids).encode()
    if payload.count(0) != len(ids):
        raise ValueError("a vector id holds a NUL character, which the job table cannot store")
    if len(payload) >= _WORTH_COMPRESSING:
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            return bytes((ZLIB,)) + packed
    return bytes((RAW,)) + payload


def unpack_ids(stored: bytes) -> list[str]:
    """The ids ``pack_ids`` stored, in their order."""
    if not stored:
        raise ValueError("stored batch ids are empty: not written by pack_ids")
    fmt, body = stored[0], memoryview(stored)[1:]
    if fmt == ZLIB:
        payload = zlib.decompress(body)
    elif fmt == RAW:
        payload = bytes(body)
    else:
        raise ValueError(f"stored batch ids have unknown format {fmt}")
    return payload.decode().split("\0")[:-1]


class PackedIds(sa.types.TypeDecorator[list[str]]):
    """A list of ids in Python, ``pack_ids`` bytes in the database."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Sequence[str] | None, dialect: Any) -> bytes | None:
        return None if value is None else pack_ids(value)

    def process_result_value(self, value: bytes | None, dialect: Any) -> list[str] | None:
        return None if value is None else unpack_ids(value)


#: The upgrade of a JSONB ``ids`` column in SQL (format 0, every id NUL-terminated, in the array's order).
PACK_JSONB_IDS_SQL = (
    "'\\x00'::bytea || coalesce((SELECT string_agg(convert_to(e, 'UTF8') || '\\x00'::bytea, ''::bytea ORDER BY n) "
    "FROM jsonb_array_elements_text({column}) WITH ORDINALITY AS a(e, n)), ''::bytea)"
)

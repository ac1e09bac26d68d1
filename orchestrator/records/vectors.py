"""The plain data a migration moves: a vector record and a page of ids. No I/O, shared by both halves."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import orjson

from nsmigrate.orchestrator.limits import RECORD_ID_MAX_CHARS

DEFAULT_NAMESPACE = ""  # Pinecone reports it as "__default__"; nsmigrate always uses ""


class _DecodedOnRead(Sequence[float]):
    """Vector values kept in the form a store sent them, decoded to floats (once) only if someone reads them; equal
    to any sequence of the same floats."""

    __slots__ = ("_floats",)

    def __init__(self) -> None:
        self._floats: list[float] | None = None

    def _decode(self) -> list[float]:
        raise NotImplementedError

    def floats(self) -> list[float]:
        if self._floats is None:
            self._floats = self._decode()
        return self._floats

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> list[float]: ...
    def __getitem__(self, index: int | slice) -> float | list[float]:
        return self.floats()[index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.floats())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self.floats() == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-equal like a list

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy as np  # only where values are compared: planning and copying never need numpy

        return np.asarray(self.floats(), dtype=dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} values)"


class JsonValues(_DecodedOnRead):
    """Vector values kept as the JSON array a store sent (``b"[0.1,-0.2,…]"``), decoded only if someone reads them.

    A copy between Pinecone indexes never looks at the values: it routes by id and enriches metadata. Keeping them as
    the fetched bytes lets the upsert send them back verbatim, so a 1536-dimension vector costs no 1,536 Python
    floats decoded and re-encoded per hop (most of a copy worker's CPU), and the request size is known exactly.
    Everything else (verification, pgvector, backups) sees an ordinary sequence of floats. ``json`` may be a view
    into the response the values came in (``workers.stores.pinecone.fetch_body``): it keeps that response alive.
    """

    __slots__ = ("json",)

    def __init__(self, json: bytes | memoryview) -> None:
        super().__init__()
        self.json = json

    def _decode(self) -> list[float]:
        return orjson.loads(self.json)

    def __len__(self) -> int:
        # A flat array of numbers: one more value than commas, no decoding needed.
        if self._floats is not None:
            return len(self._floats)
        json = bytes(self.json)
        return 0 if not json.strip(b" \t\r\n[]") else json.count(b",") + 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonValues):
            return self.floats() == other.floats()
        return super().__eq__(other)


class BinaryValues(_DecodedOnRead):
    """Vector values kept in pgvector's binary form (``uint16`` dimension, ``uint16`` unused, big-endian ``float32``
    values), as a pgvector table sent them, decoded only if someone reads them.

    A copy between pgvector tables writes them back as they came (``workers.stores.pgvector.binary``), with no float
    made or printed on the way. Read as floats they are what pgvector's text form of the same vector reads as (each
    float32's shortest decimal), so a record fetched either way is equal, value for value.
    """

    __slots__ = ("binary",)

    def __init__(self, binary: bytes) -> None:
        super().__init__()
        self.binary = binary

    def as_json(self) -> bytes:
        """The values as a JSON array, each float32 as its shortest decimal (orjson prints a float32 so, as pgvector's
        text form does): what a Pinecone upsert sends of them."""
        import numpy as np  # only where the values are read

        values = np.frombuffer(self.binary, dtype=">f4", count=len(self), offset=4).astype(np.float32)
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)

    def _decode(self) -> list[float]:
        return orjson.loads(self.as_json())

    def __len__(self) -> int:
        return int.from_bytes(self.binary[:2], "big")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BinaryValues):
            return self.binary == other.binary
        return super().__eq__(other)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy as np

        if dtype is not None and np.dtype(dtype) == np.float32:  # what comparisons ask for: the bytes are that
            return np.frombuffer(self.binary, dtype=">f4", count=len(self), offset=4).astype(np.float32)
        return super().__array__(dtype)


def same_bytes(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether both are values in one form a store sent (JSON arrays, pgvector's binary), equal byte for byte: then
    they decode to the same floats, and a comparison need not read the numbers of either (1,536 a vector, each a
    Python float when decoded). False says nothing: values a byte apart, or in other forms, may still be equal."""
    if isinstance(a, JsonValues) and isinstance(b, JsonValues):
        # As bytes: two memoryviews compare value by value, ~20× slower than copying both and comparing the copies.
        return bytes(a.json) == bytes(b.json)
    if isinstance(a, BinaryValues) and isinstance(b, BinaryValues):
        return a.binary == b.binary
    return False


@dataclass(frozen=True)
class SparseValues:
    """The sparse part of a Pinecone record (hybrid search): the non-zero dimensions and their values."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def to_json(self) -> dict[str, list[Any]]:
        return {"indices": list(self.indices), "values": list(self.values)}


@dataclass(frozen=True)
class Record:
    """One vector: its id, its dense values, its metadata and (Pinecone, dotproduct indexes) its sparse values."""

    id: str
    values: Sequence[float]
    metadata: dict[str, Any] = field(default_factory=dict)
    sparse_values: SparseValues | None = None


@dataclass(frozen=True)
class IdPage:
    """One page of ids from ``list_ids``; ``next_token`` is None on the last page. ``reconciled_lsn``: the log
    sequence number of the last write the listing reflects, when the store says (serverless Pinecone)."""

    ids: list[str]
    next_token: str | None
    reconciled_lsn: int | None = None


def pinecone_id_problem(record_id: str) -> str | None:
    """What makes ``record_id`` one a Pinecone index refuses, as "is …" / "has …" text, or None when it may hold it."""
    if len(record_id) > RECORD_ID_MAX_CHARS:
        return f"is {len(record_id)} characters (at most {RECORD_ID_MAX_CHARS})"
    if not record_id.isascii():
        return "has a non-ASCII character (Pinecone takes ASCII ids only)"
    if "\x00" in record_id:
        return "has a NUL character (Pinecone refuses it in ids)"
    return None

"""A Pinecone fetch response read without parsing its vectors' values.

A copy passes each vector's values on as the JSON array the server sent (``orchestrator.records.vectors.JsonValues``),
so nothing needs their numbers. msgspec reading the response with ``values`` as ``msgspec.Raw`` still scans every number
to find where each array ends, most of a fetch's CPU, holding the interpreter lock. Here each array
is cut out where a ``"values"`` key opens it (a dense array holds numbers only, so it ends at the next ``]``), and
msgspec reads what is left, each array replaced by its index. The arrays' numbers are not checked: a target refuses
an upsert whose values are not numbers. Each array is a view into the body, never a copy of its own: the upsert body
copies it once (``workers.stores.pinecone.wire.upsert_json``); 200 arrays of 20 KB, each a fresh allocation, cost
more than the rest of the cut (their pages faulted in anew on every fetch).

What msgspec then finds proves the cut: every vector's ``values`` must be exactly its own index, in order, and every
cut array must be one of them. Anything else — a ``"values"`` key in metadata or in sparse values, a key escaped
oddly, an array that did not end where it was cut, a vector without dense values — gives None, and the caller reads
the response the general way.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: Whitespace JSON allows between a key, its colon and its value.
_WHITESPACE = b" \t\r\n"
_KEY = b'"values"'


class RawSparse(msgspec.Struct):
    indices: list[int] = []
    values: list[float] = []


class _RawVector(msgspec.Struct):
    """A fetched vector, its dense values left as JSON: the array the server sent (the general way), or the ``[n]``
    that replaced the n-th array cut out."""

    values: msgspec.Raw = msgspec.Raw(b"[]")
    metadata: dict[str, Any] | None = None
    sparseValues: RawSparse | None = None  # the wire's name


class _RawFetch(msgspec.Struct):
    vectors: dict[str, _RawVector] = {}


_RAW_FETCH = msgspec.json.Decoder(_RawFetch)


class Fetched(msgspec.Struct):
    """A fetched vector: its values as the JSON array the server sent (a view into the response when cut out), its
    metadata and sparse values."""

    values: bytes | memoryview
    metadata: dict[str, Any] | None
    sparse: RawSparse | None


def read_fetch(body: bytes) -> dict[str, Fetched]:
    """``{id: Fetched}`` of a fetch response body: cut (``split_fetch``), else read by msgspec the general way.

    Raises:
        msgspec.MsgspecError: the body is not a fetch response.
    """
    found = split_fetch(body)
    if found is not None:
        return found
    return {i: Fetched(bytes(v.values), v.metadata, v.sparseValues) for i, v in _RAW_FETCH.decode(body).vectors.items()}


def _array_start(body: bytes, after_key: int) -> int:
    """Where the ``[`` of the array that follows a key ending at ``after_key`` is, or -1 when something else does."""
    at, end = after_key, len(body)
    while at < end and body[at] in _WHITESPACE:
        at += 1
    if at >= end or body[at] != 0x3A:  # ":"
        return -1
    at += 1
    while at < end and body[at] in _WHITESPACE:
        at += 1
    return at if at < end and body[at] == 0x5B else -1  # "["


def split_fetch(body: bytes) -> dict[str, Fetched] | None:
    """``{id: Fetched}`` of a fetch response body, its values arrays cut out unparsed (views into ``body``); None when
    the cut cannot be proven right (see the module docstring), or the body is not a fetch response."""
    view = memoryview(body)
    pieces: list[bytes | memoryview] = []
    arrays: list[memoryview] = []
    pos = 0
    while (key := body.find(_KEY, pos)) >= 0:
        if key and body[key - 1] == 0x5C:  # a backslash: the quote may be escaped, inside a string
            return None
        start = _array_start(body, key + len(_KEY))
        if start < 0:  # "values" naming something else (a string, an object): not cut
            pieces.append(view[pos : key + len(_KEY)])
            pos = key + len(_KEY)
            continue
        end = body.find(b"]", start)
        if end < 0:
            return None
        pieces.append(view[pos : start + 1])
        pieces.append(b"%d" % len(arrays))
        arrays.append(view[start : end + 1])
        pos = end
    pieces.append(view[pos:])
    try:
        marked = _RAW_FETCH.decode(b"".join(pieces)).vectors
    except msgspec.MsgspecError:
        return None
    if len(marked) != len(arrays):
        return None
    found: dict[str, Fetched] = {}
    for n, (record_id, vector) in enumerate(marked.items()):
        if bytes(vector.values) != b"[%d]" % n:
            return None
        found[record_id] = Fetched(arrays[n], vector.metadata, vector.sparseValues)
    return found

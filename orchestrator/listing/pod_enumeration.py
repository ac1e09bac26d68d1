"""Finding the ids of a source that cannot list them (a pod index): the pure parts. No I/O here.

Pinecone serves ``list`` only for serverless indexes. A pod's ids come from a **catalogue** (rows of namespace, id
kept elsewhere, read in pages ordered by id) or a **sweep** (queries with seeded random vectors, each returning up to
``top_k`` ids without values or metadata, until the ids seen cover the namespace's count in describe_index_stats).
``workers.stores.enumeration`` does the reading; this module holds the page tokens, the catalogue file format, the
sweep's query vectors and what each way costs.

Either way the ids come out as ``IdPage``s behind the store's ``list_ids``, so every caller that pages ids (the
lister, verification, sync, backups, cleanup) works unchanged. A page token is ``<kind>:<session>:<last id>``: the
next page holds the ids after the last one, so a token stays valid in another process.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.limits import QUERY_MIN_READ_UNITS, QUERY_READ_UNITS_PER_GB
from nsmigrate.orchestrator.records.namespaces import parse_namespace_arg

_BYTES_PER_GB = 1e9  # Pinecone prices reads per decimal GB
#: A float32 value as the index stores it, and a vector's id and metadata on top (the estimate's guess).
_STORED_BYTES_PER_VALUE = 4
_STORED_BYTES_PER_VECTOR = 500
#: A euclidean sweep asks for the points nearest to a far-away point in a random direction, i.e. the ones furthest
#: along it; scaled well beyond any embedding's norm.
_EUCLIDEAN_REACH = 1e4


@dataclass(frozen=True)
class PageToken:
    """Where a catalogue or sweep listing goes on: its session (a sweep's seed) and the last id handed out."""

    kind: str
    session: str
    last: str

    def encode(self) -> str:
        last = base64.urlsafe_b64encode(self.last.encode()).decode()
        return f"{self.kind}:{self.session}:{last}"

    @classmethod
    def decode(cls, token: str, kind: str) -> PageToken:
        """Raises ValueError on a token that another enumeration (or a serverless list) made."""
        parts = token.split(":", 2)
        if len(parts) != 3 or parts[0] != kind:
            raise ValueError(f"page token {token[:40]!r} was not made by a {kind} enumeration")
        try:
            last = base64.urlsafe_b64decode(parts[2].encode()).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValueError(f"page token {token[:40]!r} is damaged") from e
        return cls(parts[0], parts[1], last)


def utf8_order(ids: Sequence[str]) -> list[str]:
    """Ids sorted as Pinecone lists them (bitwise "C" collation: by UTF-8 bytes), without duplicates."""
    return sorted(set(ids), key=lambda i: i.encode())


def ids_after(sorted_ids: Sequence[str], after: str | None, limit: int) -> list[str]:
    """Up to ``limit`` ids of ``sorted_ids`` (UTF-8 order) that come after ``after`` (None: from the start)."""
    if after is None:
        return list(sorted_ids[:limit])
    key = after.encode()
    lo, hi = 0, len(sorted_ids)
    while lo < hi:  # bisect on UTF-8 bytes (bisect's key= would encode every probe the same way)
        mid = (lo + hi) // 2
        if sorted_ids[mid].encode() <= key:
            lo = mid + 1
        else:
            hi = mid
    return list(sorted_ids[lo : lo + limit])


def parse_catalogue_csv(text: str, where: str) -> dict[str, list[str]]:
    """``namespace,id`` rows (a header first; ``#`` comment lines and blank lines allowed) → namespace → ids in
    UTF-8 order. The default namespace is ``__default__`` or empty. SpecError naming the line of a bad row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if not rows or [c.strip() for c in rows[0]] != ["namespace", "id"]:
        raise SpecError(
            f"id catalogue {where} must start with the header `namespace,id`",
            hint="one row per vector: its namespace (__default__ for the default one) and its id",
        )
    found: dict[str, list[str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1]:
            raise SpecError(
                f"id catalogue {where}, row {number}: expected `namespace,id`, got {','.join(row)!r}",
                hint="quote ids that contain commas",
            )
        found.setdefault(parse_namespace_arg(row[0].strip()), []).append(row[1])
    return {ns: utf8_order(ids) for ns, ids in found.items()}


def sweep_vector(dimension: int, metric: str | None, session: str, namespace: str, n: int) -> list[float]:
    """The ``n``-th query vector of a sweep: a random direction (seeded by session, namespace and n, so a sweep run
    again finds the same ids), every second one the opposite of the one before, so both ends of each direction are
    reached."""
    rng = random.Random(f"{session}:{namespace}:{n // 2}")
    values = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    scale = (_EUCLIDEAN_REACH if metric == "euclidean" else 1.0) / norm * (-1.0 if n % 2 else 1.0)
    return [v * scale for v in values]


@dataclass(frozen=True)
class SweepCost:
    """What sweeping one namespace costs at least and at most: queries, read units, and whether it can cover it."""

    min_queries: int
    max_queries: int
    read_units_per_query: float
    coverable: bool

    @property
    def min_read_units(self) -> float:
        return self.min_queries * self.read_units_per_query


def query_read_units(vector_count: int, dimension: int) -> float:
    """Read units of one query on a namespace of ``vector_count`` vectors (serverless pricing)."""
    size_gb = vector_count * (max(dimension, 1) * _STORED_BYTES_PER_VALUE + _STORED_BYTES_PER_VECTOR) / _BYTES_PER_GB
    return max(QUERY_MIN_READ_UNITS, QUERY_READ_UNITS_PER_GB * size_gb)


def sweep_cost(vector_count: int, dimension: int, top_k: int, max_queries: int) -> SweepCost:
    """A sweep needs at least ``ceil(count / top_k)`` queries (every one finding only new ids) and stops at
    ``max_queries``; a namespace larger than ``top_k * max_queries`` cannot be covered."""
    if vector_count == 0:
        return SweepCost(0, 0, 0.0, True)
    least = math.ceil(vector_count / top_k)
    most = max_queries if least > 1 else 1  # one query returns a namespace of ≤ top_k ids whole
    return SweepCost(least, most, query_read_units(vector_count, dimension), least <= max_queries)

"""The strongest single-process rival: what a capable user writes instead of a fleet.

One asyncio process with the Pinecone SDK's asyncio client copies every namespace of a source index into the same
namespaces of a target index at once: each namespace's listing runs ahead while the pages it has listed are fetched
and upserted, every request waits for a slot under one bound on requests in flight, and each kind of request is paced
under nsmigrate's default per-second budgets (``orchestrator.spec.jobspec.RateBudget``), so real Pinecone would not
throttle it either. 429 and 5xx answers the SDK gave up on are retried after ``Retry-After`` or an exponential backoff.

It keeps no state: no resume, no verification, no job table. It is measured, never used to migrate.

    .venv/bin/python -m bench.peer --source http://127.0.0.1:PORT --target http://127.0.0.1:PORT2
    .venv/bin/python -m bench.peer --source URL1 --target URL2 --source URL3 --target URL4   # several indexes at once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, TypeVar

import orjson
from pinecone import AsyncIndex
from pinecone.errors.exceptions import ApiError

from nsmigrate.orchestrator.limits import JSON_NUMBER_MAX_BYTES, LIST_MAX_PAGE_IDS, UPSERT_MAX_BYTES, UPSERT_MAX_VECTORS

T = TypeVar("T")

#: Requests in flight at once over both indexes (a few per namespace of the seed set; the budgets bound the rate).
DEFAULT_IN_FLIGHT = 64
#: Tries of one request after the SDK's own retries gave up on a 429 or a 5xx.
ATTEMPTS = 8
#: How Pinecone's describe_index_stats names the default namespace; requests name it "".
DEFAULT_NAMESPACE_LABEL = "__default__"
#: How long an admission counts against its budget (``Window``): one second and 0.1 s of arrival jitter.
SPAN_S = 1.1
#: An upsert body's bytes besides its records: ``{"vectors":[],"namespace":"…"}`` with a long namespace name.
ENVELOPE_BYTES = 1_024
#: A record's bytes besides its id, values, metadata and sparse values: the keys, brackets and commas.
RECORD_OVERHEAD_BYTES = 60


@dataclass(frozen=True)
class Budgets:
    """Per-second budgets, each as nsmigrate's ``RateBudget`` field of the same name means it."""

    read_rps: float
    list_rps: float
    stats_rps: float
    write_rps: float
    write_mb_per_s: float

    @classmethod
    def nsmigrate_defaults(cls) -> Budgets:
        """The defaults of nsmigrate's job spec (imported here only: the bench passes them on the command line, so the
        peer's start-up does not pay for loading nsmigrate's spec module)."""
        from nsmigrate.orchestrator.spec.jobspec import RateBudget

        defaults = RateBudget()
        return cls(**{field.name: getattr(defaults, field.name) for field in fields(cls)})

    @classmethod
    def from_json(cls, text: str) -> Budgets:
        """Budgets from a JSON object naming every field; ValueError says which is missing, unknown or not > 0."""
        given = json.loads(text)
        names = [field.name for field in fields(cls)]
        if not isinstance(given, dict) or sorted(given) != sorted(names):
            raise ValueError(f"--budgets must be a JSON object with exactly the keys {', '.join(names)}")
        bad = [name for name in names if not isinstance(given[name], int | float) or given[name] <= 0]
        if bad:
            raise ValueError(f"--budgets: {', '.join(bad)} must be a number > 0")
        return cls(**{name: float(given[name]) for name in names})


class Window:
    """Admits at most ``per_second`` units in any one-second window, as Pinecone counts its limits: a burst up to the
    budget, then as fast as the oldest admissions leave the window. An admission leaves it ``SPAN_S`` after it was
    made, a little over a second: the server counts a request when it arrives, and a request of a burst that is
    delayed on its way (a new connection, a busy machine) must not land in the same second as the next burst."""

    def __init__(self, per_second: float) -> None:
        self._per_second = per_second
        self._admitted: deque[tuple[float, float]] = deque()
        self._total = 0.0

    async def take(self, units: float = 1.0) -> None:
        while True:
            now = time.monotonic()
            while self._admitted and self._admitted[0][0] <= now - SPAN_S:
                self._total -= self._admitted.popleft()[1]
            # An empty window admits anything: one request larger than a second's budget still goes, alone.
            if not self._admitted or self._total + units <= self._per_second:
                self._admitted.append((now, units))
                self._total += units
                return
            await asyncio.sleep(self._admitted[0][0] + SPAN_S - now)


@dataclass
class PeerResult:
    vectors: int
    namespaces: int
    requests: int
    retried: int
    #: From the first request to the last answer: the process's start-up (interpreter, imports) is not in it.
    seconds: float = 0.0
    #: When the last upsert was answered (epoch seconds): the end of the user's clock, as the fleet's last batch is.
    last_write: float = 0.0


class Peer:
    """Copies a source index's namespaces into a target index (same names), as fast as the budgets allow."""

    def __init__(self, source: AsyncIndex, target: AsyncIndex, budgets: Budgets, in_flight: int) -> None:
        self.source, self.target, self.budgets = source, target, budgets
        self._slots = asyncio.Semaphore(in_flight)
        self._list, self._read = Window(budgets.list_rps), Window(budgets.read_rps)
        self._stats = Window(budgets.stats_rps)
        # Writes are budgeted per target namespace, in requests and in bytes.
        self._writes: dict[str, tuple[Window, Window]] = {}
        self.requests = self.retried = self.vectors = 0
        self.last_write = 0.0

    async def copy_all(self) -> PeerResult:
        started = time.monotonic()
        stats = await self._request(self._stats, self.source.describe_index_stats)
        namespaces = ["" if ns == DEFAULT_NAMESPACE_LABEL else ns for ns in stats.namespaces]
        await asyncio.gather(*(self.copy_namespace(ns) for ns in namespaces))
        seconds = time.monotonic() - started
        return PeerResult(self.vectors, len(namespaces), self.requests, self.retried, seconds, self.last_write)

    async def copy_namespace(self, namespace: str) -> None:
        """List page after page; each listed page is fetched and upserted while the next one is listed."""
        pages: list[asyncio.Task[None]] = []
        token: str | None = None
        while True:
            listing = partial(
                self.source.list_paginated, namespace=namespace, limit=LIST_MAX_PAGE_IDS, pagination_token=token
            )
            page = await self._request(self._list, listing)
            ids = [item.id for item in page.vectors if item.id]
            if ids:
                pages.append(asyncio.create_task(self.copy_page(namespace, ids)))
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                break
        await asyncio.gather(*pages)

    async def copy_page(self, namespace: str, ids: list[str]) -> None:
        fetched = await self._request(self._read, partial(self.source.fetch, ids=ids, namespace=namespace))
        records = [_record(vector) for vector in fetched.vectors.values()]
        if not records:  # listed, then deleted before the fetch
            return
        await asyncio.gather(*(self.upsert(namespace, chunk, size) for chunk, size in _upsert_chunks(records)))
        self.vectors += len(records)

    async def upsert(self, namespace: str, records: list[dict[str, Any]], size: int) -> None:
        if namespace not in self._writes:
            self._writes[namespace] = (Window(self.budgets.write_rps), Window(self.budgets.write_mb_per_s * 1e6))
        requests, volume = self._writes[namespace]
        await volume.take(size)
        await self._request(requests, partial(self.target.upsert, vectors=records, namespace=namespace))
        self.last_write = time.time()

    async def _request(self, pace: Window, call: Callable[[], Awaitable[T]]) -> T:
        """One request under its budget and the in-flight bound; 429 and 5xx retried with backoff."""
        for attempt in range(ATTEMPTS):
            async with self._slots:
                await pace.take()  # in the slot: admitted right before it is sent, as the server will count it
                self.requests += 1
                try:
                    return await call()
                except ApiError as error:
                    if not (error.status_code == 429 or error.status_code >= 500) or attempt == ATTEMPTS - 1:
                        raise
                    wait = getattr(error, "retry_after", None) or min(8.0, 0.1 * 2**attempt) * random.uniform(1, 1.5)
            self.retried += 1
            await asyncio.sleep(wait)  # outside the slot: a waiting retry holds no request in flight
        raise AssertionError("unreachable: the last attempt returns or raises")


def _record(vector: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"id": vector.id, "values": vector.values}
    if vector.metadata:
        record["metadata"] = vector.metadata
    if vector.sparse_values is not None:
        record["sparse_values"] = {"indices": vector.sparse_values.indices, "values": vector.sparse_values.values}
    return record


def _upsert_chunks(records: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
    """A page's records cut into equal upsert requests under Pinecone's vector and byte limits, each with its
    estimated bytes for the byte budget. The cut counts every value at the longest a float takes as JSON, so no request
    is ever too large; the estimate counts values at the page's first record's bytes per value (measuring every vector
    would write each as JSON twice, doubling the peer's encoding work)."""
    sample = records[0]["values"]
    per_value = len(orjson.dumps(sample)) / max(len(sample), 1)
    fixed = [
        RECORD_OVERHEAD_BYTES + sum(len(orjson.dumps(r.get(key))) for key in ("id", "metadata", "sparse_values"))
        for r in records
    ]
    largest = max(size + JSON_NUMBER_MAX_BYTES * len(r["values"]) for size, r in zip(fixed, records, strict=True))
    per_request = max(1, min(UPSERT_MAX_VECTORS, (UPSERT_MAX_BYTES - ENVELOPE_BYTES) // largest))
    estimates = [int(size + per_value * len(r["values"])) for size, r in zip(fixed, records, strict=True)]
    starts = range(0, len(records), per_request)
    return [(records[i : i + per_request], sum(estimates[i : i + per_request]) + ENVELOPE_BYTES) for i in starts]


def _client_options(host: str, in_flight: int) -> dict[str, Any]:
    """A connection for every request in flight (the SDK pools 20 by default, which would bound the in-flight bound),
    and no CA bundle loaded for a plain-http host: nsmigrate's own clients skip it too (``workers.stores.pinecone``)."""
    return {"connection_pool_maxsize": in_flight, "ssl_verify": not host.startswith("http://")}


async def copy_indexes(
    pairs: list[tuple[str, str]], api_key: str, budgets: Budgets, in_flight: int = DEFAULT_IN_FLIGHT
) -> PeerResult:
    """Copy every namespace of each source index into its target index, given as (source host, target host) pairs,
    all at once: each pair with its own budgets (they are per index and per target namespace) and bound on requests
    in flight."""
    async with contextlib.AsyncExitStack() as stack:
        peers = []
        for source_host, target_host in pairs:
            source = await stack.enter_async_context(
                AsyncIndex(host=source_host, api_key=api_key, **_client_options(source_host, in_flight))
            )
            target = await stack.enter_async_context(
                AsyncIndex(host=target_host, api_key=api_key, **_client_options(target_host, in_flight))
            )
            peers.append(Peer(source, target, budgets, in_flight))
        started = time.monotonic()
        results = await asyncio.gather(*(peer.copy_all() for peer in peers))
        return PeerResult(
            vectors=sum(r.vectors for r in results),
            namespaces=sum(r.namespaces for r in results),
            requests=sum(r.requests for r in results),
            retried=sum(r.retried for r in results),
            seconds=time.monotonic() - started,
            last_write=max(r.last_write for r in results),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Copy every namespace of one Pinecone index into another from one asyncio process, under "
        "nsmigrate's default per-second budgets: the bench's rival to the fleet (bench.peer_vs_fleet). The key is "
        "read from PINECONE_API_KEY.",
    )
    parser.add_argument(
        "--source", required=True, action="append", help="a source index's data-plane URL (repeat for several)"
    )
    parser.add_argument(
        "--target", required=True, action="append", help="its target index's data-plane URL, in the same order"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=DEFAULT_IN_FLIGHT,
        help=f"requests in flight at most (default {DEFAULT_IN_FLIGHT})",
    )
    parser.add_argument(
        "--budgets",
        metavar="JSON",
        help="per-second budgets as a JSON object with read_rps, list_rps, stats_rps, write_rps, write_mb_per_s "
        "(default: nsmigrate's spec defaults, rate.*)",
    )
    args = parser.parse_args(argv)
    if "PINECONE_API_KEY" not in os.environ:
        print("PINECONE_API_KEY is not set: export the key of both indexes.", file=sys.stderr)
        return 2
    if args.in_flight < 1:
        parser.error("--in-flight must be ≥ 1")
    if len(args.source) != len(args.target):
        parser.error(f"give one --target per --source ({len(args.source)} sources, {len(args.target)} targets)")
    try:
        budgets = Budgets.from_json(args.budgets) if args.budgets else Budgets.nsmigrate_defaults()
    except ValueError as error:  # json.JSONDecodeError is one too
        parser.error(str(error))
    pairs = list(zip(args.source, args.target, strict=True))
    result = asyncio.run(copy_indexes(pairs, os.environ["PINECONE_API_KEY"], budgets, args.in_flight))
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

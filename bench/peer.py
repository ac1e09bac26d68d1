"""The strongest single-process rival: what a capable user writes instead of a fleet.

One asyncio process speaks Pinecone's data-plane REST API itself (aiohttp, one session per index with a connection for
every request in flight) and copies every namespace of a source index into the same namespaces of a target index at
once: each namespace's listing runs ahead while the ids it has listed are fetched and upserted, each kind of request is
paced under nsmigrate's default budgets per second (``orchestrator.spec.rate_budget.RateBudget``): real Pinecone would
not throttle it either, and then takes a slot under one bound on requests in flight. A fetch's values are never parsed:
msgspec reads each vector's ``values`` as ``msgspec.Raw`` (the bytes the server sent) and writes them into the upsert
body as they are, each record encoded once, so an upsert is cut under Pinecone's 2 MB and 1,000-vector limits by its
exact size. 429 and 5xx answers are retried after ``Retry-After`` or an exponential backoff. A namespace listed
whole in one page is read by one query asking for more records than it holds, with values and metadata (Pinecone
allows an index 100 fetches a second but 2,000 query read units, a quarter of one each), used when every listed id
came back; else fetched (``--fetch-only``: always fetched).

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
from dataclasses import dataclass, fields
from typing import Any

import aiohttp
import msgspec

#: Requests in flight at once over both indexes (the budgets bound the rate).
DEFAULT_IN_FLIGHT = 64
#: Ids fetched in one request: two list pages. Fetch's budget (80/s) is about half of list's (150/s), so fetching
#: each page alone would make the fetches, not the listing, bound a large namespace; larger fetches would wait longer
#: for their pages.
DEFAULT_FETCH_IDS = 200
#: Tries of one request answered 429 or 5xx (or not answered).
ATTEMPTS = 8
#: How Pinecone's describe_index_stats names the default namespace; requests name it "".
DEFAULT_NAMESPACE_LABEL = "__default__"
#: How long an admission counts against its budget (``Window``): one second and 0.1 s of arrival jitter.
SPAN_S = 1.1
#: Pinecone's limits (https://docs.pinecone.io/reference/api/database-limits): ids a list page holds, vectors and
#: bytes an upsert may carry. Written here, not imported from nsmigrate, so the rival loads none of it.
LIST_PAGE_IDS = 100
UPSERT_MAX_VECTORS = 1_000
UPSERT_MAX_BYTES = 2_000_000
#: A query's answer (Pinecone's "Query limits": 4 MB); a whole read asks for at most half of it in values, and ids
#: beyond those listed, for writes since the listing.
QUERY_MAX_RESULT_BYTES = 4_000_000
QUERY_EXTRA_RECORDS = 8
QUERY_MAX_TOP_K_WITH_DATA = 1_000
#: About how many bytes a float32 value takes in JSON.
JSON_VALUE_BYTES = 13
API_VERSION = "2026-07"


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
        from nsmigrate.orchestrator.spec.rate_budget import RateBudget

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
        # One waiter at a time watches the window, the others queue behind it in order: thousands of waiters all
        # woken each time an admission leaves would spend the process's CPU on wake-ups.
        self._turn = asyncio.Lock()

    async def take(self, units: float = 1.0) -> None:
        async with self._turn:
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


class _Vector(msgspec.Struct, omit_defaults=True):
    """A fetched vector as it is upserted again: ``values`` kept as the JSON the server sent."""

    id: str
    values: msgspec.Raw = msgspec.Raw(b"[]")
    metadata: dict[str, Any] | None = None
    sparseValues: dict[str, Any] | None = None  # the wire's name, in fetch and upsert alike


class _Fetched(msgspec.Struct):
    vectors: dict[str, _Vector] = {}


class _ListItem(msgspec.Struct):
    id: str = ""


class _Pagination(msgspec.Struct):
    next: str | None = None


class _Listed(msgspec.Struct):
    vectors: list[_ListItem] = []
    pagination: _Pagination | None = None


class _Stats(msgspec.Struct):
    namespaces: dict[str, Any] = {}
    dimension: int = 0


class _Match(msgspec.Struct):
    """A query's match as it is upserted again: ``values`` kept as the JSON the server sent."""

    id: str
    values: msgspec.Raw = msgspec.Raw(b"[]")
    metadata: dict[str, Any] | None = None
    sparseValues: dict[str, Any] | None = None


class _Queried(msgspec.Struct):
    matches: list[_Match] = []


_FETCHED = msgspec.json.Decoder(_Fetched)
_LISTED = msgspec.json.Decoder(_Listed)
_STATS = msgspec.json.Decoder(_Stats)
_QUERIED = msgspec.json.Decoder(_Queried)
_ENCODE = msgspec.json.Encoder().encode


class Refused(Exception):
    def __init__(self, status: int, text: str, retry_after_s: float | None) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status, self.retry_after_s = status, retry_after_s


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


class Index:
    """One index host over one aiohttp session: C-parsed HTTP/1.1, a pooled connection for every request in flight."""

    def __init__(self, host: str, api_key: str, in_flight: int) -> None:
        self._base = host.rstrip("/")
        self._headers = {"Api-Key": api_key, "X-Pinecone-Api-Version": API_VERSION, "Accept": "application/json"}
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        # No CA bundle loaded for a plain-http host: nsmigrate's own clients skip it too.
        connector = aiohttp.TCPConnector(limit=in_flight, ssl=host.startswith("https://"))
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    async def send(self, method: str, path: str, params: Any = None, body: bytes | None = None) -> bytes:
        headers = self._post_headers if body is not None else self._headers
        async with self._session.request(
            method, self._base + path, params=params, data=body, headers=headers
        ) as response:
            content = await response.read()
            if not 200 <= response.status < 300:
                try:
                    retry_after: float | None = float(response.headers.get("Retry-After", ""))
                except ValueError:
                    retry_after = None
                raise Refused(response.status, content.decode(errors="replace"), retry_after)
            return content

    async def close(self) -> None:
        await self._session.close()


class Peer:
    """Copies a source index's namespaces into a target index (same names), as fast as the budgets allow."""

    def __init__(
        self, source: Index, target: Index, budgets: Budgets, in_flight: int, fetch_ids: int, query_reads: bool = True
    ) -> None:
        self.source, self.target, self.budgets, self.fetch_ids = source, target, budgets, fetch_ids
        self.query_reads, self.dimension = query_reads, 0
        self._slots = asyncio.Semaphore(in_flight)
        self._list, self._read = Window(budgets.list_rps), Window(budgets.read_rps)
        self._stats = Window(budgets.stats_rps)
        # Writes are budgeted per target namespace, in requests and in bytes.
        self._writes: dict[str, tuple[Window, Window]] = {}
        self.requests = self.retried = self.vectors = 0
        self.last_write = 0.0

    async def copy_all(self) -> PeerResult:
        started = time.monotonic()
        stats = _STATS.decode(await self._request(self._stats, self.source, "POST", "/describe_index_stats", b"{}"))
        self.dimension = stats.dimension
        namespaces = ["" if ns == DEFAULT_NAMESPACE_LABEL else ns for ns in stats.namespaces]
        await asyncio.gather(*(self.copy_namespace(ns) for ns in namespaces))
        seconds = time.monotonic() - started
        return PeerResult(self.vectors, len(namespaces), self.requests, self.retried, seconds, self.last_write)

    async def copy_namespace(self, namespace: str) -> None:
        """List page after page; every ``fetch_ids`` listed ids are fetched and upserted while the listing goes on."""
        copies: list[asyncio.Task[None]] = []
        listed: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"namespace": namespace, "limit": LIST_PAGE_IDS}
            if token:
                params["paginationToken"] = token
            page = _LISTED.decode(await self._request(self._list, self.source, "GET", "/vectors/list", params=params))
            listed += [item.id for item in page.vectors if item.id]
            token = page.pagination.next if page.pagination is not None else None
            if not token and not copies and listed and await self.copy_whole(namespace, listed):
                return
            while len(listed) >= self.fetch_ids or (listed and not token):
                ids, listed = listed[: self.fetch_ids], listed[self.fetch_ids :]
                copies.append(asyncio.create_task(self.copy_ids(namespace, ids)))
            if not token:
                break
        await asyncio.gather(*copies)

    async def copy_whole(self, namespace: str, ids: list[str]) -> bool:
        """Copy a namespace listed whole (``ids``) read by one query; False when it must be fetched: too large an
        answer, or a listed id the query did not return."""
        top_k = len(ids) + QUERY_EXTRA_RECORDS
        too_large = top_k * self.dimension * JSON_VALUE_BYTES > QUERY_MAX_RESULT_BYTES / 2
        if not self.query_reads or not self.dimension or too_large or top_k > QUERY_MAX_TOP_K_WITH_DATA:
            return False
        axis = [1.0] + [0.0] * (self.dimension - 1)
        body = {"vector": axis, "topK": top_k, "includeValues": True, "includeMetadata": True, "namespace": namespace}
        # A query is the namespace's own (100 a second each), and a small one a quarter of the index's 2,000 read units
        # a second: the listing, at 150 a second, keeps them far below both.
        async with self._slots:
            self.requests += 1
            try:
                answer = await self.source.send("POST", "/query", None, _ENCODE(body))
            except (Refused, TimeoutError, aiohttp.ClientConnectionError):
                return False
        wanted = set(ids)
        found = {m.id: m for m in _QUERIED.decode(answer).matches if m.id in wanted}
        if len(found) < len(wanted):
            return False
        records = [_ENCODE(_Vector(m.id, m.values, m.metadata, m.sparseValues)) for m in found.values()]
        await asyncio.gather(*(self.upsert(namespace, body) for body in upsert_bodies(records, namespace)))
        self.vectors += len(records)
        return True

    async def copy_ids(self, namespace: str, ids: list[str]) -> None:
        params = [*(("ids", i) for i in ids), ("namespace", namespace)]
        fetched = _FETCHED.decode(await self._request(self._read, self.source, "GET", "/vectors/fetch", params=params))
        records = [_ENCODE(vector) for vector in fetched.vectors.values()]
        if not records:  # listed, then deleted before the fetch
            return
        bodies = upsert_bodies(records, namespace)
        await asyncio.gather(*(self.upsert(namespace, body) for body in bodies))
        self.vectors += len(records)

    async def upsert(self, namespace: str, body: bytes) -> None:
        if namespace not in self._writes:
            self._writes[namespace] = (Window(self.budgets.write_rps), Window(self.budgets.write_mb_per_s * 1e6))
        requests, volume = self._writes[namespace]
        await volume.take(len(body))
        await self._request(requests, self.target, "POST", "/vectors/upsert", body)
        self.last_write = time.time()

    async def _request(
        self, pace: Window, index: Index, method: str, path: str, body: bytes | None = None, params: Any = None
    ) -> bytes:
        """One request under its budget and the in-flight bound; 429, 5xx and lost connections retried with
        backoff."""
        for attempt in range(ATTEMPTS):
            # Admitted by its budget first, then a slot: a request waiting for its budget must hold no slot, or
            # listings held back by theirs would keep every fetch and upsert waiting. Slots are many more than the
            # budgets' requests a round trip, so a request goes out right after it was admitted.
            await pace.take()
            async with self._slots:
                self.requests += 1
                try:
                    return await index.send(method, path, params, body)
                except Refused as error:
                    if not (error.status == 429 or error.status >= 500) or attempt == ATTEMPTS - 1:
                        raise
                    wait = error.retry_after_s
                except (TimeoutError, aiohttp.ClientConnectionError):
                    if attempt == ATTEMPTS - 1:
                        raise
                    wait = None
            self.retried += 1
            # Outside the slot: a waiting retry holds no request in flight.
            await asyncio.sleep(wait if wait is not None else min(8.0, 0.1 * 2**attempt) * random.uniform(1, 1.5))
        raise AssertionError("unreachable: the last attempt returns or raises")


def upsert_bodies(records: list[bytes], namespace: str) -> list[bytes]:
    """Upsert request bodies carrying ``records`` (each a vector already written as JSON) in order, each under
    Pinecone's byte and vector limits by its exact size."""
    name = _ENCODE(namespace)
    envelope = len(b'{"vectors":[],"namespace":}') + len(name)
    chunks: list[list[bytes]] = [[]]
    size = envelope
    for record in records:
        if chunks[-1] and (size + len(record) + 1 > UPSERT_MAX_BYTES or len(chunks[-1]) >= UPSERT_MAX_VECTORS):
            chunks.append([])
            size = envelope
        chunks[-1].append(record)
        size += len(record) + 1  # and its comma
    return [b'{"vectors":[' + b",".join(chunk) + b'],"namespace":' + name + b"}" for chunk in chunks]


async def copy_indexes(
    pairs: list[tuple[str, str]],
    api_key: str,
    budgets: Budgets,
    in_flight: int = DEFAULT_IN_FLIGHT,
    fetch_ids: int = DEFAULT_FETCH_IDS,
    query_reads: bool = True,
) -> PeerResult:
    """Copy every namespace of each source index into its target index, given as (source host, target host) pairs,
    all at once: each pair with its own budgets (they are per index and per target namespace) and bound on requests
    in flight."""
    async with contextlib.AsyncExitStack() as stack:
        peers = []
        for source_host, target_host in pairs:
            source, target = Index(source_host, api_key, in_flight), Index(target_host, api_key, in_flight)
            stack.push_async_callback(source.close)
            stack.push_async_callback(target.close)
            peers.append(Peer(source, target, budgets, in_flight, fetch_ids, query_reads))
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
        "--in-flight", type=int, default=DEFAULT_IN_FLIGHT, help=f"requests in flight at most ({DEFAULT_IN_FLIGHT})"
    )
    parser.add_argument(
        "--fetch-ids", type=int, default=DEFAULT_FETCH_IDS, help=f"ids a fetch asks for ({DEFAULT_FETCH_IDS})"
    )
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help="fetch every namespace's records, never read a small one by a query (to compare with whole reads)",
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
    if not 1 <= args.fetch_ids <= 1000:
        parser.error("--fetch-ids must be within 1..1000 (Pinecone fetches at most 1,000 ids)")
    if len(args.source) != len(args.target):
        parser.error(f"give one --target per --source ({len(args.source)} sources, {len(args.target)} targets)")
    try:
        budgets = Budgets.from_json(args.budgets) if args.budgets else Budgets.nsmigrate_defaults()
    except ValueError as error:  # json.JSONDecodeError is one too
        parser.error(str(error))
    pairs = list(zip(args.source, args.target, strict=True))
    key = os.environ["PINECONE_API_KEY"]
    result = asyncio.run(copy_indexes(pairs, key, budgets, args.in_flight, args.fetch_ids, not args.fetch_only))
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

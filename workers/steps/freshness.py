"""Reads that lag writes: the job's write LSNs recorded, and the bounded wait until a store's reads reflect them.

Pinecone's list, query and counts lag its writes (``fetch`` does not: the proofs that fetch both sides need no wait).
A copy that is not visible to them yet is "not yet", not "missing", so verification and cleanup wait, before they
believe such a read, until the store's reads reflect the job's writes:

- **by LSN** where the store gives one: each copy batch records the highest log sequence number its writes were
  answered per target namespace (``record_written``, a Redis sorted set per run that keeps each namespace's highest);
  the wait asks the store how far its reads are (``Store.reconciled_lsn``) until they reach it;
- **by polling** otherwise (a pod index, a server that sends no LSN, a record lost with Redis): the caller's own
  check of the read (e.g. "the listing holds every id fetch found") is asked again until it holds.

Both wait at most ``verify.freshness_timeout_s`` (polls back off from ``POLL_START_S`` to ``POLL_MAX_S``; never a
fixed sleep). A wait that runs out is reported with that bound (``ReadsWait.reason``), and the checks that follow
judge what the reads show: a write that never appears still fails.

Before a namespace is dropped or called empty (cleanup, rollback, erasure), its listing must be shown to hold every
write made before it (``complete_listing``: an LSN probe), for a lagging listing hides one as long as reads lag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, cast

import redis

from nsmigrate.orchestrator.errors import NsmigrateError, StoreError
from nsmigrate.orchestrator.listing.paging import id_pages
from nsmigrate.orchestrator.messaging.task_names import written_lsn_key
from nsmigrate.orchestrator.records.vectors import IdPage
from nsmigrate.workers.stores.base import Store, list_all_ids

POLL_START_S = 0.25
POLL_MAX_S = 2.0
#: How long a run's recorded LSNs are kept in Redis: past any verification or cleanup of the run.
RECORD_TTL_S = 30 * 24 * 3600


def record_written(client: redis.Redis, run_id: int, lsns: Mapping[str, int]) -> None:
    """Record, for run ``run_id``, the highest LSN a step's writes were answered per namespace
    (``Store.written_lsns``; a namespace without one is left out; an LSN only ever grows)."""
    if not lsns:
        return
    key = written_lsn_key(run_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(key, {ns.encode(): lsn for ns, lsn in lsns.items()}, gt=True)
        pipe.expire(key, RECORD_TTL_S)
        pipe.execute()


def written(client: redis.Redis, run_id: int) -> dict[str, int]:
    """The highest LSN recorded for each target namespace run ``run_id`` wrote (empty: none known)."""
    scored = cast(list[tuple[bytes | str, float]], client.zrange(written_lsn_key(run_id), 0, -1, withscores=True))
    return {(name.decode() if isinstance(name, bytes) else name): int(score) for name, score in scored}


@dataclass
class ReadsWait:
    """How a wait for a namespace's reads ended."""

    namespace: str
    by: Literal["lsn", "polling", "none"]
    caught_up: bool
    waited_s: float
    timeout_s: float
    lsn: int | None = None  # what the reads had to reflect
    reconciled: int | None = None  # what they reflected at the end
    side: str = "target"  # whose namespace: the target's (verification) or the source's (cleanup's deletes)

    @property
    def reason(self) -> str | None:
        """Why the reads could not be believed, naming the bound; None when they caught up."""
        if self.caught_up:
            return None
        how = f"LSN {self.reconciled} of {self.lsn}" if self.by == "lsn" else "not every write shown"
        return (
            f"reads of {self.side} namespace {self.namespace!r} had not caught up with the job's writes after "
            f"{self.timeout_s:g} s ({how}; verify.freshness_timeout_s)"
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"by": self.by, "caught_up": self.caught_up, "waited_s": round(self.waited_s, 3)}
        if self.lsn is not None:
            out.update(lsn=self.lsn, reconciled=self.reconciled)
        if not self.caught_up:
            out["timeout_s"] = self.timeout_s
        return out


def await_reads(
    store: Store,
    namespace: str,
    *,
    lsn: int | None,
    shows: Callable[[], bool] | None,
    timeout_s: float,
    side: str = "target",
    probe: Callable[[], int | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReadsWait:
    """Wait until ``store``'s reads of ``namespace`` reflect the writes: its reconciled LSN reaches ``lsn`` (when
    given and the store tells it) or ``shows()`` (the caller's check of a read) holds; at most ``timeout_s``.
    Neither given: nothing to wait for. ``probe``: how the reconciled LSN is read (default: the store's
    ``reconciled_lsn``, a list of one id), for a caller that wants the read it came with."""
    start = clock()
    deadline = start + timeout_s
    pause = POLL_START_S
    wait = ReadsWait(namespace, "none", True, 0.0, timeout_s, lsn, side=side)
    if lsn is not None:
        wait.by = "lsn"
        while True:
            wait.reconciled = store.reconciled_lsn(namespace) if probe is None else probe()
            if wait.reconciled is None:
                break  # the store does not say: poll the read itself
            if wait.reconciled >= lsn:
                wait.waited_s = clock() - start
                return wait
            # The read itself may already show every write: an LSN recorded before the namespace was deleted and
            # made again (its sequence starts anew) is never reached, and waiting for it would fail a whole copy.
            if shows is not None and shows():
                wait.by, wait.waited_s = "polling", clock() - start
                return wait
            if clock() >= deadline:
                wait.caught_up, wait.waited_s = False, clock() - start
                return wait
            sleep(min(pause, max(0.0, deadline - clock())))
            pause = min(pause * 2, POLL_MAX_S)
    if shows is None:
        wait.by = "none"  # no LSN to compare, nothing to look at: the reads are taken as they are
        wait.waited_s = clock() - start
        return wait
    wait.by = "polling"
    while not shows():
        if clock() >= deadline:
            wait.caught_up = False
            break
        sleep(min(pause, max(0.0, deadline - clock())))
        pause = min(pause * 2, POLL_MAX_S)
    wait.waited_s = clock() - start
    return wait


def waits_json(waits: Mapping[str, ReadsWait]) -> dict[str, Any]:
    return {ns: w.to_json() for ns, w in sorted(waits.items())}


#: The note of a verification whose source listing could not be awaited to the writes before it (``reads_now``: None).
UNAWAITED_SOURCE = (
    "the source's listing was not awaited: its index tells no LSN, or refused the probe (a read-only key); a write "
    "of the last moments may be missing from it (a cleanup lists the source again before it deletes)"
)
#: The id a Pinecone namespace is asked to delete, for the LSN of a write (``complete_listing``): no vector's.
LSN_PROBE_ID = "nsmigrate-lsn-probe-8c1f0d52e6a94b7d"


class PageProbe:
    """An ``await_reads`` probe that reads a whole list page, not one id: for a namespace that fits the page, the
    read that reached the LSN is then itself the namespace's listing (``whole``), with the LSN it reflects."""

    def __init__(self, store: Store, ns: str) -> None:
        self.store, self.ns = store, ns
        self.page: IdPage | None = None

    def __call__(self) -> int | None:
        self.page = page = self.store.list_ids(self.ns)
        return page.reconciled_lsn if page.reconciled_lsn is not None else self.store.reconciled_lsn(self.ns)

    def whole(self, wait: ReadsWait) -> IdPage | None:
        """The page read last, when ``wait`` reached its LSN and the page holds the whole namespace and its LSN."""
        page = self.page
        if wait.by != "lsn" or not wait.caught_up or page is None or page.next_token is not None:
            return None
        return page if page.reconciled_lsn is not None else None


def reads_now(store: Store, ns: str, timeout_s: float, *, side: str = "target") -> ReadsWait | None:
    """Wait until ``store``'s reads of ``ns`` reflect every write answered before now, for a store whose ``fetch``
    lags too (a document index, ``Capabilities.fetch_lags``), or whose listing does (``Capabilities.reads_lag``),
    before a read that must see the latest state: a delete
    of an id no vector has (``LSN_PROBE_ID``) is answered with the namespace's next LSN, and the reads are awaited
    to it. None when nothing could be awaited (no LSN told, the probe refused, a document with the probe's id)."""
    try:
        if store.fetch(ns, [LSN_PROBE_ID]):
            return None
    except NsmigrateError:
        return None
    probe = _probe_lsn(store, ns)
    if probe is None:
        return None
    # The probe's own delete changes nothing: the reads need only reflect the writes before it, so a quiet
    # namespace is not held up for the lag (LSNs that skip make this the probe's own, and the wait only longer).
    return await_reads(store, ns, lsn=probe - 1, shows=None, timeout_s=timeout_s, side=side)


def require_reads_now(store: Store, ns: str, timeout_s: float, *, side: str, again: str) -> None:
    """``reads_now``, for a read that must not go on behind: raises StoreError naming the bound when the reads do not
    get there within ``timeout_s`` (``again``: the command to run again then)."""
    wait = reads_now(store, ns, timeout_s, side=side)
    if wait is not None and wait.reason is not None:
        raise StoreError(wait.reason, hint=f"run `nsmigrate {again}` again once the index has caught up")


def awaiting_reads(store: Store, timeout_s: float, *, again: str) -> Callable[[str], None] | None:
    """For a store whose listing lags writes (``Capabilities.reads_lag``): ``require_reads_now`` of a namespace, for
    an export to list it then, so a record written a moment before is in the file; None for a store whose reads do
    not lag."""
    if not store.capabilities.reads_lag:
        return None
    return partial(require_reads_now, store, timeout_s=timeout_s, side="exported", again=again)


def _probe_lsn(store: Store, ns: str) -> int | None:
    """The LSN a delete of ``LSN_PROBE_ID`` (no vector's) is answered with: the namespace's next. None when the store
    tells none, or refuses the delete (e.g. for a namespace gone already)."""
    try:
        with store.written_lsns() as answered:
            store.delete(ns, [LSN_PROBE_ID])
    except NsmigrateError:
        return None
    return answered.get(ns)


#: Why an emptied namespace was not dropped (``complete_listing`` did not show its last listing complete).
LEFT_IN_PLACE = (
    "emptied and left in place: no listing could be shown to hold every write to it (its index tells no LSN, or "
    "its LSNs skip), and a drop on a listing that lags could delete a write made meanwhile"
)
#: Listings ``complete_listing`` tries to show complete before it leaves the namespace in place: a write that
#: landed during the first is waited for and found by the second.
_LISTINGS_SHOWN_COMPLETE = 2


def complete_listing(
    source: Store,
    ns: str,
    timeout_s: float,
    polled: list[str] | None,
    *,
    side: str = "source",
    again: str = "cleanup",
    first: IdPage | None = None,
) -> tuple[list[str], bool]:
    """A Pinecone namespace listed, and whether the listing is shown to hold every write made to it before the drop's
    last look: the LSN its reads reflected right before it, then a delete of an id no vector has (``LSN_PROBE_ID``)
    answered with the next LSN, so nothing was written in between that the listing missed. A lagging listing hides a
    write for as long as reads lag, not an instant, and dropping the namespace on its word would delete that write.
    The namespace is a cleanup's source or a rollback's target (``side``; ``again``: the command to run again when
    reads stay behind; ``timeout_s``: how long to wait for them, e.g. ``verify.freshness_timeout_s``).

    A probe answered later than that (a write landed meanwhile, or LSNs that skip) has the namespace listed again once
    reads show the probe, so the write is found, and shown complete once more; failing that, the last listing is
    returned not complete: the namespace is emptied by id and left in place, never dropped. So is one whose store
    tells no LSN (a pod index; ``polled``: its listing once the deletes showed).

    The LSN a listing reflects is its first page's: a write after it, on any page, makes the probe's answer skip.
    ``first``: the whole namespace in one page, read with its LSN by the caller (the wait for its deletes): the first
    look, not listed again."""
    if source.capabilities.enumeration != "list":  # a catalogue's or a sweep's ids tell no LSN
        return (polled if polled is not None else list_all_ids(source, ns)), False
    deadline = time.monotonic() + timeout_s
    for _ in range(_LISTINGS_SHOWN_COMPLETE):
        if first is not None:
            listed, reflected, first = list(first.ids), first.reconciled_lsn, None
        else:
            listed, reflected = listing_and_lsn(source, ns)
        if reflected is None:
            return listed, False
        if LSN_PROBE_ID in listed:  # a vector of that id is never deleted to probe: no proof, no drop
            return listed, False
        probe = _probe_lsn(source, ns)  # None (refused, or no LSN): nothing proves the listing whole
        if probe is None or probe == reflected + 1:
            return listed, probe is not None
        wait = await_reads(
            source, ns, lsn=probe, shows=None, timeout_s=max(0.0, deadline - time.monotonic()), side=side
        )
        if wait.reason is not None:
            raise StoreError(wait.reason, hint=f"run `nsmigrate {again}` again once the index has caught up")
    return list_all_ids(source, ns), False


def listing_and_lsn(store: Store, ns: str) -> tuple[list[str], int | None]:
    """Every id of ``ns``, and the LSN its first page reflected (None: the store tells none)."""
    ids: dict[str, None] = {}  # a store that paged an id twice must not make the count look larger than the set
    lsn: int | None = None
    for n, page in enumerate(id_pages(store, ns, page_ids=store.capabilities.list_page_ids)):
        lsn = page.reconciled_lsn if n == 0 else lsn
        ids.update(dict.fromkeys(page.ids))
    return list(ids), lsn

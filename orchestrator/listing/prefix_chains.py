"""One large namespace listed as several independent chains, one per id prefix, so its listing scales with threads.

Pinecone lists a namespace's ids in pages of at most 100, each page from the token of the one before: one chain
lists ~2,000 ids/s at 50 ms a request, however many workers run. But ``list`` also takes a ``prefix``, and the ids
with one prefix are their own chain. ``split_prefixes`` finds prefixes that cut a namespace into such chains: it
lists the first page, takes the characters its ids use as the alphabet, and asks for each ``prefix + character``
(one request each, all at once); a prefix whose first page is full is split again, breadth first, until there are
about as many chains as wanted. The prefixes found never nest, so no
id is in two chains.

What no prefix reaches — the id equal to a split prefix itself, a character the alphabet missed (an id with a
character first seen past the first page, a non-ASCII one) — is listed by the **rest** chain: the whole namespace
again, keeping only the ids outside every prefix. It runs only when the chains listed fewer ids than the namespace
holds (``needs_rest``), which on an unchanging namespace is exactly when such ids exist. Ids written while the
namespace is listed are what `nsmigrate sync` is for, and verification compares the id sets whatever happened.

``ChainState`` is the whole listing's resume point, saved in the run's ``list_token`` with each batch: where each
chain goes on, which are done, how many ids they listed. A lister restarted from it lists on from there.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records.vectors import IdPage
from nsmigrate.orchestrator.spec.jobspec import MAX_CHAINS

#: (prefix, token, limit) → the page of ≤ limit ids with that prefix after the token, in the store's order.
PageOf = Callable[[str, "str | None", int], IdPage]
#: Runs thunks at once and returns their results in order (a thread pool's map).
RunAll = Callable[[list[Callable[[], IdPage]]], list[IdPage]]

#: Namespaces with fewer ids than this are listed as one chain: the probes would cost more than they save.
SPLIT_MIN_IDS = 5_000
#: Prefixes wanted per chain listing at once: prefixes differ in size (``doc-1…`` holds ten times ``doc-9…``), and
#: with several per thread the large ones do not leave the others idle at the end.
PREFIXES_PER_CHAIN = 4
#: Probing requests one split may make (one per alphabet character per prefix split).
MAX_PROBES = 400
_TAG = "chains:"


def wanted_chains(count: int, most: int = MAX_CHAINS) -> int:
    """How many prefixes a namespace of ``count`` ids is cut into when up to ``most`` chains list at once (1: it is
    not split)."""
    if count < SPLIT_MIN_IDS or most <= 1:
        return 1
    return max(1, min(most * PREFIXES_PER_CHAIN, count // (SPLIT_MIN_IDS // 4)))


def split_prefixes(page_of: PageOf, want: int, run_all: RunAll) -> list[str]:
    """Prefixes that cut a namespace into about ``want`` chains (``[""]``: one chain, not split); sorted, none a
    prefix of another. Split level by level: every large prefix of a level is split before any of the next, so
    the chains come out of about the same depth (and, for ids of one shape, of comparable sizes)."""
    root = page_of("", None, LIST_MAX_PAGE_IDS)
    if want <= 1 or root.next_token is None:
        return [""]
    alphabet = sorted({ch for i in root.ids for ch in i})
    large: list[str] = [""]  # prefixes whose first page was full
    small: list[str] = []
    probes = 1
    while large and len(small) + len(large) < want:
        fits = (MAX_PROBES - probes) // max(len(alphabet), 1)
        if fits < 1:
            break
        level, kept = large[:fits], large[fits:]
        children = [prefix + ch for prefix in level for ch in alphabet]
        pages = run_all([_probe(page_of, child) for child in children])
        probes += len(children)
        large = kept
        for child, first in zip(children, pages, strict=True):
            if first.ids:
                (large.append(child) if first.next_token else small.append(child))
    found = sorted(small + large)
    return found or [""]


def _probe(page_of: PageOf, prefix: str) -> Callable[[], IdPage]:
    return lambda: page_of(prefix, None, LIST_MAX_PAGE_IDS)


@dataclass(frozen=True)
class Chain:
    prefix: str
    token: str | None = None  # where it lists on (None and not done: from its start)
    done: bool = False
    #: The rest chain: the whole namespace, keeping only ids outside every prefix.
    rest: bool = False


@dataclass(frozen=True)
class ChainState:
    """Every chain of one namespace and the rest chain (None: not started; it may never be)."""

    chains: tuple[Chain, ...]
    listed: int = 0
    rest: Chain | None = None
    #: Whether the rest chain was decided on (run or not needed): listing ends only after that.
    rest_decided: bool = False
    prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(sorted(c.prefix for c in self.chains)))

    @classmethod
    def fresh(cls, prefixes: Iterable[str]) -> ChainState:
        return cls(tuple(Chain(p) for p in sorted(prefixes)))

    def encode(self) -> str:
        rest = None if self.rest is None else [self.rest.token, self.rest.done]
        body = {"c": [[c.prefix, c.token, c.done] for c in self.chains], "n": self.listed, "r": rest}
        body["d"] = self.rest_decided
        return _TAG + json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, token: str | None) -> ChainState | None:
        """The state saved in ``token``, or None when it is a plain store token (a namespace listed as one chain)."""
        if not token or not token.startswith(_TAG):
            return None
        body = json.loads(token[len(_TAG) :])
        rest = None if body["r"] is None else Chain("", body["r"][0], body["r"][1], rest=True)
        chains = tuple(Chain(p, t, d) for p, t, d in body["c"])
        return cls(chains, int(body["n"]), rest, bool(body["d"]))

    @property
    def open_chains(self) -> list[Chain]:
        """The chains still listing, the rest chain last."""
        open_ = [c for c in self.chains if not c.done]
        if self.rest is not None and not self.rest.done:
            open_.append(self.rest)
        return open_

    @property
    def finished(self) -> bool:
        return self.rest_decided and not self.open_chains

    def advanced(self, chain: Chain, token: str | None, listed: int) -> ChainState:
        """This state after ``chain`` listed ``listed`` more ids and reached ``token`` (None: its end)."""
        moved = Chain(chain.prefix, token, token is None, chain.rest)
        if chain.rest:
            return replace(self, rest=moved, listed=self.listed + listed)
        chains = tuple(moved if c.prefix == chain.prefix and not c.done else c for c in self.chains)
        return replace(self, chains=chains, listed=self.listed + listed)

    def decided(self, namespace_count: int) -> ChainState:
        """Once every prefix chain is done: start the rest chain if they listed fewer ids than the namespace holds."""
        rest = Chain("", rest=True) if self.listed < namespace_count else None
        return replace(self, rest=rest, rest_decided=True)

    def outside_prefixes(self, ids: Sequence[str]) -> list[str]:
        """The ids no prefix chain lists (what the rest chain keeps)."""
        return [i for i in ids if not _under_any(i, self.prefixes)]


def _under_any(record_id: str, prefixes: Sequence[str]) -> bool:
    """Whether ``record_id`` starts with one of the sorted, non-nested ``prefixes``: only the last one not after it
    can be its prefix."""
    at = bisect.bisect_right(prefixes, record_id) - 1
    return at >= 0 and record_id.startswith(prefixes[at])


def chain_batch(page_of: PageOf, state: ChainState, chain: Chain, batch_size: int) -> tuple[list[str], str | None]:
    """One batch of ``chain``'s ids (up to ``batch_size``; the rest chain keeps only ids outside every prefix, so
    fewer) and the token after them (None: the chain ended)."""
    ids: list[str] = []
    token = chain.token
    listed = 0
    while True:
        page = page_of(chain.prefix, token, min(LIST_MAX_PAGE_IDS, batch_size - listed))
        listed += len(page.ids)
        ids.extend(state.outside_prefixes(page.ids) if chain.rest else page.ids)
        token = page.next_token or None
        if token is None or listed >= batch_size:
            return ids, token

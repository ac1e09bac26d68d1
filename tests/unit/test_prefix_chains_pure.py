"""Listing one namespace as several prefix chains (``orchestrator.listing.prefix_chains``) against an in-memory store
with Pinecone's list semantics (ids in UTF-8 byte order, ``prefix``, pages of ≤ 100, an opaque token): whatever the ids
— ASCII, non-ASCII, ids that are prefixes of others — and however the chains interleave and resume, every id is
listed exactly once."""

from __future__ import annotations

import bisect
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsmigrate.orchestrator.listing.prefix_chains import ChainState, chain_batch, split_prefixes, wanted_chains
from nsmigrate.orchestrator.records.vectors import IdPage


class ListedStore:
    """A namespace's ids as Pinecone lists them; counts its list requests."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = sorted(ids, key=str.encode)
        self.requests = 0

    def page_of(self, prefix: str, token: str | None, limit: int) -> IdPage:
        assert 1 <= limit <= 100
        self.requests += 1
        start = bisect.bisect_left(self.ids, prefix.encode(), key=str.encode)
        if token is not None:
            start = max(start, bisect.bisect_right(self.ids, token.encode(), key=str.encode))
        page = []
        for i in self.ids[start:]:
            if not i.startswith(prefix):
                break
            page.append(i)
        more = len(page) > limit
        page = page[:limit]
        return IdPage(page, page[-1] if more else None)


def run_all(thunks):  # type: ignore[no-untyped-def]
    return [t() for t in thunks]


def list_everything(store: ListedStore, want: int, batch_size: int, rng: random.Random) -> tuple[list[str], ChainState]:
    """Split, then list every chain in a random interleaving, resuming from the encoded state now and then."""
    prefixes = split_prefixes(store.page_of, want, run_all)
    state = ChainState.fresh(prefixes)
    listed: list[str] = []
    while not state.finished:
        open_chains = state.open_chains
        if not open_chains:
            state = state.decided(len(store.ids))
            continue
        chain = rng.choice(open_chains)
        ids, token = chain_batch(store.page_of, state, chain, batch_size)
        listed.extend(ids)
        state = state.advanced(chain, token, len(ids))
        if rng.random() < 0.3:  # a lister restarted from the saved state
            decoded = ChainState.decode(state.encode())
            assert decoded == state
            state = decoded
    return listed, state


ID_TEXT = st.text(
    alphabet=st.sampled_from([*list("ab0129-#_~ "), "é", "ß", "中", "😀", "\x7f", "\x01", "Z"]), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.sets(ID_TEXT, min_size=0, max_size=1500),
    want=st.integers(min_value=1, max_value=40),
    batch_size=st.integers(min_value=1, max_value=250),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_id_is_listed_exactly_once(ids: set[str], want: int, batch_size: int, seed: int) -> None:
    store = ListedStore(ids)

    listed, _ = list_everything(store, want, batch_size, random.Random(seed))

    assert len(listed) == len(set(listed)), "an id was listed twice"
    assert set(listed) == ids


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=101, max_value=3000),
    extra=st.sets(st.text(min_size=1, max_size=6), max_size=20),  # any Unicode at all
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_ids_of_any_characters_are_listed_exactly_once(n: int, extra: set[str], seed: int) -> None:
    rng = random.Random(seed)
    ids = {f"doc-{rng.randrange(10**6)}#chunk-{k % 7}" for k in range(n)} | extra
    store = ListedStore(ids)

    listed, _ = list_everything(store, 16, 100, rng)

    assert sorted(listed, key=str.encode) == store.ids


def test_uuid_ids_split_into_the_chains_wanted_and_need_no_rest_chain() -> None:
    rng = random.Random(7)
    ids = {str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20_000)}
    store = ListedStore(ids)

    listed, state = list_everything(store, wanted_chains(len(ids)), 200, rng)

    assert len(state.chains) >= 16
    assert state.rest is None  # the chains listed every id: nothing is listed twice
    assert sorted(listed) == sorted(ids)


def test_a_small_namespace_is_one_chain() -> None:
    assert wanted_chains(4_999) == 1
    assert split_prefixes(ListedStore({f"i{k}" for k in range(99)}).page_of, 8, run_all) == [""]


def test_a_plain_store_token_is_not_a_chain_state() -> None:
    assert ChainState.decode(None) is None
    assert ChainState.decode("eyJza2lwX3Bhc3QiOiIxMCJ9") is None

"""The one id-paging loop (``orchestrator.listing.paging``) over an in-memory lister: every id exactly once, pages
within the
limit, and a listing stopped at ``max_ids`` resumes from the last page's token without skipping or repeating."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.listing.paging import id_pages, iter_all_ids
from nsmigrate.orchestrator.records.vectors import IdPage


class Lister:
    """Ids in order; a token is the index of the next id. ``short``: pages hold fewer ids than asked, as stores may."""

    def __init__(self, n: int, short: int = 0) -> None:
        self.ids = [f"id-{i:05d}" for i in range(n)]
        self.short = short
        self.limits: list[int] = []

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        self.limits.append(limit)
        start = int(token or 0)
        end = min(len(self.ids), start + max(1, limit - self.short))
        return IdPage(ids=self.ids[start:end], next_token=str(end) if end < len(self.ids) else None)


@given(n=st.integers(0, 700), page_size=st.integers(1, 100), short=st.integers(0, 3))
def test_every_id_is_listed_exactly_once(n: int, page_size: int, short: int) -> None:
    lister = Lister(n, short)
    assert list(iter_all_ids(lister, "ns", page_size=page_size)) == lister.ids
    assert max(lister.limits) <= page_size


@given(n=st.integers(0, 700), batch=st.integers(1, 300), short=st.integers(0, 3))
def test_batches_listed_up_to_max_ids_resume_from_their_token(n: int, batch: int, short: int) -> None:
    lister = Lister(n, short)
    batches: list[list[str]] = []
    token: str | None = None
    while True:
        ids: list[str] = []
        for page in id_pages(lister, "ns", token=token, max_ids=batch):
            ids.extend(page.ids)
            token = page.next_token
        batches.append(ids)
        assert len(ids) <= batch  # no page asks for more than what is left of the batch
        if not token:
            break
    assert [i for b in batches for i in b] == lister.ids
    assert all(len(b) == batch for b in batches[:-1])  # full batches, however short the pages


def test_an_empty_namespace_is_one_empty_page() -> None:
    lister = Lister(0)
    assert [p.ids for p in id_pages(lister, "ns")] == [[]]

"""Paging through a store's ids: the one loop every caller that lists ids uses (planning, the lister, verification,
cleanup, sync, rollback, backups).

It only calls ``list_ids``; whatever wraps the store (retries, the rate budget) wraps each page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records.vectors import IdPage

if TYPE_CHECKING:
    from nsmigrate.orchestrator.store import Store


def id_pages(
    store: Store,
    namespace: str,
    *,
    token: str | None = None,
    max_ids: int | None = None,
    page_ids: int = LIST_MAX_PAGE_IDS,
) -> Iterator[IdPage]:
    """The pages of ``namespace`` listed from ``token`` on, each of at most ``page_ids`` ids.

    Stops after the namespace's last page, or once ``max_ids`` ids were listed (the pages then ask for no more than
    what is left); the last page's ``next_token`` is where a later listing goes on (None: the namespace ended).
    """
    listed = 0
    while True:
        limit = page_ids if max_ids is None else min(page_ids, max_ids - listed)
        page = store.list_ids(namespace, limit=limit, token=token)
        yield page
        listed += len(page.ids)
        token = page.next_token
        if not token or (max_ids is not None and listed >= max_ids):
            return


def iter_all_ids(store: Store, namespace: str, page_size: int = LIST_MAX_PAGE_IDS) -> Iterator[str]:
    """Every id of ``namespace``, page by page."""
    for page in id_pages(store, namespace, page_ids=page_size):
        yield from page.ids

"""The store interface as the adapters beside it implement it: ``Store`` and its declared ``Capabilities`` live in
``orchestrator.store`` (planning types its stores with them too), with ``StoreDefaults`` for what an adapter leaves
out; re-exported here with the records a store moves.

The default namespace is the empty string ``""`` everywhere in nsmigrate (Pinecone reports it as ``__default__``).
"""

from __future__ import annotations

from nsmigrate.orchestrator.listing.paging import iter_all_ids
from nsmigrate.orchestrator.records.vectors import DEFAULT_NAMESPACE, IdPage, Record
from nsmigrate.orchestrator.store import Capabilities, Store, StoreDefaults

__all__ = [
    "DEFAULT_NAMESPACE",
    "Capabilities",
    "IdPage",
    "Record",
    "Store",
    "StoreDefaults",
    "iter_all_ids",
    "list_all_ids",
]


def list_all_ids(store: Store, namespace: str) -> list[str]:
    """Every id of ``namespace`` once, each list page one request of ``store`` (a ``GuardedStore``: budgeted,
    retried)."""
    # A store that paged an id twice must not make the count look larger than the set.
    return list(dict.fromkeys(iter_all_ids(store, namespace, page_size=store.capabilities.list_page_ids)))

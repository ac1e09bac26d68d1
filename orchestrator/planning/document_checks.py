"""Before a copy into a document index: the metadata keys its documents would refuse, found while planning.

A document field may not start with ``_`` or ``$`` nor take the name of the index's dense or sparse field, and
Pinecone refuses a whole upsert for one such key. Which keys a source holds is known only by reading its records, so
the plan reads a sample: the first page of ids of every selected namespace, fetched (at most ``SAMPLE_IDS`` records
each), with the keys the enrichment adds. A key found refuses the plan, naming the ``rename`` that fixes it; a key the
sample missed refuses its batch at the copy (``workers.stores.pinecone.document_index``). Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from nsmigrate.orchestrator.records.documents import DocumentFields, refuse_keys
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec

if TYPE_CHECKING:
    from nsmigrate.orchestrator.store import Store

#: Records read per source namespace to find the keys it holds: one list page, one fetch.
SAMPLE_IDS = 100


def enrichment_keys(spec: JobSpec) -> set[str]:
    """The metadata keys the copy itself may add (``orchestrator.routing.route``)."""
    keys = set(spec.enrich.constants)
    if spec.enrich.creator_fields and spec.routing.mode == "creator":
        keys |= {"creator_id", "twin_id"}
    if spec.enrich.migrated_from:
        keys.add("migrated_from")
    return keys


def sampled_keys(store: Store, namespaces: Iterable[str]) -> set[str]:
    """Every metadata key of the first ``SAMPLE_IDS`` records of each namespace."""
    keys: set[str] = set()
    for namespace in namespaces:
        ids = store.list_ids(namespace, limit=SAMPLE_IDS).ids
        for record in store.fetch(namespace, ids):
            keys |= set(record.metadata)
    return keys


def check_document_keys(spec: JobSpec, source: Store, namespaces: Iterable[str]) -> None:
    """Refuse the plan (``PlanError``) when a document of the target would refuse a key the sample or the enrichment
    holds; nothing to do for a target that is not a document index."""
    target = spec.target
    if not isinstance(target, PineconeStoreSpec) or target.documents is None:
        return
    keys = sampled_keys(source, namespaces) | enrichment_keys(spec)
    refuse_keys(keys, DocumentFields.of(target.documents), target=target.label)

"""A small namespace listed whole, read by one query instead of a fetch.

Pinecone allows an index 100 fetches a second but 2,000 query read units, and a query of a small namespace takes a
quarter of one (``orchestrator.limits``). A query that asks for more records than the namespace holds, with their
values and metadata, returns them all: what a fetch of the listed ids would, but from the query budget, which is the
namespace's own. A job of thousands of small namespaces (one per twin) is then bound by its listing, not its fetches.

A search may still miss records (Pinecone's queries are approximate), and it reads as the listing does, so the ids
it returns are held against the ids listed: only when every listed id came back are the records used; otherwise, or
when the query is refused (an answer over Pinecone's 4 MB), the caller fetches them as before. A record the query
returned but the listing did not name is left for the listing that names it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.workers import metrics
from nsmigrate.workers.stores.guarded import GuardedStore

log = logging.getLogger(__name__)

#: Records asked for beyond those listed: a few written since the listing do not push a listed one out of the answer.
EXTRA_RECORDS = 8


def read_by_query(source: GuardedStore, namespace: str, ids: Sequence[str]) -> list[Record] | None:
    """The records of ``ids``, every id of ``namespace`` as just listed, read by one query; None when they must be
    fetched: the store cannot, the answer would be too large, or the query failed or missed a listed id."""
    if not ids or not source.capabilities.reads_by_query:
        return None
    wanted = dict.fromkeys(ids)
    try:
        queried = source.query_records(namespace, len(wanted) + EXTRA_RECORDS)
    except (StoreError, RetryableError) as e:  # too large, refused (a sparse index has no dense axis), or failing
        log.info("namespace %r: not read by a query (%s); fetched", namespace, e)
        metrics.WHOLE_READS.labels("fetched").inc()
        return None
    found = {record.id: record for record in queried if record.id in wanted}
    if len(found) < len(wanted):
        log.info("namespace %r: a query found %d of %d listed ids; fetched", namespace, len(found), len(wanted))
        metrics.WHOLE_READS.labels("fetched").inc()
        return None
    metrics.WHOLE_READS.labels("queried").inc()
    return [found[i] for i in wanted]

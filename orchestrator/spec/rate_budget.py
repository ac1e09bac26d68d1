"""The ``rate:`` block of a job spec: the fleet-wide request budgets per second every worker shares, each a share of
the serverless limit Pinecone documents for it (``orchestrator.limits``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nsmigrate.orchestrator.limits import (
    DELETE_MAX_RECORDS_PER_S_PER_INDEX,
    LIST_MAX_REQUESTS_PER_S_PER_INDEX,
    QUERY_MAX_REQUESTS_PER_S_PER_NAMESPACE,
    READ_MAX_REQUESTS_PER_S_PER_INDEX,
    STATS_MAX_REQUESTS_PER_S_PER_INDEX,
    WRITE_MAX_MB_PER_S_PER_NAMESPACE,
    WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE,
)
from nsmigrate.orchestrator.spec.stores import _Model

#: The share of each documented serverless rate (``orchestrator.limits``) the default budget takes: below the limit,
#: never at it; listing keeps a quarter back.
DEFAULT_RATE_SHARE = 0.8
DEFAULT_LIST_RATE_SHARE = 0.75


def _budget(limit: float, description: str, share: float = DEFAULT_RATE_SHARE) -> Any:
    """A budget field whose default is ``share`` of Pinecone's documented ``limit``."""
    return Field(default=share * limit, gt=0, description=description)


class RateBudget(_Model):
    """Fleet-wide request budgets per second, shared by all workers; the defaults are a share of Pinecone's
    serverless limits (``orchestrator.limits``)."""

    read_rps: float = _budget(READ_MAX_REQUESTS_PER_S_PER_INDEX, "fetch requests/s per source index.")
    query_rps: float = _budget(
        QUERY_MAX_REQUESTS_PER_S_PER_NAMESPACE,
        "query requests/s per namespace of a serverless index or a pgvector table (verification's query checks and "
        "latency, cross-twin searches, cut-over checks); a pod source's (read by catalogue or sweep) take `read_rps`.",
    )
    list_rps: float = _budget(
        LIST_MAX_REQUESTS_PER_S_PER_INDEX, "list requests/s per source index.", share=DEFAULT_LIST_RATE_SHARE
    )
    stats_rps: float = _budget(
        STATS_MAX_REQUESTS_PER_S_PER_INDEX,
        "count requests/s per index (describe_index_stats, describe_namespace): verification's counts and planning's "
        "inventory; a limit of Pinecone's own, beside fetch's.",
    )
    write_rps: float = _budget(WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE, "upsert requests/s per target namespace.")
    write_mb_per_s: float = _budget(WRITE_MAX_MB_PER_S_PER_NAMESPACE, "upsert megabytes/s per target namespace.")
    delete_records_per_s: float = _budget(
        DELETE_MAX_RECORDS_PER_S_PER_INDEX,
        "records deleted/s per Pinecone index (cleanup, rollback, erasure): a limit of Pinecone's beside the delete "
        "requests' (`write_rps`); a delete request names at most this many ids.",
    )
    embed_tokens_per_min: float = Field(
        default=250_000,
        gt=0,
        description="Embedding tokens/min an integrated target's model may take (Pinecone: model-specific, e.g. "
        "250,000 on Starter); counted with an upper-bound estimate of each text's tokens.",
    )

"""Pinecone's data-plane limits as the client side of nsmigrate respects them: one declaration each, unit in the name.

Read by the planner (estimates), the store adapters (request sizes), the chunking of upserts and every task that
splits ids into requests. The sandbox data plane (``sandbox/pinecone_server.py``) keeps its own copy on purpose: it
stands in for the server, and the tests compare it with the reference spec rather than with these.
"""

from __future__ import annotations

#: Ids per fetch request (Pinecone API reference, "Fetch vectors": up to 1,000 ids).
FETCH_MAX_IDS = 1_000
#: Ids per delete request (Pinecone API reference, "Delete vectors": up to 1,000 ids).
DELETE_MAX_IDS = 1_000
#: Ids per list page (Pinecone API reference, "List vector IDs": limit ≤ 100).
LIST_MAX_PAGE_IDS = 100
#: Vectors per upsert request (Pinecone docs, "Upsert limits": 1,000 records per request).
UPSERT_MAX_VECTORS = 1_000
#: Bytes per upsert request body (Pinecone docs, "Upsert limits": 2 MB; read as decimal MB, the safe side of MiB).
UPSERT_MAX_BYTES = 2_000_000

#: Text records per upsert_records request (Pinecone docs, "Upsert limits": 96 records of text, the hosted embedding
#: models' batch size); the 2 MB request limit applies too.
UPSERT_RECORDS_MAX = 96

#: Characters per record id (Pinecone docs, "Identifier limits": a record id is at most 512 characters).
RECORD_ID_MAX_CHARS = 512
#: Characters in a namespace name the namespace endpoints take in their path (the SDK's rule: 1–512 ASCII, no NUL).
NAMESPACE_MAX_CHARS = 512
#: Bytes of one record's metadata as JSON (Pinecone docs, "Limits": max metadata size per vector is 40 KB).
RECORD_METADATA_MAX_BYTES = 40_960
#: Namespaces per serverless index on the Standard and Enterprise plans (Pinecone docs, "Object limits"; Starter: 100,
#: Builder: 1,000). A target spec's ``max_namespaces`` sets the limit of another plan.
SERVERLESS_MAX_NAMESPACES_PER_INDEX = 100_000

#: Fetch requests per second per index (Pinecone docs, "Rate limits", serverless).
READ_MAX_REQUESTS_PER_S_PER_INDEX = 100
#: List requests per second per index (Pinecone docs, "Rate limits", serverless).
LIST_MAX_REQUESTS_PER_S_PER_INDEX = 200
#: Describe index stats requests per second per index (Pinecone docs, "Rate limits", serverless): a limit of its
#: own, beside fetch's. The docs give none for describing one namespace; it is held to this one too.
STATS_MAX_REQUESTS_PER_S_PER_INDEX = 100
#: Upsert/delete requests per second per namespace (Pinecone docs, "Rate limits", serverless).
WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE = 100
#: Upserted megabytes (10^6 bytes) per second per namespace (Pinecone docs, "Rate limits", serverless).
WRITE_MAX_MB_PER_S_PER_NAMESPACE = 50

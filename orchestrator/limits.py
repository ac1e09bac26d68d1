"""Facts of the outside world nsmigrate works within, each with its source: Pinecone's data-plane limits and pricing
units, Postgres's and pgvector's limits, the size of a number as JSON. One declaration each, unit in the name; what an
operator may tune is in ``orchestrator.settings`` or the job spec instead.

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

#: Characters per record id (Pinecone docs, "Identifier limits": a record id is at most 512 characters). They must be
#: ASCII without NUL (API 2026-07 ``Vector.id``: ``^[\x01-\x7F]+$``).
RECORD_ID_MAX_CHARS = 512
#: A dense vector needs one value at least this large in magnitude, or it is refused as only zeros (API 2026-07
#: ``Vector.values``).
DENSE_VALUE_MIN_MAGNITUDE = 1e-8
#: Bytes per document field name of a document index (API 2026-07, db_control ``CreateIndexSchema``: ≤ 64 bytes).
DOCUMENT_FIELD_MAX_BYTES = 64
#: How a document field name may not start (Documents API 2026-07: ``_`` and ``$`` are reserved).
DOCUMENT_RESERVED_PREFIXES = ("_", "$")
#: Ids one query may return when it asks for no values and no metadata (Pinecone API reference, "Query": top_k ≤
#: 10,000).
QUERY_MAX_TOP_K = 10_000
#: Ids one query may return when it asks for values or metadata (Pinecone API reference, "Query": top_k ≤ 1,000).
QUERY_MAX_TOP_K_WITH_DATA = 1_000
#: Bytes of one query's answer (Pinecone docs, "Query limits": max result size 4 MB); a larger one is refused.
QUERY_MAX_RESULT_BYTES = 4_000_000

#: Namespace aliases per list page (API 2026-07 ``GET /namespace-aliases``: limit ≤ 100).
ALIAS_LIST_MAX_PAGE = 100
#: Characters in a namespace name the namespace endpoints take in their path (the SDK's rule: 1–512 ASCII, no NUL).
NAMESPACE_MAX_CHARS = 512
#: Bytes of one record's metadata as JSON (Pinecone docs, "Limits": max metadata size per vector is 40 KB).
RECORD_METADATA_MAX_BYTES = 40_960
#: The largest integer a metadata number keeps exactly: Pinecone keeps every metadata number as a 64-bit float (Pinecone
#: docs, "Metadata": numbers are 64-bit floating point; a fetch gives ``1`` back as ``1.0``), exact up to 2**53.
METADATA_EXACT_INTEGER_MAX = 2**53
#: Namespaces per serverless index on the Standard and Enterprise plans (Pinecone docs, "Object limits"; Starter: 100,
#: Builder: 1,000). A target spec's ``max_namespaces`` sets the limit of another plan.
SERVERLESS_MAX_NAMESPACES_PER_INDEX = 100_000

#: Fetch requests per second per index (Pinecone docs, "Rate limits", serverless).
READ_MAX_REQUESTS_PER_S_PER_INDEX = 100
#: Query requests per second per namespace (Pinecone docs, "Rate limits", serverless): a limit apart from fetch's.
QUERY_MAX_REQUESTS_PER_S_PER_NAMESPACE = 100
#: List requests per second per index (Pinecone docs, "Rate limits", serverless).
LIST_MAX_REQUESTS_PER_S_PER_INDEX = 200
#: Describe index stats requests per second per index (Pinecone docs, "Rate limits", serverless): a limit of its
#: own, beside fetch's. The docs give none for describing one namespace; it is held to this one too.
STATS_MAX_REQUESTS_PER_S_PER_INDEX = 100
#: Upsert/delete requests per second per namespace (Pinecone docs, "Rate limits", serverless).
WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE = 100
#: Upserted megabytes (10^6 bytes) per second per namespace (Pinecone docs, "Rate limits", serverless).
WRITE_MAX_MB_PER_S_PER_NAMESPACE = 50
#: Records deleted per second, per namespace and per index alike (Pinecone docs, "Rate limits", serverless: "Delete
#: records per second"), beside the delete requests' own limit.
DELETE_MAX_RECORDS_PER_S_PER_INDEX = 5_000

#: Records and namespaces of a pod index migrated to serverless through a collection (Pinecone docs, "Migrate a
#: pod-based index to serverless").
COLLECTION_MAX_RECORDS = 500_000_000
COLLECTION_MAX_NAMESPACES = 20_000

#: One bulk import (Pinecone docs, "Import limits" / "Understanding imports"): at most 100 namespaces and 100,000,000
#: records; its URI at most 1,500 characters (API 2026-07 ``StartImportRequest.uri``); each import takes at least
#: 10 minutes, and import is recommended over upsert above ~10,000,000 records ("Data ingestion overview").
IMPORT_MAX_NAMESPACES = 100
IMPORT_MAX_RECORDS = 100_000_000
IMPORT_URI_MAX_CHARS = 1500
IMPORT_MIN_S = 600.0
IMPORT_RECOMMENDED_RECORDS = 10_000_000

#: Serverless pricing units (Pinecone docs, "Understanding cost", API 2026-07): a fetch costs 1 read unit per 10
#: records, at least 1 per request; an upsert 1 write unit per KB of request, at least 5 per request; a query 1 read
#: unit per GB of the namespace it searches, at least 0.25.
RECORDS_PER_READ_UNIT = 10
BYTES_PER_WRITE_UNIT = 1_000
MIN_WRITE_UNITS_PER_REQUEST = 5
QUERY_READ_UNITS_PER_GB = 1.0
QUERY_MIN_READ_UNITS = 0.25

#: Bytes of one number in an upsert's compact JSON body, its comma included, at most: a double's longest form is
#: ``-1.2345678901234567e-308`` (sign, 17 significant digits, point, exponent; RFC 8259 numbers as orjson writes them).
JSON_NUMBER_MAX_BYTES = 25

#: Bytes of a Postgres identifier (table, index, constraint name); longer ones are cut silently (Postgres docs,
#: "Identifiers and Key Words": NAMEDATALEN - 1).
PG_IDENTIFIER_MAX_BYTES = 63
#: Dimensions of a ``vector`` column pgvector's ivfflat and hnsw indexes take (pgvector README, "Indexing")…
PGVECTOR_INDEX_MAX_DIMENSIONS = 2_000
#: …and of a ``halfvec`` expression they take: above 2,000 a vector index is HNSW over ``halfvec(d)`` (pgvector
#: README, "Half-precision indexing").
PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS = 4_000
#: pgvector's binary form of a vector (its ``vector_send``/``vector_recv``): a header of two ``uint16`` (the
#: dimension, an unused word), then a ``float32`` per value.
PGVECTOR_BINARY_HEADER_BYTES = 4
PGVECTOR_BINARY_VALUE_BYTES = 4

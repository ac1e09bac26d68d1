"""What a plan costs on Pinecone: requests, read/write units, bytes and the wall time the spec's rate budget allows,
with the serverless pricing it assumes, and what a sweep of a namespace costs. Pure arithmetic, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from nsmigrate.orchestrator.limits import (
    BYTES_PER_WRITE_UNIT,
    LIST_MAX_PAGE_IDS,
    MIN_WRITE_UNITS_PER_REQUEST,
    QUERY_MAX_RESULT_BYTES,
    QUERY_MAX_TOP_K_WITH_DATA,
    RECORDS_PER_READ_UNIT,
    UPSERT_MAX_BYTES,
    UPSERT_MAX_VECTORS,
    UPSERT_RECORDS_MAX,
)
from nsmigrate.orchestrator.listing.pod_enumeration import sweep_cost
from nsmigrate.orchestrator.planning.plan import Estimate, Inventory, NamespacePlan
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec

#: Id, metadata and JSON framing of one vector in an upsert request (the estimate's guess).
BYTES_PER_VECTOR_OVERHEAD = 200
#: A float32 value in compact JSON with its comma, as a copy sends it: its shortest decimal (≤ 9 significant digits,
#: what the data plane answers and a pgvector source reads), e.g. ``-0.012345678,``. An estimate: a unit-norm
#: embedding of 1,536 values averages 12.5 bytes (a value below 0.01 takes a byte more, above 0.1 a byte less); the
#: workers' chunking measures fetched values exactly, and only values it cannot measure are charged the longest form
#: (``limits.JSON_NUMBER_MAX_BYTES``, 25), which would double the estimate.
BYTES_PER_JSON_VALUE = 13


def _batch_sizes(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(vectors in a batch, how many such batches) for ``count`` vectors."""
    full, rest = divmod(count, batch_size)
    return [(n, k) for n, k in ((batch_size, full), (rest, 1 if rest else 0)) if k]


def fits_one_query(records: int, dimension: int) -> bool:
    """Whether one query may ask for ``records`` records with their values and metadata: at most 1,000, their values
    (by estimate) under half of Pinecone's 4 MB answer, the rest left for ids and metadata (≤ 40 KB a record)."""
    values = records * max(dimension, 1) * BYTES_PER_JSON_VALUE
    return records <= QUERY_MAX_TOP_K_WITH_DATA and values <= QUERY_MAX_RESULT_BYTES / 2


def _upsert_cost(vectors: int, dimension: int, per_request: int = UPSERT_MAX_VECTORS) -> tuple[int, int, int]:
    """(upsert requests, write units, bytes) to write one batch of ``vectors``, ``per_request`` at most in one."""
    vector_bytes = max(dimension, 1) * BYTES_PER_JSON_VALUE + BYTES_PER_VECTOR_OVERHEAD
    total = vectors * vector_bytes
    chunks = max(math.ceil(vectors / per_request), math.ceil(total / UPSERT_MAX_BYTES), 1)
    per_chunk, bigger = divmod(vectors, chunks)
    units = sum(
        k * max(MIN_WRITE_UNITS_PER_REQUEST, math.ceil(n * vector_bytes / BYTES_PER_WRITE_UNIT))
        for n, k in ((per_chunk + 1, bigger), (per_chunk, chunks - bigger))
        if k
    )
    return chunks, units, total


def estimate(spec: JobSpec, runs: Sequence[NamespacePlan], dimension: int) -> Estimate:
    """Requests, read/write units and duration of copying ``runs`` under ``spec.rate``.

    Upserts of a routed run are counted as if they went to one namespace: a lower bound on requests (a batch whose
    records go to k namespaces makes ≥ k upserts) and an upper bound on its share of the time.
    """
    list_requests = fetch_requests = upserts = read_units = write_units = total_bytes = 0
    # Text records for an integrated index carry no values and go 96 to a request; a re-embedding writes its own.
    per_request = UPSERT_RECORDS_MAX if spec.text_records else UPSERT_MAX_VECTORS
    written_dimension = 0 if spec.text_records else spec.reembed.dimension if spec.reembed else dimension
    upserts_per_target: dict[str | None, int] = {}
    sweep_least = sweep_most = 0
    sweep_units = 0.0
    for r in runs:
        if r.enumeration == "list":
            list_requests += math.ceil(r.vector_count / LIST_MAX_PAGE_IDS)
        sweep_least += r.sweep_queries[0]
        sweep_most += r.sweep_queries[1]
        sweep_units += r.sweep_read_units
        for n, k in _batch_sizes(r.vector_count, spec.batch_size):
            chunks, units, size = _upsert_cost(n, written_dimension, per_request)
            fetch_requests += k
            read_units += k * max(1, math.ceil(n / RECORDS_PER_READ_UNIT))
            upserts += k * chunks
            write_units += k * units
            total_bytes += k * size
            upserts_per_target[r.target_namespace] = upserts_per_target.get(r.target_namespace, 0) + k * chunks
    read_units += list_requests + math.ceil(sweep_units)
    rate = spec.rate
    targets = len(upserts_per_target)
    duration_s = max(
        (fetch_requests + sweep_least) / rate.read_rps,
        list_requests / rate.list_rps,
        max(upserts_per_target.values(), default=0) / rate.write_rps,
        total_bytes / (rate.write_mb_per_s * 1e6 * targets) if targets else 0.0,
    )
    return Estimate(
        list_requests,
        fetch_requests,
        upserts,
        read_units,
        write_units,
        duration_s,
        total_bytes,
        (sweep_least, sweep_most),
        written_dimension,
    )


def enumerated(spec: JobSpec, run: NamespacePlan, source: Inventory) -> NamespacePlan:
    """``run`` with how its ids are found and what a sweep of it costs."""
    if source.enumeration != "sweep" or not isinstance(spec.source, PineconeStoreSpec):
        return replace(run, enumeration=source.enumeration)
    cost = sweep_cost(
        run.vector_count, source.dimension, spec.source.enumerate.top_k, spec.source.enumerate.max_queries
    )
    return replace(
        run,
        enumeration="sweep",
        sweep_queries=(cost.min_queries, cost.max_queries),
        sweep_read_units=cost.min_read_units,
    )

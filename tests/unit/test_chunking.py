"""Upsert chunking: every record in exactly one chunk, in order, and no request over either limit — measured on the
JSON the Pinecone store actually sends (``workers.stores.pinecone.wire.upsert_json``), which is what orjson writes of
the request's fields, fetched values (views into their response) included verbatim."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import UPSERT_MAX_BYTES, UPSERT_MAX_VECTORS
from nsmigrate.orchestrator.records.vectors import BinaryValues, JsonValues, SparseValues
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.pinecone.wire import upsert_json
from nsmigrate.workers.transfer.chunking import (
    ENVELOPE_BYTES,
    binary_bytes,
    chunk_for_upsert,
    estimate_bytes,
    sized_chunks,
)


def request_bytes(chunk: list[Record], namespace: str = "creator_abc_twin_def") -> int:
    """Size of the upsert body the Pinecone store sends for this chunk."""
    return len(upsert_json(namespace, chunk))


def orjson_body(namespace: str, chunk: list[Record]) -> bytes:
    """The ``UpsertRequest`` as orjson writes it from its fields (fetched JSON values as fragments)."""
    vectors = []
    for r in chunk:
        values = orjson.Fragment(bytes(r.values.json)) if isinstance(r.values, JsonValues) else list(r.values)
        vector: dict[str, object] = {"id": r.id, "values": values}
        if r.sparse_values is not None:
            vector["sparseValues"] = r.sparse_values.to_json()
        if r.metadata:
            vector["metadata"] = dict(r.metadata)
        vectors.append(vector)
    return orjson.dumps({"vectors": vectors, "namespace": namespace} if namespace else {"vectors": vectors})


finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
metadata = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(
        st.text(max_size=40), st.integers(-(10**9), 10**9), st.booleans(), st.lists(st.text(max_size=8), max_size=4)
    ),
    max_size=5,
)
records = st.lists(
    st.builds(
        Record,
        id=st.text(min_size=1, max_size=64),
        values=st.lists(finite_floats, min_size=0, max_size=64),
        metadata=metadata,
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=records, max_count=st.integers(1, 30), max_bytes=st.integers(3_000, 40_000))
def test_every_record_lands_in_exactly_one_chunk_in_order_within_both_limits(
    records: list[Record], max_count: int, max_bytes: int
) -> None:
    try:
        chunks = chunk_for_upsert(records, max_count=max_count, max_bytes=max_bytes)
    except StoreError:
        # Only allowed when one record alone cannot fit.
        assert any(estimate_bytes(r) > max_bytes - 2_048 for r in records)
        return

    assert [r for chunk in chunks for r in chunk] == records  # same objects, same order, none lost or doubled
    assert all(chunk for chunk in chunks)
    for chunk in chunks:
        assert len(chunk) <= max_count
        assert request_bytes(chunk) <= max_bytes


@settings(max_examples=100, deadline=None)
@given(values=st.lists(finite_floats, max_size=200), meta=metadata, record_id=st.text(min_size=1, max_size=100))
def test_estimate_is_an_upper_bound_of_the_serialised_record(
    values: list[float], meta: dict[str, object], record_id: str
) -> None:
    record = Record(record_id, values, meta)
    alone = request_bytes([record], namespace="")
    envelope = len(orjson.dumps({"vectors": [], "namespace": ""}))

    assert alone - envelope <= estimate_bytes(record)


def test_the_2mb_limit_with_3072_dimensional_float32_vectors() -> None:
    rng = np.random.default_rng(7)
    batch = [
        Record(
            f"doc-{i:05d}#chunk-{i % 17}", rng.normal(0, 0.05, 3072).astype(np.float32).tolist(), {"text": "x" * 500}
        )
        for i in range(200)
    ]

    chunks = chunk_for_upsert(batch)

    assert [r for c in chunks for r in c] == batch
    sizes = [request_bytes(c) for c in chunks]
    assert max(sizes) <= UPSERT_MAX_BYTES
    # Headroom, not waste: each request is still well over half the limit (~25 vectors of ~63 KB each).
    assert min(sizes[:-1]) > UPSERT_MAX_BYTES * 0.7
    assert 20 <= len(chunks[0]) <= 32


def test_the_count_limit_applies_to_small_vectors() -> None:
    batch = [Record(str(i), [0.5] * 4) for i in range(2_500)]

    chunks = chunk_for_upsert(batch)

    assert [len(c) for c in chunks] == [UPSERT_MAX_VECTORS, UPSERT_MAX_VECTORS, 500]


@pytest.mark.parametrize(
    ("record", "fits"),
    [
        (Record("small", [0.1] * 8), True),
        (Record("huge-metadata", [0.1] * 8, {"text": "x" * 2_100_000}), False),
        (Record("huge-vector", [0.1] * 100_000), False),
    ],
)
def test_a_single_record_over_the_limit_is_a_store_error_naming_it(record: Record, fits: bool) -> None:
    if fits:
        assert chunk_for_upsert([record]) == [[record]]
        return
    with pytest.raises(StoreError) as info:
        chunk_for_upsert([Record("ok", [0.1] * 8), record])
    assert record.id in str(info.value)


def test_metadata_that_is_not_json_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="not JSON"):
        estimate_bytes(Record("x", [0.1], {"when": object()}))


def test_empty_input_gives_no_chunks() -> None:
    assert chunk_for_upsert([]) == []


@pytest.mark.parametrize(("max_count", "max_bytes"), [(0, 2_000_000), (10, 100)])
def test_impossible_limits_are_refused(max_count: int, max_bytes: int) -> None:
    with pytest.raises(ValueError):
        chunk_for_upsert([Record("a", [0.1])], max_count=max_count, max_bytes=max_bytes)


def test_sized_chunks_are_the_same_chunks_with_their_estimated_bytes() -> None:
    records = [Record(f"id-{i}", [0.5] * 3000, {"n": i}) for i in range(60)]

    sized = sized_chunks(records)

    assert [chunk for chunk, _ in sized] == chunk_for_upsert(records)
    assert [size for _, size in sized] == [sum(estimate_bytes(r) for r in chunk) for chunk, _ in sized]
    assert len(sized) > 1


def pgvector_values(values: list[float]) -> BinaryValues:
    """Values as a pgvector table sends them in binary: dimension, an unused word, big-endian float32s."""
    return BinaryValues(len(values).to_bytes(2, "big") + b"\0\0" + np.asarray(values, dtype=">f4").tobytes())


def test_a_write_into_a_pgvector_table_is_charged_its_vectors_binary_form() -> None:
    rng = np.random.default_rng(40)
    batch = [
        Record(f"doc-{i}#chunk-0", pgvector_values(rng.standard_normal(1536).tolist()), {"collection_name": "c"})
        for i in range(200)
    ]

    chunks = sized_chunks(batch, measure=binary_bytes)

    # One write for the batch, charged about what its float32s weigh (6 KB a vector), where a Pinecone request's JSON
    # bound (25 bytes a value) would charge it six times that, in four requests.
    assert [len(chunk) for chunk, _ in chunks] == [200]
    assert 200 * 1536 * 4 < chunks[0][1] < 200 * (1536 * 4 + 100)
    assert len(sized_chunks(batch)) == 4


def test_pgvector_values_go_to_pinecone_as_their_float32_decimals_within_the_estimate() -> None:
    values = [1e-45, 1.1754944e-38, -3.4028235e38, -0.0, 0.1, 0.33333334, 123456.79]
    record = Record("a", pgvector_values(values), {"k": "v"})

    body = upsert_json("ns", [record])

    assert orjson.loads(body)["vectors"][0]["values"] == values == list(record.values)
    assert len(body) <= ENVELOPE_BYTES + estimate_bytes(record)


@settings(max_examples=100, deadline=None)
@given(
    chunk=records,
    namespace=st.sampled_from(["", "ns", 'a "quoted"\n namespace é']),
    as_fetched=st.booleans(),
    sparse=st.booleans(),
)
def test_the_upsert_body_is_what_orjson_writes_of_the_request(
    chunk: list[Record], namespace: str, as_fetched: bool, sparse: bool
) -> None:
    if as_fetched:  # as a fetch leaves them: views into one response body
        response = b"".join(orjson.dumps(list(r.values)) for r in chunk)
        view, at, fetched = memoryview(response), 0, []
        for r in chunk:
            size = len(orjson.dumps(list(r.values)))
            fetched.append(Record(r.id, JsonValues(view[at : at + size]), r.metadata))
            at += size
        chunk = fetched
    if sparse:
        chunk = [Record(r.id, r.values, r.metadata, SparseValues((1, 7), (0.5, -2.0))) for r in chunk]

    body = upsert_json(namespace, chunk)

    assert body == orjson_body(namespace, chunk)
    assert [v["id"] for v in orjson.loads(body)["vectors"]] == [r.id for r in chunk]

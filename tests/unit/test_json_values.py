"""JsonValues: fetched vector values kept as JSON, read as an ordinary sequence of floats on demand."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.limits import JSON_NUMBER_MAX_BYTES
from nsmigrate.orchestrator.records.vectors import JsonValues, Record
from nsmigrate.orchestrator.verification.comparisons import compare_values
from nsmigrate.workers.transfer.chunking import estimate_bytes

floats = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=64)


@given(floats)
def test_reads_like_the_list_it_encodes(values: list[float]) -> None:
    wrapped = JsonValues(orjson.dumps(values))

    assert len(wrapped) == len(values)
    assert list(wrapped) == values
    assert wrapped == values and wrapped == JsonValues(orjson.dumps(values))
    np.testing.assert_array_equal(np.asarray(wrapped, dtype=np.float32), np.asarray(values, dtype=np.float32))
    if values:
        assert wrapped[0] == values[0] and wrapped[-1] == values[-1] and wrapped[1:] == values[1:]


def test_length_is_read_without_decoding() -> None:
    wrapped = JsonValues(b"[0.5,-1.25,3e-5]")
    assert len(wrapped) == 3
    assert wrapped._floats is None
    assert len(JsonValues(b"[]")) == 0 and len(JsonValues(b"[ ]")) == 0


def test_verification_compares_them_like_lists() -> None:
    assert compare_values(JsonValues(b"[0.5,0.25]"), [0.5, 0.25], 1e-6) is None
    assert "values differ" in str(compare_values(JsonValues(b"[0.5,0.25]"), [0.5, 0.75], 1e-6))


def test_an_upsert_chunk_is_sized_by_the_exact_json() -> None:
    values = [0.123456789] * 100
    raw = JsonValues(orjson.dumps(values))
    exact = estimate_bytes(Record("a", raw, {"k": "v"}))
    bound = estimate_bytes(Record("a", values, {"k": "v"}))

    assert exact - bound == len(raw.json) - JSON_NUMBER_MAX_BYTES * len(values)
    assert len(raw.json) < JSON_NUMBER_MAX_BYTES * len(values)


def test_not_hashable_like_a_list() -> None:
    with pytest.raises(TypeError):
        hash(JsonValues(b"[1]"))

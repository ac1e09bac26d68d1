"""A fetch response's values arrays cut out unparsed: the same vectors as reading it whole, or a refusal (None) that
sends the caller the general way."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.workers.stores.pinecone.fetch_body import Fetched, RawSparse, read_fetch, split_fetch

_GENERAL = msgspec.json.Decoder(dict[str, Any])


def _general(body: bytes) -> dict[str, tuple[list[float], Any, Any]]:
    """Every vector read whole, values decoded: what the cut must agree with."""
    return {
        i: (v.get("values", []), v.get("metadata"), v.get("sparseValues"))
        for i, v in _GENERAL.decode(body)["vectors"].items()
    }


def _decoded(found: dict[str, Fetched]) -> dict[str, tuple[list[float], Any, Any]]:
    return {
        i: (orjson.loads(f.values), f.metadata, None if f.sparse is None else msgspec.to_builtins(f.sparse))
        for i, f in found.items()
    }


def _body(vectors: dict[str, dict[str, Any]], *, spaced: bool = False) -> bytes:
    body = {"vectors": vectors, "namespace": "ns", "usage": {"readUnits": 1}}
    return orjson.dumps(body) if not spaced else orjson.dumps(body, option=orjson.OPT_INDENT_2)


def test_cuts_each_vectors_values_out_verbatim() -> None:
    body = _body({"a": {"id": "a", "values": [0.5, -1.25e-7], "metadata": {"t": "x"}}, "b": {"id": "b", "values": []}})

    found = split_fetch(body)

    assert found is not None
    assert [f.values for f in found.values()] == [b"[0.5,-1.25e-7]", b"[]"]
    assert found["a"].metadata == {"t": "x"} and found["b"].metadata is None


def test_json_whitespace_around_the_key_is_allowed() -> None:
    body = _body({"a": {"id": "a", "values": [1.0, 2.0]}}, spaced=True)

    found = split_fetch(body)

    assert found is not None and orjson.loads(found["a"].values) == [1.0, 2.0]


@pytest.mark.parametrize(
    "vectors",
    [
        {"a": {"id": "a", "values": [1.0], "metadata": {"values": [1, 2]}}},  # a "values" key in metadata
        {"a": {"id": "a", "metadata": {"values": [3.0]}, "values": [1.0]}},  # ... before the vector's own
        {"a": {"id": "a", "values": [1.0], "sparseValues": {"indices": [1], "values": [0.5]}}},  # sparse values
        {"a": {"id": "a", "sparseValues": {"indices": [1], "values": [0.5]}}},  # no dense values at all
        {"a": {"id": "a", "values": [1.0], "metadata": {'q"values': [2]}}},  # an escaped quote before the key
        {"a": {"id": "a", "values": [1.0], "metadata": {"values": ["]", "x"]}}},  # a "]" where the cut would end
    ],
)
def test_what_the_cut_cannot_prove_is_refused_and_read_the_general_way(vectors: dict[str, Any]) -> None:
    body = _body(vectors)

    assert split_fetch(body) is None
    assert _decoded(read_fetch(body)) == _general(body)


def test_a_values_key_that_names_no_array_is_left_alone() -> None:
    body = _body({"a": {"id": "a", "values": [1.0], "metadata": {"values": "text", "n": {"values": 1}}}})

    found = split_fetch(body)

    assert found is not None and found["a"].metadata == {"values": "text", "n": {"values": 1}}


def test_a_body_that_is_not_a_fetch_response_raises() -> None:
    assert split_fetch(b'{"vectors": [') is None
    with pytest.raises(msgspec.MsgspecError):
        read_fetch(b'{"vectors": [')


def test_sparse_values_come_through_the_general_way() -> None:
    body = _body({"a": {"id": "a", "values": [1.0], "sparseValues": {"indices": [3], "values": [0.5]}}})

    assert read_fetch(body)["a"].sparse == RawSparse(indices=[3], values=[0.5])


_text = st.text(alphabet=st.sampled_from(list('ab"\\[]{}:, values\n')), max_size=12)
_number = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
_meta_value = st.one_of(_text, _number, st.lists(st.one_of(_text, _number), max_size=3))
_metadata = st.dictionaries(st.one_of(_text, st.just("values")), _meta_value, max_size=3)
_vector = st.fixed_dictionaries(
    {"values": st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=5)},
    optional={"metadata": _metadata, "sparseValues": st.just({"indices": [1], "values": [0.25]})},
)


@given(st.dictionaries(_text, _vector, max_size=4), st.booleans())
def test_the_cut_agrees_with_reading_the_body_whole(vectors: dict[str, Any], spaced: bool) -> None:
    body = _body(vectors, spaced=spaced)

    found = split_fetch(body)

    if found is not None:
        assert _decoded(found) == _general(body)
    assert _decoded(read_fetch(body)) == _general(body)

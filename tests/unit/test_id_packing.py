"""Batch ids packed for the job table (``orchestrator.packed_ids``): every list of ids comes back as it went in."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.packed_ids import RAW, ZLIB, pack_ids, unpack_ids

ids_without_nul = st.lists(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))))


@given(ids_without_nul)
def test_any_ids_come_back_in_order(ids: list[str]) -> None:
    assert unpack_ids(pack_ids(ids)) == ids


@pytest.mark.parametrize(
    "ids",
    [[], [""], ["", ""], ["a", ""], ["ünïcødé-日本語-🙂", "doc-1#chunk-0", "tab\tand\nnewline", "a b"], ["x"] * 3],
    ids=["none", "one-empty", "two-empty", "trailing-empty", "non-ascii", "duplicates"],
)
def test_edge_cases_come_back(ids: list[str]) -> None:
    assert unpack_ids(pack_ids(ids)) == ids


def test_a_batch_of_uuids_is_compressed_to_well_under_its_json() -> None:
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(100)]
    packed = pack_ids(ids)
    assert packed[0] == ZLIB
    json_bytes = sum(len(i) + 3 for i in ids)  # quotes and a comma each, before JSONB's own headers
    assert len(packed) < 0.65 * json_bytes


def test_a_short_batch_is_stored_raw() -> None:
    assert pack_ids(["a", "b"]) == bytes((RAW,)) + b"a\0b\0"


def test_an_id_with_nul_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="NUL"):
        pack_ids(["ok", "bad\0id"])


def test_stored_bytes_of_an_unknown_format_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown format 7"):
        unpack_ids(b"\x07abc\0")

"""The pure parts of the export format: file names per namespace, the ids' fingerprint, records ↔ Arrow rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.workers.stores.backup.parquet import (
    ExportHeader,
    file_name_for,
    ids_fingerprint,
    records_to_table,
    table_to_records,
)
from nsmigrate.workers.stores.base import Record


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("", "__default__.parquet"),
        ("plain", "plain.parquet"),
        ("creator_a.1_twin_b-2", "creator_a.1_twin_b-2.parquet"),
        ("1af5fe75-7d26-49ff-bfc5-13ce560618fb", "1af5fe75-7d26-49ff-bfc5-13ce560618fb.parquet"),
        ("__default__", None),  # a real namespace of that name must not take the default's file
        ("Upper", None),  # case-insensitive file systems
        ("a__b", None),
        ("a/b", None),
        ("../etc", None),
        ("-rf", None),  # never a name that reads as a command-line option
        ("x" * 101, None),
    ],
)
def test_file_names(namespace: str, name: str | None) -> None:
    got = file_name_for(namespace)

    assert re.fullmatch(r"[a-z0-9_][a-z0-9._-]{0,80}\.parquet", got)
    if name is not None:
        assert got == name
    else:
        assert re.search(r"__[0-9a-f]{12}\.parquet$", got) and "/" not in got


@given(st.lists(st.text(max_size=30), unique=True, max_size=40))
def test_file_names_never_collide_even_ignoring_case(namespaces: list[str]) -> None:
    names = [file_name_for(ns).lower() for ns in namespaces]

    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_][a-z0-9._-]*\.parquet", n) and len(n) <= 120 for n in names)


@given(st.lists(st.text(max_size=20), max_size=30), st.randoms())
def test_fingerprint_ignores_order_but_not_content(ids: list[str], rnd: object) -> None:
    shuffled = list(ids)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]

    assert ids_fingerprint(shuffled) == ids_fingerprint(ids)
    assert ids_fingerprint([*ids, "extra"]) != ids_fingerprint(ids)
    if ids:
        assert ids_fingerprint([*ids, ids[0]]) != ids_fingerprint(ids)  # a duplicate does not cancel out


def test_records_round_trip_through_arrow_exactly() -> None:
    records = [Record("a", [1 / 3, -0.0, 1e-45], {"n": 1, "f": 1.0, "b": False, "l": ["x"]}), Record("b", [0, 1, 2])]
    header = ExportHeader(Path("f.parquet"), "ns", 3, 2, "", "", "", "")

    back = table_to_records(records_to_table(records, 3, Path("f.parquet")), header)

    assert [r.id for r in back] == ["a", "b"]
    assert np.array_equal(
        np.asarray(back[0].values, np.float32).view(np.uint32),
        np.asarray(records[0].values, np.float32).view(np.uint32),
    )
    assert back[0].metadata == records[0].metadata and type(back[0].metadata["f"]) is float
    assert back[1].metadata == {}


def test_a_record_of_another_dimension_is_refused() -> None:
    with pytest.raises(BackupError, match="'b' has 2 values"):
        records_to_table([Record("a", [1.0, 2.0, 3.0]), Record("b", [1.0, 2.0])], 3, Path("f.parquet"))

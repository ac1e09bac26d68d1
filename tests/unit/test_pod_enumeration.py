"""The pure parts of finding a pod's ids: page tokens, paging after an id, the catalogue CSV, sweep vectors, costs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.listing.pod_enumeration import (
    QUERY_MIN_READ_UNITS,
    PageToken,
    ids_after,
    parse_catalogue_csv,
    sweep_cost,
    sweep_vector,
    utf8_order,
)


@given(st.lists(st.text(min_size=1, max_size=12), max_size=300), st.integers(min_value=1, max_value=100))
def test_paging_after_the_last_id_hands_out_every_id_exactly_once(raw: list[str], limit: int) -> None:
    ordered = utf8_order(raw)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = ids_after(ordered, after, limit)
        seen.extend(page)
        if len(page) < limit:
            break
        after = page[-1]
    assert seen == ordered


def test_ids_are_ordered_by_utf8_bytes_as_pinecone_lists_them() -> None:
    assert utf8_order(["b", "a", "Z", "é", "a"]) == ["Z", "a", "b", "é"]
    assert utf8_order(["\uff5e", "\U0001f600"]) == ["\uff5e", "\U0001f600"]  # UTF-16 order would swap them


def test_a_page_token_round_trips_and_is_refused_by_another_enumeration() -> None:
    token = PageToken("sweep", "ab12", "doc#1:chunk/2").encode()
    assert PageToken.decode(token, "sweep") == PageToken("sweep", "ab12", "doc#1:chunk/2")
    with pytest.raises(ValueError, match="not made by a catalogue"):
        PageToken.decode(token, "catalogue")
    with pytest.raises(ValueError):
        PageToken.decode("c2Vjb25kY2FsbA==", "sweep")  # a serverless list token


def test_the_catalogue_csv_groups_ids_by_namespace() -> None:
    text = 'namespace,id\n# exported\n__default__,b\n,a\nns,"x,1"\nns,x0\n\n'
    assert parse_catalogue_csv(text, "ids.csv") == {"": ["a", "b"], "ns": ["x,1", "x0"]}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("id,namespace\nns,a\n", "header `namespace,id`"), ("namespace,id\nns\n", "row 2"), ("", "header")],
)
def test_a_bad_catalogue_is_refused_naming_where(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_catalogue_csv(text, "ids.csv")


def test_sweep_vectors_are_seeded_and_come_in_opposite_pairs() -> None:
    first = sweep_vector(16, "cosine", "s1", "ns", 0)
    assert first == sweep_vector(16, "cosine", "s1", "ns", 0)  # the same sweep again finds the same ids
    assert sweep_vector(16, "cosine", "s1", "ns", 1) == [-v for v in first]
    assert sweep_vector(16, "cosine", "s2", "ns", 0) != first
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0)
    far = sweep_vector(16, "euclidean", "s1", "ns", 0)
    assert math.sqrt(sum(v * v for v in far)) > 1000  # nearest to a far point = furthest along its direction


@pytest.mark.parametrize(
    ("count", "top_k", "max_queries", "least", "most", "coverable"),
    [
        (0, 100, 10, 0, 0, True),
        (7, 100, 10, 1, 1, True),
        (100, 100, 10, 1, 1, True),
        (120, 50, 2, 3, 2, False),
        (120, 50, 40, 3, 40, True),
    ],
)
def test_what_a_sweep_costs(count: int, top_k: int, max_queries: int, least: int, most: int, coverable: bool) -> None:
    cost = sweep_cost(count, 8, top_k, max_queries)
    assert (cost.min_queries, cost.max_queries, cost.coverable) == (least, most, coverable)
    if count:
        assert cost.read_units_per_query == QUERY_MIN_READ_UNITS  # a small namespace: the per-query minimum
        assert cost.min_read_units == least * QUERY_MIN_READ_UNITS


def test_a_large_namespace_costs_a_read_unit_per_gb_per_query() -> None:
    cost = sweep_cost(10_000_000, 1536, 10_000, 5000)
    assert cost.read_units_per_query > 60  # ~66 GB of values and metadata
    assert cost.min_queries == 1000

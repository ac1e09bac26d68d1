"""Pure verification logic: record comparison tables, id-set and fingerprint properties, the report's verdict."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.jobs.verdicts import target_is_shared
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.records.vectors import BinaryValues, JsonValues, Record, SparseValues, same_bytes
from nsmigrate.orchestrator.verification.comparisons import (
    MISMATCH_CAP,
    Report,
    compare_id_sets,
    compare_metadata,
    compare_record,
    counts_stable,
    fingerprint,
    percentile,
    query_summary,
    sample_ids,
)

SRC = Record("v1", [0.1, 0.2, 0.3], {"text": "hello", "n": 3})
MD = {"text": "hello", "n": 3, "twin_id": "t1"}  # source metadata + enrichment


def test_two_integers_compare_exactly_where_one_float_holds_both() -> None:
    # A JSON integer above 2**53: float64 cannot tell 2**53 from 2**53 + 1.
    assert (
        compare_metadata({"n": 2**53}, {"n": 2**53 + 1})
        == "metadata key 'n': expected 9007199254740992, got 9007199254740993"
    )
    assert compare_metadata({"n": 3}, {"n": 3.0}) is None  # Pinecone returns every number as a float


def test_an_integer_its_float_copy_cannot_hold_is_no_copy() -> None:
    # Pinecone keeps 2**53 + 1 as the float 2**53: rounding the integer too would call that copy equal.
    assert (
        compare_metadata({"n": 2**53 + 1}, {"n": float(2**53 + 1)})
        == "metadata key 'n': expected 9007199254740993, got 9007199254740992.0"
    )
    assert compare_metadata({"n": 2**53}, {"n": float(2**53)}) is None


def _f32_next(x: float) -> float:
    """The next float32 after ``x``: the smallest change a float32 store can show."""
    return float(np.nextafter(np.float32(x), np.float32(np.inf)))


# ------------------------------------------------------------------------------------------------- compare_record


@pytest.mark.parametrize(
    ("target", "expected", "tolerance", "reason"),
    [
        # equal
        (Record("v1", [0.1, 0.2, 0.3], MD), MD, 1e-6, None),
        # float64 values that are the same float32 are equal even with zero tolerance
        (Record("v1", [float(np.float32(0.1)), 0.2, 0.3], MD), MD, 0.0, None),
        # numbers as Pinecone returns them: 3 → 3.0
        (Record("v1", [0.1, 0.2, 0.3], {**MD, "n": 3.0}), MD, 1e-6, None),
        # missing in target
        (None, MD, 1e-6, "missing in target"),
        # value differs
        (Record("v1", [0.1, 0.2, 0.61], MD), MD, 1e-6, "values differ (max |Δ| 0.31 at index 2)"),
        # dimension differs
        (Record("v1", [0.1, 0.2], MD), MD, 1e-6, "dimension differs: expected 3, got 2"),
        # different id
        (Record("v2", [0.1, 0.2, 0.3], MD), MD, 1e-6, "id differs: expected 'v1', got 'v2'"),
        # enrichment key missing in target
        (
            Record("v1", [0.1, 0.2, 0.3], {"text": "hello", "n": 3}),
            MD,
            1e-6,
            "metadata key 'twin_id': expected 't1', got None",
        ),
        # extra key in target
        (Record("v1", [0.1, 0.2, 0.3], {**MD, "extra": 1}), MD, 1e-6, "metadata key 'extra': not expected, got 1"),
        # changed value
        (
            Record("v1", [0.1, 0.2, 0.3], {**MD, "text": "bye"}),
            MD,
            1e-6,
            "metadata key 'text': expected a text of 5 characters, got a text of 3 characters",
        ),
        # a bool is not a number, even though True == 1
        (
            Record("v1", [0.1, 0.2, 0.3], {**MD, "n": True}),
            {**MD, "n": 1},
            1e-6,
            "metadata key 'n': expected 1, got True",
        ),
        # lists compare element by element
        (Record("v1", [0.1, 0.2, 0.3], {**MD, "tags": ["a", "b"]}), {**MD, "tags": ["a", "b"]}, 1e-6, None),
        (
            Record("v1", [0.1, 0.2, 0.3], {**MD, "tags": ["b", "a"]}),
            {**MD, "tags": ["a", "b"]},
            1e-6,
            "metadata key 'tags': expected a list of 2 items, got a list of 2 items",
        ),
        # values are judged before metadata
        (Record("v1", [0.1, 0.2, 0.9], {}), MD, 1e-6, "values differ (max |Δ| 0.6 at index 2)"),
    ],
    ids=[
        "equal",
        "same-float32",
        "int-as-float",
        "missing",
        "value",
        "dimension",
        "id",
        "md-missing-key",
        "md-extra-key",
        "md-changed",
        "md-bool-vs-int",
        "md-list-equal",
        "md-list-order",
        "values-first",
    ],
)
def test_compare_record(target: Record | None, expected: dict, tolerance: float, reason: str | None) -> None:
    assert compare_record(SRC, target, expected, tolerance) == reason


@pytest.mark.parametrize(
    ("delta_ulps", "tolerance", "equal"),
    [
        (0, 0.0, True),
        (1, 0.0, False),  # one float32 step is a difference when nothing is tolerated
        (1, 1e-7, True),  # one step at 0.5 is 5.96e-8 ≤ 1e-7
        (2, 1e-7, False),  # two steps are 1.19e-7 > 1e-7
        (2, 1e-6, True),
    ],
)
def test_compare_record_float32_tolerance_edge(delta_ulps: int, tolerance: float, equal: bool) -> None:
    value = 0.5
    for _ in range(delta_ulps):
        value = _f32_next(value)
    result = compare_record(Record("a", [0.5]), Record("a", [value]), {}, tolerance)
    assert (result is None) is equal, result


def test_compare_record_difference_exactly_at_tolerance_passes() -> None:
    step = _f32_next(0.5) - 0.5
    assert compare_record(Record("a", [0.5]), Record("a", [_f32_next(0.5)]), {}, step) is None


@pytest.mark.parametrize(
    ("source", "target", "equal"),
    [
        ([math.nan], [math.nan], True),
        ([math.nan], [0.0], False),
        ([0.0], [math.nan], False),
        ([math.inf], [math.inf], True),
        ([math.inf], [-math.inf], False),
        ([1e39], [math.inf], True),  # both are +inf as float32, as a float32 store would hold them
    ],
)
def test_compare_record_non_finite(source: list[float], target: list[float], equal: bool) -> None:
    assert (compare_record(Record("a", source), Record("a", target), {}, 1e-6) is None) is equal


def _json(values: list[float]) -> JsonValues:
    """Values as a Pinecone fetch sends them: each float32 as its shortest decimal."""
    return JsonValues(json.dumps([float(np.float32(v)) for v in values], separators=(",", ":")).encode())


def _binary(values: list[float]) -> BinaryValues:
    """Values as pgvector's binary form sends them."""
    return BinaryValues(len(values).to_bytes(2, "big") + b"\0\0" + np.asarray(values, dtype=">f4").tobytes())


@pytest.mark.parametrize("form", [_json, _binary])
def test_values_sent_byte_for_byte_alike_are_equal_unread(form) -> None:  # type: ignore[no-untyped-def]
    source, target = form([0.5, -0.25, 0.125]), form([0.5, -0.25, 0.125])
    assert same_bytes(source, target)
    assert compare_record(Record("a", source), Record("a", target), {}, 0.0) is None
    assert source._floats is None and target._floats is None  # neither side decoded


def test_values_cut_out_of_a_response_are_compared_by_their_bytes() -> None:
    # A fetch keeps each array as a view into its response (``fetch_body``): views at other places of other bodies.
    body, other = b'{"a":[0.5,0.25],"b":[0.5,0.75]}', b'{"x":1,"a":[0.5,0.25]}'
    source = JsonValues(memoryview(body)[5:15])
    assert same_bytes(source, JsonValues(memoryview(other)[11:21]))
    assert same_bytes(source, JsonValues(b"[0.5,0.25]"))
    assert not same_bytes(source, JsonValues(memoryview(body)[20:30]))
    assert compare_record(Record("a", source), Record("a", JsonValues(memoryview(body)[20:30])), {}, 1e-6) is not None


@pytest.mark.parametrize("form", [_json, _binary])
def test_one_value_changed_in_the_target_is_caught_past_the_byte_check(form) -> None:  # type: ignore[no-untyped-def]
    source, target = form([0.5, -0.25, 0.125]), form([0.5, -0.75, 0.125])
    assert not same_bytes(source, target)
    assert (
        compare_record(Record("a", source), Record("a", target), {}, 1e-6) == "values differ (max |Δ| 0.5 at index 1)"
    )


@pytest.mark.parametrize("form", [_json, _binary])
def test_one_float32_step_is_judged_by_the_tolerance_past_the_byte_check(form) -> None:  # type: ignore[no-untyped-def]
    source, target = form([0.25, 0.5]), form([0.25, _f32_next(0.5)])
    assert not same_bytes(source, target)
    assert compare_record(Record("a", source), Record("a", target), {}, 0.0) is not None
    assert compare_record(Record("a", source), Record("a", target), {}, 1e-7) is None


def test_bytes_that_differ_past_float32_precision_compare_equal_as_float32() -> None:
    # Other digits, one float32: today's rule (both sides cast to float32) holds for arrays whose bytes differ.
    source, target = JsonValues(b"[0.5,0.25]"), JsonValues(b"[0.50000001,0.25000000001]")
    assert not same_bytes(source, target)
    assert compare_record(Record("a", source), Record("a", target), {}, 0.0) is None
    # A difference float32 holds (two steps at 0.5) is still one.
    assert compare_record(Record("a", source), Record("a", JsonValues(b"[0.5000001,0.25]")), {}, 0.0) is not None


def test_equal_value_bytes_still_judge_metadata_sparse_values_and_dimension() -> None:
    values = b"[0.5,0.25]"
    sparse = SparseValues((1, 4), (0.5, 0.25))
    source = Record("a", JsonValues(values), {"n": 1}, sparse)
    assert compare_record(source, Record("a", JsonValues(values), {"n": 1}, sparse), {"n": 1}, 0.0) is None
    assert "metadata key 'n'" in str(
        compare_record(source, Record("a", JsonValues(values), {"n": 2}, sparse), {"n": 1}, 0.0)
    )
    changed = SparseValues((1, 4), (0.5, 0.75))
    assert "sparse values differ" in str(
        compare_record(source, Record("a", JsonValues(values), {"n": 1}, changed), {"n": 1}, 0.0)
    )
    assert "dimension differs" in str(
        compare_record(source, Record("a", JsonValues(b"[0.5]"), {"n": 1}, sparse), {"n": 1}, 0.0)
    )


def test_values_of_different_forms_are_decoded_and_compared() -> None:
    assert not same_bytes(_json([0.5, 0.25]), _binary([0.5, 0.25]))
    assert not same_bytes(_json([0.5, 0.25]), [0.5, 0.25])
    assert compare_record(Record("a", _json([0.5, 0.25])), Record("a", _binary([0.5, 0.25])), {}, 0.0) is None
    assert compare_record(Record("a", _json([0.5, 0.25])), Record("a", _binary([0.5, 0.75])), {}, 1e-6) is not None


# ----------------------------------------------------------------------------------------------------------- ids

ids_st = st.sets(st.text(min_size=1, max_size=8), max_size=60)


@given(ids_st, ids_st)
def test_compare_id_sets_partitions(expected: set[str], actual: set[str]) -> None:
    diff = compare_id_sets(expected, actual, cap=1000)
    missing, extra = set(diff.missing), set(diff.extra)
    assert missing == expected - actual
    assert extra == actual - expected
    assert missing.isdisjoint(actual) and extra.isdisjoint(expected)
    # what is in both, plus what is missing, is exactly the expected set
    assert (expected & actual) | missing == expected
    assert (expected & actual) | extra == actual
    assert diff.missing_count == len(missing) and diff.extra_count == len(extra)
    assert diff.equal == (expected == actual)


@given(ids_st, ids_st, st.integers(min_value=0, max_value=10))
def test_compare_id_sets_caps_lists_not_counts(expected: set[str], actual: set[str], cap: int) -> None:
    diff = compare_id_sets(expected, actual, cap=cap)
    assert diff.missing == sorted(expected - actual)[:cap]
    assert diff.extra == sorted(actual - expected)[:cap]
    assert diff.missing_count == len(expected - actual)


@given(st.lists(st.text(max_size=10), max_size=50), st.randoms(use_true_random=False))
def test_fingerprint_is_order_independent(ids: list[str], rnd: random.Random) -> None:
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert fingerprint(ids) == fingerprint(shuffled)
    assert len(fingerprint(ids)) == 16


@given(st.sets(st.text(max_size=10), min_size=1, max_size=50), st.data())
def test_fingerprint_changes_when_one_id_changes(ids: set[str], data: st.DataObject) -> None:
    victim = data.draw(st.sampled_from(sorted(ids)))
    replacement = data.draw(st.text(max_size=10).filter(lambda s: s not in ids))
    changed = (ids - {victim}) | {replacement}
    assert fingerprint(changed) != fingerprint(ids)
    assert fingerprint(ids - {victim}) != fingerprint(ids)


def test_fingerprint_is_not_fooled_by_separators() -> None:
    assert fingerprint(["a\x00b"]) != fingerprint(["a", "b"])
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])


# ------------------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("samples", "needed", "stable"),
    [
        ([], 3, False),
        ([5, 5], 3, False),
        ([5, 5, 5], 3, True),
        ([4, 5, 5, 5], 3, True),
        ([5, 5, 5, 6], 3, False),
        ([7], 1, True),
    ],
)
def test_counts_stable(samples: list[int], needed: int, stable: bool) -> None:
    assert counts_stable(samples, needed) is stable


@given(
    st.lists(st.text(max_size=6), max_size=80, unique=True),
    st.integers(min_value=0, max_value=100),
    st.randoms(use_true_random=False),
)
def test_sample_ids_deterministic_and_order_independent(ids: list[str], n: int, rnd: random.Random) -> None:
    first = sample_ids(ids, n, "seed")
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert sample_ids(shuffled, n, "seed") == first
    assert len(first) == min(n, len(ids))
    assert set(first) <= set(ids) and len(set(first)) == len(first)


def test_sample_ids_depends_on_seed() -> None:
    ids = [f"id-{i}" for i in range(1000)]
    assert sample_ids(ids, 10, "a") != sample_ids(ids, 10, "b")


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([3.0, 1.0, 2.0], 0, 1.0),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_query_summary() -> None:
    q = query_summary([["a", "b"], ["c", "d"]], [["b", "a"], ["c", "x"]], [1.0, 3.0], top_k=2, min_overlap=0.9)
    assert q["same_top_k"] == 1
    assert q["mean_overlap"] == 0.75
    assert q["passed"] is False
    assert q["latency_ms_p50"] == 2.0
    assert query_summary([["a", "b"]], [["a", "x"]], [1.0], top_k=2, min_overlap=0.5)["passed"] is True


# -------------------------------------------------------------------------------------------------------- report


def _report(**kw: object) -> Report:
    r = Report(source_namespace="ns", source_count=805, source_fingerprint="abc", ids_expected=805, content_checked=805)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize(
    ("latency", "passes"),
    [
        pytest.param({"samples": 5, "p95_ms": 40.0, "limit_ms": 50.0}, True, id="under-the-limit"),
        pytest.param({"error": "query: 503 Service Unavailable", "samples": 0, "limit_ms": 50.0}, False, id="untimed"),
        pytest.param({"error": "query: 503 Service Unavailable", "samples": 0, "limit_ms": None}, True, id="no-limit"),
    ],
)
def test_a_latency_limit_nothing_was_timed_against_is_not_met(latency: dict[str, object], passes: bool) -> None:
    r = _report(target_count=805, latency=latency)
    assert r.passed is passes
    assert any("could not be timed against the limit of 50.0 ms" in reason for reason in r.reasons()) is not passes


def test_report_passes_and_summarises() -> None:
    r = _report(target_count=805)
    assert r.passed
    assert r.summary == "805/805 ids present, 805 contents equal, counts 805=805"
    data = r.to_json()
    for key in (
        "passed",
        "summary",
        "source_count",
        "target_count",
        "missing_ids",
        "missing_count",
        "extra_ids",
        "extra_count",
        "content_checked",
        "content_mismatches",
        "query",
        "source_fingerprint",
        "checked_at",
    ):
        assert key in data
    json.dumps(data)  # plain JSON types only


def test_report_fails_on_missing() -> None:
    r = _report()
    r.add_missing(["b", "a"])
    assert not r.passed
    assert r.missing_ids == ["a", "b"] and r.missing_count == 2
    assert r.summary.startswith("FAILED: 803/805 ids present")


def test_report_mismatches_are_capped_but_counted() -> None:
    r = _report()
    for i in range(MISMATCH_CAP + 5):
        r.add_mismatch(f"v{i}", "values differ")
    data = r.to_json()
    assert len(data["content_mismatches"]) == MISMATCH_CAP
    assert data["content_mismatch_count"] == MISMATCH_CAP + 5
    assert not data["passed"]


@pytest.mark.parametrize(
    ("changes", "passed"),
    [
        ({"target_count": 804}, False),
        ({"count_stable": False, "count_readings": [1, 2, 3]}, False),
        ({"extra_count": 2, "extra_ids": ["x", "y"], "extras_fail": True}, False),
        ({"extra_count": 2, "extra_ids": ["x", "y"], "extras_fail": False}, True),  # shared target: reported only
        ({"vanished_count": 1}, False),
        ({"source_count_after": 805}, True),  # the source listed again, unchanged: judged by the count alone
        ({"source_count_after": 806, "source_changed": True}, False),
        ({"error": "StoreError: boom"}, False),
        ({"query": {"passed": False, "mean_overlap": 0.5, "same_top_k": 0, "samples": 2, "top_k": 3}}, False),
    ],
)
def test_report_verdict(changes: dict, passed: bool) -> None:
    r = _report(**changes)
    assert r.passed is passed
    assert r.to_json()["passed"] is passed
    assert r.summary.startswith("FAILED") is (not passed)


@pytest.mark.parametrize(
    ("source", "target", "fragment"),
    [
        (SparseValues((1, 7), (0.5, 0.25)), SparseValues((1, 7), (0.5, 0.25)), None),
        (None, None, None),
        (SparseValues((1, 7), (0.5, 0.25)), None, "sparse values missing in target"),
        (None, SparseValues((1,), (0.5,)), "none in source"),
        (SparseValues((1, 7), (0.5, 0.25)), SparseValues((1, 8), (0.5, 0.25)), "sparse indices differ"),
        (SparseValues((1, 7), (0.5, 0.25)), SparseValues((1, 7), (0.5, 0.75)), "sparse values differ"),
    ],
)
def test_sparse_values_are_part_of_a_records_contents(
    source: SparseValues | None, target: SparseValues | None, fragment: str | None
) -> None:
    a = Record("x", [1.0, 2.0], {}, source)
    b = Record("x", [1.0, 2.0], {}, target)
    reason = compare_record(a, b, {}, 1e-6)
    assert reason is None if fragment is None else fragment in (reason or "")


def _run(run_id: int, state: RunState, target: str | None, wrote: list[str], batches: int) -> NamespaceRun:
    return NamespaceRun(
        id=run_id, job_id=1, state=state, target_namespace=target, target_namespaces=wrote, batches_total=batches
    )


@pytest.mark.parametrize(
    ("routed_state", "batches", "wrote", "shared"),
    [
        # Its lister failed for good: its batches still finish, and may write into t10 before they record it.
        (RunState.LIST_FAILED, 2, [], True),
        (RunState.LIST_FAILED, 0, [], True),  # `retry` lists it again
        # Cancelled part-way: a retry of its failed batches copies again.
        (RunState.CANCELLED, 1, [], True),
        # Refused by its own checks before any batch: it never wrote and never will.
        (RunState.CANCELLED, 0, [], False),
        (RunState.CHECKING, 0, [], True),
        (RunState.COPYING, 1, [], True),
        # Copied: every batch finished and recorded where it wrote.
        (RunState.COPIED, 1, ["t11"], False),
        (RunState.VERIFIED, 1, ["t10"], True),
    ],
)
def test_a_routed_run_shares_every_target_until_it_has_copied(
    routed_state: RunState, batches: int, wrote: list[str], shared: bool
) -> None:
    fixed = _run(1, RunState.COPIED, "t10", [], 1)
    routed = _run(2, routed_state, None, wrote, batches)
    assert target_is_shared(fixed, [fixed, routed]) is shared

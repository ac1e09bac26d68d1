"""The per-id decisions of sync (``plan_delta``) and rollback (``plan_restore``, ``restore_record``): pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.pgvector_rows import NULL_METADATA_KEY
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import RouteContext, expected_metadata, route_records
from nsmigrate.orchestrator.spec.jobspec import Enrichment
from nsmigrate.orchestrator.verification.delta import (
    enrichment_keys,
    namespace_disposal,
    plan_delta,
    plan_restore,
    restore_record,
)
from nsmigrate.orchestrator.verification.proof import prove_copies

TWINS = {"t1": "a.1", "t2": "a.10"}
T1 = "creator_a.1_twin_t1"
T2 = "creator_a.10_twin_t2"


def ctx(target: str | None = T1, **fields: Any) -> RouteContext:
    defaults: dict[str, Any] = {
        "source_label": "seeds",
        "source_namespace": "" if target is None else "t1",
        "target_namespace": target,
        "enrichment": Enrichment(constants={"schema": 2}),
        "twins": TWINS,
    }
    defaults.update(fields)
    return RouteContext(**defaults)


def rec(rid: str, values: list[float] | None = None, **metadata: Any) -> Record:
    return Record(rid, values if values is not None else [0.1, 0.2], metadata)


def copied(records: list[Record], route: RouteContext) -> dict[str, list[Record]]:
    """What the copy writes: the copy's own routing and enrichment."""
    return route_records(records, route)


# --------------------------------------------------------------------------------------------------------- sync


def test_plan_delta_sorts_every_id_into_new_changed_unchanged_and_stale() -> None:
    route = ctx()
    source = [rec("same", text="a"), rec("new", text="b"), rec("moved", [0.1, 0.9], text="c"), rec("edited", text="d")]
    target = copied([source[0], rec("moved", text="c"), rec("edited", text="old"), rec("gone")], route)[T1]

    delta = plan_delta(source, {T1: target}, route, tolerance=1e-6)

    assert delta.to_copy == ["new", "moved", "edited"]
    assert (delta.new_count, delta.changed_count, delta.unchanged_count) == (1, 2, 1)
    assert [c["id"] for c in delta.changed_examples] == ["moved", "edited"]
    assert "values differ" in delta.changed_examples[0]["reason"]
    assert "metadata key 'text'" in delta.changed_examples[1]["reason"]
    assert delta.stale == {T1: ["gone"]}


def test_a_target_copy_without_the_enrichment_counts_as_changed() -> None:
    route = ctx()
    source = [rec("v", text="a")]

    delta = plan_delta(source, {T1: [rec("v", text="a")]}, route, tolerance=1e-6)

    assert delta.to_copy == ["v"] and delta.changed_count == 1


def test_values_within_tolerance_are_unchanged() -> None:
    route = ctx()
    [target] = copied([rec("v", [0.1, 0.2])], route)[T1]

    delta = plan_delta([rec("v", [0.1 + 1e-9, 0.2])], {T1: [target]}, route, tolerance=1e-6)

    assert delta.to_copy == [] and delta.unchanged_count == 1


def test_routed_records_are_judged_in_their_own_namespace_and_unroutable_ones_are_reported() -> None:
    route = ctx(None)
    source = [rec("a", twin_id="t1"), rec("b", twin_id="t2"), rec("c", twin_id="nobody")]
    written = copied(source[:1], route)

    delta = plan_delta(source, {T1: written[T1], T2: []}, route, tolerance=1e-6)

    assert delta.to_copy == ["b"] and delta.unchanged_count == 1
    assert delta.unroutable_count == 1 and delta.unroutable[0]["id"] == "c"
    assert "no creator" in delta.unroutable[0]["reason"]
    assert delta.stale == {}


def test_a_record_found_where_the_source_no_longer_routes_it_is_stale() -> None:
    route = ctx(None)
    old_copy = copied([rec("a", twin_id="t1")], route)[T1]

    delta = plan_delta([rec("a", twin_id="t2")], {T1: old_copy}, route, tolerance=1e-6)

    assert delta.to_copy == ["a"] and delta.new_count == 1
    assert delta.stale == {T1: ["a"]}


def test_deltas_add_up_over_chunks() -> None:
    route = ctx()
    total = plan_delta([rec("a")], {T1: []}, route, 1e-6)
    total.add(plan_delta([rec("b")], {T1: [rec("x")]}, route, 1e-6))

    assert total.to_copy == ["a", "b"] and total.new_count == 2
    assert total.counts()["deleted_in_source"] == 1 and total.counts()["deleted_in_source_ids"] == ["x"]


# ----------------------------------------------------------------------------------------------------- rollback


def test_enrichment_keys_are_read_off_the_copy_rule() -> None:
    assert enrichment_keys(T1, ctx()) == {"creator_id", "twin_id", "migrated_from", "schema"}
    assert enrichment_keys("public", ctx()) == {"migrated_from", "schema"}
    plain = ctx(enrichment=Enrichment(creator_fields=False, migrated_from=False))
    assert enrichment_keys(T1, plain) == set()


@pytest.mark.parametrize(
    ("route", "original", "target_ns"),
    [
        pytest.param(ctx(), rec("v", text="a", chunk=3), T1, id="twin-namespace-run"),
        pytest.param(ctx(None), rec("v", text="a", twin_id="t1"), T1, id="routed-keeps-its-twin-id"),
        pytest.param(ctx(None, twin_id_field="owner"), rec("v", owner="t2"), T2, id="routed-other-field"),
        pytest.param(ctx(None), rec("v", text="a"), "review", id="routed-to-review"),
        pytest.param(ctx("moved"), rec("v", text="a"), "moved", id="plain-namespace"),
    ],
)
def test_restore_record_inverts_the_copy_exactly(route: RouteContext, original: Record, target_ns: str) -> None:
    [target] = copied([original], route)[target_ns]

    rebuilt, problem = restore_record(target, target_ns, route)

    assert problem is None
    assert rebuilt == original


def test_a_target_record_the_copy_did_not_make_cannot_be_rebuilt() -> None:
    rebuilt, problem = restore_record(rec("v", text="a"), T1, ctx())  # no enrichment at all

    assert problem is not None and "does not enrich back" in problem
    assert rebuilt.metadata == {"text": "a"}


@given(
    st.dictionaries(
        st.sampled_from(["text", "n", "flag", "lang"]),
        st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans()),
        max_size=4,
    ),
    st.sampled_from([None, T1]),
)
def test_restore_of_any_copied_record_round_trips(metadata: dict[str, Any], target: str | None) -> None:
    route = ctx(target)
    original = rec("v", **metadata, **({"twin_id": "t1"} if target is None else {}))
    [(ns, [copy])] = copied([original], route).items()

    rebuilt, problem = restore_record(copy, ns, route)

    assert problem is None and rebuilt == original


def test_plan_restore_judges_each_written_id() -> None:
    route = ctx()
    originals = [rec("equal", text="a"), rec("missing", text="b"), rec("differs", text="c")]
    targets = {r.id: [(T1, r)] for r in copied(originals, route)[T1]}
    targets["differs"] = [(T1, copied([rec("differs", text="edited after cut-over")], route)[T1][0])]
    present = {"equal": originals[0], "differs": originals[2], "only-original": rec("only-original")}

    check = plan_restore(["equal", "missing", "differs", "only-original", "absent"], present, targets, route, 1e-6)

    assert (check.written, check.equal, check.restore_count, check.mismatch_count) == (5, 1, 1, 1)
    assert (check.only_original, check.absent) == (1, 1)
    assert [r.id for r in check.to_restore] == ["missing"] and check.to_restore[0] == originals[1]
    assert check.mismatches[0]["id"] == "differs"
    assert not check.passed
    assert check.summary.startswith("FAILED: 1/3 originals equal")
    assert check.found_in == {T1: ["equal", "missing", "differs"]}


def test_an_original_kept_with_a_key_the_enrichment_overwrote_is_still_equal() -> None:
    route = ctx()
    original = rec("v", text="a", creator_id="legacy")  # the copy overwrote creator_id; the original is still right
    [target] = copied([original], route)[T1]

    check = plan_restore(["v"], {"v": original}, {"v": [(T1, target)]}, route, 1e-6)

    assert check.passed and check.equal == 1
    assert expected_metadata(original, T1, route) == target.metadata


def test_a_record_rerouted_since_its_copy_is_judged_by_the_copy_it_routes_to_and_never_rebuilt_from_either() -> None:
    # Its twin id was edited after the copy and synced: a copy in the old twin's namespace and one in the new one's.
    route = ctx(None)
    before, now = rec("v", text="a", twin_id="t1"), rec("v", text="b", twin_id="t2")
    copies = [(T1, copied([before], route)[T1][0]), (T2, copied([now], route)[T2][0])]

    kept = plan_restore(["v"], {"v": now}, {"v": copies}, route, 1e-6)
    cleaned = plan_restore(["v"], {}, {"v": copies}, route, 1e-6)

    assert kept.passed and kept.equal == 1 and kept.found_in == {T2: ["v"]}  # where it routes: what is deleted
    assert not cleaned.passed and not cleaned.to_restore and cleaned.unrestorable_count == 1
    assert "copies in 2 namespaces" in cleaned.unrestorable[0]["reason"]


def test_a_missing_original_is_rebuilt_from_its_own_copy_beside_another_sources_record_of_its_id() -> None:
    # Two source namespaces may each hold "v" when their copies go to different namespaces: the routed run's "v"
    # (into T1) and namespace t2's "v" (into T2, marked migrated from t2). Only the first rebuilds this run's.
    route = ctx(None)
    ours = rec("v", text="a", twin_id="t1")
    theirs = copied([rec("v", text="b")], ctx(T2, source_namespace="t2"))[T2][0]
    copies = [(T1, copied([ours], route)[T1][0]), (T2, theirs)]

    check = plan_restore(["v"], {}, {"v": copies}, route, 1e-6)

    assert not check.unrestorable and check.to_restore == [ours] and check.found_in == {T1: ["v"]}


@pytest.mark.parametrize(
    ("listed", "written", "expected"),
    [
        pytest.param(["a", "b"], ["a", "b", "c"], (True, ["a", "b"], []), id="only-ours"),
        pytest.param(["a", "x"], ["a"], (False, ["a"], ["x"]), id="someone-elses-id-is-kept"),
        pytest.param([], ["a"], (True, [], []), id="already-gone"),
    ],
)
def test_namespace_disposal(listed: list[str], written: list[str], expected: tuple[bool, list[str], list[str]]) -> None:
    assert namespace_disposal(listed, written) == expected


@given(
    st.dictionaries(
        st.sampled_from(["text", "creator_id", "twin_id", "schema", "migrated_from"]),
        st.sampled_from(["a", "a.1", "t1", 2, "seeds/t1"]),
        max_size=5,
    ),
    st.sampled_from([None, T1]),
)
def test_an_original_holding_what_the_enrichment_writes_round_trips_with_the_keys_its_cleanup_recorded(
    metadata: dict[str, Any], target: str | None
) -> None:
    route = ctx(target)
    original = rec("v", **{**metadata, **({"twin_id": "t1"} if target is None else {})})
    [(ns, [copy])] = copied([original], route).items()
    proof = prove_copies([original], {ns: [copy]}, route, 1e-6, deleting_originals=True)
    if not proof.proven:  # a value the enrichment replaced: the cleanup keeps that original, nothing to rebuild
        assert proof.refused_count == 1
        return

    rebuilt, problem = restore_record(copy, ns, route, proof.held.get("v", ()))

    assert problem is None and rebuilt == original


def test_a_null_metadata_the_copy_filled_with_its_enrichment_comes_back_null() -> None:
    # Into the application's pgvector tables a NULL metadata the enrichment writes to is NULL no more: its mark goes.
    route = ctx(target_folds_null_metadata=True)
    original = rec("v", **{NULL_METADATA_KEY: True})
    [copy] = copied([original], route)[T1]
    proof = prove_copies([original], {T1: [copy]}, route, 1e-6, deleting_originals=True)

    rebuilt, problem = restore_record(copy, T1, route, proof.held.get("v"))

    assert NULL_METADATA_KEY not in copy.metadata
    assert proof.proven == ["v"] and problem is None and rebuilt == original


def test_the_twin_id_a_routed_record_was_routed_by_is_not_held_its_namespace_says_it() -> None:
    # Every record routed one by one holds the twin id the enrichment writes: a held row each, for a value the
    # rebuild takes from the namespace anyway. Only what the namespace cannot say is held.
    route = ctx(None)
    plain, owned = rec("p", text="a", twin_id="t1"), rec("o", text="b", twin_id="t1", creator_id="a.1")
    copies = copied([plain, owned], route)[T1]
    proof = prove_copies([plain, owned], {T1: copies}, route, 1e-6, deleting_originals=True)

    assert proof.proven == ["p", "o"] and proof.held == {"o": {"creator_id": "a.1"}}
    for original, copy in zip([plain, owned], copies, strict=True):
        assert restore_record(copy, T1, route, proof.held.get(original.id)) == (original, None)

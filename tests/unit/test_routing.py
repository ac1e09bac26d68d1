"""Routing records to target namespaces and the one enrichment rule shared by the copy and verification."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.pgvector_rows import NULL_METADATA_KEY
from nsmigrate.orchestrator.records.namespaces import twin_namespace
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import (
    RouteContext,
    expected_metadata,
    route_context,
    route_counts,
    route_records,
    target_of,
    targets_by_id,
)
from nsmigrate.orchestrator.spec.jobspec import Enrichment, parse_spec
from nsmigrate.orchestrator.tenancy.erasure import Subject

TWINS = {"t1": "a.1", "t2": "a.10"}


def ctx(target: str | None = None, **fields: Any) -> RouteContext:
    defaults: dict[str, Any] = {
        "source_label": "seeds-pod",
        "source_namespace": "" if target is None else "t1",
        "target_namespace": target,
        "enrichment": Enrichment(),
        "twins": TWINS,
    }
    defaults.update(fields)
    return RouteContext(**defaults)


def rec(rid: str, **metadata: Any) -> Record:
    return Record(rid, [0.1, 0.2], metadata)


@pytest.mark.parametrize(
    ("metadata", "fields", "expected"),
    [
        pytest.param({"twin_id": "t1"}, {}, "creator_a.1_twin_t1", id="mapped"),
        pytest.param({"twin_id": "t2"}, {}, "creator_a.10_twin_t2", id="a.10-not-a.1"),
        pytest.param({}, {}, "review", id="no-field"),
        pytest.param({"twin_id": ""}, {}, "review", id="empty-field"),
        pytest.param({"twin_id": None}, {}, "review", id="null-field"),
        pytest.param({"creator_id": "a.1"}, {}, "creator_a.1", id="creator-wide"),
        pytest.param({"twin_id": "t2", "creator_id": "a.1"}, {}, "creator_a.10_twin_t2", id="twin-first"),
        pytest.param(
            {"source_id": "s1"},
            {"sources": {"s1": "t1"}, "source_key_field": "source_id"},
            "creator_a.1_twin_t1",
            id="via-sources",
        ),
        pytest.param(
            {"source_id": "s9"},
            {"sources": {"s1": "t1"}, "source_key_field": "source_id"},
            "review",
            id="unknown-source",
        ),
        pytest.param(
            {"twin_id": "zz"},
            {"unknown_twin": "review", "review_namespace": "to-file"},
            "to-file",
            id="unknown-to-review",
        ),
        pytest.param(
            {"twin_id": "twin_abc"},
            {"twins": {"twin_abc": "test_creator_1"}},
            "creator_test_creator_1_twin_twin_abc",
            id="seed-ids-with-underscores",
        ),
        pytest.param({"twin_id": "zz"}, {"unknown_twin": "public"}, "public", id="unknown-to-public"),
        pytest.param({"twin_id": "zz"}, {"override_creator": "sainath.no.1"}, "creator_sainath.no.1_twin_zz", id="ovr"),
        pytest.param({"twin_id": "t1"}, {"override_creator": "c"}, "creator_c_twin_t1", id="override-wins"),
        pytest.param({"owner": "t1"}, {"twin_id_field": "owner"}, "creator_a.1_twin_t1", id="other-field"),
        pytest.param({"twin_id": 7}, {"override_creator": "c"}, "creator_c_twin_7", id="number-as-text"),
        # Pinecone gives every number back as a float.
        pytest.param({"twin_id": 7.0}, {"override_creator": "c"}, "creator_c_twin_7", id="number-as-pinecone-keeps-it"),
    ],
)
def test_routed_target(metadata: dict[str, Any], fields: dict[str, Any], expected: str) -> None:
    assert target_of(rec("r", **metadata), ctx(**fields)) == expected


@pytest.mark.parametrize(
    ("metadata", "fields", "expected"),
    [
        pytest.param({"twin_id": "zz"}, {}, ["record 'r1'", "twin_id='zz'", "unknown_twin: review"], id="unknown"),
        pytest.param({"twin_id": "bad twin"}, {"override_creator": "c"}, ["record 'r1'", "contains ' '"], id="bad-id"),
    ],
)
def test_routed_errors(metadata: dict[str, Any], fields: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(PlanError) as err:
        route_records([rec("r1", **metadata), rec("ok", twin_id="t1")], ctx(**fields))
    for text in expected:
        assert text in str(err.value)
    assert err.value.ids["record_id"] == "r1"


def test_routed_error_counts_the_other_bad_records() -> None:
    records = [rec(f"r{i}", twin_id="zz") for i in range(8)]
    with pytest.raises(PlanError, match=r"7 more record\(s\) in this batch too, e.g. r1, r2, r3, r4"):
        route_records(records, ctx())


def test_fixed_target_takes_everything() -> None:
    records = [rec("a", twin_id="t2"), rec("b")]
    out = route_records(records, ctx("creator_a.1_twin_t1"))
    assert list(out) == ["creator_a.1_twin_t1"]
    assert [r.id for r in out["creator_a.1_twin_t1"]] == ["a", "b"]
    # The creator fields follow the target, not the metadata the record came with.
    assert out["creator_a.1_twin_t1"][0].metadata["twin_id"] == "t1"


def test_routed_groups_keep_order() -> None:
    records = [rec("1", twin_id="t1"), rec("2"), rec("3", twin_id="t2"), rec("4", twin_id="t1")]
    out = route_records(records, ctx())
    assert {k: [r.id for r in v] for k, v in out.items()} == {
        "creator_a.1_twin_t1": ["1", "4"],
        "review": ["2"],
        "creator_a.10_twin_t2": ["3"],
    }
    assert list(out) == ["creator_a.1_twin_t1", "review", "creator_a.10_twin_t2"]


@pytest.mark.parametrize(
    ("enrichment", "target", "expected"),
    [
        pytest.param(
            Enrichment(),
            "creator_a.1_twin_t1",
            {"text": "x", "twin_id": "t1", "creator_id": "a.1", "migrated_from": "seeds-pod/__default__"},
            id="all",
        ),
        pytest.param(
            Enrichment(),
            "public",
            {"text": "x", "twin_id": "t9", "migrated_from": "seeds-pod/__default__"},
            id="public",
        ),
        pytest.param(
            Enrichment(creator_fields=False, migrated_from=False),
            "creator_a.1_twin_t1",
            {"text": "x", "twin_id": "t9"},
            id="off",
        ),
        pytest.param(
            Enrichment(constants={"twin_id": "forced", "v": 2}),
            "creator_a.1_twin_t1",
            {"text": "x", "twin_id": "forced", "creator_id": "a.1", "migrated_from": "seeds-pod/__default__", "v": 2},
            id="constants-last",
        ),
        pytest.param(
            Enrichment(), "plain", {"text": "x", "twin_id": "t9", "migrated_from": "seeds-pod/__default__"}, id="other"
        ),
    ],
)
def test_enrichment(enrichment: Enrichment, target: str, expected: dict[str, Any]) -> None:
    source = rec("r", text="x", twin_id="t9")
    context = ctx(enrichment=enrichment)
    assert expected_metadata(source, target, context) == expected


def test_migrated_from_names_a_non_default_namespace() -> None:
    context = ctx("creator_a.1_twin_t1", source_namespace="t1")
    assert expected_metadata(rec("r"), "creator_a.1_twin_t1", context)["migrated_from"] == "seeds-pod/t1"


@pytest.mark.parametrize(
    ("folds", "enrichment", "expected"),
    [
        (True, Enrichment(), {"text": "x", "migrated_from": "seeds-pod/t1"}),  # NULL given keys: those keys
        (True, Enrichment(creator_fields=False, migrated_from=False), {"text": "x", NULL_METADATA_KEY: True}),
        (
            True,
            Enrichment(migrated_from=False, constants={"strategy": "s"}),
            {"text": "x", "strategy": "s", NULL_METADATA_KEY: True},
        ),
        (False, Enrichment(), {"text": "x", "migrated_from": "seeds-pod/t1", NULL_METADATA_KEY: True}),
    ],
    ids=["application table, enriched", "application table, nothing added", "only a column", "elsewhere"],
)
def test_a_null_metadata_enriched_into_the_application_tables_is_the_enrichment(
    folds: bool, enrichment: Enrichment, expected: dict[str, Any]
) -> None:
    # A row whose metadata is NULL: its other columns (`text`) travel as keys beside the flag.
    context = ctx("t1", enrichment=enrichment, target_folds_null_metadata=folds)
    assert expected_metadata(rec("r", text="x", **{NULL_METADATA_KEY: True}), "t1", context) == expected


def test_inputs_are_never_mutated() -> None:
    records = [rec("a", twin_id="t1", nested={"k": [1]}), rec("b")]
    before = copy.deepcopy(records)
    route_records(records, ctx(enrichment=Enrichment(constants={"c": 1})))
    assert records == before


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=6),
            st.one_of(st.none(), st.sampled_from(["t1", "t2", "t3"])),
            st.dictionaries(st.sampled_from(["a", "b", "creator_id"]), st.integers(min_value=0), max_size=3),
        ),
        unique_by=lambda t: t[0],
        max_size=40,
    )
)
def test_copy_and_verification_agree(rows: list[tuple[str, str | None, dict[str, int]]]) -> None:
    # Whatever route_records writes is exactly what verification expects: one rule, not two.
    records = [Record(rid, [1.0], {**extra, **({"twin_id": twin} if twin else {})}) for rid, twin, extra in rows]
    context = ctx(unknown_twin="public", enrichment=Enrichment(constants={"batch": "x"}))
    out = route_records(records, context)
    by_id = {r.id: r for r in records}
    seen = []
    for target, routed in out.items():
        for r in routed:
            assert r.metadata == expected_metadata(by_id[r.id], target, context)
            assert target == target_of(by_id[r.id], context)
            seen.append(r.id)
    assert sorted(seen) == sorted(by_id)  # every record routed exactly once
    assert targets_by_id(records, context) == {r.id: t for t, rs in out.items() for r in rs}
    # The routes taken add up to the records routed.
    assert sum(route_counts(records, context).values()) == len(records)


def test_route_context_from_spec() -> None:
    spec = parse_spec(
        {
            "name": "t",
            "source": {"index": "src", "kind": "pinecone"},
            "target": {"index": "dst", "kind": "pinecone"},
            "routing": {
                "mode": "creator",
                "override_creator": "c.1",
                "twin_id_field": "owner",
                "unknown_twin": "public",
            },
            "enrich": {"constants": {"k": 1}},
        }
    )
    c = route_context(spec, "src", "", None, twins={"t": "c"})
    assert c == RouteContext(
        source_label="src",
        source_namespace="",
        target_namespace=None,
        enrichment=spec.enrich,
        twins={"t": "c"},
        override_creator="c.1",
        twin_id_field="owner",
        unknown_twin="public",
    )
    assert route_context(spec, "src", "x", "creator_c.1_twin_x", "c.1", "x").creator_id == "c.1"


@pytest.mark.parametrize(
    ("value", "twin"),
    [("t1", "t1"), (["t1"], "t1"), ([], None), (None, None), (7.0, "7"), (7, "7"), (["t1", 7.0], "several")],
)
def test_routing_and_erasure_read_a_twin_id_value_alike(value: Any, twin: str | None) -> None:
    twins = {**TWINS, "7": "a.1"}
    record = rec("r", twin_id=value)
    if twin == "several":
        with pytest.raises(PlanError, match=r"twin_id names 2 ids \['7', 't1'\]"):
            target_of(record, ctx(twins=twins))
        assert Subject("a.1", "7", twins=frozenset({"7"})).owns_record(record.metadata)  # either id is theirs
        return
    routed = target_of(record, ctx(twins=twins))
    erased = {t for t in twins if Subject(twins[t], t, twins=frozenset({t})).owns_record(record.metadata)}
    if twin is None:
        assert routed == ctx().review_namespace and erased == set()  # names no twin: neither reads one
    else:
        assert routed == twin_namespace(twins[twin], twin) and erased == {twin}

"""Planning: selection, routing, the refusals that protect data, id-collision checks, batches and the estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.planning.costs import estimate
from nsmigrate.orchestrator.planning.id_checks import (
    check_id_collisions,
    check_id_lengths,
    namespace_refusals,
    namespaces_needing_id_check,
    sharing_with,
)
from nsmigrate.orchestrator.planning.plan import ROUTED, Inventory, NamespacePlan
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.planning.selection import matching, select_namespaces
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec

T1, T2, T3 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222", "t3"
TWINS = {T1: "a.1", T2: "a.10", T3: "sainath.no.1"}
DIM = 8


def make_spec(**fields: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "t",
        "source": {"kind": "pinecone", "index": "src"},
        "target": {"kind": "pinecone", "index": "dst"},
    }
    data.update(fields)
    return parse_spec(data)


def inv(namespaces: dict[str, int], label: str = "src", dimension: int = DIM) -> Inventory:
    return Inventory(label=label, dimension=dimension, namespaces=namespaces)


SOURCE = inv({"": 376, T1: 250, T2: 0, T3: 30})
EMPTY_TARGET = inv({}, label="dst")
SAME_INDEX = {"target": {"kind": "pinecone", "index": "src"}}
CREATOR = {"routing": {"mode": "creator", "creators": {"source": "inline", "twins": TWINS}}}


def targets(plan_runs: list[NamespacePlan]) -> dict[str, str | None]:
    return {r.source_namespace: r.target_namespace for r in plan_runs}


# --- happy paths -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "source", "twins", "expected"),
    [
        pytest.param({}, SOURCE, {}, {"": "", T1: T1, T2: T2, T3: T3}, id="same-all"),
        pytest.param(
            {"namespaces": {"include": ["__default__", T3]}}, SOURCE, {}, {"": "", T3: T3}, id="same-default-by-name"
        ),
        pytest.param({"namespaces": {"include": ["", "t*"]}}, SOURCE, {}, {"": "", T3: T3}, id="same-empty-string"),
        pytest.param({"namespaces": {"exclude": ["__default__", "1*"]}}, SOURCE, {}, {T2: T2, T3: T3}, id="exclude"),
        pytest.param({"namespaces": {"include": ["__def*"]}}, SOURCE, {}, {"": ""}, id="glob-on-display-name"),
        pytest.param(
            {"routing": {"mode": "explicit", "map": {"__default__": "legacy", T1: "one", T2: "two", T3: "three"}}},
            SOURCE,
            {},
            {"": "legacy", T1: "one", T2: "two", T3: "three"},
            id="explicit",
        ),
        pytest.param(
            CREATOR,
            SOURCE,
            TWINS,
            {
                "": ROUTED,
                T1: f"creator_a.1_twin_{T1}",
                T2: f"creator_a.10_twin_{T2}",
                T3: "creator_sainath.no.1_twin_t3",
            },
            id="creator",
        ),
        pytest.param(
            {"routing": {"mode": "creator", "override_creator": "sainath.no.1"}},
            SOURCE,
            {},
            {
                "": ROUTED,
                T1: f"creator_sainath.no.1_twin_{T1}",
                T2: f"creator_sainath.no.1_twin_{T2}",
                T3: "creator_sainath.no.1_twin_t3",
            },
            id="creator-override",
        ),
        pytest.param(
            {
                "routing": {
                    "mode": "creator",
                    "creators": {"source": "inline", "twins": {T1: "a.1"}},
                    "unknown_twin": "public",
                }
            },
            inv({T1: 5, T2: 5}),
            {T1: "a.1"},
            {T1: f"creator_a.1_twin_{T1}", T2: "public"},
            id="creator-unknown-to-public",
        ),
    ],
)
def test_routes(fields: dict[str, Any], source: Inventory, twins: dict[str, str], expected: dict[str, Any]) -> None:
    plan = make_plan(make_spec(**fields), source, EMPTY_TARGET, twins)
    assert targets(plan.runs) == expected


def test_runs_carry_counts_batches_and_ids() -> None:
    plan = make_plan(make_spec(batch_size=100, **CREATOR), SOURCE, EMPTY_TARGET, TWINS)
    by_source = {r.source_namespace: r for r in plan.runs}
    assert [r.source_namespace for r in plan.runs] == sorted(SOURCE.namespaces)  # default namespace first
    assert by_source[T1] == NamespacePlan(T1, f"creator_a.1_twin_{T1}", 250, 3, "a.1", T1)
    assert by_source[""].batches == 4 and by_source[""].routed
    assert by_source[T2].batches == 0  # empty namespaces are kept, with no batches
    assert plan.total_vectors == 656 and plan.total_batches == 4 + 3 + 0 + 1
    assert plan.twins == TWINS  # a routed run needs the whole mapping
    assert any("empty" in w and T2 in w for w in plan.warnings)


def test_same_store_without_target_inventory_checks_the_source() -> None:
    spec = make_spec(**SAME_INDEX, **CREATOR)
    plan = make_plan(spec, SOURCE, None, TWINS)
    assert not any("not known" in w for w in plan.warnings)
    converted = inv({**SOURCE.namespaces, f"creator_a.1_twin_{T1}": 3})
    with pytest.raises(PlanError, match="already follows the convention"):
        make_plan(spec, converted, None, TWINS)
    spec = make_spec(**SAME_INDEX, **CREATOR, namespaces={"exclude": ["creator_*"]})
    with pytest.raises(PlanError, match=f"creator_a.1_twin_{T1} \\(3 vectors\\)"):
        make_plan(spec, converted, None, TWINS)


def test_unknown_target_inventory_is_a_warning() -> None:
    plan = make_plan(make_spec(), SOURCE, None, {})
    assert any("not known" in w for w in plan.warnings)


# --- refusals ----------------------------------------------------------------------------------------------------

MANY = inv({f"ns{i:02d}": 1 for i in range(15)})


@pytest.mark.parametrize(
    ("fields", "source", "target", "twins", "expected"),
    [
        pytest.param(
            {"namespaces": {"include": ["nope", "ns0*", "also-nope"]}},
            MANY,
            EMPTY_TARGET,
            {},
            ["nope, also-nope", "it has 15: ns00, ns01", "ns09, … (5 more)"],
            id="unknown-include",
        ),
        pytest.param(
            {"namespaces": {"include": ["x*"]}},
            MANY,
            EMPTY_TARGET,
            {},
            ["no namespace of src is selected"],
            id="nothing",
        ),
        pytest.param(
            {"namespaces": {"include": ["*"], "exclude": ["*"]}},
            MANY,
            EMPTY_TARGET,
            {},
            ["minus exclude"],
            id="all-out",
        ),
        pytest.param(
            {"routing": {"mode": "explicit", "map": {T1: "one"}}},
            SOURCE,
            EMPTY_TARGET,
            {},
            ["no target for 3", f"__default__, {T2}, {T3}"],
            id="explicit-unmapped",
        ),
        pytest.param(
            CREATOR, SOURCE, EMPTY_TARGET, {T1: "a.1"}, ["no creator in the mapping", T2, T3], id="unknown-twin"
        ),
        pytest.param(
            {"routing": {"mode": "creator", "creators": {"source": "inline", "twins": {"x": "y"}}}},
            inv({"tw": 3}),
            EMPTY_TARGET,
            {"tw": "bad creator"},
            ["source namespace 'tw'", "creator_id 'bad creator'", "contains ' '"],
            id="bad-creator-id",
        ),
        pytest.param(
            {"routing": {"mode": "creator", "override_creator": "c"}},
            inv({"creator_a_twin_b": 3}),
            EMPTY_TARGET,
            {},
            ["'creator_a_twin_b' already follows the convention", "namespaces.exclude"],
            id="already-converted",
        ),
        pytest.param(
            {"routing": {"mode": "creator", "creators": {"source": "inline", "twins": {"x": "y"}}}},
            inv({"": 3}),
            EMPTY_TARGET,
            {"t 1": "a"},
            ["twin_id 't 1'"],
            id="routed-mapping-ids",
        ),
        pytest.param(
            {"routing": {"mode": "creator", "creators": {"source": "inline", "twins": {"x": "y"}}}},
            inv({"b_twin_c": 3, "c": 2}),
            EMPTY_TARGET,
            {"b_twin_c": "a", "c": "a_twin_b"},  # both build creator_a_twin_b_twin_c
            ["could be confused", "creator_a_twin_b_twin_c", "creator 'a' / twin 'b_twin_c'"],
            id="two-pairs-one-name",
        ),
        pytest.param(
            {"routing": {"mode": "explicit", "map": {T1: "creator_a_twin_b_twin_c"}}, "namespaces": {"include": [T1]}},
            SOURCE,
            EMPTY_TARGET,
            {},
            [f"source namespace '{T1}'", "creator_a_twin_b_twin_c", "starts with 'creator_'"],
            id="ambiguous-explicit-target",
        ),
        pytest.param({}, SOURCE, inv({}, "dst", 1536), {}, ["dimension mismatch", "8", "1536"], id="dimension"),
        pytest.param(
            {},
            Inventory("src", DIM, SOURCE.namespaces, metric="cosine"),
            Inventory("dst", DIM, {}, metric="dotproduct"),
            {},
            ["metric mismatch", "source src uses cosine", "target dst uses dotproduct"],
            id="metric",
        ),
        pytest.param(
            {}, SOURCE, inv({T3: 7}, "dst"), {}, [f"{T3} (7 vectors)", "allow_id_overwrite"], id="target-not-empty"
        ),
        pytest.param(
            CREATOR,
            SOURCE,
            inv({"public": 2}, "dst"),
            TWINS,
            ["public (2 vectors)", "'__default__'"],
            id="routed-target-not-empty",
        ),
        pytest.param(SAME_INDEX, SOURCE, SOURCE, {}, ["copied onto itself"], id="self-copy"),
        pytest.param(
            {
                **SAME_INDEX,
                "routing": {"mode": "explicit", "map": {T1: T3, T3: "elsewhere"}},
                "allow_id_overwrite": True,
            },
            inv({T1: 2, T3: 2}),
            None,
            {},
            [f"write into {T3}", "cleanup would delete"],
            id="into-another-source",
        ),
    ],
)
def test_plan_errors(
    fields: dict[str, Any], source: Inventory, target: Inventory | None, twins: dict[str, str], expected: list[str]
) -> None:
    with pytest.raises(PlanError) as err:
        make_plan(make_spec(**fields), source, target, twins)
    for text in expected:
        assert text in str(err.value)
    assert err.value.hint


def test_allow_id_overwrite_accepts_a_non_empty_target() -> None:
    plan = make_plan(make_spec(allow_id_overwrite=True), SOURCE, inv({T3: 7}, "dst"), {})
    assert len(plan.runs) == 4


def test_self_copy_is_refused_even_with_overwrite() -> None:
    with pytest.raises(PlanError, match="onto itself"):
        make_plan(make_spec(allow_id_overwrite=True, **SAME_INDEX), SOURCE, None, {})


def test_unknown_dimension_target_is_a_warning() -> None:
    plan = make_plan(make_spec(), SOURCE, inv({}, "dst", 0), {})
    assert any("dimension" in w for w in plan.warnings)


def test_select_namespaces_sorted_default_first() -> None:
    assert select_namespaces(make_spec(), inv({"b": 1, "": 1, "a": 1})) == ["", "a", "b"]


def test_matching_takes_the_selection_of_any_names_and_none_is_no_error() -> None:
    spec = make_spec(namespaces={"include": ["twin-*", "__default__"], "exclude": ["twin-9*"]})
    assert matching(spec, ["twin-2", "other", "twin-91", "", "twin-1"]) == ["", "twin-1", "twin-2"]
    assert matching(spec, ["other"]) == []


# --- shared targets and id collisions ----------------------------------------------------------------------------

SHARED = {"routing": {"mode": "explicit", "map": {"x": "all", "y": "all", "z": "own", "e": "all"}}}
SHARED_SOURCE = inv({"x": 3, "y": 3, "z": 3, "e": 0})


def test_two_sources_into_one_target_need_an_id_check() -> None:
    plan = make_plan(make_spec(**SHARED), SHARED_SOURCE, EMPTY_TARGET, {})
    assert plan.shared_targets == {"all": ("x", "y")}  # the empty source cannot collide
    assert namespaces_needing_id_check(plan) == ["x", "y"]
    assert any("more than one source" in w for w in plan.warnings)
    check_id_collisions(plan, {"x": ["1", "2"], "y": ["3"]}, allow_overwrite=False)


def test_colliding_ids_are_refused_with_examples() -> None:
    plan = make_plan(make_spec(**SHARED), SHARED_SOURCE, EMPTY_TARGET, {})
    ids = {"x": [f"id{i}" for i in range(9)], "y": [f"id{i}" for i in range(2, 20)]}
    with pytest.raises(PlanError) as err:
        check_id_collisions(plan, ids, allow_overwrite=False)
    text = str(err.value)
    for part in ["'x'", "'y'", "'all'", "share 7 id(s)", "id2, id3, id4, id5, id6", "allow_id_overwrite"]:
        assert part in text
    assert "id7" not in text  # at most 5 examples
    check_id_collisions(plan, ids, allow_overwrite=True)


def test_each_namespace_is_judged_on_its_own_checks() -> None:
    """``namespace_refusals``: a collision refuses both sources of the shared target (neither writes there), ids too
    long for Pinecone refuse their own namespace only; what is allowed or not asked about is not refused."""
    plan = make_plan(make_spec(**SHARED), SHARED_SOURCE, EMPTY_TARGET, {})
    assert sharing_with(plan, "x") == {"x", "y"} and sharing_with(plan, "z") == {"z"}
    collide = {"x": ["1", "k"], "y": ["k"], "z": ["9" * 600]}

    refused = namespace_refusals(make_spec(**SHARED), plan, collide, ["x", "y", "z"])

    assert set(refused) == {"x", "y", "z"}
    for ns in ("x", "y"):
        assert all(part in refused[ns] for part in ("'x'", "'y'", "'all'", "k", "allow_id_overwrite"))
    assert "600 characters" in refused["z"] and "shorten" in refused["z"]
    assert namespace_refusals(make_spec(**SHARED), plan, collide, ["x"]).keys() == {"x"}  # only those asked about
    allowed = make_spec(**SHARED, allow_id_overwrite=True)
    assert namespace_refusals(allowed, plan, collide, ["x", "y"]) == {}
    assert namespace_refusals(make_spec(**SHARED), plan, {"x": ["1"], "y": ["2"]}, ["x", "y"]) == {}


def test_missing_id_listing_is_a_caller_bug() -> None:
    plan = make_plan(make_spec(**SHARED), SHARED_SOURCE, EMPTY_TARGET, {})
    with pytest.raises(ValueError, match="y"):
        check_id_collisions(plan, {"x": []}, allow_overwrite=False)


def test_no_shared_target_needs_no_check() -> None:
    plan = make_plan(make_spec(), SOURCE, EMPTY_TARGET, {})
    assert namespaces_needing_id_check(plan) == []
    check_id_collisions(plan, {}, allow_overwrite=False)


def test_routed_run_shares_every_twin_target() -> None:
    plan = make_plan(make_spec(**CREATOR), SOURCE, EMPTY_TARGET, TWINS)
    assert namespaces_needing_id_check(plan) == ["", T1, T3]  # T2 is empty
    assert plan.shared_targets[f"creator_a.1_twin_{T1}"] == (T1, "")
    # Listing only ids: any shared id may collide, so it is refused.
    with pytest.raises(PlanError, match=f"creator_a.1_twin_{T1}"):
        check_id_collisions(plan, {"": ["d1", "k"], T1: ["k"], T3: ["z"]}, allow_overwrite=False)
    # With id → target from the metadata, only ids that really land in the same namespace count.
    routed_ids = {"d1": "public", "k": "creator_sainath.no.1_twin_t3"}
    check_id_collisions(plan, {"": routed_ids, T1: ["k"], T3: ["z"]}, allow_overwrite=False)
    with pytest.raises(PlanError, match="'t3' and '__default__'"):
        check_id_collisions(plan, {"": routed_ids, T1: ["k"], T3: ["k"]}, allow_overwrite=False)


def test_override_routed_run_shares_the_override_creators_targets() -> None:
    spec = make_spec(routing={"mode": "creator", "override_creator": "sainath.no.1"})
    plan = make_plan(spec, SOURCE, EMPTY_TARGET, {})
    assert set(plan.shared_targets) == {f"creator_sainath.no.1_twin_{T1}", "creator_sainath.no.1_twin_t3"}


def test_override_routed_run_refuses_a_non_empty_twin_namespace_of_that_creator() -> None:
    spec = make_spec(routing={"mode": "creator", "override_creator": "sainath.no.1"}, namespaces={"include": [""]})
    target = inv({"creator_sainath.no.1_twin_other": 1, "creator_sainath.no.10_twin_x": 1}, "dst")
    with pytest.raises(PlanError, match=r"creator_sainath\.no\.1_twin_other \(1 vectors\)") as err:
        make_plan(spec, SOURCE, target, {})
    assert "no.10" not in str(err.value)


# --- batches and estimate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "batch_size", "dimension", "expected"),
    [
        # (list, fetch, upsert, read units, write units)
        pytest.param(0, 100, 8, (0, 0, 0, 0, 0), id="empty"),
        pytest.param(1, 100, 2, (1, 1, 1, 2, 5), id="min-5-wu"),
        # 250 vectors of 8 dims = 8 x 13 + 200 = 304 B each: batches 100/100/50 → 31+31+16 WU; RU 10+10+5 fetch + 3 list
        pytest.param(250, 100, 8, (3, 3, 3, 28, 78), id="small"),
        # 1000 vectors x 304 B fit one request (≤ 1,000 vectors, ≤ 2 MB)
        pytest.param(1000, 1000, 8, (10, 1, 1, 110, 304), id="one-request"),
        # 100 x 3072 dims = 100 x 40,136 B = 4.0 MB → 3 requests of 34/33/33 vectors: 1,365 + 2 x 1,325 WU
        pytest.param(100, 100, 3072, (1, 1, 3, 11, 4015), id="2mb-split"),
        # 101 vectors: a full batch (3 requests) and one of 1 vector (1 request, 41 WU)
        pytest.param(101, 100, 3072, (2, 2, 4, 13, 4056), id="2mb-split-rest"),
    ],
)
def test_estimate_counts(count: int, batch_size: int, dimension: int, expected: tuple[int, ...]) -> None:
    spec = make_spec(batch_size=batch_size)
    runs = [NamespacePlan("a", "a", count, math.ceil(count / batch_size))]
    e = estimate(spec, runs, dimension)
    assert (e.list_requests, e.fetch_requests, e.upsert_requests, e.read_units, e.write_units) == expected


@pytest.mark.parametrize(
    ("rate", "expected_s"),
    [
        # 8,000 vectors in 80 batches of 100, 8 dims: 80 fetch, 80 list, 80 upserts, 2.432 MB
        pytest.param({"read_rps": 10}, 8.0, id="fetch-bound"),
        pytest.param({"list_rps": 5}, 16.0, id="list-bound"),
        pytest.param({"write_rps": 4}, 20.0, id="write-bound"),
        pytest.param({"write_mb_per_s": 0.1}, 24.32, id="bytes-bound"),
        pytest.param({}, 1.0, id="default"),
    ],
)
def test_estimate_duration(rate: dict[str, float], expected_s: float) -> None:
    spec = make_spec(rate=rate)
    e = estimate(spec, [NamespacePlan("a", "a", 8000, 80)], 8)
    assert e.duration_s == pytest.approx(expected_s)


def test_estimate_duration_spreads_over_target_namespaces() -> None:
    # Write limits are per target namespace: two targets of 40 upserts take as long as one of 40.
    spec = make_spec(rate={"write_rps": 4, "read_rps": 1000, "list_rps": 1000})
    two = [NamespacePlan("a", "a", 4000, 40), NamespacePlan("b", "b", 4000, 40)]
    one_shared = [NamespacePlan("a", "t", 4000, 40), NamespacePlan("b", "t", 4000, 40)]
    assert estimate(spec, two, 8).duration_s == pytest.approx(10.0)
    assert estimate(spec, one_shared, 8).duration_s == pytest.approx(20.0)


def test_plan_estimate_matches_runs() -> None:
    plan = make_plan(make_spec(), SOURCE, EMPTY_TARGET, {})
    assert plan.estimate.fetch_requests == plan.total_batches


@given(
    st.dictionaries(st.from_regex(r"\A[a-z0-9-]{1,12}\Z"), st.integers(min_value=0, max_value=5000), min_size=1),
    st.integers(min_value=1, max_value=1000),
)
def test_same_mode_plans_every_namespace_once(namespaces: dict[str, int], batch_size: int) -> None:
    plan = make_plan(make_spec(batch_size=batch_size), inv(namespaces), EMPTY_TARGET, {})
    assert sorted(r.source_namespace for r in plan.runs) == sorted(namespaces)
    assert all(r.batches == math.ceil(r.vector_count / batch_size) for r in plan.runs)
    assert plan.estimate.fetch_requests == plan.total_batches
    assert plan.total_vectors == sum(namespaces.values())


def test_default_namespace_reported_as_display_name_is_normalised() -> None:
    plan = make_plan(make_spec(), inv({"__default__": 3, "a": 1}), inv({"__default__": 0}, "dst"), {})
    assert targets(plan.runs) == {"": "", "a": "a"}


# --- the target's limits --------------------------------------------------------------------------------------------


def test_a_copy_that_would_pass_the_targets_namespace_limit_is_refused() -> None:
    # A Starter-plan target (100 namespaces) holding 99 already; the source brings 2 more.
    spec = make_spec(target={"kind": "pinecone", "index": "dst", "max_namespaces": 100})
    target = inv({f"old-{n}": 1 for n in range(99)}, label="dst")

    with pytest.raises(PlanError) as refused:
        make_plan(spec, inv({"a": 5, "b": 5}), target, {})

    message = str(refused.value)
    assert "target dst would hold 101 namespaces after this copy (99 now, 2 new)" in message
    assert "over its limit of 100" in message and "max_namespaces" in message
    make_plan(spec, inv({"a": 5}), target, {})  # 100: at the limit, allowed


def test_the_namespace_limit_defaults_to_pinecones_serverless_limit_and_skips_pgvector() -> None:
    from nsmigrate.orchestrator.limits import SERVERLESS_MAX_NAMESPACES_PER_INDEX

    many = inv({f"ns-{n}": 1 for n in range(SERVERLESS_MAX_NAMESPACES_PER_INDEX)}, label="dst")
    with pytest.raises(PlanError, match="over its limit of 100000"):
        make_plan(make_spec(allow_id_overwrite=True), inv({"extra": 1}), many, {})
    pg = {"kind": "pgvector", "table": "emb", "dimension": DIM}
    make_plan(make_spec(target=pg, allow_id_overwrite=True), inv({"extra": 1}), many, {})


def test_ids_the_plan_reads_are_checked_against_pinecones_id_length() -> None:
    long_id = "z" * 513
    listed = {"a": ["ok-1", long_id], "b": {"ok-2": "b"}}

    with pytest.raises(PlanError) as refused:
        check_id_lengths(make_spec(), listed)

    message = str(refused.value)
    assert f"source namespace 'a': id {long_id[:40]!r}… is 513 characters" in message
    assert "at most 512" in message and "ok-1" not in message
    check_id_lengths(make_spec(target={"kind": "pgvector", "table": "emb", "dimension": DIM}), listed)  # no limit
    check_id_lengths(make_spec(), {"a": ["x" * 512]})  # at the limit


def test_ids_the_plan_reads_are_checked_for_what_pinecone_takes_in_an_id() -> None:
    """A pgvector table holds any text as an id; Pinecone takes 1-512 ASCII characters without NUL."""
    pg_source = {"kind": "pgvector", "table": "emb", "dimension": DIM}
    listed = {"a": ["ok-1", "caf\u00e9"], "b": {"nul\x00id": "b", "ok-2": "b"}, "c": ["~\x01\x7f"]}

    with pytest.raises(PlanError) as refused:
        check_id_lengths(make_spec(source=pg_source), listed)

    message = str(refused.value)
    assert message.startswith("2 ids cannot be Pinecone record ids (at most 512 ASCII characters, no NUL)"), message
    assert "source namespace 'a': id 'café' has a non-ASCII character" in message
    assert "source namespace 'b': id 'nul\\x00id' has a NUL character" in message
    assert "ok-" not in message and "'c'" not in message
    assert "rename" in refused.value.hint
    pg_target = {"kind": "pgvector", "table": "emb2", "dimension": DIM}
    check_id_lengths(make_spec(source=pg_source, target=pg_target), listed)  # a table takes them
    plan = make_plan(make_spec(**SHARED), SHARED_SOURCE, EMPTY_TARGET, {})
    refusals = namespace_refusals(make_spec(**SHARED), plan, {"x": ["1"], "y": ["2"], "z": ["\u00e9"]}, ["x", "z"])
    assert set(refusals) == {"z"} and "non-ASCII" in refusals["z"] and "rename" in refusals["z"]


@pytest.mark.parametrize("target_kind", ["pinecone", "pgvector"])
def test_an_enrichment_constant_pinecone_would_refuse_as_a_key_is_refused_by_the_spec(target_kind: str) -> None:
    target = {"kind": "pinecone", "index": "dst"} if target_kind == "pinecone" else {"kind": "pgvector", "table": "t"}
    enrich = {"constants": {"$source": "old", "ok$": 1, "_fine": True}}
    if target_kind == "pgvector":
        assert make_spec(target=target, enrich=enrich).enrich.constants["$source"] == "old"  # a table takes it
        return
    with pytest.raises(SpecError) as refused:
        make_spec(target=target, enrich=enrich)
    assert "enrich.constants: key '$source' starts with '$'" in str(refused.value)
    assert "'ok$'" not in str(refused.value)
    assert make_spec(enrich={"constants": {"ok$": 1, "_fine": True}}).enrich.constants == {"ok$": 1, "_fine": True}


def test_a_pod_left_on_list_is_refused_naming_catalogue_and_sweep() -> None:
    from nsmigrate.orchestrator.spec.jobspec import parse_spec

    spec = parse_spec(
        {
            "name": "pod",
            "source": {"kind": "pinecone", "index": "legacy"},
            "target": {"kind": "pinecone", "index": "fresh"},
        }
    )
    pod = Inventory("legacy", 8, {"a": 5}, "cosine", can_list=False)
    fresh = Inventory("fresh", 8, {}, "cosine")
    with pytest.raises(PlanError) as refused:
        make_plan(spec, pod, fresh, {})
    assert "legacy is a pod-based index" in str(refused.value)
    assert "source.enumerate.mode" in str(refused.value)
    # The same pod, enumerated by a sweep, plans; a pod target left on list is refused too.
    swept = Inventory("legacy", 8, {"a": 5}, "cosine", can_list=False, enumeration="sweep")
    assert make_plan(spec, swept, fresh, {}).runs[0].enumeration == "sweep"
    with pytest.raises(PlanError, match="the target legacy is a pod-based index"):
        make_plan(spec, Inventory("fresh", 8, {"a": 5}, "cosine"), pod, {})

"""``routing.unresolved``: where a default-namespace vector that resolves to no twin and no creator goes (issue 28,
item 4), in the spec, the routing rule, the plan's words and a sync's delta. Pure: no services."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.planning.summary import route_lines
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import (
    dropped_ids,
    owners_of,
    route_context,
    route_counts,
    route_of,
    route_records,
    routing_table,
    split_routing_table,
    targets_by_id,
)
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.orchestrator.verification.delta import plan_delta, route_source

STORE = {"kind": "pinecone", "host": "http://127.0.0.1:5081"}
MAPPED = {"source": "inline", "twins": {"t1": "a.1", "t10": "a.10"}}
RECORDS = [
    Record("tw", [0.1], {"twin_id": "t1"}),
    Record("cr", [0.2], {"creator_id": "c.9"}),
    Record("none", [0.3], {"text": "nobody's"}),
]


def spec(**routing: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "unresolved",
            "source": STORE,
            "target": {**STORE, "host": "http://127.0.0.1:5082"},
            "routing": {"mode": "creator", "override_creator": "sainath.no.1", **routing},
        }
    )


def routed(job: JobSpec) -> Any:
    return route_context(job, "src", "", None, twins={})


@pytest.mark.parametrize(
    ("unresolved", "target", "route"),
    [
        ("review", "review", "review"),
        ("creator", "creator_sainath.no.1", "override_creator"),
        ("drop-with-report", None, "dropped"),
    ],
)
def test_an_unresolved_vector_goes_where_the_spec_says(unresolved: str, target: str | None, route: str) -> None:
    ctx = routed(spec(unresolved=unresolved))
    assert route_of(RECORDS[2], ctx) == (target, route)
    # Resolved vectors are not affected by the choice.
    assert route_of(RECORDS[0], ctx) == ("creator_sainath.no.1_twin_t1", "twin_id")
    assert route_counts(RECORDS, ctx) == {"twin_id": 1, "creator_id": 1, route: 1}


def test_a_dropped_vector_is_copied_nowhere_and_listed() -> None:
    ctx = routed(spec(unresolved="drop-with-report"))
    copied = {r.id for records in route_records(RECORDS, ctx).values() for r in records}
    assert copied == {"tw", "cr"}
    assert set(targets_by_id(RECORDS, ctx)) == {"tw", "cr"}
    assert dropped_ids(RECORDS, ctx) == ["none"]
    assert dropped_ids(RECORDS, routed(spec(unresolved="review"))) == []


def test_a_sync_neither_copies_a_dropped_vector_nor_looks_for_it() -> None:
    ctx = routed(spec(unresolved="drop-with-report"))
    by_ns, unroutable = route_source(RECORDS, ctx)
    assert sorted(i for ids in by_ns.values() for i in ids) == ["cr", "tw"] and unroutable == []
    delta = plan_delta(RECORDS, {}, ctx, 1e-6)
    assert sorted(delta.to_copy) == ["cr", "tw"]
    # A copy made before the vector became unresolved is stale in its old namespace.
    stale = plan_delta(RECORDS, {"review": [RECORDS[2]]}, ctx, 1e-6).stale
    assert stale == {"review": ["none"]}


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (
            {"unresolved": "creator", "override_creator": None, "creators": {"source": "inline", "twins": {"t": "c"}}},
            "name it with `unresolved_creator` (or `override_creator`)",
        ),
        (
            {
                "unresolved_creator": "sainath.no.1",
                "override_creator": None,
                "creators": {"source": "inline", "twins": {"t": "c"}},
            },
            "is used only with `unresolved: creator`",
        ),
        ({"unresolved": "creator", "unresolved_creator": "a b"}, "letters, digits, '.', '-' and '_'"),
        ({"unresolved": "drop"}, "routing.unresolved"),
        ({"review_namespace": "creator_sainath.no.1"}, "set `unresolved: creator` with `override_creator`"),
        ({"override_creator": "a b"}, "letters, digits, '.', '-' and '_'"),
    ],
)
def test_bad_choices_are_refused_naming_the_field(routing: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="routing") as refused:
        spec(**routing)
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("unresolved", "said"),
    [
        ("review", "resolved nowhere → 'review' (routing.unresolved: review)"),
        ("creator", "resolved nowhere → 'creator_sainath.no.1' (routing.unresolved: creator)"),
        ("drop-with-report", "resolved nowhere → not copied, listed in the report, kept in the source"),
    ],
)
def test_the_plan_says_where_unresolved_vectors_go(unresolved: str, said: str) -> None:
    source = Inventory("src", 1, {"": 3})
    plan = make_plan(spec(unresolved=unresolved), source, Inventory("dst", 1, {}), {})
    assert any(said in w for w in plan.warnings), plan.warnings


# --- with the real mapping: the owners table, then the creator given (issue 44, item 5) ---------------------------

#: The owners table as ``creator_mapping.load_owners`` reads it: vector id → (creator, twin or None).
OWNERS = {"bare-1": ("a.1", "t1"), "bare-2": ("a.10", None)}
BARE = [Record("bare-1", [0.4], {}), Record("bare-2", [0.5], {"text": "no ids"}), Record("bare-3", [0.6], {})]


def mapped(**routing: Any) -> JobSpec:
    return spec(override_creator=None, creators=MAPPED, **routing)


def owned(job: JobSpec) -> Any:
    return route_context(job, "src", "", None, twins=routing_table(MAPPED["twins"], None, OWNERS))


def test_a_vector_without_metadata_is_filed_by_its_owner_row_then_under_the_creator_given() -> None:
    ctx = owned(mapped(unresolved="creator", unresolved_creator="sainath.no.1"))

    assert route_of(BARE[0], ctx) == ("creator_a.1_twin_t1", "owner")
    assert route_of(BARE[1], ctx) == ("creator_a.10", "owner")
    assert route_of(BARE[2], ctx) == ("creator_sainath.no.1", "unresolved_creator")
    # Metadata still wins over the owners table, and the real mapping files the twins.
    assert route_of(Record("bare-1", [0.4], {"twin_id": "t10"}), ctx) == ("creator_a.10_twin_t10", "twin_id")
    # An owner-routed record carries its creator and twin, so an erasure finds its copy by metadata too.
    [copy] = route_records([BARE[0]], ctx)["creator_a.1_twin_t1"]
    assert copy.metadata["creator_id"] == "a.1" and copy.metadata["twin_id"] == "t1"


def test_the_owners_table_travels_in_the_runs_routing_table_and_is_not_a_twin() -> None:
    table = routing_table({"t1": "a.1"}, {"s": "t1"}, OWNERS)
    assert split_routing_table(table) == ({"t1": "a.1"}, {"s": "t1"})
    assert owners_of(table) == OWNERS


def test_a_twin_namespace_only_the_owners_table_routes_to_is_checked_as_a_target_like_the_mappings() -> None:
    # ``bare-9`` goes to creator_c.9_twin_t9 by its owners row alone (t9 is not in the mapping): that namespace
    # already holding vectors is refused as any target that does, or the copy would replace an id both hold.
    job = mapped(owners={"table": "vector_owners"})
    target = Inventory("dst", 1, {"creator_c.9_twin_t9": 5})

    with pytest.raises(PlanError, match=r"already hold vectors in dst: creator_c.9_twin_t9 \(5 vectors\)"):
        make_plan(job, Inventory("src", 1, {"": 3}), target, MAPPED["twins"], None, {"bare-9": ("c.9", "t9")})


def test_the_plan_says_how_many_go_to_the_creator_given_and_why() -> None:
    job = mapped(unresolved="creator", unresolved_creator="sainath.no.1", owners={"table": "vector_owners"})
    plan = make_plan(job, Inventory("src", 1, {"": 3}), Inventory("dst", 1, {}), MAPPED["twins"], None, OWNERS)
    said = " ".join(plan.warnings)
    assert "else its vector id in the owners table 'vector_owners' (2 rows)" in said
    assert (
        "resolved nowhere → 'creator_sainath.no.1' (routing.unresolved: creator, unresolved_creator: sainath.no.1)"
        in said
    )
    assert owners_of(plan.twins) == OWNERS
    summary = route_lines({"": route_counts(BARE, owned(job))}, job)
    assert summary == [
        "routes of __default__ (3 vectors): owner 2, unresolved_creator 1",
        "  owner 2: no twin_id, creator_id or sources key; their vector ids are rows of the owners table "
        "'vector_owners'",
        "  unresolved_creator 1: resolved by no route (no twin_id, creator_id, sources key or owners row) → "
        "'creator_sainath.no.1' (routing.unresolved: creator, unresolved_creator: sainath.no.1)",
    ]

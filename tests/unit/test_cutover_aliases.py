"""A cut-over by namespace alias, the pure part (``orchestrator.cutover.aliases``): the job's aliases from the spec's
template, which of them a step moves (all or nothing per alias, a fixed share by name), and the spec's checks."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from nsmigrate.orchestrator.cutover.aliases import AliasRoute, alias_routes, moved_by, targets_at
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS
from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.spec.cutover import template_problem
from nsmigrate.orchestrator.spec.jobspec import parse_spec

RUNS = [(f"twin-{i}", f"creator_c{i % 3}_twin_{i}") for i in range(30)]


def test_each_namespace_copied_to_one_new_namespace_gets_its_alias_and_the_others_are_named() -> None:
    routes, unaliased = alias_routes("live.{source}", [*RUNS, ("", None), ("same", "same")])

    assert len(routes) == 30 and routes[0] == AliasRoute("live.twin-0", "twin-0", "creator_c0_twin_0")
    assert unaliased == ["", "same"]  # routed per record; copied under its own name


def test_two_namespaces_whose_aliases_would_share_a_name_are_refused() -> None:
    with pytest.raises(ValueError, match=r"both 'live\.merged'"):
        alias_routes("live.{target}", [("a", "merged"), ("b", "merged")])


@pytest.mark.parametrize("n", [1, 2, 3, 30])
def test_a_step_moves_a_fixed_share_of_the_aliases_keeping_those_of_the_step_before(n: int) -> None:
    routes, _ = alias_routes("live.{source}", RUNS[:n])
    moved = {p: moved_by(routes, p) for p in ROLLOUT_STEPS}

    for p in ROLLOUT_STEPS:
        assert len(moved[p]) == math.ceil(n * p / 100)
    for smaller, larger in itertools.pairwise(ROLLOUT_STEPS):
        assert moved[smaller] <= moved[larger]
    assert moved_by(list(reversed(routes)), 25) == moved[25]  # by name, not by order
    at_25 = targets_at(routes, 25)
    assert {name for name, ns in at_25.items() if ns.startswith("creator_")} == moved[25]


def test_an_alias_added_after_the_rollout_began_never_takes_the_place_of_one_a_step_moved() -> None:
    """``sync --new-namespaces`` adds namespaces mid-rollout: each step's share of the aliases grows with them, but
    by ⌈n·p/100⌉, which often stays put; ranked by hash among the others, a new alias would push one back to old."""
    routes, _ = alias_routes("live.{source}", RUNS)
    added = [AliasRoute(f"live.new-{i}", f"new-{i}", f"creator_c9_twin_new{i}") for i in range(10)]
    pushed_back_by_hash = 0
    for p in ROLLOUT_STEPS:
        before = moved_by(routes, p)
        for k in range(1, len(added) + 1):
            late = {r.name: i for i, r in enumerate(added[:k])}
            after = moved_by(routes + added[:k], p, late)
            assert before <= after and len(after) == math.ceil((len(routes) + k) * p / 100)
            pushed_back_by_hash += not before <= moved_by(routes + added[:k], p)
    assert pushed_back_by_hash  # what the order of addition prevents


@pytest.mark.parametrize(
    ("template", "ok"),
    [("live.{source}", True), ("{target}-read", True), ("live", False), ("{namespace}", False), ("{source", False)],
)
def test_the_template_names_each_alias_by_its_namespace(template: str, ok: bool) -> None:
    assert (template_problem(template) is None) is ok


def spec(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    return {"name": "j", "source": source, "target": target, "cutover": {"aliases": "live.{source}"}}


def test_a_cut_over_by_alias_needs_source_and_target_to_be_one_index() -> None:
    one = {"kind": "pinecone", "host": "http://127.0.0.1:5081"}
    assert parse_spec(spec(one, {**one, "host": "http://127.0.0.1:5081/"})).cutover.aliases == "live.{source}"

    with pytest.raises(SpecError, match="one Pinecone index"):
        parse_spec(spec(one, {"kind": "pinecone", "host": "http://127.0.0.1:5082"}))
    with pytest.raises(SpecError, match=r"cutover\.aliases"):
        parse_spec({**spec(one, one), "cutover": {"aliases": "live"}})

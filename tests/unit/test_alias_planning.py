"""Planning with namespace aliases (Pinecone API 2026-07): an alias name is never a free target namespace, a source
is selected by its namespace's name, and a plan says when aliases serve what a cleanup would delete."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from tests.unit.test_planner import CREATOR, DIM, SAME_INDEX, T1, TWINS, make_spec

SOURCE = Inventory("src", DIM, {"": 5, "docs_v1": 3, T1: 2})


def target(aliases: dict[str, str], namespaces: dict[str, int] | None = None) -> Inventory:
    return Inventory("dst", DIM, namespaces or {"docs_v0": 4}, aliases=aliases)


def test_an_alias_name_is_not_a_free_target_namespace() -> None:
    spec = make_spec(namespaces={"include": ["docs_v1"]}, routing={"mode": "explicit", "map": {"docs_v1": "docs"}})
    with pytest.raises(PlanError) as refused:
        make_plan(spec, SOURCE, target({"docs": "docs_v0"}), {})
    message = str(refused.value)
    assert "'docs' is a namespace alias of dst (it resolves to 'docs_v0')" in message
    assert "refuses writes to an alias" in message and "repoint the alias" in refused.value.hint
    # Without the alias the same plan is fine: the name is free.
    assert make_plan(spec, SOURCE, target({}), {}).runs[0].target_namespace == "docs"


def test_an_alias_is_not_a_free_target_even_when_overwriting_is_allowed() -> None:
    spec = make_spec(namespaces={"include": ["docs_v1"]}, allow_id_overwrite=True)
    with pytest.raises(PlanError, match="'docs_v1' is a namespace alias of dst"):
        make_plan(spec, SOURCE, target({"docs_v1": "docs_v0"}), {})


def test_a_routed_run_may_not_route_into_an_alias() -> None:
    spec = make_spec(**CREATOR, namespaces={"include": ["__default__"]})
    twin_target = f"creator_{TWINS[T1]}_twin_{T1}"
    with pytest.raises(PlanError, match=f"{twin_target!r} is a namespace alias of dst"):
        make_plan(spec, SOURCE, target({twin_target: "docs_v0"}), TWINS)


def test_an_alias_of_the_same_index_is_refused_as_a_target_too() -> None:
    source = Inventory("src", DIM, {"docs_v1": 3, "docs_v2": 0}, aliases={"docs": "docs_v1"})
    spec = make_spec(
        **SAME_INDEX, namespaces={"include": ["docs_v1"]}, routing={"mode": "explicit", "map": {"docs_v1": "docs"}}
    )
    with pytest.raises(PlanError, match="'docs' is a namespace alias of src"):
        make_plan(spec, source, None, {})


def test_a_source_named_by_an_alias_is_refused_naming_its_namespace() -> None:
    source = Inventory("src", DIM, {"docs_v1": 3}, aliases={"docs": "docs_v1"})
    with pytest.raises(PlanError) as refused:
        make_plan(make_spec(namespaces={"include": ["docs"]}), source, target({}), {})
    assert "'docs' is a namespace alias of 'docs_v1'" in str(refused.value)
    assert "an alias is not a namespace" in refused.value.hint


def test_the_plan_warns_when_aliases_serve_a_source_namespace() -> None:
    source = Inventory("src", DIM, {"docs_v1": 3, "other": 1}, aliases={"docs": "docs_v1"})
    plan = make_plan(make_spec(cleanup={"mode": "manual"}), source, target({}), {})
    [warning] = [w for w in plan.warnings if "alias" in w]
    assert "docs_v1" in warning and "cleanup refuses" in warning
    never = make_plan(make_spec(cleanup={"mode": "never"}), source, target({}), {})
    assert not [w for w in never.warnings if "alias" in w]

"""The namespace convention: names build, parse back to exactly one (creator, twin), and bad ids are refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.records.namespaces import (
    PUBLIC,
    ParsedNamespace,
    Registry,
    creator_namespace,
    namespace_problem,
    parse_namespace,
    twin_namespace,
    validate_identifier,
)

valid_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9.\-]{0,99}\Z")


@pytest.mark.parametrize(
    ("creator", "twin", "expected"),
    [
        ("a.1", "b", "creator_a.1_twin_b"),
        (
            "sainath.no.1",
            "1af5fe75-7d26-49ff-bfc5-13ce560618fb",
            "creator_sainath.no.1_twin_1af5fe75-7d26-49ff-bfc5-13ce560618fb",
        ),
        ("creator-7", "twin", "creator_creator-7_twin_twin"),
        ("X", "0", "creator_X_twin_0"),
    ],
)
def test_twin_namespace(creator: str, twin: str, expected: str) -> None:
    assert twin_namespace(creator, twin) == expected
    assert parse_namespace(expected) == ParsedNamespace("twin", creator, twin)


def test_creator_namespace_and_public() -> None:
    assert creator_namespace("a.10") == "creator_a.10"
    assert parse_namespace("creator_a.10") == ParsedNamespace("creator", "a.10")
    assert parse_namespace(PUBLIC) == ParsedNamespace("public")


@pytest.mark.parametrize(
    "name",
    [
        "",  # the default namespace
        "1af5fe75-7d26-49ff-bfc5-13ce560618fb",
        "creator_",
        "creator_a_twin_b_twin_c",  # ambiguous: never guessed at
        "creator__twin_b",
        "creator_.a_twin_b",
        "creator_a_twin_b\n",  # `$` would accept this; fullmatch does not
        "Creator_a_twin_b",
        "public2",
        "creator_" + "a" * 101,
    ],
)
def test_parse_other(name: str) -> None:
    assert parse_namespace(name) == ParsedNamespace("other")


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("creator_id", "", "is empty"),
        ("creator_id", "_a", "must start with a letter or a digit"),
        ("twin_id", "x" * 101, "101 characters"),
        ("creator_id", ".a", "must start with a letter or a digit"),
        ("creator_id", "-a", "must start with a letter or a digit"),
        ("twin_id", "a b", "contains ' '"),
        ("twin_id", "a/b", "contains '/'"),
        ("creator_id", "é", "starts with 'é'"),
        ("twin_id", "a\n", "contains '\\n'"),
    ],
)
def test_validate_identifier_says_why(kind: str, value: str, reason: str) -> None:
    with pytest.raises(PlanError) as err:
        validate_identifier(kind, value)  # type: ignore[arg-type]
    assert reason in str(err.value)
    assert kind in str(err.value)
    assert err.value.hint


@pytest.mark.parametrize("value", ["a", "a.1", "A-0.b", "x" * 100, "1af5fe75-7d26-49ff-bfc5-13ce560618fb"])
def test_validate_identifier_accepts(value: str) -> None:
    assert validate_identifier("twin_id", value) == value


@pytest.mark.parametrize(("creator", "twin"), [("", "c"), ("a", ""), ("_a", "c")])
def test_twin_namespace_refuses_invalid_ids(creator: str, twin: str) -> None:
    with pytest.raises(PlanError):
        twin_namespace(creator, twin)


def test_the_seeds_ids_with_underscores_build_and_are_found_through_the_registry() -> None:
    registry = Registry({"twin_abc123": "test_creator_123", "twin_coach_persona": "test_creator_123"})
    name = registry.twin_namespace("test_creator_123", "twin_abc123")
    assert name == "creator_test_creator_123_twin_twin_abc123"
    # Two readings by parsing ("test_creator_123" / "twin_abc123" and "test_creator_123_twin" / "abc123") …
    assert parse_namespace(name) == ParsedNamespace("other")
    # … one meaning in the registry that built it.
    assert registry.meaning(name) == ParsedNamespace("twin", "test_creator_123", "twin_abc123")
    assert registry.conflicts() == []
    names = [name, "creator_test_creator_123_twin_twin_coach_persona", "creator_test_creator_1234_twin_x"]
    assert registry.owned("test_creator_123", names) == (names[:2], [])
    assert registry.owned("test_creator_123", names, twin_id="twin_abc123") == ([name], [])


def test_a_plan_is_refused_only_when_two_meanings_build_one_name() -> None:
    registry = Registry({"b": "a", "c": "a_twin_b"}, creators=["a_twin_b"])
    assert registry.conflicts() == [
        "namespace 'creator_a_twin_b' would be built for creator 'a' / twin 'b' and creator 'a_twin_b'"
    ]
    with pytest.raises(PlanError, match="could be confused"):
        registry.check()


def test_an_unregistered_name_with_two_readings_is_reported_not_erased() -> None:
    mine, ambiguous = Registry().owned("a", ["creator_a_twin_b_twin_c", "creator_a_twin_d", "creator_ab_twin_x"])
    assert mine == ["creator_a_twin_d"] and ambiguous == ["creator_a_twin_b_twin_c"]


def test_a_creators_namespaces_are_found_by_parsing_never_by_prefix() -> None:
    names = [
        "creator_a.1_twin_x",
        "creator_a.10_twin_x",
        "creator_a.1",
        "creator_a.10",
        "creator_a.1_twin_y",
        "creator_a.1x_twin_z",
        "creator_a.1_b_twin_c",  # creator a.1_b: not a.1's
        "public",
        "",
    ]
    assert Registry().owned("a.1", names)[0] == ["creator_a.1_twin_x", "creator_a.1", "creator_a.1_twin_y"]
    assert Registry().owned("a.10", names)[0] == ["creator_a.10_twin_x", "creator_a.10"]
    assert Registry().owned("a", names)[0] == []


def test_an_invalid_creator_is_refused() -> None:
    with pytest.raises(PlanError, match="contains ' '"):
        Registry().owned("a 1", ["creator_a 1_twin_x"])


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("public", None),
        ("", None),
        ("anything-else", None),
        ("creator_a_twin_b", None),
        ("creator_a_b_twin_c", None),  # creator a_b, twin c: one reading
        ("creator_a_twin_b_twin_c", "starts with 'creator_'"),  # two readings
        ("creator_.a", "starts with 'creator_'"),
        ("x" * 513, "513 characters"),
    ],
)
def test_namespace_problem(name: str, problem: str | None) -> None:
    found = namespace_problem(name)
    assert found is None if problem is None else problem in (found or "")


@given(valid_ids, valid_ids)
def test_twin_namespace_round_trips(creator: str, twin: str) -> None:
    name = twin_namespace(creator, twin)
    assert parse_namespace(name) == ParsedNamespace("twin", creator, twin)
    assert Registry().owned(creator, [name])[0] == [name]
    assert namespace_problem(name) is None


@given(valid_ids)
def test_creator_namespace_round_trips(creator: str) -> None:
    assert parse_namespace(creator_namespace(creator)) == ParsedNamespace("creator", creator)


@given(valid_ids, valid_ids, valid_ids)
def test_a_creator_never_owns_another_creators_namespace(creator: str, other: str, twin: str) -> None:
    # a.1 vs a.10 in general: a name belongs to exactly one creator, whatever prefix they share.
    names = [twin_namespace(other, twin), creator_namespace(other)]
    expected = names if creator == other else []
    assert Registry().owned(creator, names)[0] == expected


ids_with_underscores = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._\-]{0,20}\Z")


@given(st.lists(st.tuples(ids_with_underscores, ids_with_underscores), min_size=1, max_size=6), ids_with_underscores)
def test_a_registered_creator_never_owns_another_creators_name(pairs: list[tuple[str, str]], creator: str) -> None:
    # Ids with '_' and shared prefixes (a.1 vs a.10, a vs a_twin_b): through the registry a name is erased for the
    # creator it was built for, and only that one; names two meanings share are refused at plan time instead.
    registry = Registry({t: c for c, t in pairs}, creators=[c for c, _ in pairs])
    if registry.conflicts():
        return
    built = {twin_namespace(c, t): c for c, t in pairs} | {f"creator_{c}": c for c, _ in pairs}
    mine, _ = registry.owned(creator, list(built))
    assert mine == [name for name, owner in built.items() if owner == creator]


@given(st.text(max_size=30))
def test_validate_identifier_agrees_with_the_rule(value: str) -> None:
    ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}", value) is not None
    if ok:
        assert validate_identifier("twin_id", value) == value
    else:
        with pytest.raises(PlanError):
            validate_identifier("twin_id", value)

"""What an erasure takes: exactly the subject's namespaces and vectors, never a neighbour's (a.10 when erasing a.1),
whatever the ids look like; pure, no services."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.jobs.erasure_ledger import HeldBack
from nsmigrate.orchestrator.records.namespaces import Registry, creator_namespace, twin_namespace
from nsmigrate.orchestrator.routing.route import routing_table
from nsmigrate.orchestrator.tenancy.erasure import (
    KnownRun,
    Subject,
    erased_in,
    places_in_store,
    receipt,
    registry_of,
    subject_of,
)

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._\-]{0,12}\Z")


def run(src: str, creator: str | None, twin: str | None, table: dict[str, Any] | None = None) -> KnownRun:
    target = (twin_namespace(creator, twin),) if creator and twin else ()
    return KnownRun("src", src, "dst", target, creator, twin, table or {}, "source_id")


RUNS = [
    run("uuid-1", "a.1", "t1"),
    run("uuid-2", "a.1", "t2"),
    run("uuid-10", "a.10", "t10"),
    run("", None, None, routing_table({"t1": "a.1", "t2": "a.1", "t10": "a.10"}, {"s2": "t2", "s10": "t10"})),
]


@pytest.mark.parametrize(
    ("metadata", "twin", "expected"),
    [
        ({"creator_id": "a.1"}, None, True),
        ({"creator_id": "a.10"}, None, False),
        ({"twin_id": "t1"}, None, True),
        ({"twin_id": "t10"}, None, False),
        ({"twin_id": "t1", "creator_id": "a.10"}, None, False),  # someone else's, whatever the twin says
        ({"source_id": "s2"}, None, True),
        ({"source_id": "s10"}, None, False),
        ({}, None, False),
        (None, None, False),
        ({"twin_id": "t1"}, "t1", True),
        ({"twin_id": "t2"}, "t1", False),
        ({"creator_id": "a.1"}, "t1", False),  # creator-wide data is not one twin's
        ({"source_id": "s2"}, "t2", True),
        ({"source_id": "s2"}, "t1", False),
        # A list names each of its elements, as Pinecone's $eq and $in match a list that holds the operand.
        ({"creator_id": ["a.1"]}, None, True),
        ({"creator_id": ["a.10", "a.1"]}, None, True),
        ({"creator_id": ["a.10"]}, None, False),
        ({"creator_id": ["a.10"], "twin_id": "t1"}, None, False),
        ({"creator_id": []}, None, False),
        ({"twin_id": ["t1"]}, None, True),
        ({"twin_id": ["t10", "t2"]}, None, True),
        ({"twin_id": ["t10"]}, None, False),
        ({"twin_id": ["t2", "t1"]}, "t1", True),
        ({"twin_id": ["t2"]}, "t1", False),
        ({"creator_id": ["a.1"], "twin_id": ["t1"]}, "t1", True),
        ({"source_id": ["s10", "s2"]}, None, True),
    ],
)
def test_owns_record(metadata: dict[str, Any] | None, twin: str | None, expected: bool) -> None:
    assert subject_of("a.1", twin, RUNS).owns_record(metadata) is expected


def test_a_numeric_creator_id_is_owned_as_pinecone_gives_it_back() -> None:
    # The application wrote creator 7 as a number; Pinecone keeps it as a float and gives back 7.0.
    assert subject_of("7", None, []).owns_record({"creator_id": 7.0})
    assert not subject_of("7", None, []).owns_record({"creator_id": 7.5})


def test_places_in_a_store() -> None:
    names = [
        "uuid-1",
        "uuid-2",
        "uuid-10",
        "",
        "public",
        "review",
        "creator_a.1_twin_t1",
        "creator_a.1",
        "creator_a.10_twin_t10",
        "creator_a.10",
        "creator_a_twin_b_twin_c",
    ]
    found = places_in_store("src", names, subject_of("a.1", None, RUNS), registry_of(RUNS), RUNS)
    assert found.whole == ["creator_a.1", "creator_a.1_twin_t1", "uuid-1", "uuid-2"]
    # Another creator's namespaces are never searched or taken; a name nobody owns for sure is searched.
    assert found.search == ["", "creator_a_twin_b_twin_c", "public", "review"]
    twin = places_in_store("src", names, subject_of("a.1", "t1", RUNS), registry_of(RUNS), RUNS)
    assert twin.whole == ["creator_a.1_twin_t1", "uuid-1"]


def test_an_invalid_subject_is_refused() -> None:
    with pytest.raises(PlanError, match="'a 1'"):
        Subject("a 1")


@given(st.lists(st.tuples(ids, ids), min_size=2, max_size=6, unique_by=lambda p: p[1]), st.data())
def test_an_erasure_never_touches_another_creator(pairs: list[tuple[str, str]], data: st.DataObject) -> None:
    # Generated creators (prefixes of each other, '_' inside, a.1 / a.10 alike): erasing one takes only its own
    # namespaces and vectors.
    registry = Registry({t: c for c, t in pairs}, [c for c, _ in pairs])
    if registry.conflicts():
        return  # a plan with such names is refused before anything is written
    runs = [run(f"uuid-{t}", c, t) for c, t in pairs]
    creator = data.draw(st.sampled_from([c for c, _ in pairs]))
    subject = subject_of(creator, None, runs)
    names = [twin_namespace(c, t) for c, t in pairs] + [creator_namespace(c) for c, _ in pairs]
    names += [f"uuid-{t}" for _, t in pairs] + ["public", ""]
    found = places_in_store("src", names, subject, registry_of(runs), runs)
    owners = {twin_namespace(c, t): c for c, t in pairs} | {creator_namespace(c): c for c, _ in pairs}
    owners |= {f"uuid-{t}": c for c, t in pairs}
    assert sorted(found.whole) == sorted({n for n, c in owners.items() if c == creator})
    assert set(found.search) <= {"public", ""}
    for c, t in pairs:
        assert subject.owns_record({"creator_id": c, "twin_id": t}) is (c == creator)
        assert subject.owns_record({"twin_id": t}) is (c == creator)


def _place(kind: str, namespace: str | None, erased: int, state: str = "verified") -> SimpleNamespace:
    return SimpleNamespace(
        kind=kind,
        store="backup" if kind == "backup" else "dst",
        namespace=namespace,
        path="/b" if kind == "backup" else None,
        planned=erased,
        erased=erased,
        state=state,
        verification={"passed": state == "verified"},
        last_error=None if state == "verified" else "left",
    )


def test_the_receipt_adds_up() -> None:
    places = [_place("namespace", "creator_a.1", 3), _place("records", "", 2), _place("backup", None, 4, "failed")]
    job = SimpleNamespace(id=7, spec={"creator_id": "a.1", "twin_id": None}, created_at=None)
    made = receipt(job, places)
    assert made["vectors_erased"] == 5 and made["backup_rows_erased"] == 4 and not made["verified"]
    assert [p["namespace"] for p in made["places"]] == ["creator_a.1", "__default__", None]


def test_a_test_creators_copy_is_theirs_to_erase_and_the_originals_are_not() -> None:
    # The seeds' test creator: a job filed twin t1 (a.1's) under sainath.no.1 with override_creator.
    copy = KnownRun("src", "uuid-1", "dst", ("creator_sainath.no.1_twin_t1",), "sainath.no.1", "t1", {}, None, True)
    runs = [*RUNS, copy]
    names = ["uuid-1", "creator_a.1_twin_t1", "creator_sainath.no.1_twin_t1", ""]
    test_twin = subject_of("sainath.no.1", "t1", runs)
    found = places_in_store("src", names, test_twin, registry_of(runs), runs)
    assert found.whole == ["creator_sainath.no.1_twin_t1"]  # never the original uuid-1 or a.1's namespace
    assert not test_twin.owns_record({"twin_id": "t1"})  # an original in the default namespace
    assert test_twin.owns_record({"twin_id": "t1", "creator_id": "sainath.no.1"})
    # Erasing a.1 takes the copy of their twin too: it is their data under another name.
    owner = places_in_store("src", names, subject_of("a.1", None, runs), registry_of(runs), runs)
    assert owner.whole == ["creator_a.1_twin_t1", "creator_sainath.no.1_twin_t1", "uuid-1"]


def test_their_twin_given_to_another_creator_since_is_reported_never_deleted_whole() -> None:
    # t1 was a.1's when one job copied it; a later job gave it to b.2: creator_b.2_twin_t1 is b.2's namespace now,
    # as much as a.1's old twin's. Erasing a.1 deleted it whole, b.2's records with it.
    given = KnownRun("src", "uuid-1", "dst", ("creator_b.2_twin_t1",), "b.2", "t1", {}, None)
    runs = [*RUNS, given]
    names = ["creator_a.1_twin_t1", "creator_b.2_twin_t1", "uuid-2"]

    found = places_in_store("dst", names, subject_of("a.1", None, runs), registry_of(runs), runs)

    assert "creator_b.2_twin_t1" not in found.whole and "creator_b.2_twin_t1" in found.ambiguous
    assert "creator_a.1_twin_t1" in found.whole


def test_a_source_that_names_twins_and_creators_under_its_own_keys_is_read_by_them() -> None:
    # A job routed the default namespace by `routing.twin_id_field: twinId` (and creators by `owner`): its source's
    # vectors carry those keys, never `twin_id`, and are the creator's all the same.
    renamed = KnownRun("src", "", "dst", (), None, None, routing_table({"t1": "a.1"}), None, creator_id_field="owner")
    renamed = dataclasses.replace(renamed, twin_id_field="twinId")
    subject = subject_of("a.1", None, [*RUNS, renamed])

    assert subject.owns_record({"twinId": "t1"}) and subject.owns_record({"owner": "a.1"})
    assert subject.owns_record({"twin_id": "t1"})  # the copies' own key still counts
    assert not subject.owns_record({"twinId": "t10"}) and not subject.owns_record({"owner": "a.10", "twinId": "t1"})
    assert Subject.from_json(subject.to_json()) == subject  # as the erasure ledger keeps it
    written = [SimpleNamespace(id="x", metadata={"twinId": "t1"})]
    assert erased_in([(9, subject)], [((None, None), written)]) == (9, subject, ["x"])  # a copy holds it back


def test_what_a_routed_job_filed_under_a_test_creator_is_found_when_its_owner_is_erased() -> None:
    # The default namespace routed with override_creator: t1's vectors went to the test creator's twin namespace,
    # and a vector naming only its creator (a.1) to the test creator's own namespace. No per-twin run registered
    # either name, and the test creator's namespace is another creator's by its name.
    routed = dataclasses.replace(
        run("", None, None, routing_table({"t1": "a.1", "t10": "a.10"})), override=True, override_creator="sainath.no.1"
    )
    runs = [*RUNS, routed]
    names = ["", "creator_sainath.no.1", "creator_sainath.no.1_twin_t1", "creator_sainath.no.1_twin_t10"]

    found = places_in_store("dst", names, subject_of("a.1", None, runs), registry_of(runs), runs)

    assert found.whole == ["creator_sainath.no.1_twin_t1"]  # a copy of their twin, whole (a.10's is not theirs)
    assert found.search == ["", "creator_sainath.no.1"]  # their vectors among the test creator's, by metadata


def test_a_copy_of_an_erased_subjects_records_is_found_whatever_else_was_erased() -> None:
    """``erased_in``: each record against the erasures its ids name, among many; a.10 is never taken for a.1."""
    a1 = subject_of("a.1", None, RUNS)
    t2 = subject_of("a.1", "t2", RUNS)
    others = [(100 + i, Subject(f"b.{i}")) for i in range(500)]
    erasures = [*others, (7, t2), (8, a1)]

    def rec(id_: str, **meta: Any) -> SimpleNamespace:
        return SimpleNamespace(id=id_, metadata=meta)

    shared = [
        rec("x", creator_id="a.10"),
        rec("y", twin_id="t10"),
        rec("z", source_id="s10"),
        rec("n"),
        rec("k", metadata_only="a.1"),
    ]
    assert erased_in(erasures, [((None, None), shared)]) is None
    assert erased_in(erasures, [(("a.10", "t10"), [rec("x")])]) is None

    mine = [rec("c", creator_id="a.1"), rec("t", twin_id="t1"), rec("s", source_id="s2"), *shared]
    assert erased_in(erasures, [((None, None), mine)]) == (7, t2, ["s"])  # the first erasure (in order) that owns one
    assert erased_in([(8, a1), (7, t2)], [((None, None), mine)]) == (8, a1, ["c", "t", "s"])
    # A namespace built for them: every record written there is theirs, whatever its metadata says.
    assert erased_in(erasures, [(("a.1", "t1"), [rec("plain")])]) == (8, a1, ["plain"])
    assert erased_in([(3, Subject("b.3"))], [(("b.3", None), [rec("p")])]) == (3, Subject("b.3"), ["p"])
    # A list names each of its elements, as Pinecone's own filters match it.
    listed = [rec("lc", creator_id=["a.1"]), rec("lt", twin_id=["t10", "t1"]), rec("lo", creator_id=["a.10"])]
    assert erased_in([(8, a1)], [((None, None), listed)]) == (8, a1, ["lc", "lt"])


def test_a_source_namespace_read_for_them_and_for_another_creator_is_reported_not_taken() -> None:
    """A twin given to another creator since: one job read its UUID namespace for them, a later one for the other
    creator. Deleted whole with their data, it would take the other creator's; it is reported as ambiguous."""
    runs = [run("uuid-1", "a.1", "t1"), run("uuid-2", "a.1", "t2"), run("uuid-1", "b.2", "t9")]
    names = ["uuid-1", "uuid-2", "public"]
    found = places_in_store("src", names, subject_of("a.1", None, runs), registry_of(runs), runs)
    assert found.whole == ["uuid-2"] and "uuid-1" in found.ambiguous and "uuid-1" not in found.search
    other = places_in_store("src", names, subject_of("b.2", None, runs), registry_of(runs), runs)
    assert "uuid-1" not in other.whole and "uuid-1" in other.ambiguous


def test_a_write_into_a_twins_own_old_namespace_is_held_back_though_its_records_name_no_one() -> None:
    # The seeds' twin namespaces are named by the twin's id (a UUID), and their records carry no creator or twin id:
    # restored there from a backup after a.1's erasure (`import --to-source`), they came back.
    erased = [(9, subject_of("a.1", None, RUNS))]
    held = HeldBack(subjects=lambda: erased)
    records = [SimpleNamespace(id="r1", metadata={"text": "theirs"})]

    assert held.keep("t1", records) == [] and held.held[9][1] == ["r1"]
    assert held.keep("t10", records) == records  # a.10's twin, another creator's

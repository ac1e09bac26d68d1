"""The collection strategy, the pure part: its spec rules, its plan, its next step from what the control plane says,
and the phases a job may move through."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nsmigrate.orchestrator.errors import PlanError, SpecError, StateError
from nsmigrate.orchestrator.jobs.lifecycle import check_phase_transition
from nsmigrate.orchestrator.planning.collection_strategy import (
    collection_name,
    next_step,
    plan_collection,
    poll_delay_s,
)
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, IndexShape, TargetIndex
from nsmigrate.orchestrator.spec.jobspec import parse_spec

BASE: dict[str, Any] = {
    "name": "native",
    "strategy": "collection",
    "source": {"kind": "pinecone", "index": "pod"},
    "target": {"kind": "pinecone", "index": "new"},
}
CREATE = TargetIndex("new", IndexShape(8, "cosine"), "create")


def test_collection_names_are_pinecone_resource_names_unique_per_job() -> None:
    assert collection_name("Seeds.Native_job", 12) == "seeds-native-job-nsm12"
    assert collection_name("___", 3) == "job-nsm3"
    long = collection_name("x" * 63, 123456)
    assert len(long) <= 45 and long.endswith("-nsm123456")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"routing": {"mode": "explicit", "map": {"a": "b"}}}, "routing (an index made from a collection"),
        ({"namespaces": {"include": ["a*"]}}, "namespaces (a collection copies every namespace)"),
        ({"enrich": {"constants": {"v": 2}}}, "enrich (a collection copies records unchanged)"),
        ({"enrich": {"migrated_from": True}}, "enrich (a collection copies records unchanged)"),
        ({"cleanup": {"mode": "manual"}}, "cleanup (retire the pod index yourself"),
        ({"target": {"kind": "pinecone", "host": "http://127.0.0.1:1"}}, "needs a Pinecone target named by `index`"),
    ],
)
def test_the_spec_refuses_what_a_collection_cannot_do(change: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=re.escape(words)):
        parse_spec({**BASE, **change})
    spec = parse_spec(BASE)  # and takes the rest, enriching nothing
    assert (spec.enrich.creator_fields, spec.enrich.migrated_from) == (False, False)
    assert parse_spec(spec.model_dump(mode="json")) == spec  # as stored in the job table and read back


def test_the_plan_has_every_namespace_no_batches_and_refuses_an_existing_target() -> None:
    spec = parse_spec(BASE)
    plan = plan_collection(spec, Inventory("pod", 8, {"": 30, "b": 0, "a": 250}, "cosine"), CREATE)
    assert [(r.source_namespace, r.target_namespace, r.vector_count, r.batches) for r in plan.runs] == [
        ("", "", 30, 0),
        ("a", "a", 250, 0),
        ("b", "b", 0, 0),
    ]
    assert (plan.estimate.upsert_requests, plan.estimate.write_units) == (0, 0)
    assert plan.estimate.list_requests == 1 + 3  # verification lists the target
    assert plan.warnings == ["namespace b is empty"]
    with pytest.raises(PlanError, match="needs a pod-based source; pod is serverless"):
        plan_collection(spec, Inventory("pod", 8, {"": 1}), CREATE, "serverless")
    with pytest.raises(PlanError, match="creates the target index new, and it exists already"):
        plan_collection(spec, Inventory("pod", 8, {"": 1}), TargetIndex("new", IndexShape(8, "cosine"), "use"))


READY = IndexInfo("new", 8, "cosine", "serverless", True, "Ready")
BUSY = IndexInfo("new", 8, "cosine", "serverless", False, "Initializing")


@pytest.mark.parametrize(
    ("phase", "collection", "index", "action"),
    [
        (None, None, None, "create_collection"),
        (None, "Initializing", None, "wait"),  # made before a worker died, its phase not recorded
        ("collecting", "Initializing", None, "wait"),
        ("collecting", "Ready", None, "create_index"),
        ("collecting", "Ready", READY, "fail"),  # someone else made the target meanwhile
        ("collecting", "Terminating", None, "fail"),
        ("restoring", "Ready", BUSY, "wait"),
        ("restoring", "Ready", None, "create_index"),  # its creation was lost: ask again
        ("restoring", None, None, "fail"),
        ("restoring", None, READY, "restored"),  # the collection may be gone by then
        ("restored", None, READY, "restored"),
    ],
)
def test_next_step(phase: str | None, collection: str | None, index: IndexInfo | None, action: str) -> None:
    step = next_step(phase, collection, index, "new", "snap")
    assert step.action == action
    assert (step.reason != "") == (action in ("fail", "wait"))


def test_phases_only_move_forward_and_polls_back_off() -> None:
    check_phase_transition(1, None, "collecting")
    check_phase_transition(1, "collecting", "restoring")
    check_phase_transition(1, "restoring", "restored")
    check_phase_transition(1, "restoring", "restoring")
    with pytest.raises(StateError, match="collection job 1 cannot move from restored to collecting"):
        check_phase_transition(1, "restored", "collecting")
    with pytest.raises(StateError, match="from not started to restored"):
        check_phase_transition(1, None, "restored")
    assert [poll_delay_s(n) for n in (0, 1, 2, 10, 100)] == [0.5, 1.0, 2.0, 30.0, 30.0]

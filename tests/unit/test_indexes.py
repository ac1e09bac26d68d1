"""Target index creation, the pure part: the shape asked for, create or use, refusals, waiting for readiness."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from nsmigrate.orchestrator.errors import PlanError, SpecError, StoreError
from nsmigrate.orchestrator.planning.target_indexes import (
    IndexInfo,
    IndexShape,
    TargetIndex,
    plan_target_index,
    wait_until_ready,
)
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec

READY = IndexInfo("dst", 8, "cosine", "serverless", True, "Ready", "http://127.0.0.1:1")


class FakeControl:
    """A control plane holding some indexes; records what it was asked to create."""

    def __init__(self, *indexes: IndexInfo) -> None:
        self.indexes = {i.name: i for i in indexes}
        self.created: list[tuple[str, IndexShape]] = []

    def describe_index(self, name: str) -> IndexInfo | None:
        return self.indexes.get(name)

    def create_index(self, name: str, shape: IndexShape) -> IndexInfo:
        self.created.append((name, shape))
        info = IndexInfo(name, shape.dimension, shape.metric, "serverless", False, "Initializing")
        self.indexes[name] = info
        return info


def spec(**create: Any) -> JobSpec:
    return parse_spec(
        {
            "name": "make-target",
            "source": {"kind": "pinecone", "index": "src"},
            "target": {"kind": "pinecone", "index": "dst", "create": create},
        }
    )


def test_the_shape_comes_from_the_source_unless_given() -> None:
    target = plan_target_index(
        spec(region="eu-west-1", deletion_protection="enabled", tags={"team": "search"}),
        "src",
        8,
        "dotproduct",
        FakeControl(),
    )
    assert target == TargetIndex(
        "dst",
        IndexShape(8, "dotproduct", region="eu-west-1", deletion_protection="enabled", tags={"team": "search"}),
        "create",
    )
    assert "will be created: serverless aws/eu-west-1, 8-dim dotproduct dense, deletion protection enabled, " in (
        target.describe()
    )


@pytest.mark.parametrize(
    ("create", "words"),
    [
        ({"dimension": 16}, ["dimension 16 and metric cosine", "source src has dimension 8 and metric cosine"]),
        ({"metric": "euclidean"}, ["dimension 8 and metric euclidean", "leave target.create.dimension"]),
    ],
)
def test_a_shape_other_than_the_source_is_refused(create: dict[str, Any], words: list[str]) -> None:
    control = FakeControl()
    with pytest.raises(PlanError) as caught:
        plan_target_index(spec(**create), "src", 8, "cosine", control)
    for word in words:
        assert word in str(caught.value)
    assert control.created == []


def test_an_existing_index_is_used_when_its_shape_fits_and_refused_when_not() -> None:
    assert plan_target_index(spec(), "src", 8, "cosine", FakeControl(READY)).action == "use"  # type: ignore[union-attr]
    for other, words in [
        (replace(READY, dimension=16), "target index dst exists with dimension 16, not 8"),
        (replace(READY, metric="dotproduct"), "exists with metric dotproduct, not cosine"),
        (replace(READY, kind="pod"), "exists with a pod index, not serverless"),
    ]:
        with pytest.raises(PlanError, match=words):
            plan_target_index(spec(), "src", 8, "cosine", FakeControl(other))


def test_no_create_no_decision() -> None:
    plain = parse_spec(
        {"name": "x", "source": {"kind": "pinecone", "index": "a"}, "target": {"kind": "pinecone", "index": "b"}}
    )
    assert plan_target_index(plain, "a", 8, "cosine", None) is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"target": {"kind": "pinecone", "host": "http://127.0.0.1:1", "create": {}}}, "`create` needs `index: NAME`"),
        ({"source": {"kind": "pinecone", "index": "a", "create": {}}}, "only a target index can be created"),
        ({"target": {"kind": "pinecone", "index": "b", "create": {"tags": {"bad key!": "x"}}}}, "tag key 'bad key!'"),
        ({"target": {"kind": "pinecone", "index": "b", "create": {"cloud": "ibm"}}}, "target.create.cloud"),
    ],
)
def test_spec_refusals(data: dict[str, Any], words: str) -> None:
    base: dict[str, Any] = {
        "name": "x",
        "source": {"kind": "pinecone", "index": "a"},
        "target": {"kind": "pinecone", "index": "b"},
    }
    with pytest.raises(SpecError, match=words):
        parse_spec({**base, **data})


def test_waiting_reports_progress_and_gives_up_with_a_clear_error() -> None:
    control = FakeControl(replace(READY, ready=False, state="Initializing"))
    now = [0.0]
    seen: list[float] = []

    def sleep(s: float) -> None:
        now[0] += s
        if now[0] >= 1.0:
            control.indexes["dst"] = READY

    info = wait_until_ready(
        control, "dst", timeout_s=10, on_wait=lambda t, _i: seen.append(t), sleep=sleep, clock=lambda: now[0]
    )
    assert info.ready and seen[:3] == [0.0, 0.25, 0.75]

    control.indexes["dst"] = replace(READY, ready=False, state="Initializing")
    with pytest.raises(StoreError, match=r"still Initializing after 3 s.*run again later"):
        wait_until_ready(control, "dst", timeout_s=3, sleep=lambda s: now.append(now.pop() + s), clock=lambda: now[0])

"""Source namespaces a job's selection takes that no run of it holds (``workers.steps.late_namespaces``), read from a
real local data plane through the guarded Pinecone store, with the job written to a real job table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.late_namespaces import late_namespaces
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

DIM = 4
KEY_ENV = "NSMIGRATE_TEST_LATE_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("late-src", DIM), IndexSpec("late-dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url)


def job_of(ctx: WorkerContext, sandbox: PineconeSandbox, target: str, runs: dict[str, str], **spec: Any) -> int:
    """A job from ``late-src`` to ``target`` with one run per source namespace of ``runs`` (→ its target)."""
    store = {"kind": "pinecone", "api_key_env": KEY_ENV}
    job_spec = parse_spec(
        {
            "name": f"late-{target}",
            "source": {**store, "host": sandbox.host("late-src")},
            "target": {**store, "host": sandbox.host(target)},
            **spec,
        }
    )
    plan = Plan(
        runs=[NamespacePlan(source, target_ns, 1, 1) for source, target_ns in runs.items()],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
    )
    return jobs_and_runs.create_job(ctx.db, job_spec, plan, source_label="late-src", target_label=target)


def load(sandbox: PineconeSandbox, *namespaces: str) -> None:
    for ns in namespaces:
        sandbox.load("late-src", ns, [(f"{ns}-1", [1.0, 0.0, 0.0, 0.0], {})])
    sandbox.settle("late-src")


def test_a_namespace_the_selection_takes_after_the_plan_is_late_and_one_it_leaves_out_is_not(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-late-test")
    load(sandbox, "twin-a", "twin-b")
    job_id = job_of(ctx, sandbox, "late-dst", {"twin-a": "twin-a", "twin-b": "twin-b"}, namespaces={"exclude": ["x*"]})
    assert late_namespaces(ctx, job_id) == []

    load(sandbox, "twin-c", "", "x-scratch")  # after the plan: two the selection takes, one it leaves out
    assert late_namespaces(ctx, job_id) == ["", "twin-c"]


def test_a_refactor_inside_one_index_does_not_take_its_own_copies_for_new_sources(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-late-test")
    load(sandbox, "twin-a", "creator_1_twin_a")  # the source and the copy the job made of it, in one index
    job_id = job_of(ctx, sandbox, "late-src", {"twin-a": "creator_1_twin_a"})
    assert late_namespaces(ctx, job_id) == []

    load(sandbox, "twin-b")
    assert late_namespaces(ctx, job_id) == ["twin-b"]

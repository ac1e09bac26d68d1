"""A `strategy: collection` step that breaks ends the job's runs failed with its error, never a silent wait: an
answer nobody foresaw, and a control plane that fails on end (bounded by
``collection_control_plane_outage_s``). Each step is played in this process against the local control plane, as a
worker would take it; `nsmigrate retry`'s step then goes on once the cause is gone."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from nsmigrate.orchestrator.errors import CollectionFailed
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.launch import retry_failed_listers
from nsmigrate.orchestrator.planning.collection_strategy import plan_collection
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.target_indexes import TargetIndex, wanted_shape
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import CreateIndex
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import collection as collection_steps
from nsmigrate_sandbox.pinecone_control import ControlFaults
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.polling import until_raised, wait_until
from tests.sent_tasks import SentTasks

POD, NEW = "legacy-pod", "native-serverless"
DIM = 4
NAMESPACES = {"": 3, "twin-a": 5}
KEY = "collection-test-key-not-to-be-shown"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(POD, DIM, "euclidean", kind="pod")]


@pytest.fixture
def pod(sandbox: PineconeSandbox) -> Iterator[PineconeSandbox]:
    """The sandbox with the pod index loaded; what a test created on the control plane removed afterwards."""
    rng = np.random.default_rng(3)
    for ns, n in NAMESPACES.items():
        sandbox.load(POD, ns, [(f"{ns or 'd'}-{i}", rng.random(DIM).tolist(), None) for i in range(n)])
    yield sandbox
    for name in sandbox.control.collection_names():
        httpx.delete(f"{sandbox.control_host}/collections/{name}", headers={"Api-Key": KEY}, timeout=5)
    if NEW in sandbox.names():
        sandbox.remove_index(NEW)


def start_job(ctx: WorkerContext, sandbox: PineconeSandbox) -> int:
    """A collection job as `nsmigrate run` writes it (its first step is the test's to take)."""
    where = {"kind": "pinecone", "control_host": sandbox.control_host}
    spec = parse_spec(
        {
            "name": "breaks",
            "strategy": "collection",
            "source": {**where, "index": POD},
            "target": {**where, "index": NEW, "create": {}},
        }
    )
    inventory = Inventory(label=POD, dimension=DIM, namespaces=dict(NAMESPACES), can_list=False)
    target = TargetIndex(NEW, wanted_shape(CreateIndex(), DIM, "euclidean"), "create")
    plan = plan_collection(spec, inventory, target)
    return jobs_and_runs.create_job(ctx.db, spec, plan, source_label=POD, target_label=NEW)


def next_step(ctx: WorkerContext, job_id: int) -> str:
    """Take the step the last one sent (the first step when none was sent), as a worker would, without its wait."""
    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, SentTasks)
    kwargs = dispatcher.collection_steps[-1] if dispatcher.collection_steps else {}
    sent_before = len(dispatcher.collection_steps)
    # As the task does: ``failing_since`` is sent only while the control plane fails.
    failing = {"failing_since": kwargs["failing_since"]} if kwargs.get("failing_since") is not None else {}
    did = collection_steps.step(ctx, job_id, kwargs.get("polls", 0), **failing)
    assert did in ("restored", "stopped") or len(dispatcher.collection_steps) == sent_before + 1, did
    return did


def steps_until_it_fails(ctx: WorkerContext, job_id: int) -> CollectionFailed:
    """Take step after step until one raises ``CollectionFailed`` (a step that never does fails the test)."""
    return until_raised(
        lambda: next_step(ctx, job_id), CollectionFailed, what=f"a step of job {job_id} to fail", timeout_s=60
    )


def steps_until_restored(ctx: WorkerContext, job_id: int) -> None:
    wait_until(lambda: next_step(ctx, job_id) == "restored", what=f"job {job_id} restored", timeout_s=60)


def shown_texts(ctx: WorkerContext, job_id: int, failure: CollectionFailed) -> list[str]:
    """Everything an operator sees of the failure: the exception (Flower), the runs' errors, the events."""
    errors = [r.last_error or "" for r in jobs_and_runs.runs_of(ctx.db, job_id)]
    events = [str(e) for e in jobs_status.events_of(ctx.db, job_id)]
    return [str(failure), *errors, *events]


def assert_failed_then_retried(
    ctx: WorkerContext, pod: PineconeSandbox, job_id: int, failure: CollectionFailed, expected: str
) -> None:
    assert f"(job {job_id})" in str(failure) and expected in str(failure)
    status = jobs_status.job_status(ctx.db, job_id)
    assert {r.source_namespace: r.state for r in status.runs} == dict.fromkeys(NAMESPACES, "list_failed")
    assert all(expected in (r.last_error or "") for r in status.runs)
    [event] = [e for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "collection_failed"]
    assert expected in str(event)
    assert not any(KEY in text for text in shown_texts(ctx, job_id, failure))

    # The cause gone, `nsmigrate retry` sends a step that goes on from the phase the job reached.
    pod.control.set_faults(ControlFaults())
    assert retry_failed_listers(ctx.db, ctx.dispatcher, job_id) == ["__default__", "twin-a"]
    assert ctx.dispatcher.collection_steps[-1].get("failing_since") is None  # a retried step starts afresh
    steps_until_restored(ctx, job_id)
    assert jobs_status.job_status(ctx.db, job_id).phase == "restored"
    assert {r.source_namespace: r.state for r in jobs_and_runs.runs_of(ctx.db, job_id)} == dict.fromkeys(
        NAMESPACES, "copied"
    )
    assert pod.count(NEW) == sum(NAMESPACES.values())
    assert pod.control.collection_names() == [f"breaks-nsm{job_id}"]  # made once, not again by the retry


@pytest.fixture
def ctx(
    job_table_url: str,
    redis_url: str,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerContext:
    """A worker's context whose steps are recorded, not sent; the key is one no message may show."""
    monkeypatch.setenv("PINECONE_API_KEY", KEY)
    return worker_context(job_table_url, redis_url, dispatcher=SentTasks())


def test_an_answer_nobody_foresaw_fails_the_step_with_its_error_and_retry_goes_on(
    ctx: WorkerContext, pod: PineconeSandbox
) -> None:
    job_id = start_job(ctx, pod)
    # A proxy's HTML page where Pinecone's JSON should be, once it created the index from the collection.
    pod.control.set_faults(ControlFaults(garbled_ops=("create_index",)))

    assert next_step(ctx, job_id) == "create_collection"
    failure = steps_until_it_fails(ctx, job_id)

    # Pinecone made the index, the step could not know: it recorded restoring before it asked, so the retry below
    # takes that index as the job's own instead of failing because it "appeared".
    assert NEW in pod.names() and jobs_status.job_status(ctx.db, job_id).phase == "restoring"
    answered = f"the Pinecone control plane {pod.control_host} answered create_index_from_collection with 200"
    assert_failed_then_retried(ctx, pod, job_id, failure, answered)
    # What came instead of JSON, and what to do: not a bare JSONDecodeError.
    assert "not JSON (text/html: <html><body><h1>502 Bad Gateway</h1></body></html>)" in str(failure)
    assert "whether create_index_from_collection was done is unknown" in str(failure)
    assert f"run `nsmigrate retry {job_id}`" in str(failure)
    assert "JSONDecodeError" not in str(failure)


def test_a_collection_described_ready_without_its_dimension_fails_the_step_saying_so(
    ctx: WorkerContext, pod: PineconeSandbox
) -> None:
    job_id = start_job(ctx, pod)
    # The spec requires only a collection's name, status and environment: a Ready one may come without dimension.
    pod.control.set_faults(ControlFaults(collection_fields_left_out=("dimension",)))

    assert next_step(ctx, job_id) == "create_collection"
    failure = steps_until_it_fails(ctx, job_id)

    assert NEW not in pod.names()  # no index of a guessed dimension
    expected = (
        f"the Pinecone control plane {pod.control_host} described collection breaks-nsm{job_id} as Ready without "
        "its dimension (status Ready, vector_count 8, no dimension)"
    )
    assert_failed_then_retried(ctx, pod, job_id, failure, expected)
    assert "AssertionError" not in str(failure)
    assert f"run `nsmigrate retry {job_id}`" in str(failure)


def test_a_control_plane_that_fails_on_end_fails_the_step_naming_collection_and_index(
    ctx: WorkerContext, pod: PineconeSandbox
) -> None:
    ctx.settings = ctx.settings.model_copy(update={"collection_control_plane_outage_s": 1.0})
    job_id = start_job(ctx, pod)
    assert next_step(ctx, job_id) == "create_collection"
    # Every describe_collection answers 503 from now on: the step asks again, then gives up.
    pod.control.set_faults(ControlFaults(errors_5xx=10**9, error_ops=("describe_collection",)))

    failure = steps_until_it_fails(ctx, job_id)

    assert ctx.dispatcher.collection_steps[-1].get("failing_since") is not None  # it did ask again before
    expected = f" s on end while collection breaks-nsm{job_id} of pod index {POD} was made into index {NEW}"
    assert f"the Pinecone control plane {pod.control_host}" in str(failure)
    assert_failed_then_retried(ctx, pod, job_id, failure, expected)
    assert f"run `nsmigrate retry {job_id}`" in str(failure)


def test_a_describe_answered_with_a_proxy_page_fails_the_step_saying_what_came(
    ctx: WorkerContext, pod: PineconeSandbox
) -> None:
    job_id = start_job(ctx, pod)
    assert next_step(ctx, job_id) == "create_collection"
    # Through the SDK this time: describe_collection answered 200 with a proxy's HTML page.
    pod.control.set_faults(ControlFaults(garbled_ops=("describe_collection",)))

    failure = steps_until_it_fails(ctx, job_id)

    expected = "Pinecone describe_collection was answered with something that is not the service's JSON"
    assert_failed_then_retried(ctx, pod, job_id, failure, expected)
    assert "a proxy, a load balancer" in str(failure) and f"run `nsmigrate retry {job_id}`" in str(failure)

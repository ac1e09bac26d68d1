"""A `strategy: convert` job step by step, played in this process against the local control plane as a worker would
take each step (what a step sends is recorded, not sent): its plan, Pinecone's progress on the phase and the runs,
the sync of what was written after the snapshot, verification; a plan below Standard and a record the conversion
cannot take fail the step with Pinecone's words, and `nsmigrate retry` goes on; `resume` of a converted job syncs
what still owes its sync. And `nsmigrate plan`: whether convert applies to a fleet copy, or why not."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.fleet import open_control
from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch, recovery
from nsmigrate.orchestrator.errors import ConversionFailed, StateError, StopAsked
from nsmigrate.orchestrator.jobs import conversion as jobs_conversion
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning, converting, copying, verifying
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.polling import until_raised, wait_until
from tests.sent_tasks import SentTasks

SOURCE, POD, DOCS = "steps-src", "steps-pod", "steps-docs"
DIM = 4
NAMESPACES = {"a": 30, "b": 12}
KEY = "convert-test-key-not-to-be-shown"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SOURCE, DIM), IndexSpec(POD, DIM, kind="pod")]


def record(ns: str, i: int, scale: float = 1.0) -> tuple[str, list[float], dict[str, Any]]:
    values = (np.random.default_rng(i).random(DIM) * scale).astype(np.float32).tolist()
    return f"{ns}-{i:03d}", values, {"chunk_text": f"chunk {i}", "i": i}


@pytest.fixture
def source(sandbox: PineconeSandbox) -> Iterator[PineconeSandbox]:
    """The source loaded; the control plane on a Standard plan with instant conversions; the new index removed."""
    for ns, n in NAMESPACES.items():
        sandbox.load(SOURCE, ns, [record(ns, i) for i in range(n)])
    sandbox.control.set_delays(conversion_delay_s=0.0)
    sandbox.control.conversions.set_plan("standard")
    yield sandbox
    if DOCS in sandbox.names():
        sandbox.remove_index(DOCS)


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


def spec_data(sandbox: PineconeSandbox, **change: Any) -> dict[str, Any]:
    where = {"kind": "pinecone", "control_host": sandbox.control_host}
    return {
        "name": "converts",
        "strategy": "convert",
        "source": {**where, "index": SOURCE},
        "target": {**where, "index": DOCS, "documents": {"text_fields": ["chunk_text"]}},
        "verify": {"count_timeout_s": 2, "freshness_timeout_s": 10, "latency_samples": 0},
        **change,
    }


def start_job(ctx: WorkerContext, sandbox: PineconeSandbox) -> int:
    """A convert job planned as `nsmigrate run` plans it and written (its first step is the test's to take)."""
    prepared = launch.prepare(parse_spec(spec_data(sandbox)), open_retrying_store, None, open_control)
    assert prepared.target_index is not None and prepared.target_index.action == "create"
    return jobs_and_runs.create_job(
        ctx.db, prepared.spec, prepared.plan, source_label=SOURCE, target_label=prepared.target_label
    )


def sent_steps(ctx: WorkerContext) -> list[dict[str, Any]]:
    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, SentTasks)
    return dispatcher.convert_steps


def next_step(ctx: WorkerContext, job_id: int) -> str:
    """Take the step the last one sent (the first step when none was sent), as a worker would, without its wait."""
    steps = sent_steps(ctx)
    kwargs = steps[-1] if steps else {}
    failing = {"failing_since": kwargs["failing_since"]} if kwargs.get("failing_since") is not None else {}
    return converting.step(ctx, job_id, kwargs.get("polls", 0), **failing)


def steps_until_it_fails(ctx: WorkerContext, job_id: int) -> ConversionFailed:
    return until_raised(
        lambda: next_step(ctx, job_id), ConversionFailed, what=f"a step of job {job_id} to fail", timeout_s=30
    )


def steps_until_converted(ctx: WorkerContext, job_id: int) -> None:
    wait_until(lambda: next_step(ctx, job_id) == "converted", what=f"job {job_id} converted", timeout_s=30)


def run_sent_work(ctx: WorkerContext) -> None:
    """Copy the batches and verify the runs the steps sent, as the copy and verify workers would."""
    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, SentTasks)
    done: set[tuple[str, int]] = set()
    while pending := [task for task in dispatcher.sent if task not in done]:
        for kind, task_id in pending:
            done.add((kind, task_id))
            if kind == "copy":
                copying.copy_batch(ctx, task_id)
            elif kind == "verify":
                verifying.verify_run(ctx, task_id)


def test_progress_shows_then_the_writes_after_the_snapshot_are_synced_and_verified(
    ctx: WorkerContext, source: PineconeSandbox
) -> None:
    source.control.set_delays(conversion_delay_s=5.0)
    job_id = start_job(ctx, source)
    assert next_step(ctx, job_id) == "start"
    assert jobs_status.job_status(ctx.db, job_id).phase == "converting"
    # Written after the snapshot: a new record, and a changed one.
    source.load(SOURCE, "a", [record("a", 500), (lambda r: (r[0], r[1], {**r[2], "edited": True}))(record("a", 7, 5))])

    def in_progress() -> bool:
        assert next_step(ctx, job_id) == "wait"
        status = jobs_status.job_status(ctx.db, job_id)
        percent = re.fullmatch(r"converting (\d+)%", status.phase or "")
        runs = {r.source_namespace: r for r in status.runs}
        return bool(percent and 0 < int(percent[1]) < 100 and 0 < runs["a"].copied < NAMESPACES["a"])

    wait_until(in_progress, what="Pinecone's progress on the phase and the runs", timeout_s=5, interval_s=0.05)
    steps_until_converted(ctx, job_id)
    assert jobs_status.job_status(ctx.db, job_id).phase == "converted"

    events = jobs_status.events_of(ctx.db, job_id)
    syncs = {e["detail"]["namespace"]: e["detail"] for e in events if e["action"] == "sync"}
    assert (syncs["a"]["new"], syncs["a"]["changed"], syncs["a"]["to_copy"]) == (1, 1, 2)
    assert (syncs["b"]["new"], syncs["b"]["changed"]) == (0, 0)
    [converted] = [e["detail"] for e in events if e["action"] == "convert_converted"]
    assert (converted["records_converted"], converted["records_skipped"]) == (42, 0)
    run_sent_work(ctx)
    runs = {r.source_namespace: r for r in jobs_and_runs.runs_of(ctx.db, job_id)}
    assert {ns: r.state for ns, r in runs.items()} == {"a": "verified", "b": "verified"}
    assert (runs["a"].verification or {})["ids_expected"] == 31
    assert source.count(DOCS, "a") == 31 and source.count(DOCS, "b") == 12


def test_cleanup_of_the_source_waits_for_verification_and_proves_each_copy(
    ctx: WorkerContext, source: PineconeSandbox
) -> None:
    prepared = launch.prepare(
        parse_spec(spec_data(source, cleanup={"mode": "manual"})), open_retrying_store, None, open_control
    )
    job_id = jobs_and_runs.create_job(
        ctx.db, prepared.spec, prepared.plan, source_label=SOURCE, target_label=prepared.target_label
    )
    steps_until_converted(ctx, job_id)
    runs = {r.source_namespace: r.id for r in jobs_and_runs.runs_of(ctx.db, job_id)}

    early = cleaning.cleanup_run(ctx, runs["a"], actor="tester")  # converted and synced, not verified yet
    assert early["action"] == "refused" and "verified" in early["reason"]
    assert source.count(SOURCE, "a") == NAMESPACES["a"]

    run_sent_work(ctx)
    done = cleaning.cleanup_run(ctx, runs["a"], actor="tester")
    assert (done["action"], done["count"]) == ("deleted", NAMESPACES["a"])
    assert source.count(SOURCE, "a") == 0 and source.count(DOCS, "a") == NAMESPACES["a"]  # the copy stays
    assert source.count(SOURCE, "b") == NAMESPACES["b"]  # only what was asked

    # No batch row names the ids Pinecone converted, which a rollback restores from: it restored none and said
    # `rolled_back`, the copies then the only ones. It is refused, changing nothing.
    with pytest.raises(StateError, match="a rollback cannot restore them; nothing was restored or deleted"):
        rollback_job(ctx, job_id, actor="tester")
    assert source.count(SOURCE, "a") == 0 and source.count(DOCS, "a") == NAMESPACES["a"]
    assert {r.state for r in jobs_and_runs.runs_of(ctx.db, job_id)} == {"cleaned", "verified"}


def test_a_plan_below_standard_fails_the_step_with_pinecones_words_and_retry_goes_on(
    ctx: WorkerContext, source: PineconeSandbox
) -> None:
    job_id = start_job(ctx, source)
    source.control.conversions.set_plan("starter")

    failure = steps_until_it_fails(ctx, job_id)

    words = "Pinecone refused convert_index (403): Converting an index is available on the Standard and Enterprise"
    assert words in str(failure) and f"(job {job_id})" in str(failure)
    status = jobs_status.job_status(ctx.db, job_id)
    assert {r.state for r in status.runs} == {"list_failed"} and all(words in (r.last_error or "") for r in status.runs)
    assert status.phase == "converting"  # recorded before it asked: the retry goes on from there
    assert DOCS not in source.names()
    shown = [str(e) for e in jobs_status.events_of(ctx.db, job_id)] + [str(failure)]
    assert any(words in text for text in shown) and not any(KEY in text for text in shown)

    source.control.conversions.set_plan("standard")
    assert launch.retry_failed_listers(ctx.db, ctx.dispatcher, job_id) == ["a", "b"]
    steps_until_converted(ctx, job_id)
    assert source.count(DOCS) == sum(NAMESPACES.values())


def test_a_record_the_conversion_cannot_take_fails_the_job_naming_it(
    ctx: WorkerContext, source: PineconeSandbox
) -> None:
    job_id = start_job(ctx, source)  # planned before the record came: the plan's sample could not see it
    # A vector index takes a key starting with "_" (one starting with "$" it refuses); a document index refuses it.
    source.load(SOURCE, "b", [("b-bad", [1.0, 0, 0, 0], {"_weird": 1})])

    failure = steps_until_it_fails(ctx, job_id)

    assert "ended Failed: record 'b-bad' of namespace 'b' cannot be a document of the new index" in str(failure)
    assert f"delete index {DOCS} (it holds no data) to free its name, then `nsmigrate retry`" in str(failure)
    source_ids = {r.source_namespace: r.state for r in jobs_and_runs.runs_of(ctx.db, job_id)}
    assert source_ids == {"a": "list_failed", "b": "list_failed"}

    # As the error says: the failed index deleted, the record mended, the job retried.
    deleted = httpx.delete(f"{source.control_host}/indexes/{DOCS}", headers={"Api-Key": KEY}, timeout=5)
    assert deleted.status_code == 202
    source.service(SOURCE).store.delete("b", ["b-bad"])
    launch.retry_failed_listers(ctx.db, ctx.dispatcher, job_id)
    steps_until_converted(ctx, job_id)
    assert len(source.control.conversions.names()) >= 2 and source.count(DOCS, "b") == 12


def test_resume_of_a_converted_job_syncs_the_runs_that_still_owe_their_sync(
    ctx: WorkerContext, source: PineconeSandbox
) -> None:
    job_id = start_job(ctx, source)
    assert next_step(ctx, job_id) == "start"
    # The step that found the index ready stopped right after recording it (its worker killed): the runs copied,
    # none synced yet.
    jobs_conversion.converted(ctx.db, job_id, NAMESPACES)
    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, SentTasks)

    recovery.resume(ctx.db, dispatcher, job_id)

    assert dispatcher.sent[-1] == ("convert", job_id)  # the step syncs them, then sends their verification
    assert not [task for task in dispatcher.sent if task[0] == "verify"]  # not before their sync
    dispatcher.sent.clear()
    assert next_step(ctx, job_id) == "converted"
    assert sorted(kind for kind, _ in dispatcher.sent) == ["verify", "verify"]


@pytest.fixture
def plan_cli(
    database_url: str, redis_url: str, source: PineconeSandbox, tmp_path: Path
) -> Callable[[dict[str, Any]], Any]:
    def plan(data: dict[str, Any]) -> Any:
        path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.yaml"
        path.write_text(yaml.safe_dump(data))
        env = {"NSMIGRATE_DATABASE_URL": database_url, "NSMIGRATE_REDIS_URL": redis_url, "PINECONE_API_KEY": KEY}
        return CliRunner().invoke(app, ["plan", str(path)], env=env)

    return plan


def test_plan_says_whether_convert_would_do_a_fleet_copy_into_a_document_index(
    source: PineconeSandbox, plan_cli: Callable[[dict[str, Any]], Any]
) -> None:
    where = {"kind": "pinecone", "control_host": source.control_host}
    target = {**where, "index": DOCS, "documents": {"text_fields": ["chunk_text"]}, "create": {}}
    fleet = {"name": "fleet", "source": {**where, "index": SOURCE}, "target": target}

    applies = plan_cli({**fleet, "enrich": {"migrated_from": False}})
    assert applies.exit_code == 0, applies.output
    shown = " ".join(applies.stdout.split())
    assert "strategy convert applies: Pinecone copies the index itself into a new document index" in shown
    assert "Set `strategy: convert` to use it" in shown

    reshaped = plan_cli({**fleet, "routing": {"mode": "explicit", "map": {"a": "renamed-a", "b": "b"}}})
    assert reshaped.exit_code == 0, reshaped.output
    shown = " ".join(reshaped.stdout.split())
    assert "strategy convert does not apply: routing mode explicit (convert keeps every namespace's name); enrich" in (
        shown
    )

    source.load(POD, "a", [record("a", i) for i in range(5)])
    from_pod = plan_cli({**fleet, "source": {**where, "index": POD, "enumerate": {"mode": "sweep"}}})
    assert from_pod.exit_code == 0, from_pod.output
    assert f"{POD} is a pod-based index (Pinecone converts serverless indexes only)" in " ".join(
        from_pod.stdout.split()
    )
    assert DOCS not in source.names()  # a plan creates nothing


def test_plan_of_a_convert_job_refuses_what_convert_cannot_take(
    source: PineconeSandbox, plan_cli: Callable[[dict[str, Any]], Any]
) -> None:
    conversions = len(source.control.conversions.names())
    pod = plan_cli(
        {**spec_data(source), "source": {"kind": "pinecone", "index": POD, "control_host": source.control_host}}
    )
    assert pod.exit_code == 2, pod.output
    refused = " ".join(pod.stderr.split())
    assert f"strategy `convert` cannot do this job: {POD} is a pod-based index" in refused
    assert "use strategy `fleet`, which copies through the workers" in refused

    source.load(SOURCE, "a", [("a-keyed", [1.0, 0, 0, 0], {"_source": "doc-1"})])
    keyed = plan_cli(spec_data(source))
    assert keyed.exit_code == 2, keyed.output
    refused = " ".join(keyed.stderr.split())
    assert "strategy `convert` cannot take these records: 1 metadata key(s) cannot be document fields" in refused
    assert "'_source': field names starting with '_' are reserved" in refused
    assert "use strategy `fleet` and give them other names in target.documents.rename" in refused
    assert DOCS not in source.names() and len(source.control.conversions.names()) == conversions


def test_cancel_is_refused_while_pinecone_converts_and_allowed_once_it_ended(
    ctx: WorkerContext, source: PineconeSandbox, job_table_url: str, redis_url: str
) -> None:
    # Nothing stops a conversion: a job cancelled during it got its new index all the same, after it said cancelled
    # (and after an erasure that found the index empty: `erase` advises `cancel`, then erase).
    source.control.set_delays(conversion_delay_s=2.0)
    job_id = start_job(ctx, source)
    assert next_step(ctx, job_id) == "start"
    env = {"NSMIGRATE_DATABASE_URL": job_table_url, "NSMIGRATE_REDIS_URL": redis_url, "PINECONE_API_KEY": KEY}

    refused = CliRunner().invoke(app, ["cancel", str(job_id)], env=env)

    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert f"job {job_id} is converting" in said and "nothing stops that" in said and "nothing was changed" in said
    assert jobs_status.job_status(ctx.db, job_id).state != "cancelled"
    steps_until_converted(ctx, job_id)
    cancelled = CliRunner().invoke(app, ["cancel", str(job_id)], env=env)
    assert cancelled.exit_code == 0, cancelled.output
    assert jobs_status.job_status(ctx.db, job_id).state == "cancelled"


def test_a_step_that_raced_a_cancel_starts_no_conversion(ctx: WorkerContext, source: PineconeSandbox) -> None:
    # The step found its runs waiting, then `cancel` committed: entering `converting` under the job's lock (the one
    # `cancel` takes) refuses, so no conversion starts after the job said cancelled.
    job_id = start_job(ctx, source)
    jobs_and_runs.cancel_job(ctx.db, job_id)

    with pytest.raises(StopAsked):
        jobs_conversion.converting(ctx.db, job_id, source=SOURCE, index=DOCS)

    assert jobs_status.job_status(ctx.db, job_id).phase is None
    assert DOCS not in source.names()

"""Verification and cleanup against a local data plane whose reads lag its writes (``Faults.freshness_lag_s``), called
directly on real services (a ``WorkerContext`` over real Postgres and Redis, the Pinecone store over HTTP): the copy
is a real copy batch, which records its writes' log sequence numbers; verification waits until the target's reads
reflect them before it believes a listing or a count (``workers.steps.freshness``), and cleanup until the source's
reads reflect its deletes before it concludes anything from its last listing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning, freshness, rollback, syncing, verifying
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.fleet_jobs import copied_by_one_batch
from tests.integration.test_verify_cleanup import RecordingDispatcher, make_records

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_LAG_PINECONE_KEY"
LAG_S = 4.0


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("lag-src", DIM), IndexSpec("lag-dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


def lag_spec(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, **verify: Any) -> JobSpec:
    monkeypatch.setenv(KEY_ENV, "pcsk-lag-test")
    store = {"kind": "pinecone", "api_key_env": KEY_ENV}
    return parse_spec(
        {
            "name": "lag-test",
            "source": {**store, "host": sandbox.host("lag-src")},
            "target": {**store, "host": sandbox.host("lag-dst")},
            # A count poll shorter than the lag: only the wait for the reads can make the count agree.
            "verify": {"count_timeout_s": 0.5, "query_samples": 5, "top_k": 3, **verify},
            "cleanup": {"mode": "manual"},
        }
    )


def copy_namespace(ctx: WorkerContext, spec: JobSpec, sandbox: PineconeSandbox, records: list[Record]) -> int:
    """The source namespace ``alpha`` copied by one real copy batch; returns the run's id."""
    return copied_by_one_batch(ctx, spec, sandbox, "lag-src", "alpha", records)


def test_verification_waits_for_the_targets_reads_by_the_copys_lsn(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=LAG_S))
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(30))
    assert sandbox.service("lag-dst").store.counts() == {}  # nothing listed or counted yet: the copy lags

    report = verifying.verify_run(ctx, run_id)

    assert report["passed"], report["reasons"]
    assert report["target_count"] == 30 and report["query"]["same_top_k"] == 5
    reads = report["reads"]["alpha"]
    assert reads["by"] == "lsn" and reads["caught_up"] and reads["lsn"] == reads["reconciled"] == 1
    assert reads["waited_s"] > 0
    assert jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFIED


def test_the_read_that_shows_the_copys_lsn_is_the_listing_extras_are_judged_from(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A namespace that fits one list page is listed once by its verification: the page read for its LSN, which
    already reflects the copy, holds the ids an extra is judged from (here one the application wrote since)."""
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch, query_samples=0), sandbox, make_records(30))
    sandbox.settle("lag-dst")  # the copy reflected by the first read
    sandbox.load("lag-dst", "alpha", [("written-since", [0.5] * DIM, {"by": "the application"})])
    lists_before = sandbox.stats("lag-dst")["requests"].get("list", 0)

    report = verifying.verify_run(ctx, run_id)

    assert report["reads"]["alpha"]["by"] == "lsn" and report["reads"]["alpha"]["caught_up"]
    assert report["extra_ids"] == ["written-since"] and not report["passed"]
    assert sandbox.stats("lag-dst")["requests"]["list"] - lists_before == 1


@pytest.mark.parametrize("lsns", ["skipping", "none"])
def test_verification_waits_for_reads_that_tell_no_usable_lsn_by_what_they_show(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, lsns: str
) -> None:
    """LSNs that skip still order writes (the wait is by LSN); a server that sends none is polled until its
    listing and count show the copy."""
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=LAG_S, lsns=lsns))
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(30))

    report = verifying.verify_run(ctx, run_id)

    assert report["passed"], report["reasons"]
    reads = report["reads"]["alpha"]
    assert reads["caught_up"] and reads["waited_s"] > 0
    assert reads["by"] == ("lsn" if lsns == "skipping" else "polling"), reads
    assert jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFIED


def test_reads_that_never_catch_up_fail_after_the_bounded_wait_the_report_names(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=600))
    spec = lag_spec(sandbox, monkeypatch, freshness_timeout_s=1)
    run_id = copy_namespace(ctx, spec, sandbox, make_records(10))

    report = verifying.verify_run(ctx, run_id)

    assert not report["passed"]
    assert report["reasons"][0] == (
        "reads of target namespace 'alpha' had not caught up with the job's writes after 1 s (LSN 0 of 1; "
        "verify.freshness_timeout_s)"
    )
    assert report["reads"]["alpha"] == {
        "by": "lsn",
        "caught_up": False,
        "waited_s": pytest.approx(1, abs=0.5),
        "lsn": 1,
        "reconciled": 0,
        "timeout_s": 1,
    }
    assert jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFY_FAILED


def test_a_namespace_made_again_is_waited_for_by_its_new_log_not_the_old_one(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = lag_spec(sandbox, monkeypatch, freshness_timeout_s=2)
    target = ctx.store(spec.target)
    for record in make_records(5):  # this process's writes to `alpha` reach LSN 5 ...
        target.upsert("alpha", [record])
    sandbox.service("lag-dst").store.clear()  # ... then the namespace is gone, and a new one starts a new log
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=1.0))
    run_id = copy_namespace(ctx, spec, sandbox, make_records(10))

    report = verifying.verify_run(ctx, run_id)

    assert report["passed"], report["reasons"]
    assert report["reads"]["alpha"]["lsn"] == 1  # the copy's own write, not LSN 5 of the old log


def verified_run(ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> int:
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(20))
    assert verifying.verify_run(ctx, run_id)["passed"]
    return run_id


def test_verification_lists_the_source_once_its_reads_show_the_applications_last_write(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application writes the source right after the copy: the source's listing lags and would not show the new
    id, and a verification on its word would pass with the id never copied. It lists once the source's reads show
    every write made before it (an LSN probe), so the id is counted and found missing in the target."""
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(20))
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S))
    [late] = make_records(1, prefix="late")
    ctx.store(lag_spec(sandbox, monkeypatch).source).upsert("alpha", [late])

    report = verifying.verify_run(ctx, run_id)

    assert not report["passed"] and report["source_count"] == 21, report
    assert jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFY_FAILED


def test_a_sync_right_after_the_applications_write_copies_it(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A final sync before a cut-over, moments after the application's last write to the source: the scan's listing
    would not show that write yet, and the cut-over would leave it behind. The scan lists once the source's reads
    show it."""
    run_id = verified_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S))
    [late] = make_records(1, prefix="late")
    ctx.store(lag_spec(sandbox, monkeypatch).source).upsert("alpha", [late])

    result = syncing.sync_run(ctx, run_id, actor="tester")

    assert result["action"] == "synced" and result["new"] == 1 and result["batches"] == 1, result


def test_cleanup_drops_the_namespace_it_emptied_once_the_sources_reads_show_it(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = verified_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S))

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "deleted" and result["count"] == 20
    assert jobs_and_runs.get_run(ctx.db, run_id).cleanup["method"] == "delete_namespace"  # type: ignore[index]
    assert sandbox.count("lag-src", "alpha") == 0 and sandbox.count("lag-dst", "alpha") == 20


def test_a_small_namespace_is_listed_three_times_by_its_cleanup(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once to find it unchanged since verification; once for its deletes' LSN, a page that, holding the whole
    namespace with the LSN it reflects, is the listing the LSN probe (a delete of no vector) then shows complete; and
    once, for one id, right before the drop."""
    run_id = verified_run(ctx, sandbox, monkeypatch)
    # Reads that show each delete at once: the listings counted are the cleanup's own, none of a wait for the lag.
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=0))
    run = jobs_and_runs.get_run(ctx.db, run_id)
    # Source and target proved two indexes first (a worker keeps a job's proof): its marker's requests not counted.
    assert cleaning.shape_problem(ctx, jobs_and_runs.job_spec(ctx.db, run.job_id), run) is None
    before = Counter(sandbox.stats("lag-src")["requests"])

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "deleted" and result["count"] == 20, result
    assert jobs_and_runs.get_run(ctx.db, run_id).cleanup["method"] == "delete_namespace"  # type: ignore[index]
    sent = Counter(sandbox.stats("lag-src")["requests"]) - before
    assert sent["list"] == 3, sent


def test_a_write_the_sources_lagging_listing_hid_is_found_before_the_run_is_called_cleaned(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application writes the source just before the cleanup: its first listing (lagging) does not show the new
    id, so the source looks unchanged and the proven ids are deleted. Its last listing, taken once the source's reads
    reflect those deletes (and so the write before them), finds the new id without a copy: the run goes back to
    ``verify_failed`` for sync, the id kept, instead of a run called cleaned with an id stranded in its source."""
    run_id = verified_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S))
    new = make_records(1, prefix="late")[0]
    ctx.store(lag_spec(sandbox, monkeypatch).source).upsert("alpha", [new])

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "refused" and result["count"] == 20, result
    assert result["refused_ids"] == [new.id]
    assert "written to the source during the cleanup" in result["reason"]
    run = jobs_and_runs.get_run(ctx.db, run_id)
    assert run.state == RunState.VERIFY_FAILED
    assert [r.id for r in ctx.store(lag_spec(sandbox, monkeypatch).source).fetch("alpha", [new.id])] == [new.id]


def test_a_write_the_last_lagging_listing_hid_is_not_dropped_with_the_emptied_namespace(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application writes the source once the cleanup's deletes show in its reads, before the listing that
    would find the namespace empty. That listing lags: the new id is not in it for ``LAG_S`` seconds, not an instant.
    Dropping the namespace on its word would delete an id that has no copy; the id must be found and kept instead
    (the run back to ``verify_failed`` for sync, as for a write made during the deletes)."""
    run_id = verified_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S))
    source = ctx.store(lag_spec(sandbox, monkeypatch).source)
    new = make_records(1, prefix="late")[0]
    await_reads = freshness.await_reads
    written: list[str] = []

    def the_application_writes_once_the_deletes_show(*args: Any, **kwargs: Any) -> freshness.ReadsWait:
        wait = await_reads(*args, **kwargs)
        if not written:
            source.upsert("alpha", [new])
            written.append(new.id)
        return wait

    monkeypatch.setattr(freshness, "await_reads", the_application_writes_once_the_deletes_show)

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert [r.id for r in source.fetch("alpha", [new.id])] == [new.id]  # no copy: never deleted
    assert result["action"] == "refused" and result["count"] == 20, result  # nor stranded in a cleaned run
    assert result["refused_ids"] == [new.id]
    assert jobs_and_runs.get_run(ctx.db, run_id).state == RunState.VERIFY_FAILED
    assert sandbox.count("lag-dst", "alpha") == 20


def test_a_rollback_right_after_the_copy_removes_the_copies_its_lagging_listing_did_not_show_yet(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback lists each target namespace to tell this job's copies from others' writes: listed before the
    target's reads show the copies, it would find none to delete and call the job rolled back, every copy left."""
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=LAG_S))
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(12))

    result = rollback_job(ctx, jobs_and_runs.get_run(ctx.db, run_id).job_id, actor="tester")

    assert result["action"] == "rolled_back", result
    assert sandbox.count("lag-dst", "alpha") == 0 and sandbox.count("lag-src", "alpha") == 12


def test_a_write_the_rollbacks_last_lagging_listing_hid_is_not_dropped_with_the_emptied_target(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application writes the target (dual writes, or a cut-over) once the rollback's deletes show in its reads,
    before the listing that would find the namespace empty. That listing lags: the new id is not in it for ``LAG_S``
    seconds. It is no copy of this job's and has no original: dropping the namespace would delete its only copy. It
    must be found and kept instead (reported as another writer's)."""
    spec = lag_spec(sandbox, monkeypatch)
    run_id = copy_namespace(ctx, spec, sandbox, make_records(12))
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=LAG_S))
    target = ctx.store(spec.target)
    new = make_records(1, prefix="late")[0]
    delete_proven = rollback.delete_proven

    def the_application_writes_once_the_deletes_show(*args: Any, **kwargs: Any) -> Any:
        proof = delete_proven(*args, **kwargs)
        gone = set(proof.proven)
        wait = freshness.await_reads(
            target, "alpha", lsn=None, shows=lambda: gone.isdisjoint(target.list_ids("alpha").ids), timeout_s=30
        )
        assert wait.caught_up
        target.upsert("alpha", [new])
        return proof

    monkeypatch.setattr(rollback, "delete_proven", the_application_writes_once_the_deletes_show)

    result = rollback_job(ctx, jobs_and_runs.get_run(ctx.db, run_id).job_id, actor="tester")

    assert [r.id for r in target.fetch("alpha", [new.id])] == [new.id]  # its only copy: never deleted
    assert result["action"] == "rolled_back", result
    done = result["namespaces"]["alpha"]
    assert done["method"] == "delete_ids" and done["deleted"] == 12
    assert done["kept"] == 1 and done["kept_examples"] == [new.id]  # reported as another writer's
    assert sandbox.count("lag-src", "alpha") == 12


def drops_recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The namespaces a step asks to drop, from now on (the sandbox drops an emptied namespace by itself, as
    Pinecone may: the request is what tells)."""
    dropped: list[str] = []
    drop = GuardedStore.delete_namespace_if_empty

    def recorded(self: GuardedStore, namespace: str) -> bool:
        dropped.append(namespace)
        return drop(self, namespace)

    monkeypatch.setattr(GuardedStore, "delete_namespace_if_empty", recorded)
    return dropped


@pytest.mark.parametrize("lsns", ["skipping", "none"])
def test_where_no_listing_can_be_shown_complete_cleanup_empties_the_namespace_and_leaves_it(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, lsns: str
) -> None:
    """LSNs that skip (or none at all) cannot show that nothing was written between the last listing and the drop:
    the source is emptied id by id, proven as always, and the namespace stays, saying why."""
    run_id = verified_run(ctx, sandbox, monkeypatch)
    sandbox.set_faults("lag-src", Faults(freshness_lag_s=LAG_S, lsns=lsns))
    dropped = drops_recorded(monkeypatch)

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "deleted" and result["count"] == 20, result
    cleanup = jobs_and_runs.get_run(ctx.db, run_id).cleanup
    assert cleanup is not None and cleanup["method"] == "delete_ids"
    assert cleanup["namespace_left"] == freshness.LEFT_IN_PLACE
    assert sandbox.snapshot("lag-src").get("alpha", {}) == {}
    assert dropped == []
    assert sandbox.count("lag-dst", "alpha") == 20


@pytest.mark.parametrize("lsns", ["skipping", "none"])
def test_where_no_listing_can_be_shown_complete_rollback_empties_the_target_and_leaves_it(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, lsns: str
) -> None:
    run_id = copy_namespace(ctx, lag_spec(sandbox, monkeypatch), sandbox, make_records(12))
    sandbox.set_faults("lag-dst", Faults(freshness_lag_s=LAG_S, lsns=lsns))
    dropped = drops_recorded(monkeypatch)

    result = rollback_job(ctx, jobs_and_runs.get_run(ctx.db, run_id).job_id, actor="tester")

    assert result["action"] == "rolled_back", result
    done = result["namespaces"]["alpha"]
    assert done["method"] == "delete_ids" and done["deleted"] == 12 and done["kept"] == 0
    assert done["namespace_left"] == freshness.LEFT_IN_PLACE
    assert sandbox.snapshot("lag-dst").get("alpha", {}) == {} and sandbox.count("lag-src", "alpha") == 12
    assert dropped == []

"""Pod indexes as they really are: they cannot list ids, so a job names how its source's ids are found (a catalogue
or a sweep), the plan refuses `list` on a pod and says what each way costs, and verification fails a namespace the
enumeration could not cover. Real `nsmigrate worker` processes, the real SDK against the local data plane."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from pinecone import ApiError, Pinecone, SparseValues, Vector

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.listing.paging import id_pages, iter_all_ids
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import Enumeration, IdCatalogue, PineconeStoreSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.postgrest import PostgrestStandIn
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.polling import wait_for_job

DIM = 8
SIZES = {"": 40, "alpha": 120, "beta": 7}  # the default namespace too


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec("legacy-pod", DIM, "cosine", kind="pod"),
        IndexSpec("fresh", DIM, "cosine"),
        # Sparse values (hybrid search) live only in dotproduct indexes.
        IndexSpec("hybrid-pod", DIM, "dotproduct", kind="pod"),
        IndexSpec("hybrid", DIM, "dotproduct"),
    ]


@pytest.fixture(scope="module")
def fleet(module_stack: Stack) -> Stack:
    """One worker for every queue, started once for the module's tests (each runs its own jobs; the pool is not
    what they test)."""
    module_stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    return module_stack


@pytest.fixture
def stack(fleet: Stack, shared_stack: Stack) -> Stack:
    """The module's stack and its worker, the data plane emptied for this test."""
    return shared_stack


def load_pod(sandbox: PineconeSandbox, sizes: dict[str, int] = SIZES) -> dict[str, list[str]]:
    rng = np.random.default_rng(5)
    loaded = {}
    for ns, n in sizes.items():
        ids = [f"{ns or 'd'}#chunk-{i:03d}" for i in range(n)]
        sandbox.load(
            "legacy-pod", ns, [(i, rng.normal(size=DIM).tolist(), {"i": k, "ns": ns}) for k, i in enumerate(ids)]
        )
        loaded[ns] = ids
    return loaded


def write_catalogue(path: Path, loaded: dict[str, list[str]]) -> Path:
    rows = ["namespace,id", "# the app's chunk table, exported"]
    rows += [f"{ns or '__default__'},{i}" for ns, ids in loaded.items() for i in ids]
    path.write_text("\n".join(rows) + "\n")
    return path


def pod_spec(sandbox: PineconeSandbox, enumerate_: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "pod-to-serverless",
        "source": {
            "kind": "pinecone",
            "index": "legacy-pod",
            "control_host": sandbox.control_host,
            "enumerate": enumerate_,
        },
        "target": {"kind": "pinecone", "index": "fresh", "control_host": sandbox.control_host},
        "enrich": {"creator_fields": False, "migrated_from": False},
        "batch_size": 25,
    }
    spec.update(overrides)
    return spec


def all_verified(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def run_job(stack: Stack, spec_data: dict[str, Any], timeout_s: float = 120) -> JobStatus:
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    try:
        prepared = launch.prepare(parse_spec(spec_data), open_retrying_store, stack.workdir)
        job_id = launch.launch(db, Dispatcher(settings), prepared)
        return wait_for_job(db, job_id, all_verified, timeout_s=timeout_s)
    finally:
        db.dispose()


def assert_same_contents(sandbox: PineconeSandbox, namespaces: list[str]) -> None:
    source, target = sandbox.snapshot("legacy-pod"), sandbox.snapshot("fresh")
    for ns in namespaces:
        assert set(target[ns]) == set(source[ns]), ns
        for vid, (values, metadata) in source[ns].items():
            np.testing.assert_array_equal(target[ns][vid][0], values)
            assert target[ns][vid][1] == metadata


def test_the_plan_refuses_listing_a_pod_and_says_what_to_use(stack: Stack) -> None:
    load_pod(stack.pinecone)
    spec = parse_spec(pod_spec(stack.pinecone, {"mode": "list"}))

    with pytest.raises(PlanError) as refused:
        launch.prepare(spec, open_retrying_store)

    message = str(refused.value)
    assert "legacy-pod is a pod-based index" in message and "only for serverless" in message
    assert "source.enumerate.mode" in message and "catalogue" in message and "sweep" in message
    assert stack.pinecone.count("fresh") == 0


def test_the_plan_says_how_each_namespace_is_enumerated_and_what_a_sweep_costs(stack: Stack) -> None:
    load_pod(stack.pinecone)
    spec = parse_spec(pod_spec(stack.pinecone, {"mode": "sweep", "top_k": 50, "max_queries": 2}))

    plan = launch.prepare(spec, open_retrying_store).plan

    by_ns = {r.source_namespace: r for r in plan.runs}
    assert {r.enumeration for r in plan.runs} == {"sweep"}
    assert by_ns["beta"].sweep_queries == (1, 1)  # 7 ids: one query returns them all
    assert by_ns[""].sweep_queries == (1, 1)
    assert by_ns["alpha"].sweep_queries == (3, 2)  # 120 ids need ≥ 3 queries of 50; the budget allows 2
    assert plan.estimate.list_requests == 0 and plan.estimate.sweep_queries == (5, 4)
    assert any("cannot be covered" in w and "alpha" in w for w in plan.warnings)
    assert any("pod-based index, billed by the hour" in w for w in plan.warnings)


def test_pod_to_serverless_by_catalogue_ends_verified_with_equal_contents(stack: Stack) -> None:
    loaded = load_pod(stack.pinecone)
    catalogue = write_catalogue(stack.workdir / "chunk-ids.csv", loaded)

    status = run_job(
        stack, pod_spec(stack.pinecone, {"mode": "catalogue", "catalogue": {"source": "file", "path": catalogue.name}})
    )

    assert [r.state for r in status.runs] == [RunState.VERIFIED] * 3, [r.last_error for r in status.runs]
    assert status.totals.copied == sum(SIZES.values())
    assert_same_contents(stack.pinecone, list(SIZES))
    assert stack.pinecone.stats("legacy-pod")["requests"].get("list", 0) == 0  # never asked a pod to list


def test_pod_to_serverless_by_sweep_ends_verified_with_equal_contents(stack: Stack) -> None:
    load_pod(stack.pinecone)

    # top_k 50 < 120: the namespace `alpha` takes several queries with different random vectors.
    status = run_job(stack, pod_spec(stack.pinecone, {"mode": "sweep", "top_k": 50, "max_queries": 40}))

    assert [r.state for r in status.runs] == [RunState.VERIFIED] * 3, [r.last_error for r in status.runs]
    assert_same_contents(stack.pinecone, list(SIZES))
    requests = stack.pinecone.stats("legacy-pod")["requests"]
    assert requests.get("list", 0) == 0 and requests["query"] >= 3


def test_a_sweep_that_cannot_cover_a_namespace_fails_its_verification(stack: Stack) -> None:
    load_pod(stack.pinecone)

    # 2 queries of 50 ids can never return the 120 ids of `alpha`.
    status = run_job(stack, pod_spec(stack.pinecone, {"mode": "sweep", "top_k": 50, "max_queries": 2}))

    states = {r.source_namespace: r.state for r in status.runs}
    assert states == {"": RunState.VERIFIED, "alpha": RunState.VERIFY_FAILED, "beta": RunState.VERIFIED}
    db = jobs_database.Database(stack.database_url)
    try:
        alpha = next(r for r in jobs_and_runs.runs_of(db, status.job_id) if r.source_namespace == "alpha")
    finally:
        db.dispose()
    report = alpha.verification or {}
    assert report["passed"] is False
    assert report["enumeration"] == "sweep" and report["source_stats_count"] == 120
    assert report["source_count"] < 120
    assert any("were never enumerated" in reason and "max_queries" in reason for reason in report["reasons"])
    assert stack.pinecone.count("fresh", "alpha") == report["source_count"]  # what it found was copied, no more


@pytest.mark.parametrize("where", ["postgres", "supabase"])
def test_a_catalogue_table_is_paged_in_full_through_the_store(
    where: str,
    sandbox: PineconeSandbox,
    database_url: str,
    start_standin: Callable[..., PostgrestStandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ids of a Postgres table, or of a Supabase table through the real ``supabase`` client (with the server
    sending fewer rows than asked, as PostgREST's max-rows does), come out whole and in order as ``list_ids`` pages,
    the default namespace written ``__default__``; other namespaces' rows stay out."""
    ids = {"": [f"d-{i:03d}" for i in range(130)], "alpha": [f"a-{i:03d}" for i in range(250)]}
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE chunks (ns text NOT NULL, chunk_id text PRIMARY KEY)"))
        rows = [{"ns": ns or "__default__", "id": i} for ns, values in ids.items() for i in reversed(values)]
        conn.execute(sa.text("INSERT INTO chunks (ns, chunk_id) VALUES (:ns, :id)"), rows)
    engine.dispose()
    catalogue: dict[str, Any] = {"source": where, "table": "chunks", "namespace_column": "ns", "id_column": "chunk_id"}
    if where == "postgres":
        monkeypatch.setenv("CHUNKS_DB_URL", database_url)
        catalogue["database_url_env"] = "CHUNKS_DB_URL"
    else:
        server = start_standin(database_url, "service-key", max_rows=30)
        monkeypatch.setenv("CHUNKS_SUPABASE_URL", server.url)
        monkeypatch.setenv("CHUNKS_SUPABASE_KEY", "service-key")
        catalogue.update(url_env="CHUNKS_SUPABASE_URL", key_env="CHUNKS_SUPABASE_KEY")
    monkeypatch.setenv("PINECONE_API_KEY", "test-key")
    spec = PineconeStoreSpec(
        index="legacy-pod",
        control_host=sandbox.control_host,
        enumerate=Enumeration(mode="catalogue", catalogue=IdCatalogue(**catalogue)),
    )
    store = open_retrying_store(spec)
    try:
        for ns, values in ids.items():
            pages = list(id_pages(store, ns))
            assert [i for page in pages for i in page.ids] == values
            assert len(pages) >= len(values) // 100  # ≤ 100 ids a page
        assert list(iter_all_ids(store, "nowhere")) == []
    finally:
        store.close()
    assert sandbox.stats("legacy-pod")["requests"].get("list", 0) == 0


def test_sparse_values_are_copied_and_verified(stack: Stack) -> None:
    """A pod's hybrid records (dense + sparse values) arrive whole in the serverless target, and verification compares
    the sparse values too: a target whose sparse values differ fails it."""
    source = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("hybrid-pod"))
    rng = np.random.default_rng(9)
    sparse = {
        f"doc-{k}": SparseValues(
            indices=sorted(rng.choice(30_000, size=5, replace=False).tolist()), values=rng.random(5).tolist()
        )
        for k in range(30)
    }
    source.upsert(
        vectors=[Vector(id=i, values=rng.normal(size=DIM).tolist(), sparse_values=sv) for i, sv in sparse.items()]
        + [Vector(id="dense-only", values=[1.0] * DIM)],
        namespace="docs",
    )
    stack.pinecone.settle("hybrid-pod")  # written long before the job: its stats show the namespace
    spec = pod_spec(stack.pinecone, {"mode": "sweep"})
    spec["source"]["index"], spec["target"]["index"] = "hybrid-pod", "hybrid"

    status = run_job(stack, spec)

    assert [r.state for r in status.runs] == [RunState.VERIFIED], [r.last_error for r in status.runs]
    target = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("hybrid"))
    fetched = target.fetch(ids=[*sparse, "dense-only"], namespace="docs").vectors
    for vid, sv in sparse.items():
        assert fetched[vid].sparse_values is not None, vid
        assert fetched[vid].sparse_values.indices == sv.indices
        np.testing.assert_allclose(fetched[vid].sparse_values.values, sv.values, rtol=1e-6)
    assert fetched["dense-only"].sparse_values is None

    # The target's sparse values changed behind the job's back: verification says so.
    target.update(id="doc-3", sparse_values=SparseValues(indices=[1, 2], values=[0.5, 0.5]), namespace="docs")
    db = jobs_database.Database(stack.database_url)
    try:
        launch.request_verification(
            db, Dispatcher(Settings(database_url=stack.database_url, redis_url=stack.redis_url)), status.job_id
        )
        failed = wait_for_job(db, status.job_id, lambda s: s.runs[0].state == RunState.VERIFY_FAILED)
        report = jobs_and_runs.runs_of(db, failed.job_id)[0].verification or {}
    finally:
        db.dispose()
    assert report["content_mismatch_count"] == 1
    assert report["content_mismatches"][0]["id"] == "doc-3" and "sparse" in report["content_mismatches"][0]["reason"]


def test_sparse_values_are_refused_where_they_cannot_be_kept(sandbox: PineconeSandbox) -> None:
    """As Pinecone does, a cosine index refuses sparse values (400, its message), so nothing is kept by halves."""
    index = Pinecone(api_key="test-key").Index(host=sandbox.host("fresh"))
    with pytest.raises(ApiError) as refused:
        index.upsert(
            vectors=[Vector(id="a", values=[1.0] * DIM, sparse_values=SparseValues(indices=[1], values=[1.0]))]
        )
    assert refused.value.status_code == 400
    assert "Index configuration does not support sparse values" in str(refused.value)
    assert sandbox.count("fresh") == 0


def test_a_final_sync_of_a_pod_source_sweeps_again_and_copies_what_was_written_since(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    """The cut-over's last step on a pod: writes made during the copy (dual-write) are found by the same enumeration,
    afresh (a new sweep, not the one the copy made), copied, and the namespace verifies again."""
    load_pod(stack.pinecone)
    status = run_job(stack, pod_spec(stack.pinecone, {"mode": "sweep", "top_k": 50, "max_queries": 40}))
    assert [r.state for r in status.runs] == [RunState.VERIFIED] * 3

    pod = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("legacy-pod"))
    pod.upsert(
        vectors=[("alpha#late-1", [0.5] * DIM, {"late": True}), ("alpha#late-2", [-0.5] * DIM)], namespace="alpha"
    )
    pod.update(id="beta#chunk-003", set_metadata={"edited": True}, namespace="beta")
    # Written during the copy, before the application stopped: a pod tells no LSN, so a sweep sees them once
    # its queries do (a sync sooner than the lag misses them; cleanup's proof would still refuse to delete).
    stack.pinecone.settle("legacy-pod")
    ctx = worker_context(stack.database_url, stack.redis_url)
    results = {
        r.source_namespace: sync_run(ctx, r.id, actor="tester") for r in jobs_and_runs.runs_of(ctx.db, status.job_id)
    }

    assert (results["alpha"]["new"], results["alpha"]["changed"]) == (2, 0)
    assert (results["beta"]["new"], results["beta"]["changed"]) == (0, 1)
    assert results[""]["to_copy"] == 0
    synced = wait_for_job(ctx.db, status.job_id, lambda s: all(r.state == RunState.VERIFIED for r in s.runs))
    assert all(r.verified_ok for r in synced.runs)
    assert_same_contents(stack.pinecone, list(SIZES))
    assert stack.pinecone.stats("legacy-pod")["requests"].get("list", 0) == 0


def test_a_catalogue_that_does_not_match_the_pod_fails_verification_naming_why(stack: Stack) -> None:
    """Catalogue ids feed the ID-set check: rows missing from the catalogue (the pod holds more than it lists) and
    rows the pod does not have (stale) each fail their namespace, never a silent pass."""
    loaded = load_pod(stack.pinecone)
    rows = {"": loaded[""], "alpha": loaded["alpha"][:-5], "beta": [*loaded["beta"], "beta#gone-1", "beta#gone-2"]}
    catalogue = write_catalogue(stack.workdir / "chunk-ids.csv", rows)

    status = run_job(
        stack, pod_spec(stack.pinecone, {"mode": "catalogue", "catalogue": {"source": "file", "path": str(catalogue)}})
    )

    states = {r.source_namespace: r.state for r in status.runs}
    assert states == {"": RunState.VERIFIED, "alpha": RunState.VERIFY_FAILED, "beta": RunState.VERIFY_FAILED}
    db = jobs_database.Database(stack.database_url)
    try:
        reports = {r.source_namespace: r.verification or {} for r in jobs_and_runs.runs_of(db, status.job_id)}
    finally:
        db.dispose()
    assert reports["alpha"]["source_stats_count"] == 120 and reports["alpha"]["source_count"] == 115
    assert any("found 115 of the 120 ids" in reason for reason in reports["alpha"]["reasons"])
    assert any("2 catalogue ids are not in the source" in reason for reason in reports["beta"]["reasons"])
    assert stack.pinecone.count("fresh", "beta") == SIZES["beta"]  # the stale rows copied nothing

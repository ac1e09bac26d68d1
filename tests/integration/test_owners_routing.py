"""Seed 000's owners table and seed 002's orphans (issue 44, item 5): a default-namespace vector without creator or
twin metadata is looked up by its vector id in a Supabase table (the real ``supabase`` client against the PostgREST
stand-in over real Postgres, paged) before it falls to the last resort; with the real twin → creator mapping,
``routing.unresolved: creator`` files what is left under the creator given (``sainath.no.1``), and the plan says
how many go where and why. Then the copy task writes them there (real Pinecone SDK against the local data plane),
the run verifies, and an erasure of an owner finds their vector in the source's default namespace by its id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.planning.summary import summarize
from nsmigrate.orchestrator.spec.jobspec import OwnerTable, parse_spec
from nsmigrate.orchestrator.tenancy.creator_mapping import load_owners
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, erasing, verifying
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.postgrest import PostgrestStandIn
from tests.integration.test_erasure_and_copies import Dispatcher
from tests.settling import settle

DIM = 4
KEY = "sandbox-service-key"
URL_ENV, KEY_ENV, PINECONE_KEY_ENV = "NSM_TEST_OWNERS_URL", "NSM_TEST_OWNERS_KEY", "NSMIGRATE_TEST_OWNERS_PINECONE_KEY"
OWNERS = OwnerTable(url_env=URL_ENV, key_env=KEY_ENV, table="vector_owners", twin_column="twin_id")
#: The default namespace: by metadata (twin, creator), by the owners table (with a twin, creator only), and one
#: that no route resolves.
DEFAULT = {
    "by-twin": {"twin_id": "t1"},
    "by-creator": {"creator_id": "a.10"},
    "bare-twin": {},
    "bare-creator": {"text": "no ids"},
    "orphan": {},
}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


def owners_table(database_url: str, rows: list[tuple[str, str | None, str | None]]) -> None:
    """``vector_owners (vector_id, creator_id, twin_id)`` in the stand-in's database, as the application keeps it."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE vector_owners (vector_id text PRIMARY KEY, creator_id text, twin_id text, note text)")
        )
        conn.execute(
            sa.text("INSERT INTO vector_owners VALUES (:v, :c, :t, 'filed by the application')"),
            [{"v": v, "c": c, "t": t} for v, c, t in rows],
        )
    engine.dispose()


@pytest.fixture
def standin(
    database_url: str, start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch
) -> Callable[[int], PostgrestStandIn]:
    def serve(max_rows: int = 1000) -> PostgrestStandIn:
        server = start_standin(database_url, KEY, max_rows=max_rows)
        monkeypatch.setenv(URL_ENV, server.url)
        monkeypatch.setenv(KEY_ENV, KEY)
        return server

    return serve


def test_the_owners_table_is_read_whole_through_the_supabase_client_across_pages(
    database_url: str, standin: Callable[[int], PostgrestStandIn]
) -> None:
    rows = [(f"v-{i:04d}", ("a.1", "a.10")[i % 2], f"t{i % 3}" if i % 5 else None) for i in range(700)]
    owners_table(database_url, [*rows, ("v-nobody", None, "t1")])
    standin(300)  # the server sends 300 rows a page: a short page is not the last one

    owners = load_owners(OWNERS)

    assert owners == {v: (c, t) for v, c, t in rows}  # the row without a creator is left out
    assert load_owners(OWNERS.model_copy(update={"twin_column": None}))["v-0001"] == ("a.10", None)
    with pytest.raises(SpecError, match="no_such_table"):
        load_owners(OWNERS.model_copy(update={"table": "no_such_table"}))


def test_vectors_without_metadata_are_filed_by_their_owner_row_then_under_the_creator_given(
    ctx: WorkerContext,
    sandbox: PineconeSandbox,
    database_url: str,
    standin: Callable[[int], PostgrestStandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owners_table(database_url, [("bare-twin", "a.1", "t1"), ("bare-creator", "a.10", None)])
    standin(1000)
    monkeypatch.setenv(PINECONE_KEY_ENV, "pcsk-owners-test")
    sandbox.load("src", "", [(vid, [0.1, 0.2, 0.3, i + 1.0], meta) for i, (vid, meta) in enumerate(DEFAULT.items())])
    spec = parse_spec(
        {
            "name": "owners",
            "source": {"kind": "pinecone", "host": sandbox.host("src"), "api_key_env": PINECONE_KEY_ENV},
            "target": {"kind": "pinecone", "host": sandbox.host("dst"), "api_key_env": PINECONE_KEY_ENV},
            "routing": {
                "mode": "creator",
                "creators": {"source": "inline", "twins": {"t1": "a.1", "t10": "a.10"}},
                "owners": OWNERS.model_dump(),
                "unresolved": "creator",
                "unresolved_creator": "sainath.no.1",
            },
            "cleanup": {"mode": "manual"},
            "verify": {"count_timeout_s": 5},
        }
    )

    prepared = launch.prepare(spec, open_retrying_store)

    assert prepared.plan.routes == {"": {"twin_id": 1, "creator_id": 1, "owner": 2, "unresolved_creator": 1}}
    shown = "\n".join(summarize(prepared).lines + summarize(prepared).warnings)
    assert "owner 2: no twin_id, creator_id or sources key; their vector ids are rows of the owners table" in shown
    assert "unresolved_creator 1: resolved by no route" in shown and "'creator_sainath.no.1'" in shown
    assert "else its vector id in the owners table 'vector_owners' (2 rows)" in shown

    job_id = jobs_and_runs.create_job(ctx.db, spec, prepared.plan, source_label="src", target_label="dst")
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    assert jobs_pages.start_listing(ctx.db, run.id) is not None
    [batch] = jobs_pages.add_batches(ctx.db, run.id, [sorted(DEFAULT)], None, listing_done=True).batch_ids
    assert copying.copy_batch(ctx, batch) == 5

    settle(spec.target)  # the namespaces' list lags the copy's writes
    target = ctx.store(spec.target)
    landed = {ns: sorted(r.id for r in target.fetch(ns, sorted(DEFAULT))) for ns in target.namespaces()}
    assert landed == {
        "creator_a.1_twin_t1": ["bare-twin", "by-twin"],
        "creator_a.10": ["bare-creator", "by-creator"],
        "creator_sainath.no.1": ["orphan"],
    }
    [bare] = target.fetch("creator_a.1_twin_t1", ["bare-twin"])
    assert bare.metadata["creator_id"] == "a.1" and bare.metadata["twin_id"] == "t1"
    report = verifying.verify_run(ctx, run.id)
    assert report["passed"] and report["routes"]["owner"] == 2, report

    # The owners table makes the source's bare vector a.10's for an erasure too, though its metadata names nobody.
    plan = erasing.plan_erasure(ctx.db, "a.10", None, open_retrying_store)
    searched = {(p["store"], p["namespace"]): p["planned"] for p in plan.places if p["kind"] == "records"}
    assert searched[(ctx.store(spec.source).name, "")] == 2  # by-creator (metadata) and bare-creator (its id)
    assert "bare-creator" in plan.subject.owned_ids and "bare-twin" not in plan.subject.owned_ids

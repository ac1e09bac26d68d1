"""The application module on real stores: a creator's twins searched together through the tenant guard (the real
SDK against the local data plane, and pgvector on real Postgres), merged by score, never another creator's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.orchestrator.tenancy.tenant_guard import TenantError, TenantGuard, search_twins
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

QUERY = [1.0, 0.0, 0.0, 0.0]
DATA = {
    # a.10 holds the best match of all: a guard for a.1 must never return it.
    "creator_a.10_twin_t9": [("best-but-a10", [1.0, 0.0, 0.0, 0.0])],
    "creator_a.1_twin_t1": [("t1-close", [0.9, 0.1, 0.0, 0.0]), ("t1-far", [0.0, 1.0, 0.0, 0.0])],
    "creator_a.1_twin_t2": [("t2-closer", [0.95, 0.05, 0.0, 0.0]), ("t2-far", [0.0, 0.0, 1.0, 0.0])],
    "creator_a.1": [("creator-wide", [1.0, 0.01, 0.0, 0.0])],  # not a twin namespace: not searched
}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("apps", 4, "cosine")]


@pytest.fixture(params=["pinecone", "pgvector"])
def store(
    request: pytest.FixtureRequest, sandbox: PineconeSandbox, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GuardedStore]:
    inner: PineconeStore | PgvectorStore
    if request.param == "pinecone":
        monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
        inner = PineconeStore(PineconeStoreSpec(host=sandbox.host("apps")))
    else:
        inner = PgvectorStore(PgvectorStoreSpec(layout="single_table", table="apps", dimension=4), database_url)
    for ns, rows in DATA.items():
        inner.upsert(ns, [Record(i, v, {"ns": ns}) for i, v in rows])
    sandbox.settle()  # the application wrote them long before the searches
    store = GuardedStore(inner)
    yield store
    store.close()


def test_a_creators_twins_are_searched_together_and_merged_by_score(store: GuardedStore) -> None:
    matches = search_twins(store, TenantGuard("a.1"), QUERY, top_k=3)

    # t1-far and t2-far score the same: ties go by namespace, then id.
    assert [m.id for m in matches] == ["t2-closer", "t1-close", "t1-far"]
    assert [m.namespace for m in matches[:2]] == ["creator_a.1_twin_t2", "creator_a.1_twin_t1"]
    assert matches[0].score >= matches[1].score >= matches[2].score
    assert all(m.id != "best-but-a10" for m in matches)


def test_one_twin_only_and_the_guard_refuses_another_creator(store: GuardedStore) -> None:
    only_t1 = search_twins(store, TenantGuard("a.1"), QUERY, top_k=5, twin_ids=["t1"])
    assert {m.namespace for m in only_t1} == {"creator_a.1_twin_t1"}
    # Told about another creator's namespace, the search leaves it out; asked for it directly, the guard refuses.
    assert search_twins(store, TenantGuard("a.1"), QUERY, top_k=5, namespaces=["creator_a.10_twin_t9"]) == []
    with pytest.raises(TenantError, match=r"creator_a\.10_twin_t9"):
        TenantGuard("a.1").check("creator_a.10_twin_t9")

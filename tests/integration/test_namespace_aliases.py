"""Namespace aliases of the local data plane, behaviour by behaviour, over plain REST and the real SDK: one name
space with namespaces, reads through an alias (any API version), an atomic repoint under concurrent reads, a deleted
alias reading as an absent namespace, and a targeted namespace that stays one. The spec's shapes and reasons are
``test_pinecone_aliases_conformance.py``'s."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from pinecone import Pinecone

from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox

HEADERS = {"Api-Key": "test-key", "X-Pinecone-Api-Version": "2026-07"}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("idx", 4)]


@pytest.fixture(autouse=True)
def seeded(sandbox: PineconeSandbox) -> None:
    sandbox.load("idx", "old", [(f"o{i}", [1, i, 0, 0], {"side": "old"}) for i in range(4)])
    sandbox.load("idx", "new", [(f"n{i}", [1, i, 0, 0], {"side": "new"}) for i in range(4)])


def rest(sandbox: PineconeSandbox, method: str, path: str, headers: dict[str, str] = HEADERS, **kwargs: Any) -> Any:
    response = httpx.request(method, sandbox.host("idx") + path, headers=headers, timeout=10, **kwargs)
    return response.status_code, (response.json() if response.content else None)


def alias(sandbox: PineconeSandbox, name: str, target: str) -> None:
    status, body = rest(sandbox, "POST", "/namespace-aliases", json={"name": name, "target_namespace": target})
    assert status == 200, body


def test_aliases_and_namespaces_share_one_name_space(sandbox: PineconeSandbox) -> None:
    alias(sandbox, "live", "old")
    upsert = {"namespace": "live", "vectors": [{"id": "x", "values": [1, 1, 1, 1]}]}
    assert rest(sandbox, "POST", "/vectors/upsert", json=upsert)[0] == 409
    status, listed = rest(sandbox, "GET", "/namespaces")
    assert status == 200 and [n["name"] for n in listed["namespaces"]] == ["new", "old"]  # no namespace was made
    assert set(rest(sandbox, "POST", "/describe_index_stats", json={})[1]["namespaces"]) == {"new", "old"}
    assert rest(sandbox, "POST", "/namespace-aliases", json={"name": "new", "target_namespace": "old"})[0] == 409
    # Once the alias is gone, its name is free for a namespace.
    assert rest(sandbox, "DELETE", "/namespace-aliases/live")[0] == 200
    assert rest(sandbox, "POST", "/vectors/upsert", json=upsert)[0] == 200
    assert sandbox.count("idx", "live") == 1


@pytest.mark.parametrize("version", ["2026-07", "2026-04", None])
def test_reads_through_an_alias_work_on_any_api_version(sandbox: PineconeSandbox, version: str | None) -> None:
    alias(sandbox, "live", "old")
    headers = {"Api-Key": "k", **({"X-Pinecone-Api-Version": version} if version else {})}
    status, found = rest(sandbox, "GET", "/vectors/fetch", headers, params={"ids": ["o1"], "namespace": "live"})
    assert status == 200 and list(found["vectors"]) == ["o1"] and found["namespace"] == "old"


def test_the_sdk_reads_through_an_alias(sandbox: PineconeSandbox) -> None:
    alias(sandbox, "live", "new")
    index = Pinecone(api_key="k").Index(host=sandbox.host("idx"))
    answer = index.query(vector=[1, 0, 0, 0], top_k=2, namespace="live")
    assert [m.id for m in answer.matches] == ["n0", "n1"]
    assert list(index.fetch(ids=["n2", "o2"], namespace="live").vectors) == ["n2"]
    assert [v.id for page in index.list(namespace="live") for v in page] == ["n0", "n1", "n2", "n3"]


def test_a_deleted_alias_reads_as_a_namespace_that_does_not_exist(sandbox: PineconeSandbox) -> None:
    alias(sandbox, "live", "old")
    assert rest(sandbox, "DELETE", "/namespace-aliases/live")[0] == 200
    status, queried = rest(sandbox, "POST", "/query", json={"namespace": "live", "vector": [1, 0, 0, 0], "topK": 3})
    assert status == 200 and queried["matches"] == [] and queried["namespace"] == "live"
    assert rest(sandbox, "GET", "/vectors/list", params={"namespace": "live"})[1]["vectors"] == []
    assert sandbox.count("idx", "old") == 4  # the target is untouched


def test_a_targeted_namespace_emptied_by_its_writes_stays_a_namespace(sandbox: PineconeSandbox) -> None:
    alias(sandbox, "live", "old")
    assert rest(sandbox, "POST", "/vectors/delete", json={"namespace": "old", "ids": ["o0", "o1"]})[0] == 200
    assert rest(sandbox, "POST", "/vectors/delete", json={"namespace": "old", "deleteAll": True})[0] == 200
    sandbox.settle()  # the count lags the deletes
    assert rest(sandbox, "GET", "/namespaces/old")[1] == {"name": "old", "record_count": "0"}  # 2026-07: a string
    # Repointed away, the namespace can go.
    rest(sandbox, "PATCH", "/namespace-aliases/live", json={"target_namespace": "new"})
    assert rest(sandbox, "DELETE", "/namespaces/old")[0] == 200
    assert rest(sandbox, "GET", "/namespace-aliases/live")[1]["target_namespace"] == "new"


def test_a_repoint_is_atomic_under_concurrent_reads(sandbox: PineconeSandbox) -> None:
    """Readers query through the alias while it is repointed back and forth: every answer is one namespace's whole
    answer, named by its ``namespace`` field, never a mix and never an error. The readers go past the service's
    query limit and wait out its 429s; a short ``Retry-After`` keeps them reading through the repoints."""
    sandbox.set_faults("idx", Faults(retry_after_s=0.05))
    alias(sandbox, "live", "old")
    answers: list[tuple[str, set[str]]] = []
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=sandbox.host("idx"), headers=HEADERS, timeout=10) as client:
            while not done.is_set():
                response = client.post("/query", json={"namespace": "live", "vector": [1, 0, 0, 0], "topK": 4})
                if response.status_code == 429:  # over the service's query limit: wait as a client must
                    time.sleep(float(response.headers["Retry-After"]))
                    continue
                if response.status_code != 200:
                    errors.append(response.text)
                    continue
                body = response.json()
                answers.append((body["namespace"], {m["id"][0] for m in body["matches"]}))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for step in range(30):
            target = "new" if step % 2 == 0 else "old"
            status, moved = rest(sandbox, "PATCH", "/namespace-aliases/live", json={"target_namespace": target})
            assert status == 200 and moved["target_namespace"] == target
            # A read that starts after the repoint answered is served from the new target.
            query = {"namespace": "live", "vector": [1, 0, 0, 0], "topK": 1}
            while (
                answer := httpx.post(sandbox.host("idx") + "/query", headers=HEADERS, json=query)
            ).status_code == 429:
                time.sleep(float(answer.headers["Retry-After"]))
            assert answer.json()["namespace"] == target
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert not errors and answers
    assert all(ids == {served[0]} for served, ids in answers)  # "old" answers hold o-ids only, "new" n-ids only
    assert {served for served, _ in answers} == {"old", "new"}


def test_reset_forgets_the_aliases(sandbox: PineconeSandbox) -> None:
    alias(sandbox, "live", "old")
    sandbox.reset("idx")
    assert rest(sandbox, "GET", "/namespace-aliases")[1] == {"namespace_aliases": [], "total_count": 0}

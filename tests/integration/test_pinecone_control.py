"""The local control plane through the real ``pinecone`` SDK (raw HTTP where the SDK refuses before sending):
collections, create-index-from-collection by API version, readiness, deletion protection, tags, and how a pod index
deletes a namespace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pinecone import (
    ApiError,
    FailedPreconditionError,
    ForbiddenError,
    NotFoundError,
    Pinecone,
    PineconeTypeError,
    ServiceError,
)

from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.polling import wait_until
from tests.sdk_internals import set_sdk_retries

DIM = 4
POD, SERVERLESS = "legacy-pod", "fresh-serverless"
KEY_ENV = "NSMIGRATE_TEST_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(POD, DIM, "cosine", kind="pod"), IndexSpec(SERVERLESS, DIM, "cosine")]


@pytest.fixture
def control(sandbox: PineconeSandbox) -> Iterator[PineconeSandbox]:
    """The sandbox with short but visible waits; collections and created indexes removed afterwards."""
    before = set(sandbox.names())
    sandbox.control.set_delays(ready_delay_s=0.4, collection_delay_s=0.4)
    yield sandbox
    sandbox.control.set_delays(ready_delay_s=0.0, collection_delay_s=0.0)
    for name in sandbox.control.collection_names():
        httpx.delete(f"{sandbox.control_host}/collections/{name}", headers={"Api-Key": "k"}, timeout=5)
    for name in set(sandbox.names()) - before:
        sandbox.remove_index(name)


def client(sandbox: PineconeSandbox) -> Pinecone:
    return Pinecone(api_key="test-key", host=sandbox.control_host)


def raw(sandbox: PineconeSandbox, method: str, path: str, version: str, body: Any = None) -> httpx.Response:
    headers = {"Api-Key": "test-key", "X-Pinecone-Api-Version": version}
    return httpx.request(method, sandbox.control_host + path, json=body, headers=headers, timeout=10)


def load_pod(sandbox: PineconeSandbox) -> None:
    sandbox.load(POD, "", [(f"d{i}", [1, i, 0, 0], {"n": i}) for i in range(5)])
    sandbox.load(POD, "twin-a", [(f"a{i}", [0, 1, i, 0], {"twin": "a"}) for i in range(7)])


def from_collection_body(name: str, collection: str, dimension: int = DIM) -> dict[str, Any]:
    """A 2026-04 create request: a serverless index from a collection."""
    serverless = {"cloud": "aws", "region": "us-east-1", "source_collection": collection}
    return {"name": name, "dimension": dimension, "metric": "cosine", "spec": {"serverless": serverless}}


def test_collection_lifecycle_from_a_pod_index(control: PineconeSandbox) -> None:
    load_pod(control)
    pc = client(control)
    created = pc.collections.create(name="legacy-snap", source=POD)
    assert created.status == "Initializing"
    # Its source cannot be deleted while the collection is being made.
    with pytest.raises(FailedPreconditionError, match="pending collections for this index: \\['legacy-snap'\\]"):
        pc.delete_index(POD, timeout=-1)
    control.load(POD, "twin-a", [("late", [1, 1, 1, 1], None)])  # after the snapshot: not in the collection

    ready = wait_until(
        lambda: pc.collections.describe("legacy-snap"),
        what="the collection Ready",
        timeout_s=10,
        done=lambda c: c.status == "Ready",
    )
    assert (ready.dimension, ready.vector_count, ready.environment) == (DIM, 12, "us-east-1-aws")
    assert ready.size and ready.size > 0
    assert pc.collections.list().names() == ["legacy-snap"]

    pc.collections.delete("legacy-snap")
    with pytest.raises(NotFoundError, match="Collection legacy-snap not found"):
        pc.collections.describe("legacy-snap")
    assert pc.collections.list().names() == []


def test_a_serverless_index_cannot_be_collected(control: PineconeSandbox) -> None:
    pc = client(control)
    with pytest.raises(ApiError) as caught:
        pc.collections.create(name="nope-snap", source=SERVERLESS)
    assert caught.value.status_code == 400 and "Serverless indexes do not support collections" in str(caught.value)
    with pytest.raises(NotFoundError):
        pc.collections.create(name="nope-snap", source="no-such-index")
    assert pc.collections.list().names() == []


def test_index_from_collection_only_under_an_earlier_api_version(control: PineconeSandbox) -> None:
    load_pod(control)
    pc = client(control)
    pc.collections.create(name="mig-snap", source=POD)
    wait_until(
        lambda: pc.collections.describe("mig-snap").status,
        what="the collection Ready",
        timeout_s=10,
        done="Ready".__eq__,
    )

    # SDK 10.x (API 2026-07) refuses before sending anything ...
    with pytest.raises(PineconeTypeError, match="source_collection"):
        pc.indexes.create(name="from-snap", dimension=DIM, source_collection="mig-snap")
    # ... and so does the service when a 2026-07 request carries it anyway.
    refused = raw(control, "POST", "/indexes", "2026-07", from_collection_body("from-snap", "mig-snap"))
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "Creating an index from collection or backup is not yet supported",
    }
    assert "from-snap" not in control.names()
    mismatched = raw(control, "POST", "/indexes", "2026-04", from_collection_body("from-snap", "mig-snap", DIM + 1))
    assert mismatched.status_code == 400 and "does not match the dimension of collection" in mismatched.text

    control.control.set_delays(ready_delay_s=4)  # long enough to be seen Initializing on a loaded machine
    accepted = raw(control, "POST", "/indexes", "2026-04", from_collection_body("from-snap", "mig-snap"))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["status"] == {"ready": False, "state": "Initializing"}
    index = pc.Index(host=control.host("from-snap"))
    set_sdk_retries(index, 0)
    with pytest.raises(ServiceError, match="not ready"):
        index.describe_index_stats()
    wait_until(lambda: pc.describe_index("from-snap").status.ready, what="the new index ready", timeout_s=10)
    stats = index.describe_index_stats()
    assert {ns: s.vector_count for ns, s in stats.namespaces.items()} == {"__default__": 5, "twin-a": 7}
    assert pc.describe_index("from-snap").spec.serverless is not None
    fetched = index.fetch(ids=["a3"], namespace="twin-a").vectors["a3"]
    assert (list(fetched.values), fetched.metadata) == ([0.0, 1.0, 3.0, 0.0], {"twin": "a"})


def test_pod_indexes_cannot_be_created_under_2026_07(control: PineconeSandbox) -> None:
    body = {
        "name": "new-pod",
        "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": DIM, "metric": "cosine"}}},
        "deployment": {"deployment_type": "pod", "environment": "us-east-1-aws", "pod_type": "p1.x1"},
    }
    refused = raw(control, "POST", "/indexes", "2026-07", body)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "deployment_type 'pod' is not supported on this API version"
    assert "new-pod" not in control.names()


def test_serverless_index_readiness_deletion_protection_and_tags(control: PineconeSandbox) -> None:
    pc = client(control)
    name = f"made-{uuid.uuid4().hex[:6]}"
    model = pc.indexes.create(
        name=name,
        schema={"fields": {"_values": {"type": "dense_vector", "dimension": DIM, "metric": "dotproduct"}}},
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-west-2"},
        deletion_protection="enabled",
        tags={"team": "search", "env": "staging"},
        timeout=-1,
    )
    assert model.status.ready is False and model.status.state == "Initializing"
    ready = wait_until(
        lambda: pc.describe_index(name), what="the index ready", timeout_s=10, done=lambda m: m.status.ready
    )
    assert (ready.dimension, ready.metric, ready.deletion_protection) == (DIM, "dotproduct", "enabled")
    assert ready.spec.serverless.region == "us-west-2"
    assert ready.tags == {"team": "search", "env": "staging"}

    with pytest.raises(ForbiddenError, match="Deletion protection is enabled for this index"):
        pc.delete_index(name, timeout=-1)
    assert name in control.names()
    pc.configure_index(name, deletion_protection="disabled", tags={"env": "", "owner": "data"})
    assert pc.describe_index(name).tags == {"team": "search", "owner": "data"}
    pc.delete_index(name, timeout=-1)
    assert name not in control.names()

    with pytest.raises(NotFoundError, match="region: mars-1 not found"):
        pc.indexes.create(
            name="lost",
            schema={"fields": {"_values": {"type": "dense_vector", "dimension": DIM}}},
            deployment={"deployment_type": "managed", "cloud": "aws", "region": "mars-1"},
            timeout=-1,
        )


def test_a_pod_index_empties_a_namespace_with_delete_all(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "test-key")
    load_pod(sandbox)
    refused = httpx.delete(f"{sandbox.host(POD)}/namespaces/twin-a", headers={"Api-Key": "k"}, timeout=5)
    assert refused.status_code == 404 and "not supported for pod-based indexes" in refused.json()["message"]
    assert sandbox.count(POD, "twin-a") == 7

    # By name the store learns from the control plane that this is a pod index and never tries /namespaces.
    by_name = PineconeStore(PineconeStoreSpec(index=POD, control_host=sandbox.control_host, api_key_env=KEY_ENV))
    by_name.delete_namespace("twin-a")
    assert sandbox.count(POD, "twin-a") == 0 and sandbox.count(POD, "") == 5
    assert sandbox.stats(POD)["requests"]["delete_namespace"] == 1  # the raw request above, nothing more
    # By host it cannot know: the refusal sends it to deleteAll, and it remembers.
    load_pod(sandbox)
    by_host = PineconeStore(PineconeStoreSpec(host=sandbox.host(POD), api_key_env=KEY_ENV))
    by_host.delete_namespace("twin-a")
    assert sandbox.count(POD, "twin-a") == 0
    load_pod(sandbox)
    by_host.delete_namespace("twin-a")
    by_host.delete_namespace("")
    assert sandbox.count(POD) == 0
    assert sandbox.stats(POD)["requests"]["delete_namespace"] == 2  # its first, refused, try only

    # A serverless index deletes the namespace itself.
    sandbox.load(SERVERLESS, "twin-b", [("b1", [1, 0, 0, 0], None)])
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host(SERVERLESS), api_key_env=KEY_ENV))
    store.delete_namespace("twin-b")
    assert sandbox.count(SERVERLESS, "twin-b") == 0
    assert sandbox.stats(SERVERLESS)["requests"] == {"delete_namespace": 1}
    for s in (by_name, by_host, store):
        s.close()

"""Planning's reads against the local data plane through the real SDK: a routed default namespace is read a page at a
time (one fetch per listed page of ≤ 100 ids), every namespace a collision check needs is listed, and a true
collision is still refused while ids that land in different namespaces are not."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.orchestrator.store import Store
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import PineconeSandbox
from nsmigrate_sandbox.seed import write_twins_csv

TWINS = {"0f0e9a52-1111-4a4a-9a9a-000000000001": "c1", "0f0e9a52-2222-4a4a-9a9a-000000000002": "c2"}
T1, T2 = TWINS


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch, pinecone_api_key: str) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_api_key)


def vec(k: int) -> list[float]:
    return [float(k % 7 + 1)] + [0.5] * 7


def load(sandbox: PineconeSandbox, default_ids: dict[str, str], twin_ids: dict[str, list[str]]) -> None:
    """``default_ids``: id → its twin (the default namespace routes each record by its ``twin_id``)."""
    sandbox.load("src", "", [(i, vec(k), {"twin_id": t}) for k, (i, t) in enumerate(default_ids.items())])
    for twin, ids in twin_ids.items():
        sandbox.load("src", twin, [(i, vec(k), {"n": k}) for k, i in enumerate(ids)])


def creator_spec(sandbox: PineconeSandbox, twins_csv: Path) -> dict[str, Any]:
    return {
        "name": "plan-reads",
        "source": {"kind": "pinecone", "host": sandbox.host("src")},
        "target": {"kind": "pinecone", "host": sandbox.host("src")},
        "namespaces": {"include": ["*"], "exclude": ["creator_*", "public"]},
        "routing": {"mode": "creator", "creators": {"source": "file", "path": str(twins_csv)}},
    }


def test_a_routed_default_namespace_is_fetched_a_page_at_a_time(sandbox: PineconeSandbox, tmp_path: Path) -> None:
    default = {f"d-{k:04d}": (T1 if k % 2 else T2) for k in range(250)}  # three list pages: 100, 100, 50
    load(sandbox, default, {T1: [f"a-{k}" for k in range(30)], T2: [f"b-{k}" for k in range(5)]})
    spec = parse_spec(creator_spec(sandbox, write_twins_csv(TWINS, tmp_path / "twins.csv")))
    before = sandbox.stats("src")["requests"]

    plan = launch.prepare(spec, open_retrying_store, tmp_path).plan

    requests = {op: n - before.get(op, 0) for op, n in sandbox.stats("src")["requests"].items()}
    assert {r.source_namespace for r in plan.runs} == {"", T1, T2}
    # One fetch per listed page of the default namespace (never one for all of it); the twins' ids are listed only.
    assert requests.get("fetch") == 3
    assert requests.get("list") == 3 + 1 + 1 + 2  # default's pages, each twin's, a listing probe per store
    assert requests.get("describe_index_stats") == 2  # one per store: namespaces, dimension and metric at once


def test_the_plan_reads_with_as_many_threads_as_the_setting_says(sandbox: PineconeSandbox, tmp_path: Path) -> None:
    default = {f"d-{k:04d}": (T1 if k % 2 else T2) for k in range(250)}
    load(sandbox, default, {T1: [f"a-{k}" for k in range(30)], T2: [f"b-{k}" for k in range(5)]})
    spec = parse_spec(creator_spec(sandbox, write_twins_csv(TWINS, tmp_path / "twins.csv")))
    threads: set[str] = set()

    class Watched:
        """The real store, each call noting the thread it came from."""

        def __init__(self, store: Store) -> None:
            self.store = store

        def __getattr__(self, name: str) -> Any:
            found = getattr(self.store, name)
            if not callable(found):
                return found

            def call(*args: Any, **kwargs: Any) -> Any:
                threads.add(threading.current_thread().name)
                return found(*args, **kwargs)

            return call

    def open_watched(store_spec: PineconeStoreSpec | PgvectorStoreSpec) -> Store:
        return cast(Store, Watched(open_retrying_store(store_spec)))

    launch.prepare(spec, open_watched, tmp_path, settings=DEFAULTS.model_copy(update={"plan_read_threads": 1}))

    planners = {name.rsplit("_", 1)[0] for name in threads if name.startswith("nsmigrate-plan")}
    assert planners == {"nsmigrate-plan-chain", "nsmigrate-plan-request"}
    assert {name.rsplit("_", 1)[1] for name in threads if name.startswith("nsmigrate-plan")} == {"0"}, threads


def test_a_true_collision_is_refused_and_ids_landing_apart_are_not(sandbox: PineconeSandbox, tmp_path: Path) -> None:
    # "shared" is in the default namespace for twin T2 and in T1's namespace: they land apart, no collision.
    default = {"shared": T2, **{f"d-{k:03d}": T2 for k in range(120)}}
    load(sandbox, default, {T1: ["shared", "a-1"], T2: ["b-1"]})
    spec = parse_spec(creator_spec(sandbox, write_twins_csv(TWINS, tmp_path / "twins.csv")))

    launch.prepare(spec, open_retrying_store, tmp_path)

    # Now T2's own namespace holds "shared" too: both write it into creator_c2_twin_<T2>.
    sandbox.load("src", T2, [("shared", vec(1), {"n": 9})])
    with pytest.raises(PlanError) as refused:
        launch.prepare(spec, open_retrying_store, tmp_path)
    message = str(refused.value)
    assert "shared" in message and f"creator_c2_twin_{T2}" in message and T2 in message

"""A worker's guarded stores: made once for the objects of a job's spec, not for every call."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.store import StoreDefaults
from nsmigrate.workers.context import WorkerContext


class _Store(StoreDefaults):
    name = "src"

    def __init__(self) -> None:
        self.identities = 0

    def identity(self) -> str:
        self.identities += 1
        return "index-a"


def test_a_jobs_spec_objects_find_the_guarded_store_made_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # No connection is opened: the job table, Redis and the stores are reached only on use.
    ctx = WorkerContext(Settings(database_url="postgresql://127.0.0.1:9/none", redis_url="redis://127.0.0.1:9/0"))
    store = _Store()
    monkeypatch.setattr(ctx, "store", lambda _spec: store)
    spec = parse_spec(
        {
            "name": "j",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:10"},
        }
    )

    first = ctx.guarded(spec.source, spec.rate)
    assert ctx.guarded(spec.source, spec.rate) is first  # a run's four calls: one store, one retry policy
    assert first.budget_key == ctx.guarded(spec.source, spec.rate).budget_key == "index-a"

    # An equal spec read again (another process's job, a new job) is another object: its own guarded store, the
    # same budget (the store's identity, asked once per process and spec).
    again = parse_spec(spec.model_dump(mode="json"))
    other = ctx.guarded(again.source, again.rate)
    assert other is not first and other.budget_key == "index-a"
    assert store.identities == 1

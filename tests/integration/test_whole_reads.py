"""A small namespace listed whole, read by one query instead of a fetch (``workers.steps.whole_reads``), against the
local Pinecone data plane: the records come back as a fetch gives them, or not at all (then they are fetched)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from nsmigrate.orchestrator.records.vectors import Record, SparseValues
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.steps.whole_reads import read_by_query
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

LARGE_DIM = 2_000


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("hybrid", 5, "dotproduct"), IndexSpec("wide", LARGE_DIM, "cosine")]


def store_of(sandbox: PineconeSandbox, name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedStore]:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    store = GuardedStore(PineconeStore(PineconeStoreSpec(host=sandbox.host(name))), attempts=1)
    yield store
    store.close()


@pytest.fixture
def hybrid(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedStore]:
    yield from store_of(sandbox, "hybrid", monkeypatch)


@pytest.fixture
def wide(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedStore]:
    yield from store_of(sandbox, "wide", monkeypatch)


def outcome(kind: str) -> float:
    """How many namespaces this process read by a query (``queried``) or fetched after all (``fetched``)."""
    return REGISTRY.get_sample_value("nsmigrate_whole_reads_total", {"outcome": kind}) or 0.0


def test_a_namespace_read_by_one_query_comes_back_as_a_fetch_gives_it(
    hybrid: GuardedStore, sandbox: PineconeSandbox
) -> None:
    """Values (as the JSON sent), metadata of every type, sparse values, no metadata at all: each record equal to what
    a fetch of the listed ids returns, in the listed order."""
    records = [
        Record("r-1", [0.1, -0.2, 0.3, 1e-7, 12.5], {"genre": "drama", "year": 2019, "score": 0.5, "tags": ["a", "b"]}),
        Record("r-2", [1.0, 0.0, 0.0, 0.0, -3.25], {"flag": True}, SparseValues((3, 17), (0.5, 0.25))),
        Record("r-3", [0.0, 0.0, 2.0, 0.0, 0.0], {}),
    ]
    hybrid.upsert("ns", records)
    sandbox.settle()
    listed = ["r-3", "r-1", "r-2"]
    queried_before = outcome("queried")

    read = read_by_query(hybrid, "ns", listed)
    fetched = hybrid.fetch("ns", listed)

    assert read is not None and [r.id for r in read] == listed
    for by_query, by_fetch in zip(read, fetched, strict=True):
        assert bytes(by_query.values.json) == bytes(by_fetch.values.json), by_query.id  # type: ignore[attr-defined]
        assert (by_query.metadata, by_query.sparse_values) == (by_fetch.metadata, by_fetch.sparse_values)
    assert sandbox.stats("hybrid")["requests"]["query"] == 1
    assert outcome("queried") == queried_before + 1


def test_a_query_that_missed_a_listed_record_is_not_used(hybrid: GuardedStore, sandbox: PineconeSandbox) -> None:
    hybrid.upsert("missed", [Record(f"m-{i}", [float(i + 1), 1.0, 0.0, 0.0, 0.0], {"i": i}) for i in range(4)])
    sandbox.settle()
    sandbox.set_faults("hybrid", dataclasses.replace(sandbox.faults("hybrid"), query_miss_fraction=0.25))
    fetched_before = outcome("fetched")

    assert read_by_query(hybrid, "missed", [f"m-{i}" for i in range(4)]) is None
    assert outcome("fetched") == fetched_before + 1


def test_an_answer_pinecone_could_refuse_for_its_size_is_not_asked_for(
    wide: GuardedStore, sandbox: PineconeSandbox
) -> None:
    """100 records of 2,000 values: their values alone would take over half of Pinecone's 4 MB answer, the rest
    being metadata of up to 40 KB each: no query is sent (they are fetched). Three such records are read by one."""
    wide.upsert("wide", [Record(f"w-{i:03d}", [1.0] * LARGE_DIM, {"i": i}) for i in range(100)])
    wide.upsert("narrow", [Record(f"n-{i}", [1.0] * LARGE_DIM, {"i": i}) for i in range(3)])
    sandbox.settle()

    assert read_by_query(wide, "wide", [f"w-{i:03d}" for i in range(100)]) is None
    assert sandbox.stats("wide")["requests"].get("query", 0) == 0
    narrow = read_by_query(wide, "narrow", ["n-0", "n-1", "n-2"])
    assert narrow is not None and [r.metadata for r in narrow] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert sandbox.stats("wide")["requests"]["query"] == 1

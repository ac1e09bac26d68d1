"""The bench's single-process rival (``bench.peer``) against the local data plane: it must copy every vector equal,
through throttling and errors, and within the budgets it claims, or its figures compare the fleet with nothing."""

from __future__ import annotations

import asyncio

import pytest
from pinecone import Pinecone

from bench.peer import Budgets, PeerResult, copy_index
from sandbox.pinecone_server import Faults, PineconeSandbox
from sandbox.seed import SeedData, seed_dataset


@pytest.fixture
def data(sandbox: PineconeSandbox) -> SeedData:
    """Seed-shaped data in ``src``: a default namespace of several list pages and a dozen small twin namespaces."""
    data = seed_dataset(dimension=8, n_vectors=520, n_twin_namespaces=12, default_count=250)
    data.load_into(sandbox, "src")
    return data


def run_peer(sandbox: PineconeSandbox, api_key: str, budgets: Budgets) -> PeerResult:
    return asyncio.run(copy_index(sandbox.host("src"), sandbox.host("dst"), api_key, budgets))


def assert_copied_equal(sandbox: PineconeSandbox, api_key: str, data: SeedData) -> None:
    """Every source vector is in the target, in the same namespace, with the same values and metadata; nothing else."""
    pc = Pinecone(api_key=api_key)
    src, dst = pc.Index(host=sandbox.host("src")), pc.Index(host=sandbox.host("dst"))
    assert sandbox.stats("dst")["namespaces"] == sandbox.stats("src")["namespaces"]
    for namespace, records in data.namespaces.items():
        ids = [i for i, _, _ in records]
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            want = src.fetch(ids=chunk, namespace=namespace).vectors
            got = dst.fetch(ids=chunk, namespace=namespace).vectors
            assert sorted(got) == sorted(want) == sorted(chunk), namespace
            for i in chunk:
                assert (got[i].values, got[i].metadata) == (want[i].values, want[i].metadata), (namespace, i)


def test_peer_copies_every_namespace_equal(sandbox: PineconeSandbox, pinecone_api_key: str, data: SeedData) -> None:
    result = run_peer(sandbox, pinecone_api_key, Budgets.nsmigrate_defaults())

    assert (result.vectors, result.namespaces) == (data.total, len(data.namespaces))
    assert_copied_equal(sandbox, pinecone_api_key, data)


def test_peer_retries_what_the_sdk_gave_up_on(sandbox: PineconeSandbox, pinecone_api_key: str, data: SeedData) -> None:
    # Half of all requests refused: the SDK's own retries (and its per-host retry budget) run out on some of them.
    for index in ("src", "dst"):
        sandbox.set_faults(index, Faults(error_rate_429=0.3, error_rate_5xx=0.2, retry_after_s=0.01, seed=7))

    result = run_peer(sandbox, pinecone_api_key, Budgets.nsmigrate_defaults())

    assert result.retried > 0
    assert result.vectors == data.total
    for index in ("src", "dst"):
        sandbox.set_faults(index, Faults())
    assert_copied_equal(sandbox, pinecone_api_key, data)


def test_peer_stays_within_its_budgets(sandbox: PineconeSandbox, pinecone_api_key: str, data: SeedData) -> None:
    # The server's limits a quarter above the budgets, as Pinecone's are above nsmigrate's defaults.
    budgets = Budgets(read_rps=8, list_rps=8, stats_rps=8, write_rps=8, write_mb_per_s=40)
    limits = Faults(fetch_rps_per_index=10, list_rps_per_index=10, stats_rps_per_index=10, write_rps_per_namespace=10)
    for index in ("src", "dst"):
        sandbox.set_faults(index, limits)

    result = run_peer(sandbox, pinecone_api_key, budgets)

    assert result.vectors == data.total
    assert [sandbox.stats(index)["responses_429"] for index in ("src", "dst")] == [0, 0]
    assert_copied_equal(sandbox, pinecone_api_key, data)

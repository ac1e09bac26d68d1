"""One contract, every store adapter: pgvector (both layouts, real Postgres) and Pinecone (the real SDK against the
local data plane). Then what only one adapter has to get right: Pinecone's error mapping, its switched-off SDK retries,
the namespaces-endpoint fallback and key hygiene; pgvector's table names and configuration errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.records.documents import DocumentFields
from nsmigrate.orchestrator.records.vectors import BinaryValues, JsonValues
from nsmigrate.orchestrator.retry_policy import call_with_retry, retrying
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.stores import open_store
from nsmigrate.workers.stores.base import Record, Store, iter_all_ids
from nsmigrate.workers.stores.pgvector.store import PgvectorStore, namespace_table_name
from nsmigrate.workers.stores.pinecone.document_index import PineconeDocumentStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate.workers.stores.pinecone.wire import over_limits
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.settling import settle

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_PINECONE_KEY"
KEY_VALUE = "pcsk-contract-test-SECRET-value"
ODD_NAMESPACE = "Creator.A-1/twin:" + "x" * 90  # upper case, punctuation, > 63 characters


def make_records(n: int, prefix: str = "id", seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    return [
        Record(
            id=f"{prefix}-{i:04d}",
            values=[float(v) for v in rng.normal(size=DIM)],
            metadata={"n": i, "text": f"chunk {i}", "flag": i % 2 == 0, "tags": ["a", f"t{i % 3}"]},
        )
        for i in range(n)
    ]


def assert_same_records(got: list[Record], want: list[Record]) -> None:
    assert [r.id for r in got] == [r.id for r in want]
    for g, w in zip(got, want, strict=True):
        # Both stores keep float32: equal to the float32 rounding of what was sent.
        np.testing.assert_allclose(np.asarray(g.values), np.asarray(w.values, dtype=np.float32), rtol=1e-6, atol=1e-7)
        assert g.metadata == w.metadata


# --- the stores ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    # The listing contract: a serverless index; and a document index (API 2026-07) of the same dense shape.
    documents = DocumentSchema(dense=DenseField("embedding", DIM, "cosine"))
    return [IndexSpec("contract", DIM, "cosine"), document_index("contract-docs", documents)]


@pytest.fixture
def pinecone_store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeStore]:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    store = PineconeStore(PineconeStoreSpec(index="contract", control_host=sandbox.control_host, api_key_env=KEY_ENV))
    yield store
    store.close()


@pytest.fixture
def document_store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeDocumentStore]:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    spec = PineconeStoreSpec(index="contract-docs", control_host=sandbox.control_host, api_key_env=KEY_ENV)
    store = PineconeDocumentStore(spec, DocumentFields(dense="embedding"))
    yield store
    store.close()


@pytest.fixture(params=["pgvector-single_table", "pgvector-table_per_namespace", "pinecone", "pinecone-documents"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param.startswith("pinecone"):
        yield request.getfixturevalue("document_store" if request.param.endswith("documents") else "pinecone_store")
        return
    layout = request.param.split("-", 1)[1]
    url = request.getfixturevalue("database_url")
    pg = PgvectorStore(PgvectorStoreSpec(layout=layout, table="emb", dimension=DIM), database_url=url)
    yield pg
    pg.close()


def settled(store: Store) -> None:
    """Wait out the reads' lag after the test's writes, where the store has one (a Pinecone index's)."""
    if isinstance(store, PineconeStore):
        settle(store.spec)


# --- the contract ---------------------------------------------------------------------------------------------------


def test_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.dimension() == DIM
    assert KEY_VALUE not in repr(store)


def test_upsert_then_fetch_round_trips_values_and_metadata(store: Store) -> None:
    records = make_records(25)
    assert store.upsert("ns1", records) == 25
    settled(store)  # a document fetch lags too

    wanted = [r.id for r in records[::-1]] + ["missing-id"]
    assert_same_records(store.fetch("ns1", wanted), records[::-1])

    changed = [Record(r.id, [v * 2 for v in r.values], {"n": -1}) for r in records[:3]]
    store.upsert("ns1", changed)
    settled(store)
    assert_same_records(store.fetch("ns1", [r.id for r in changed]), changed)
    assert store.count("ns1") == 25


def test_list_ids_pages_cover_every_id_exactly_once(store: Store) -> None:
    records = make_records(237)
    for start in range(0, len(records), 100):
        store.upsert("paged", records[start : start + 100])
    settled(store)

    for page_size in (100, 7):
        listed: list[str] = []
        token = None
        pages = 0
        while True:
            page = store.list_ids("paged", limit=page_size, token=token)
            assert len(page.ids) <= page_size
            listed += page.ids
            pages += 1
            if not page.next_token:
                break
            token = page.next_token
        assert sorted(listed) == sorted(r.id for r in records)
        assert len(listed) == len(set(listed))
        assert pages >= len(records) // page_size
    assert list(iter_all_ids(store, "nowhere")) == []


def test_count_and_namespaces(store: Store) -> None:
    store.upsert("alpha", make_records(3, "a"))
    store.upsert("beta", make_records(5, "b"))
    store.upsert(ODD_NAMESPACE, make_records(2, "o"))
    settled(store)

    assert store.namespaces() == {"alpha": 3, "beta": 5, ODD_NAMESPACE: 2}
    assert store.count("beta") == 5
    assert store.count("never-written") == 0
    assert [r.id for r in store.fetch(ODD_NAMESPACE, ["o-0001"])] == ["o-0001"]


def test_delete_removes_only_those_ids(store: Store) -> None:
    records = make_records(10)
    store.upsert("d", records)

    # More ids than one Pinecone request takes (1,000): the adapter splits.
    store.delete("d", ["id-0001", "id-0003", "not-there"] + [f"ghost-{i}" for i in range(1_500)])
    settled(store)

    assert store.count("d") == 8
    assert {r.id for r in store.fetch("d", [r.id for r in records])} == {r.id for r in records} - {"id-0001", "id-0003"}
    store.delete("never-written", ["x"])  # harmless


def test_delete_namespace_removes_it_and_nothing_else(store: Store) -> None:
    store.upsert("gone", make_records(4))
    store.upsert("kept", make_records(2))

    store.delete_namespace("gone")
    store.delete_namespace("never-written")  # harmless
    settled(store)

    assert store.namespaces() == {"kept": 2}
    assert store.count("gone") == 0
    assert store.fetch("gone", ["id-0000"]) == []


def test_delete_namespace_if_empty_keeps_a_namespace_that_holds_a_vector(store: Store) -> None:
    store.upsert("held", make_records(1))
    store.upsert("emptied", make_records(2))
    store.delete("emptied", ["id-0000", "id-0001"])
    settled(store)  # its callers prove the listing complete first (an LSN probe)

    assert store.delete_namespace_if_empty("held") is False
    assert store.delete_namespace_if_empty("emptied") is True
    assert store.delete_namespace_if_empty("never-written") is True
    settled(store)

    assert store.namespaces() == {"held": 1}
    assert [r.id for r in store.fetch("held", ["id-0000"])] == ["id-0000"]


def test_query_returns_the_nearest_id_first(store: Store) -> None:
    records = make_records(30)
    store.upsert("q", records)
    settled(store)
    target = records[17]

    ids = store.query("q", [v + 1e-3 for v in target.values], top_k=5)

    assert ids[0] == target.id
    assert len(ids) == 5


def test_default_namespace_is_the_empty_string(store: Store) -> None:
    records = make_records(12, "def")
    store.upsert("", records)
    store.upsert("other", make_records(1))
    settled(store)

    assert store.namespaces() == {"": 12, "other": 1}
    assert store.count("") == 12
    assert sorted(iter_all_ids(store, "", page_size=5)) == [r.id for r in records]
    assert_same_records(store.fetch("", [records[4].id]), [records[4]])
    assert store.query("", records[4].values, top_k=1) == [records[4].id]

    store.delete_namespace("")
    settled(store)

    assert store.namespaces() == {"other": 1}


def test_upsert_of_the_wrong_dimension_is_a_store_error(store: Store) -> None:
    store.upsert("dim", make_records(1))

    with pytest.raises(StoreError) as info:
        store.upsert("dim", [Record("short", [0.1, 0.2, 0.3])])

    assert "dim" in str(info.value)


# --- Pinecone only ---------------------------------------------------------------------------------------------------


def test_pinecone_429_is_retryable_with_retry_after_and_sent_once(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    pinecone_store.upsert("ns", make_records(2))
    sandbox.set_faults("contract", Faults(error_rate_429=1.0, retry_after_s=0.75))
    before = sandbox.stats("contract")["requests"].get("fetch", 0)

    with pytest.raises(RetryableError) as info:
        pinecone_store.fetch("ns", ["id-0000"])

    assert info.value.status == 429
    assert info.value.retry_after_s == pytest.approx(0.75)
    assert info.value.ids["namespace"] == "ns"
    # The data-plane client never retries: one call, one request (tenacity is the only retry layer).
    assert sandbox.stats("contract")["requests"]["fetch"] - before == 1


def test_pinecone_rate_window_429_carries_the_servers_retry_after(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    sandbox.set_faults("contract", Faults(write_rps_per_namespace=1, retry_after_s=0.4))
    pinecone_store.upsert("w", make_records(1))

    with pytest.raises(RetryableError) as info:
        pinecone_store.upsert("w", make_records(1))

    assert (info.value.status, info.value.retry_after_s) == (429, pytest.approx(0.4))


def test_pinecone_5xx_is_retryable(pinecone_store: PineconeStore, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("contract", Faults(error_rate_5xx=1.0, status_5xx=503))

    with pytest.raises(RetryableError) as info:
        pinecone_store.list_ids("ns")

    assert info.value.status == 503


def test_pinecone_400_is_a_store_error_with_the_servers_message(pinecone_store: PineconeStore) -> None:
    with pytest.raises(StoreError) as info:
        pinecone_store.upsert("ns", [Record("bad", [1.0, 2.0])])

    assert "400" in str(info.value)
    assert "dimension" in str(info.value).lower()


def test_pinecone_call_with_retry_gets_through_random_429s(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    sandbox.set_faults("contract", Faults(error_rate_429=0.5, retry_after_s=0.01, seed=3))
    waits: list[float] = []
    policy = retrying(attempts=20, max_wait_s=0.05, sleep=waits.append)

    for chunk in range(5):
        call_with_retry(pinecone_store.upsert, "r", make_records(10, f"c{chunk}"), policy=policy)

    sandbox.set_faults("contract", Faults())
    sandbox.settle()  # counts lag writes
    assert pinecone_store.count("r") == 50
    assert waits and all(w >= 0.01 for w in waits)


def test_pinecone_delete_namespace_falls_back_when_the_endpoint_is_off(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    pinecone_store.upsert("fallback", make_records(6))
    pinecone_store.upsert("kept", make_records(1))
    sandbox.set_faults("contract", Faults(namespaces_endpoint=False))
    # By host, as Pinecone Local is reached: the store cannot ask the control plane what kind of index it is.
    by_host = PineconeStore(PineconeStoreSpec(host=sandbox.host("contract"), api_key_env=KEY_ENV))

    by_host.delete_namespace("fallback")
    sandbox.settle()  # the namespaces' counts lag writes

    assert pinecone_store.namespaces() == {"kept": 1}
    by_host.close()
    requests = sandbox.stats("contract")["requests"]
    assert requests["delete_namespace"] == 1  # answered 404 …
    assert requests["delete"] == 1  # … then emptied with deleteAll


def test_pinecone_by_host_needs_no_control_plane(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.reset()
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    store = open_store(PineconeStoreSpec(host=sandbox.host("contract"), api_key_env=KEY_ENV))

    assert isinstance(store, PineconeStore)
    assert store.upsert("h", make_records(2)) == 2
    sandbox.settle()  # counts lag writes
    assert store.count("h") == 2


def test_pinecone_connects_lazily_and_names_a_missing_index(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    # Building a store does no I/O and reads no secret (Celery builds tasks' context before forking workers).
    store = open_store(PineconeStoreSpec(index="no-such-index", control_host=sandbox.control_host, api_key_env=KEY_ENV))
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)

    with pytest.raises(StoreError) as info:
        store.namespaces()

    assert "404" in str(info.value) and "no-such-index" in str(info.value)


def test_pinecone_missing_key_env_is_a_clear_error_without_any_key(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NSMIGRATE_UNSET_KEY", raising=False)
    # The SDK's own fallback variable holds a key: it must be neither used nor shown.
    monkeypatch.setenv("PINECONE_API_KEY", KEY_VALUE)
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host("contract"), api_key_env="NSMIGRATE_UNSET_KEY"))

    with pytest.raises(StoreError) as info:
        store.count("ns")

    assert "NSMIGRATE_UNSET_KEY" in str(info.value)
    assert KEY_VALUE not in str(info.value) and KEY_VALUE not in repr(info.value)


def test_pinecone_rejected_key_never_appears_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with PineconeSandbox(indexes=[IndexSpec("locked", DIM)], api_key="the-right-key").start() as sb:
        monkeypatch.setenv(KEY_ENV, KEY_VALUE)
        store = PineconeStore(PineconeStoreSpec(host=sb.host("locked"), api_key_env=KEY_ENV))

        with pytest.raises(StoreError) as info:
            store.count("ns")

    assert "401" in str(info.value)
    assert KEY_VALUE not in str(info.value) and KEY_VALUE not in repr(info.value) and KEY_VALUE not in repr(store)


# --- pgvector only ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "plain"),
    [
        ("creator_a1_twin_b2", True),
        ("public", True),
        ("", False),
        ("Creator.A-1", False),
        ("a__b", False),
        ("_a", False),
        ("x" * 70, False),
    ],
)
def test_pgvector_table_names_are_valid_identifiers(namespace: str, plain: bool) -> None:
    name = namespace_table_name("emb", namespace)

    assert re.fullmatch(r"[a-z0-9_]{1,63}", name)
    assert (name == f"emb_{namespace}") is plain
    if not plain:
        assert "__" in name.removeprefix("emb")  # a hashed name can never equal a plain one


def test_pgvector_table_names_never_collide() -> None:
    names = ["a_b", "a-b", "A_B", "a__b", "a_b_", "", "x" * 70, "x" * 71, ODD_NAMESPACE, ODD_NAMESPACE + "!"]
    tables = [namespace_table_name("emb_long_prefix_" + "p" * 25, n) for n in names]

    assert len(set(tables)) == len(names)
    assert all(len(t) <= 63 for t in tables)


def test_pgvector_missing_url_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSMIGRATE_UNSET_PG_URL", raising=False)
    store = open_store(PgvectorStoreSpec(database_url_env="NSMIGRATE_UNSET_PG_URL", dimension=DIM))

    with pytest.raises(StoreError, match="NSMIGRATE_UNSET_PG_URL"):
        store.count("ns")


def test_pgvector_unreachable_database_is_retryable() -> None:
    store = PgvectorStore(PgvectorStoreSpec(dimension=DIM), database_url="postgresql://nobody@127.0.0.1:1/none")

    with pytest.raises(RetryableError):
        store.count("ns")


def test_pgvector_infers_the_dimension_from_the_first_write(database_url: str) -> None:
    writer = PgvectorStore(PgvectorStoreSpec(layout="table_per_namespace", table="inferred"), database_url=database_url)
    writer.upsert("n", make_records(2))
    reader = PgvectorStore(PgvectorStoreSpec(layout="table_per_namespace", table="inferred"), database_url=database_url)

    assert reader.dimension() == DIM
    assert reader.namespaces() == {"n": 2}
    writer.close()
    reader.close()


# --- Pinecone: values pass through a copy as the JSON the source sent ------------------------------------------------


def test_pinecone_fetch_keeps_values_as_json_and_a_copy_sends_them_back_verbatim(
    pinecone_store: PineconeStore,
) -> None:
    records = make_records(5)
    pinecone_store.upsert("src", records)

    fetched = pinecone_store.fetch("src", [r.id for r in records])
    assert all(isinstance(r.values, JsonValues) for r in fetched)
    assert_same_records(fetched, records)  # read as floats, they are the float32 values stored
    pinecone_store.upsert("dst", fetched)
    copied = pinecone_store.fetch("dst", [r.id for r in records])

    assert [r.values.json for r in copied] == [r.values.json for r in fetched]  # type: ignore[attr-defined]
    assert [r.metadata for r in copied] == [r.metadata for r in records]


def test_pinecone_fetch_errors_are_mapped_on_the_json_path(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    sandbox.set_faults("contract", Faults(error_rate_5xx=1.0, status_5xx=503))
    with pytest.raises(RetryableError) as info:
        pinecone_store.fetch("ns", ["a"])
    assert info.value.status == 503


def test_metric_is_the_index_metric_or_none_for_a_table(store: Store) -> None:
    # The planner refuses a copy between Pinecone indexes of different metrics; a pgvector table has none.
    assert store.metric() == ("cosine" if isinstance(store, PineconeStore) else None)


def test_records_over_pinecones_limits_are_refused_by_id_and_nothing_is_written(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox
) -> None:
    # A pgvector source can hold what a Pinecone index cannot: the copy must name each such record, not drop it.
    long_id = "x" * 513
    fat = Record("fat-metadata", [1.0] * DIM, {"text": "y" * 41_000})
    records = [Record("fine", [1.0] * DIM, {"a": 1}), Record(long_id, [1.0] * DIM, {}), fat]

    with pytest.raises(StoreError) as refused:
        pinecone_store.upsert("limits", records)

    message = str(refused.value)
    assert "2 records exceed Pinecone's limits" in message
    assert f"id {long_id[:40]!r}… is 513 characters (at most 512)" in message
    assert "id 'fat-metadata' has 41011 bytes of metadata (at most 40960)" in message
    assert "'fine'" not in message  # only the offending ids are named
    assert pinecone_store.count("limits") == 0


def _binary(values: list[float]) -> BinaryValues:
    """Values as a pgvector table sends them in binary: uint16 dimension, uint16 unused, big-endian float32s."""
    return BinaryValues(len(values).to_bytes(2, "big") + b"\0\0" + np.asarray(values, dtype=">f4").tobytes())


def test_records_pinecone_refuses_for_their_id_keys_or_zero_values_are_named_and_nothing_is_written(
    pinecone_store: PineconeStore,
) -> None:
    # Each of these a pgvector source can hold; Pinecone refuses the whole upsert, naming none of them.
    fine = Record("fine", [1.0] * DIM, {"a": 1, "a$": "x", "_b": "y"})
    near_zero = Record("tiny-but-enough", [0.0] * (DIM - 1) + [1e-8], {})
    records = [
        fine,
        near_zero,
        Record("caf\u00e9", [1.0] * DIM, {}),
        Record("nul\x00id", [1.0] * DIM, {}),
        Record("dollar", [1.0] * DIM, {"$in": "x", "ok": 1, "$eq": 2}),
        Record("zeros", [0.0] * DIM, {}),
        Record("almost-zeros", [1e-9, -1e-9] + [0.0] * (DIM - 2), {}),
        Record("zeros-binary", _binary([0.0] * DIM), {}),
    ]

    with pytest.raises(StoreError) as refused:
        pinecone_store.upsert("rules", records)

    message = str(refused.value)
    assert "6 records exceed Pinecone's limits" in message, message
    assert "id 'café' has a non-ASCII character" in message
    assert "id 'nul\\x00id' has a NUL character" in message
    assert "id 'dollar' has metadata key(s) '$in', '$eq' starting with '$'" in message
    for name in ("zeros", "almost-zeros", "zeros-binary"):
        assert f"id {name!r} has only zeros as values" in message
    assert "'fine'" not in message and "tiny-but-enough" not in message
    assert "ASCII" in refused.value.hint and "'$'" in refused.value.hint and "zero" in refused.value.hint
    assert pinecone_store.count("rules") == 0
    # What it names is what Pinecone refuses: the rest is written.
    assert pinecone_store.upsert("rules", [fine, near_zero, Record("bin", _binary([0.0] * (DIM - 1) + [0.5]))]) == 3


def test_values_fetched_from_pinecone_are_never_read_for_zeros() -> None:
    # Pinecone holds no vector of only zeros; decoding fetched values would cost every copy. Not even JSON: not read.
    assert over_limits([Record("fetched", JsonValues(b"not json at all"), {})]) == []
    assert over_limits([Record("zeros", [0.0] * DIM, {})], dense=False) == []  # a text record sends no values

"""The one way to call a store, on real services: ``GuardedStore`` over the real Pinecone SDK against the local data
plane and over pgvector on real Postgres, with the fleet-wide limiter on real Redis. Every protocol method takes its
token from the scope the task modules always used (read Redis' own buckets to see it), an upsert reserves its bytes,
a 429 is retried with a token per attempt, and a host that never answers fails after a few tries."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis as redis_lib
from prometheus_client import REGISTRY

from nsmigrate.orchestrator.errors import RetryableError
from nsmigrate.orchestrator.messaging.task_names import rate_bucket_key
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.orchestrator.spec.store_identity import pinecone_host_identity
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers import tally
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.base import Record, Store
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate.workers.transfer.chunking import estimate_bytes
from nsmigrate.workers.transfer.ratelimit import (
    DEFAULT_GUARD_S,
    RateLimiter,
    amount_key,
    bytes_scope_of,
    delete_scope,
    list_scope,
    query_scope,
    read_scope,
    stats_scope,
    write_scope,
)
from nsmigrate_sandbox.pinecone_server import SERVERLESS_LIMITS, Faults, IndexSpec, PineconeSandbox

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_PINECONE_KEY"
RATE = RateBudget(read_rps=500, list_rps=500, write_rps=500, write_mb_per_s=5)


def make_records(n: int, prefix: str = "id") -> list[Record]:
    rng = np.random.default_rng(7)
    return [Record(f"{prefix}-{i:04d}", [float(v) for v in rng.normal(size=DIM)], {"n": i}) for i in range(n)]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("guarded", DIM)]


@pytest.fixture
def pinecone_store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeStore]:
    monkeypatch.setenv(KEY_ENV, "pcsk-guarded-test")
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host("guarded"), api_key_env=KEY_ENV))
    yield store
    store.close()


@pytest.fixture(params=["pinecone", "pgvector"])
def inner(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "pinecone":
        yield request.getfixturevalue("pinecone_store")
        return
    url = request.getfixturevalue("database_url")
    pg = PgvectorStore(PgvectorStoreSpec(layout="table_per_namespace", table="emb", dimension=DIM), database_url=url)
    yield pg
    pg.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis_lib.Redis]:
    c = redis_lib.Redis.from_url(redis_url)
    yield c
    c.close()


def guarded(store: Store, client: redis_lib.Redis, waits: list[float] | None = None) -> GuardedStore:
    sleep: Callable[[float], None] = waits.append if waits is not None else (lambda _s: None)
    return GuardedStore(store, limiter=RateLimiter(client), rate=RATE, attempts=8, max_wait_s=0.05, sleep=sleep)


def server_time_us(client: redis_lib.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def admissions_since(client: redis_lib.Redis, scope: str, since_us: int) -> int:
    """Requests the limiter admitted in ``scope`` at or after Redis time ``since_us``."""
    return int(client.zcount(rate_bucket_key(scope), since_us, "+inf"))


# --- the wrapper is the whole protocol, spelled out ---------------------------------------------------------------


def test_every_protocol_method_is_implemented_explicitly() -> None:
    wanted = {name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}
    assert wanted, "the protocol lost its methods"
    missing = sorted(name for name in wanted if name not in GuardedStore.__dict__)
    assert missing == []
    assert not hasattr(GuardedStore, "__getattr__")


# --- scopes: the ones the task modules always used ----------------------------------------------------------------


def test_each_method_takes_one_token_from_its_scope(inner: Store, client: redis_lib.Redis) -> None:
    store = guarded(inner, client)
    store.upsert("ns", make_records(5))  # something to read (its own token is checked below)
    vector = list(make_records(1)[0].values)
    key = store.budget_key
    scopes = [read_scope(key), list_scope(key), write_scope(key, "ns"), stats_scope(key), query_scope(key, "ns")]
    calls: list[tuple[str, Callable[[], Any], str]] = [
        # Pinecone limits index stats (describe_index_stats; describe_namespace held to it) apart from fetch.
        ("dimension", store.dimension, scopes[3]),
        ("namespaces", store.namespaces, scopes[3]),
        ("metric", store.metric, scopes[3]),
        ("count", lambda: store.count("ns"), scopes[3]),
        ("fetch", lambda: store.fetch("ns", ["id-0000"]), scopes[0]),
        ("query", lambda: store.query("ns", vector, 2), scopes[4]),
        ("list_ids", lambda: store.list_ids("ns", limit=2), scopes[1]),
        ("upsert", lambda: store.upsert("ns", make_records(2, "more")), scopes[2]),
        ("delete", lambda: store.delete("ns", ["more-0000"]), scopes[2]),
        ("delete_namespace", lambda: store.delete_namespace("ns"), scopes[2]),
    ]
    for name, call, scope in calls:
        since = server_time_us(client)
        call()
        taken = {s: admissions_since(client, s, since) for s in scopes}
        assert taken == {s: int(s == scope) for s in scopes}, name


def test_write_scopes_are_per_namespace_and_read_scopes_per_store(
    pinecone_store: PineconeStore, client: redis_lib.Redis
) -> None:
    store = guarded(pinecone_store, client)
    since = server_time_us(client)

    store.upsert("a", make_records(1))
    store.upsert("b", make_records(1))
    store.fetch("a", ["id-0000"])
    store.fetch("b", ["id-0000"])

    assert admissions_since(client, write_scope(store.budget_key, "a"), since) == 1
    assert admissions_since(client, write_scope(store.budget_key, "b"), since) == 1
    assert admissions_since(client, read_scope(store.budget_key), since) == 2


def test_queries_take_their_namespaces_budget_apart_from_fetch_and_a_pods_its_read_budget(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinecone limits a serverless index's queries per namespace (100/s), apart from its fetches (100/s per index):
    verification's queries of many namespaces must not queue behind one index-wide budget. A pod source (its ids
    found by a sweep of queries) lists nothing and has no per-namespace limit: its queries stay under the index's
    read budget."""
    store = guarded(pinecone_store, client)
    store.upsert("a", make_records(2))
    store.upsert("b", make_records(2))
    vector = list(make_records(1)[0].values)
    key = store.budget_key
    since = server_time_us(client)

    for namespace in ("a", "a", "b"):
        store.query(namespace, vector, 2)
    store.query_scored("b", vector, 2)
    store.timed_query("b", vector, 2)

    assert admissions_since(client, query_scope(key, "a"), since) == 2
    assert admissions_since(client, query_scope(key, "b"), since) == 3
    assert admissions_since(client, read_scope(key), since) == 0

    monkeypatch.setenv(KEY_ENV, "pcsk-guarded-test")
    sandbox.add_index(IndexSpec("guarded-pod", DIM, kind="pod"))
    swept = {"mode": "sweep", "top_k": 100, "max_queries": 10}  # a pod source: its ids found by queries
    pod = PineconeStore(PineconeStoreSpec(host=sandbox.host("guarded-pod"), api_key_env=KEY_ENV, enumerate=swept))
    try:
        on_pod = guarded(pod, client)
        on_pod.upsert("a", make_records(2))
        since = server_time_us(client)
        on_pod.query("a", vector, 2)
        assert admissions_since(client, read_scope(on_pod.budget_key), since) == 1
        assert admissions_since(client, query_scope(on_pod.budget_key, "a"), since) == 0
    finally:
        pod.close()


def test_two_labels_of_one_index_share_its_budget(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis
) -> None:
    host = sandbox.host("guarded")  # http://127.0.0.1:PORT
    other = PineconeStore(PineconeStoreSpec(host=host.replace("127.0.0.1", "localhost"), api_key_env=KEY_ENV))
    one, two = guarded(pinecone_store, client), guarded(other, client)
    assert one.name != two.name  # two labels, as two jobs' (or one spec's two) stores would have
    index = pinecone_host_identity(host)  # what Pinecone limits: the index, whatever its spelling
    since = server_time_us(client)
    try:
        for store in (one, two):
            store.upsert("ns", make_records(1))
            store.fetch("ns", ["id-0000"])
            store.list_ids("ns", limit=1)
            store.count("ns")
    finally:
        other.close()

    for scope in (read_scope(index), list_scope(index), stats_scope(index), write_scope(index, "ns")):
        assert admissions_since(client, scope, since) == 2, scope  # one budget, both labels' requests in it


def at_once(calls: list[Callable[[], object]]) -> None:
    """Run ``calls`` each in a thread of its own, all at once, and wait for them."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def weights(client: redis_lib.Redis, scope: str) -> list[int]:
    """The amounts entered in ``scope``'s weighted log (``RateLimiter.acquire_amount``), oldest first."""
    return [int(member.rsplit(b":", 1)[1]) for member in client.zrange(amount_key(scope), 0, -1)]


def test_an_upsert_reserves_its_bytes_of_the_namespace_budget(inner: Store, client: redis_lib.Redis) -> None:
    store = guarded(inner, client)
    records = make_records(20)

    store.upsert("measured", records)
    store.upsert("given", records, nbytes=123_456)

    def reserved(namespace: str) -> list[int]:
        return weights(client, bytes_scope_of(write_scope(store.budget_key, namespace) + ":bytes"))

    assert reserved("measured") == [sum(estimate_bytes(r) for r in records)]
    assert reserved("given") == [123_456]


def test_a_pinecone_delete_takes_as_many_of_the_index_delete_budget_as_it_names_ids(
    inner: Store, client: redis_lib.Redis
) -> None:
    """Pinecone limits the records deleted a second per index beside the delete requests: a delete from a Pinecone
    index takes one record token per id of its index's delete scope, in requests no larger than the budget admits at
    once; pgvector has no such limit."""
    # Slept on paper: the three requests' slots stay in the window (one now, two in the windows after it) to be read.
    limiter = RateLimiter(client, sleep=lambda _s: None)
    store = GuardedStore(inner, limiter=limiter, rate=RateBudget(delete_records_per_s=300))
    store.upsert("gone", make_records(3))
    since = server_time_us(client)

    store.delete("gone", [f"id-{i:04d}" for i in range(700)])

    pinecone = isinstance(inner, PineconeStore)
    assert weights(client, delete_scope(store.budget_key)) == ([300, 300, 100] if pinecone else [])
    assert admissions_since(client, write_scope(store.budget_key, "gone"), since) == (3 if pinecone else 1)
    assert store.count("gone") == 0


def test_deletes_under_the_default_budget_stay_within_pinecones_records_limit(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis
) -> None:
    """12,000 ids deleted from three namespaces at once under the default budgets: the write budget alone would send
    them within a second (80 requests of 1,000 a namespace), over Pinecone's 5,000 records a second per index.
    The delete budget keeps every second under it: no delete is refused."""
    sandbox.set_faults("guarded", Faults.pinecone_serverless_limits())
    store = GuardedStore(pinecone_store, limiter=RateLimiter(client), rate=RateBudget())
    namespaces = ("d-a", "d-b", "d-c")
    for namespace in namespaces:
        store.upsert(namespace, make_records(5))

    at_once([lambda ns=ns: store.delete(ns, [f"id-{i:04d}" for i in range(4_000)]) for ns in namespaces])

    stats = sandbox.stats("guarded")
    assert stats["rate_limited"]["delete_records"] == 0
    assert stats["requests"]["delete"] == 12
    # Pinecone's limit, not the budget: the budget's window is 1 s + rate_guard_s at the client, and a request held
    # up longer than the guard on a loaded machine reaches the server in the next window's second.
    peak = stats["max_admitted_per_second"]["delete_records_per_index"]
    assert peak <= SERVERLESS_LIMITS["delete_records_per_s_per_index"], peak
    assert all(store.count(ns) == 0 for ns in namespaces)


def test_upserts_at_the_byte_budget_stay_within_the_namespaces_upsert_size_limit(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis
) -> None:
    """Eight threads upsert 2.8 MB into one namespace at a byte budget of 0.8 of its upsert-size limit (as the
    default 40 MB/s is of Pinecone's 50): in no second does the namespace receive more than the limit."""
    sandbox.set_faults("guarded", Faults(write_mb_per_s_per_namespace=1))
    store = GuardedStore(pinecone_store, limiter=RateLimiter(client), rate=RateBudget(write_mb_per_s=0.8))
    text = "x" * 35_000  # under Pinecone's 40 KB of metadata: 10 records a request, 350 KB
    parts = [[Record(f"big-{t}-{n}", [1.0] * DIM, {"text": text}) for n in range(10)] for t in range(8)]

    at_once([lambda part=part: store.upsert("bytes", part) for part in parts])

    stats = sandbox.stats("guarded")
    assert stats["rate_limited"]["write_bytes"] == 0
    assert stats["max_admitted_per_second"]["write_bytes_per_namespace"]["bytes"] <= 1_000_000
    sandbox.settle()  # counts lag writes
    assert store.count("bytes") == 80


# --- retries ----------------------------------------------------------------------------------------------------


def test_a_fetch_at_a_reserved_slot_takes_no_other_and_its_retries_take_their_own(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis
) -> None:
    """``reserve_read`` takes the fetch's slot ahead of it; the fetch then goes on that slot, and only an attempt
    after a refusal takes another."""
    store = guarded(pinecone_store, client)
    store.upsert("slot", make_records(3))
    scope = read_scope(store.budget_key)
    since = server_time_us(client)

    slot = store.reserve_read()
    assert slot is not None and admissions_since(client, scope, since) == 1
    assert [r.id for r in store.fetch("slot", ["id-0000"], reserved=slot)] == ["id-0000"]
    assert admissions_since(client, scope, since) == 1

    sandbox.set_faults("guarded", Faults(error_rate_429=0.5, retry_after_s=0.01, error_ops=("fetch",), seed=3))
    before = sandbox.stats("guarded")["requests"]["fetch"]
    for i in range(1, 3):
        assert [r.id for r in store.fetch("slot", [f"id-{i:04d}"], reserved=store.reserve_read())] == [f"id-{i:04d}"]
    attempts = sandbox.stats("guarded")["requests"]["fetch"] - before
    assert attempts > 2  # some were answered 429 and tried again, each on a slot of its own
    assert admissions_since(client, scope, since) == 1 + attempts
    assert GuardedStore(pinecone_store).reserve_read() is None  # no budget: nothing to reserve


def test_a_slot_gone_by_before_its_fetch_is_counted_missed_and_the_fetch_takes_its_own(
    pinecone_store: PineconeStore, client: redis_lib.Redis
) -> None:
    """A fetch whose thread reaches its reserved slot over half the guard late goes on a slot of its own (``wait_for``
    takes the missed one out of the window): the task's tally and the missed-slot metric count it, so starved threads
    show. A fetch on time counts nothing."""
    store = guarded(pinecone_store, client)
    store.upsert("missed", make_records(2))
    scope = read_scope(store.budget_key)

    def missed() -> float:
        return REGISTRY.get_sample_value("nsmigrate_rate_slots_missed_total", {"store": store.name}) or 0.0

    before = missed()
    with tally.counting() as counts:
        on_time = store.reserve_read()
        assert [r.id for r in store.fetch("missed", ["id-0000"], reserved=on_time)] == ["id-0000"]
        assert counts.slots_missed == 0 and missed() == before

        since = server_time_us(client)
        late = store.reserve_read()
        assert late is not None
        time.sleep(DEFAULT_GUARD_S)  # the thread "wakes" a whole guard after its slot: over half of it late
        assert [r.id for r in store.fetch("missed", ["id-0001"], reserved=late)] == ["id-0001"]

    assert counts.slots_missed == 1 and counts.result()["slots_missed"] == 1
    assert missed() == before + 1
    assert admissions_since(client, scope, since) == 1  # the missed slot left the window; the fetch took one


def test_waiting_before_a_reserved_slot_is_counted_as_time_waited_for_the_budget(
    pinecone_store: PineconeStore, client: redis_lib.Redis
) -> None:
    """A caller that sleeps until just before its slot, to work in the time left, waited for the budget: the task's
    tally and the rate-limit wait metric say so, as for a wait inside the request."""
    store = GuardedStore(pinecone_store, limiter=RateLimiter(client), rate=RateBudget(read_rps=1))
    store.reserve_read()  # the window's one slot
    slot = store.reserve_read()
    assert slot is not None and slot.ahead_s() > 0.9

    def waited() -> float:
        sample = REGISTRY.get_sample_value("nsmigrate_rate_limit_wait_seconds_total", {"store": store.name})
        return sample or 0.0

    before = waited()
    with tally.counting() as counts:
        store.wait_before(slot, lead_s=slot.ahead_s() - 0.2)
        store.wait_before(slot, lead_s=slot.ahead_s() + 0.1)  # already within the lead: no wait

    assert 0.19 < counts.waited_s < 0.3
    assert waited() - before == pytest.approx(counts.waited_s)


def test_429s_are_retried_and_every_attempt_takes_a_token(
    pinecone_store: PineconeStore, sandbox: PineconeSandbox, client: redis_lib.Redis
) -> None:
    store = guarded(pinecone_store, client)
    store.upsert("r", make_records(30))
    sandbox.set_faults("guarded", Faults(error_rate_429=0.5, retry_after_s=0.01, error_ops=("fetch",), seed=3))
    waits: list[float] = []
    store = guarded(pinecone_store, client, waits)
    since = server_time_us(client)

    fetched = [store.fetch("r", [f"id-{i:04d}"]) for i in range(30)]

    assert [[r.id for r in got] for got in fetched] == [[f"id-{i:04d}"] for i in range(30)]
    attempts = sandbox.stats("guarded")["requests"]["fetch"]
    assert attempts > 30 and len(waits) == attempts - 30  # some were answered 429 and tried again
    assert all(w >= 0.01 for w in waits)  # never sooner than Retry-After
    assert admissions_since(client, read_scope(store.budget_key), since) == attempts


def test_a_host_that_does_not_answer_fails_after_a_few_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-guarded-test")
    dead = PineconeStore(PineconeStoreSpec(host="http://127.0.0.1:9", api_key_env=KEY_ENV))  # discard port: refused
    waits: list[float] = []
    store = GuardedStore(dead, attempts=6, max_wait_s=0.05, no_answer_attempts=3, sleep=waits.append)

    with pytest.raises(RetryableError) as info:
        store.namespaces()

    assert info.value.status is None
    assert len(waits) == 2  # three tries, not six
    dead.close()


def test_a_server_that_answers_5xx_gets_every_attempt(pinecone_store: PineconeStore, sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("guarded", Faults(error_rate_5xx=1.0, status_5xx=503))
    waits: list[float] = []
    store = GuardedStore(pinecone_store, attempts=6, max_wait_s=0.05, no_answer_attempts=3, sleep=waits.append)

    with pytest.raises(RetryableError) as info:
        store.namespaces()

    assert info.value.status == 503
    assert len(waits) == 5
    assert sandbox.stats("guarded")["requests"]["describe_index_stats"] == 6


def test_the_cli_store_retries_without_a_budget(
    sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, client: redis_lib.Redis
) -> None:
    sandbox.reset()
    sandbox.set_faults("guarded", Faults(error_rate_429=0.5, retry_after_s=0, error_ops=("upsert",), seed=1))
    monkeypatch.setenv(KEY_ENV, "pcsk-guarded-test")
    store = open_retrying_store(PineconeStoreSpec(host=sandbox.host("guarded"), api_key_env=KEY_ENV))
    assert isinstance(store, GuardedStore)

    for chunk in range(4):
        assert store.upsert("cli", make_records(3, f"c{chunk}")) == 3

    sandbox.set_faults("guarded", Faults())
    sandbox.settle()  # counts lag writes
    assert store.count("cli") == 12
    assert client.keys("*") == []  # no limiter: nothing taken from any budget
    store.close()

"""Fleet-wide namespace locks on real Redis (``workers.transfer.namespace_locks``), and the deletions and writes that
take them through ``GuardedStore`` against the local data plane: each ``NamespaceLocks`` here stands for another
process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import redis as redis_lib
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import BatchFailed, RetryableError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import BatchState
from nsmigrate.orchestrator.routing.route import route_context, route_records
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, listing
from nsmigrate.workers.steps.proving import delete_absent, delete_proven
from nsmigrate.workers.stores import open_retrying_store, open_store
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate.workers.transfer.namespace_locks import NamespaceLocks, namespace_key
from nsmigrate.workers.transfer.write_fence import ERASURE_MARK_KEY, erasure_mark, mark_erasure
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.seed import seed_chunks
from tests.fleet_jobs import batches
from tests.polling import wait_until
from tests.sent_tasks import SentTasks

DIM = 4
KEY_ENV = "NSMIGRATE_TEST_PINECONE_KEY"
DOCUMENTED = {"kind": "pgvector", "schema": "documented", "database_url_env": "NSMIGRATE_PGVECTOR_URL"}
SHORT_WAIT_S = 0.3


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("locks", DIM)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


def locks(client: redis_lib.Redis, wait_s: float = SHORT_WAIT_S, ttl_s: float = 30) -> NamespaceLocks:
    return NamespaceLocks(client, ttl_s=ttl_s, wait_s=wait_s)


A, B, C = (namespace_key("pinecone:loopback:1", ns) for ns in ("a", "b", "c"))


def test_a_namespace_held_alone_admits_no_other_deletion_nor_write(client: redis_lib.Redis) -> None:
    mine, theirs = locks(client), locks(client)
    with mine.exclusive([A, B], "a and b"):
        with theirs.shared(C, "c"):
            pass  # c is not held
        with pytest.raises(RetryableError, match="stayed locked"), theirs.shared(A, "a"):
            pass
        with pytest.raises(RetryableError, match="stayed locked"), theirs.exclusive([B, C], "b and c"):
            pass
        assert client.get(f"{C}:x") is None  # all or nothing: waiting for b, it took no c either
    with theirs.exclusive([B, C], "b and c"):
        pass


def test_writes_go_side_by_side_and_a_deletion_waits_for_them(client: redis_lib.Redis) -> None:
    one, two, deleter = locks(client), locks(client), locks(client, wait_s=30)
    taken = threading.Event()

    def delete() -> None:
        with deleter.exclusive([A], "a"):
            taken.set()

    with one.shared(A, "a"), two.shared(A, "a"):
        waiting = threading.Thread(target=delete)
        waiting.start()
        wait_until(lambda: client.exists(f"{A}:w"), what="the deletion waiting for a", timeout_s=10)
        # A deletion waiting: new writes wait behind it rather than keep it out for ever.
        with pytest.raises(RetryableError), locks(client).shared(A, "a"):
            pass
        assert not taken.is_set()
    waiting.join()
    assert taken.is_set()


def test_a_write_hold_reads_the_erasure_mark_as_it_is_granted(client: redis_lib.Redis) -> None:
    """What a copy's write fence compares with the mark read before its batch's start (``write_fence``)."""
    client.delete(ERASURE_MARK_KEY)
    with locks(client).shared(A, "a", read=ERASURE_MARK_KEY) as mark:
        assert mark is None  # no mark (a Redis restarted): the fence reads the job table
    before = erasure_mark(client)
    assert before is not None and erasure_mark(client) == before  # made once, then read
    with locks(client).shared(A, "a", read=ERASURE_MARK_KEY) as mark:
        assert mark == before
    mark_erasure(client)
    with locks(client).shared(A, "a", read=ERASURE_MARK_KEY) as mark, locks(client).shared(B, "b") as unread:
        assert mark is not None and mark != before and unread is None


@pytest.mark.parametrize("kept", [True, False])
def test_a_write_held_past_its_ttl_keeps_its_namespace_only_if_kept_fresh(client: redis_lib.Redis, kept: bool) -> None:
    """A pgvector batch copied inside Postgres holds its target for its whole statement (``guarded.shared_hold``):
    kept fresh, a deletion waits for it however long it runs; a hold of one request is not refreshed."""
    writer = locks(client, ttl_s=0.3)
    with writer.shared(A, "a", kept=kept):
        deletion = locks(client, wait_s=1.2)  # four of the writer's ttl
        if kept:
            with pytest.raises(RetryableError), deletion.exclusive([A], "a"):
                pass
        else:
            with deletion.exclusive([A], "a"):  # the expired hold no longer counts
                pass


def test_a_dead_holders_namespaces_are_free_once_its_hold_expired(client: redis_lib.Redis) -> None:
    dead = locks(client, ttl_s=0.5)
    dead._exclusive(keys=[A], args=["dead-holder", 500, 100])  # taken, then never refreshed nor released
    with pytest.raises(RetryableError), locks(client, wait_s=0.1).exclusive([A], "a"):
        pass
    with locks(client, wait_s=10).exclusive([A], "a"):
        pass


def test_a_thread_holding_a_namespace_writes_and_deletes_in_it(client: redis_lib.Redis) -> None:
    mine = locks(client)
    with mine.exclusive([A], "a"), mine.exclusive([A, B], "a and b"), mine.shared(B, "b"):
        assert client.get(f"{B}:x") is not None
    assert client.get(f"{A}:x") is None and client.get(f"{B}:x") is None


@pytest.fixture
def guarded(
    sandbox: PineconeSandbox, client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GuardedStore]:
    monkeypatch.setenv(KEY_ENV, "pcsk-locks-test")
    store = PineconeStore(PineconeStoreSpec(host=sandbox.host("locks"), api_key_env=KEY_ENV))
    yield GuardedStore(store, attempts=1, locks=locks(client))
    store.close()


def test_a_deletion_proves_and_deletes_only_while_it_holds_its_namespaces(
    sandbox: PineconeSandbox, guarded: GuardedStore, client: redis_lib.Redis
) -> None:
    """Another job's deletion holds the namespace the proof reads its copies from: nothing is proved nor deleted
    until it ends; a write into it waits too."""
    rng = np.random.default_rng(3)
    records = [Record(f"id-{i}", rng.random(DIM).tolist(), {"i": i}) for i in range(5)]
    index = {"kind": "pinecone", "host": sandbox.host("locks"), "api_key_env": KEY_ENV}
    spec = parse_spec({"name": "locks", "source": index, "target": index})
    route = route_context(spec, guarded.name, "source", "copies")
    guarded.upsert("source", records)
    guarded.upsert("copies", route_records(records, route)["copies"])
    ids = [r.id for r in records]

    with locks(client).exclusive([guarded.lock_key("copies")], "copies"):
        with pytest.raises(RetryableError, match="stayed locked"):
            delete_proven(guarded, "source", guarded, ids, route, spec, delete_from="source")
        with pytest.raises(RetryableError, match="stayed locked"):
            guarded.upsert("copies", records[:1])
        assert sorted(sandbox.snapshot("locks")["source"]) == ids

    proof = delete_proven(guarded, "source", guarded, ids, route, spec, delete_from="source")

    assert sorted(proof.proven) == ids
    assert "source" not in sandbox.snapshot("locks")


def test_a_pgvector_batch_copied_inside_postgres_waits_for_a_deletion_of_its_target(
    pg: sa.Engine,
    database_url: str,
    redis_url: str,
    client: redis_lib.Redis,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch copied by one ``INSERT … SELECT`` inside Postgres writes past ``GuardedStore``: it holds its target
    namespace as a write request does, so it waits for a deletion there (and fails, to be retried, after the wait)."""
    monkeypatch.setenv("NSMIGRATE_NAMESPACE_LOCK_WAIT_S", str(SHORT_WAIT_S))
    source = [Record(f"r{i}", values, metadata) for i, values, metadata in seed_chunks(30, 16)]
    store = open_store(PgvectorStoreSpec.model_validate(DOCUMENTED))
    store.upsert("alpha", source)
    jobs_database.Database(database_url).dispose()  # the job table's schema, as a command makes it
    ctx = worker_context(database_url, redis_url, dispatcher=SentTasks())
    spec = parse_spec(
        {
            "name": "pg-locks",
            "source": DOCUMENTED,
            "target": DOCUMENTED,
            "routing": {"mode": "explicit", "map": {"alpha": "beta"}},
            "batch_size": 20,
        }
    )
    job_id = launch.start_or_resume(ctx.db, ctx.dispatcher, spec, open_retrying_store, new=True).job_id
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    listing.list_run(ctx, run.id)
    batch, _ = batches(ctx.db, job_id)  # 15 ids, then 15 (``table_batches``: even)
    target = ctx.guarded(spec.target, spec.rate)

    with locks(client).exclusive([target.lock_key("beta")], "beta"):
        with pytest.raises(BatchFailed):
            copying.copy_batch(ctx, batch.id)
        assert store.count("beta") == 0
    failed, _ = batches(ctx.db, job_id)
    assert failed.state == BatchState.FAILED and "stayed locked" in (failed.last_error or "")

    assert copying.copy_batch(ctx, batch.id) == 15
    assert store.count("beta") == 15
    store.close()


def test_a_propagated_delete_holds_the_source_it_found_the_ids_absent_from(
    sandbox: PineconeSandbox, guarded: GuardedStore, client: redis_lib.Redis
) -> None:
    """``sync --propagate-deletes``: while another job's deletion or write holds the source, no absence is read
    from it and nothing is deleted from the target."""
    rng = np.random.default_rng(4)
    records = [Record(f"id-{i}", rng.random(DIM).tolist(), {"i": i}) for i in range(3)]
    guarded.upsert("copies", records)  # the source ("source") holds none of them: each absence is propagated

    with locks(client).exclusive([guarded.lock_key("source")], "source"):
        with pytest.raises(RetryableError, match="stayed locked"):
            delete_absent(guarded, "source", guarded, "copies", [r.id for r in records])
        assert sorted(sandbox.snapshot("locks")["copies"]) == ["id-0", "id-1", "id-2"]

    assert delete_absent(guarded, "source", guarded, "copies", [r.id for r in records]) == (3, 0, None)

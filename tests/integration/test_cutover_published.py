"""A job's cut-over as the fleet publishes it in Redis and ``DualWriteIndex`` follows it (``orchestrator.cutover.
published``, ``orchestrator.cutover.following``), on a real Redis and job table: the application's two indexes are
recording stand-ins, so what each side was asked is what the test reads."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa

from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import ERASURE_LEDGER_KEY, cutover_key
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.context import WorkerContext

SPEC = {
    "name": "published",
    "source": {"kind": "pinecone", "host": "http://127.0.0.1:1"},
    "target": {"kind": "pinecone", "host": "http://127.0.0.1:2"},
    "routing": {"mode": "explicit", "map": {"a": "a-new", "b": "b-new"}},
}


class Side:
    """One of the application's indexes: answers a query with one match, a fetch with the metadata of ``held``
    (id → metadata), and keeps what it was asked (``deleted``: each delete's namespace and ids)."""

    def __init__(self, name: str, fail_writes: bool = False, held: dict[str, dict[str, Any]] | None = None) -> None:
        self.name, self.fail_writes, self.calls = name, fail_writes, list[tuple[str, str]]()
        self.held, self.deleted = held or {}, list[tuple[str, list[str]]]()

    def fetch(self, ids: Any, namespace: str) -> SimpleNamespace:
        """As the SDK answers: ``.vectors``, id → a vector with ``.metadata``."""
        self.calls.append(("fetch", namespace))
        return SimpleNamespace(vectors={i: SimpleNamespace(id=i, metadata=self.held[i]) for i in ids if i in self.held})

    def upsert(self, vectors: Any, namespace: str) -> dict[str, int]:
        self.calls.append(("upsert", namespace))
        if self.fail_writes:
            raise RuntimeError(f"{self.name} refused the write")
        return {"upserted_count": len(list(vectors))}

    def delete(self, ids: Any, namespace: str) -> None:
        self.calls.append(("delete", namespace))
        if self.fail_writes:
            raise RuntimeError(f"{self.name} refused the delete")
        self.deleted.append((namespace, list(ids)))

    def query(self, namespace: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("query", namespace))
        return {"matches": [{"id": "x", "score": 1.0}]}


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url)


def plan_of(*namespaces: str) -> Plan:
    return Plan(
        runs=[NamespacePlan(ns, f"{ns}-new" if ns else "", 1, 1, None, None) for ns in namespaces],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
        twins={},
    )


def plan_of_routed(namespace: str) -> Plan:
    """One run of ``namespace`` routed per record (no target namespace of its own)."""
    return Plan(
        runs=[NamespacePlan(namespace, None, 3, 1, None, None)],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
        twins={"t1": "c1", "t2": "c2"},
    )


def verified(ctx: WorkerContext, job_id: int) -> None:
    """Every run of the job verified, as `cutover set` asks before reads move (the copy itself is not this file's)."""
    with ctx.db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.job_id == job_id).values(state=RunState.VERIFIED))


@pytest.fixture
def job_id(ctx: WorkerContext) -> int:
    """A verified migrate job of namespaces a → a-new, b → b-new and the default namespace into the new index's
    default one, published for its applications."""
    job_id = jobs_and_runs.create_job(
        ctx.db, parse_spec(SPEC), plan_of("a", "b", ""), source_label="old", target_label="new"
    )
    verified(ctx, job_id)
    published.publish(ctx.db, ctx.redis, job_id)
    return job_id


def app(ctx: WorkerContext, job_id: int, new: Side | None = None, **kwargs: Any) -> tuple[DualWriteIndex, Side, Side]:
    old, new = Side("old"), new or Side("new")
    return DualWriteIndex(old=old, new=new, job_id=job_id, redis=ctx.redis, max_age_s=0, **kwargs), old, new


def test_reads_follow_each_published_step_and_nothing_else(ctx: WorkerContext, job_id: int) -> None:
    wrapper, old, new = app(ctx, job_id, compare_share=0)

    wrapper.query(vector=[0.1], top_k=1, namespace="a")
    rollout_rows.set_rollout(ctx.db, job_id, 100, "tester")  # recorded, not yet published: nothing moves
    wrapper.query(vector=[0.1], top_k=1, namespace="a")
    published.publish(ctx.db, ctx.redis, job_id)
    wrapper.query(vector=[0.1], top_k=1, namespace="a")

    assert old.calls == [("query", "a"), ("query", "a")] and new.calls == [("query", "a-new")]


def test_a_namespace_added_during_the_rollout_is_read_old_until_its_copy_is_verified(
    ctx: WorkerContext, job_id: int
) -> None:
    # `sync --new-namespaces` at 100 % new: the new run is published at once (its dual writes must reach the
    # target), but its copy is still under way, so its reads stay where the application had them.
    wrapper, old, new = app(ctx, job_id, compare_share=0)
    rollout_rows.set_rollout(ctx.db, job_id, 100, "tester")
    jobs_and_runs.add_runs(ctx.db, job_id, plan_of("c"), source_label="old", target_label="new")
    published.publish(ctx.db, ctx.redis, job_id)

    wrapper.query(vector=[0.1], top_k=1, namespace="c")
    wrapper.upsert(vectors=[("v1", [0.1])], namespace="c")
    assert not wrapper.reads_new("c") and wrapper.reads_new("a")
    verified(ctx, job_id)
    published.publish(ctx.db, ctx.redis, job_id)
    wrapper.query(vector=[0.1], top_k=1, namespace="c")

    assert old.calls == [("query", "c"), ("upsert", "c")] and new.calls == [("upsert", "c-new"), ("query", "c-new")]


def test_a_delete_in_a_namespace_routed_per_record_reaches_where_each_record_went(ctx: WorkerContext) -> None:
    # The default namespace routed by twin: published before the copy wrote any of its namespaces, so only the
    # records themselves say where their copies go; each id is deleted there, and nowhere else.
    routed = {
        **SPEC,
        "routing": {"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "c1", "t2": "c2"}}},
    }
    job_id = jobs_and_runs.create_job(
        ctx.db, parse_spec(routed), plan_of_routed(""), source_label="old", target_label="new"
    )
    published.publish(ctx.db, ctx.redis, job_id)
    old = Side("old", held={"v1": {"twin_id": "t1"}, "v2": {"twin_id": "t2"}, "v3": {"twin_id": "t1"}})
    new = Side("new")
    wrapper = DualWriteIndex(old=old, new=new, job_id=job_id, redis=ctx.redis, max_age_s=0)

    wrapper.delete(ids=["v1", "v2", "v3", "never-there"], namespace="")

    assert old.deleted == [("", ["v1", "v2", "v3", "never-there"])]
    assert new.deleted == [("creator_c1_twin_t1", ["v1", "v3"]), ("creator_c2_twin_t2", ["v2"])]
    assert [e for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "dual_write_failed"] == []


def cleanup_at(ctx: WorkerContext, job_id: int, state: RunState, **values: Any) -> None:
    """The job's runs at a cleanup's ``state`` (with ``values``), published as a cleanup publishes it."""
    with ctx.db.transaction() as s:
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.job_id == job_id).values(state=state, **values))
    published.publish(ctx.db, ctx.redis, job_id)


def filed_failures(ctx: WorkerContext, job_id: int) -> list[dict[str, Any]]:
    published.file_writes(ctx.db, ctx.redis, job_id)
    return [e for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "dual_write_failed"]


@pytest.mark.parametrize("operation", ["upsert", "delete"])
def test_once_a_cleanup_started_the_new_index_refusing_a_write_is_the_applications_failure(
    ctx: WorkerContext, job_id: int, operation: str
) -> None:
    # A cleanup's last look at the source may come before this write's old side: a sync could not follow it.
    wrapper, old, new = app(ctx, job_id, new=Side("new", fail_writes=True))
    cleanup_at(ctx, job_id, RunState.CLEANING)
    write = getattr(wrapper, operation)

    with pytest.raises(RuntimeError, match="new refused the"):
        write(vectors=[("v1", [0.1])], namespace="a") if operation == "upsert" else write(ids=["v1"], namespace="a")

    assert old.calls == [(operation, "a")] and new.calls == [(operation, "a-new")]  # the old side first, as always
    assert filed_failures(ctx, job_id) == []


def test_a_write_under_way_as_a_cleanup_starts_raises_what_the_new_index_refuses(
    ctx: WorkerContext, job_id: int
) -> None:
    # The layout is read at most every max_age_s: this write read it before the cleanup began, and its new side failed
    # after (its old side slow). Asked again then, the failure is raised: no sync could follow it.
    wrapper = DualWriteIndex(old=Side("old"), new=Side("new", fail_writes=True), job_id=job_id, redis=ctx.redis)
    cleanup_at(ctx, job_id, RunState.CLEANING)

    with pytest.raises(RuntimeError, match="new refused the write"):
        wrapper.upsert(vectors=[("v1", [0.1])], namespace="a")

    assert filed_failures(ctx, job_id) == []


def test_a_cleaned_namespace_is_written_to_the_new_index_only(ctx: WorkerContext, job_id: int) -> None:
    wrapper, old, new = app(ctx, job_id)
    cleanup_at(ctx, job_id, RunState.CLEANED)

    answer = wrapper.upsert(vectors=[("v1", [0.1])], namespace="a")
    wrapper.delete(ids=["v1"], namespace="a")
    new.fail_writes = True
    with pytest.raises(RuntimeError, match="new refused the write"):
        wrapper.upsert(vectors=[("v2", [0.1])], namespace="a")

    assert answer == {"upserted_count": 1}  # the new index's answer
    assert old.calls == [] and new.calls == [("upsert", "a-new"), ("delete", "a-new"), ("upsert", "a-new")]
    assert filed_failures(ctx, job_id) == []


def test_a_source_a_refused_cleanup_deleted_from_is_not_read_again(ctx: WorkerContext, job_id: int) -> None:
    """A cleanup refused part-way (ids written meanwhile) leaves its run ``verify_failed`` with ids deleted from the
    source: the applications must go on reading the copy, not a source that lacks what the cleanup deleted."""
    rollout_rows.set_rollout(ctx.db, job_id, 100, "tester")
    wrapper, old, new = app(ctx, job_id, compare_share=0)
    cleanup_at(ctx, job_id, RunState.VERIFY_FAILED, verification={"passed": False}, cleanup={"deleted_count": 5})

    wrapper.query(vector=[0.1], top_k=1, namespace="a")

    assert old.calls == [] and new.calls == [("query", "a-new")]


def test_a_delete_in_a_cleaned_namespace_routed_per_record_finds_each_record_in_the_new_index(
    ctx: WorkerContext,
) -> None:
    routed = {
        **SPEC,
        "routing": {"mode": "creator", "creators": {"source": "inline", "twins": {"t1": "c1", "t2": "c2"}}},
    }
    job_id = jobs_and_runs.create_job(
        ctx.db, parse_spec(routed), plan_of_routed(""), source_label="old", target_label="new"
    )
    homes = ["creator_c1_twin_t1", "creator_c2_twin_t2"]
    cleanup_at(ctx, job_id, RunState.CLEANED, target_namespaces=homes)
    old = Side("old")
    new = Side("new", held={"v1": {"twin_id": "t1"}, "v2": {"twin_id": "t2"}})  # fetched alike in each namespace
    wrapper = DualWriteIndex(old=old, new=new, job_id=job_id, redis=ctx.redis, max_age_s=0)

    wrapper.delete(ids=["v1", "v2", "never-there"], namespace="")

    # Not read, and deleted from only for what its cleanup kept there: the records the routing drops, never copied.
    assert old.calls == [("delete", "")] and old.deleted == [("", ["v1", "v2", "never-there"])]
    assert new.deleted == [("creator_c1_twin_t1", ["v1"]), ("creator_c2_twin_t2", ["v2"])]

    old.fail_writes = True  # the old namespace dropped, or the old index gone: not the application's failure
    wrapper.delete(ids=["v1"], namespace="")
    assert new.deleted[-1] == ("creator_c1_twin_t1", ["v1"])

    # A read has no one namespace of the new index to go to, and the old one is gone: said, not answered empty.
    with pytest.raises(LookupError, match="creator_c1_twin_t1, creator_c2_twin_t2; read those namespaces"):
        wrapper.query(vector=[0.1], top_k=1, namespace="")
    assert ("query", "") not in old.calls


def test_an_application_may_not_follow_later_than_a_cleanup_waits(ctx: WorkerContext, job_id: int) -> None:
    with pytest.raises(ValueError, match=r"max_age_s 5: give 0 to 2\.0 s"):
        DualWriteIndex(old=Side("old"), new=Side("new"), job_id=job_id, redis=ctx.redis, max_age_s=5)


def test_the_default_namespace_reads_its_copy_once_its_step_came(ctx: WorkerContext, job_id: int) -> None:
    wrapper, old, new = app(ctx, job_id, compare_share=0)
    rollout_rows.set_rollout(ctx.db, job_id, 100, "tester")
    published.publish(ctx.db, ctx.redis, job_id)

    wrapper.query(vector=[0.1], top_k=1, namespace="__default__")
    wrapper.query(vector=[0.1], top_k=1, namespace="")

    assert old.calls == [] and new.calls == [("query", ""), ("query", "")]


def test_no_published_rollout_refuses_to_start_naming_the_command(ctx: WorkerContext, job_id: int) -> None:
    ctx.redis.delete(cutover_key(job_id, "rollout"))

    with pytest.raises(StateError, match=f"nsmigrate cutover publish {job_id}"):
        app(ctx, job_id)


def test_a_ledger_that_cannot_be_read_stops_the_write_before_either_side(ctx: WorkerContext, job_id: int) -> None:
    wrapper, old, new = app(ctx, job_id)
    ctx.redis.delete(ERASURE_LEDGER_KEY)

    with pytest.raises(StateError, match="no erasure ledger is published"):
        wrapper.upsert(vectors=[("v1", [0.1])], namespace="a")

    assert old.calls == [] and new.calls == []


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listening, for the test's length)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_failed_writes_redis_cannot_take_are_kept_and_sent_with_the_next(
    ctx: WorkerContext, job_id: int, closed_port: int
) -> None:
    wrapper, old, _ = app(ctx, job_id, new=Side("new", fail_writes=True))
    reachable = wrapper.follower.redis

    wrapper.follower.redis = redis_lib.Redis(port=closed_port, socket_connect_timeout=1)
    wrapper.follower.write_failed(None, "a", "upsert", ["v1"], "RuntimeError: refused")  # Redis away: kept
    wrapper.follower.redis = reachable
    wrapper.upsert(vectors=[("v2", [0.1])], namespace="a")  # the new side refuses; sent with the kept one

    assert published.file_writes(ctx.db, ctx.redis, job_id) == 2
    failures = [e["detail"] for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "dual_write_failed"]
    assert sorted(f["ids"][0] for f in failures) == ["v1", "v2"]
    assert all(f["namespace"] == "a" and f["instance"] == wrapper.follower.instance for f in failures)
    assert ("upsert", "a") in old.calls and published.file_writes(ctx.db, ctx.redis, job_id) == 0


#: The application's Redis user, as the manual writes it ("What the application follows, and what it sends").
ACL = (
    "resetkeys %R~nsmigrate:cutover:*:rollout %R~nsmigrate:cutover:*:layout %R~nsmigrate:erasure-ledger "
    "%W~nsmigrate:cutover:*:writes %W~nsmigrate:cutover:*:reads ~nsmigrate:cutover:*:traffic "
    "~nsmigrate:cutover:*:queries -@all +hget +get +xadd +zincrby +lpush +ltrim"
)


def test_an_application_user_of_the_manuals_acl_follows_and_sends_and_cannot_change_the_cut_over(
    ctx: WorkerContext, job_id: int, redis_url: str
) -> None:
    ctx.redis.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", *ACL.split())
    try:
        limited = redis_lib.Redis.from_url(redis_url.replace("redis://", "redis://app:app-pw@"))
        old, new = Side("old"), Side("new", fail_writes=True)
        wrapper = DualWriteIndex(old=old, new=new, job_id=job_id, redis=limited, compare_share=1.0)
        wrapper.upsert(vectors=[("v1", [0.1], {"filter_me": 1})], namespace="a")
        wrapper.query(vector=[0.1], top_k=1, namespace="a", filter={"n": {"$eq": 1}})
        wrapper.close()

        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            limited.hset(cutover_key(job_id, "rollout"), "doc", "{}")
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            limited.xrange(cutover_key(job_id, "writes"))
    finally:
        ctx.redis.execute_command("ACL", "DELUSER", "app")
    assert published.file_writes(ctx.db, ctx.redis, job_id) == 1  # what it sent arrived
    reports, _ = published.read_reports(ctx.redis, job_id)
    assert reports and {s[1] for r in reports for s in r["samples"]} == {"old", "new"}
    assert published.traffic(ctx.redis, job_id, 5) == [("a", 1)]
    assert published.recorded_queries(ctx.redis, job_id) == [
        {"namespace": "a", "vector": [0.1], "top_k": 1, "filter": {"n": {"$eq": 1}}}
    ]


def test_the_last_publication_is_the_newest_whoever_races(ctx: WorkerContext, job_id: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for percent in (5, 25, 50):
        rollout_rows.set_rollout(ctx.db, job_id, percent, "tester")
    with ThreadPoolExecutor(4) as pool:
        heads = list(pool.map(lambda _: published.publish(ctx.db, ctx.redis, job_id), range(8)))

    wrapper, _, _ = app(ctx, job_id)
    assert {h["percent"] for h in heads} == {50} and wrapper.rollout.percent() == 50

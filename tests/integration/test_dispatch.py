"""Sending tasks by name on their Redis queues, one by one or together (launch, resume, retry)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import Queue, TaskName
from nsmigrate.orchestrator.settings import TASK_SLOTS_ENV, Settings


def _queued_run_ids(broker: redis_lib.Redis, queue: Queue) -> list[int]:
    # LPUSH on send, BRPOP on receipt: the oldest message is last.
    messages = [json.loads(raw) for raw in reversed(broker.lrange(queue.value, 0, -1))]
    # Celery's message body: [args, kwargs, embed], JSON, base64-encoded by kombu.
    return [json.loads(base64.b64decode(m["body"]))[1]["run_id"] for m in messages]


@pytest.fixture
def dispatcher(redis_url: str) -> Iterator[Dispatcher]:
    sender = Dispatcher(Settings(redis_url=redis_url))
    yield sender
    sender.close()


def test_tasks_sent_together_reach_their_queue_in_order_when_the_block_ends(
    dispatcher: Dispatcher, redis_url: str
) -> None:
    broker = redis_lib.Redis.from_url(redis_url)
    with dispatcher.together():
        for run_id in (3, 1, 2):
            dispatcher.list_namespace(run_id, job_id=7, namespace=f"ns-{run_id}")
        assert broker.llen(Queue.LIST.value) == 0  # still buffered
    assert _queued_run_ids(broker, Queue.LIST) == [3, 1, 2]
    dispatcher.list_namespace(4, job_id=7, namespace="ns-4")  # outside a block: at once
    assert _queued_run_ids(broker, Queue.LIST) == [3, 1, 2, 4]


def test_tasks_sent_in_a_block_that_raises_are_not_sent(dispatcher: Dispatcher, redis_url: str) -> None:
    broker = redis_lib.Redis.from_url(redis_url)
    with pytest.raises(RuntimeError), dispatcher.together():
        dispatcher.list_namespace(1, job_id=7, namespace="ns-1")
        raise RuntimeError("the launch failed half-way")
    assert broker.llen(Queue.LIST.value) == 0


def test_every_sender_of_a_threads_worker_process_shares_the_broker_pool(
    redis_url: str, job_table_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A threads worker sends from its task threads (their context's dispatcher) and from its plan server, with
    Celery's own app beside them. kombu keeps one connection-pool limit per process: a sender asking for a smaller
    one than a pool in use failed its first send with "Can't shrink pool when in use" (a job's planning failed so)."""
    from nsmigrate.workers.context import WorkerContext
    from nsmigrate.workers.fleet.app import configure
    from nsmigrate.workers.fleet.plan_server import PlanServer

    monkeypatch.setenv(TASK_SLOTS_ENV, "16")
    settings = Settings(redis_url=redis_url, database_url=job_table_url)
    worker_app = configure(settings)
    tasks, planner = WorkerContext(settings), PlanServer(settings, "planner@test")
    broker = redis_lib.Redis.from_url(redis_url)
    with tasks.dispatcher.together():  # a task thread holds a pooled connection meanwhile
        tasks.dispatcher.list_namespace(1, job_id=7, namespace="ns-1")
        planner.dispatcher.list_namespace(2, job_id=7, namespace="ns-2")
        with worker_app.producer_or_acquire() as producer:
            worker_app.send_task(TaskName.LIST_NAMESPACE.value, kwargs={"run_id": 3}, queue="list", producer=producer)
    assert sorted(_queued_run_ids(broker, Queue.LIST)) == [1, 2, 3]


def test_a_redis_broker_is_reached_through_one_client_per_connection_pool(
    dispatcher: Dispatcher, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu made a ``redis.Redis`` for every command it sent (~110 µs of CPU each): the fleet's transport makes one
    per pool, and what it sends still arrives."""
    from kombu.transport import redis as kombu_redis

    from nsmigrate.orchestrator.messaging import redis_transport

    made: list[bool] = []
    make = kombu_redis.Channel._create_client

    def counted(channel: kombu_redis.Channel, *args: object, **kwargs: object) -> object:
        made.append(True)
        return make(channel, *args, **kwargs)

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counted)
    broker = redis_lib.Redis.from_url(redis_url)
    dispatcher.list_namespace(0, job_id=7, namespace="ns-0")  # the channels' own clients, and each pool's one
    made_first = len(made)
    for run_id in range(1, 11):  # each a message and a task-sent event
        dispatcher.list_namespace(run_id, job_id=7, namespace=f"ns-{run_id}")

    assert _queued_run_ids(broker, Queue.LIST) == list(range(11))
    assert len(made) == made_first
    with dispatcher.app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, redis_transport.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.ping()


def test_other_broker_schemes_keep_kombus_own_transport_and_the_broker_is_shown_as_redis() -> None:
    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    from nsmigrate.orchestrator.messaging import redis_transport
    from nsmigrate.orchestrator.messaging.dispatch import celery_config

    assert Connection("redis://127.0.0.1:6379/0").transport is not None  # the scheme resolved before, as anything may
    celery_config(Settings(redis_url="redis://127.0.0.1:6379/0"))

    assert isinstance(Connection("redis://127.0.0.1:6379/0").transport, redis_transport.Transport)
    assert type(Connection("rediss://127.0.0.1:6380/0").transport) is kombu_redis.Transport
    # What kombu logs when it cannot connect names the broker as an operator wrote it, its password masked.
    assert Connection("redis://:hunter2@127.0.0.1:6379/0").as_uri() == "redis://:**@127.0.0.1:6379/0"

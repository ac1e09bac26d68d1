"""Sending tasks by name on their Redis queues, one by one or together (launch, resume, retry)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis as redis_lib

from orchestrator.messaging.dispatch import Dispatcher
from orchestrator.messaging.task_names import Queue
from orchestrator.settings import Settings


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

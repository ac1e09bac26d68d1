"""What the fleet's processes do while they wait: a threads worker's event loop sleeps until a message, a timer or a
task's end (no timer waking it many times a second), Flower asks nothing of the workers on a timer, and a worker's
heartbeat comes as often as ``NSMIGRATE_WORKER_HEARTBEAT_S`` says.

Both are counted against another count, never against the clock: the worker's wake-ups per ``BRPOP`` it sends (it
sends one a second while idle, however busy the machine is), Flower's broadcasts per heartbeat of a worker.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import redis

from nsmigrate_sandbox.stack import Stack, wait_for_workers
from tests.polling import wait_until

#: BRPOPs (an idle worker's own clock: one a second) a measurement spans.
BRPOPS = 5


def wakeups(pid: int) -> int:
    """How many times the main thread of ``pid`` (where Celery's event loop runs) went to sleep and woke up."""
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in /proc/{pid}/task/{pid}/status")


def calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_an_idle_threads_workers_event_loop_wakes_a_few_times_per_brpop(stack: Stack) -> None:
    worker = stack.start_worker("copy", 8, pool="threads", args=("--no-planner",))
    wait_for_workers(stack.redis_url, 1)
    client = redis.Redis.from_url(stack.redis_url)
    brpops_before, wakeups_before = calls(client, "brpop"), wakeups(worker.pid)

    wait_until(
        lambda: calls(client, "brpop") - brpops_before,
        what=f"{BRPOPS} BRPOPs",
        timeout_s=60,
        done=lambda n: n >= BRPOPS,
    )

    woke, brpops = wakeups(worker.pid) - wakeups_before, calls(client, "brpop") - brpops_before
    # Each BRPOP's answer wakes the loop once, its heartbeat timer once every other; a timer ticking every 20 ms
    # woke it ~50 times per BRPOP.
    assert woke < 10 * brpops, f"the idle worker's loop woke {woke} times over {brpops} BRPOPs"


def decoded(payload: bytes) -> dict[str, Any]:
    """The body of a message Celery published through Redis (kombu's envelope, its body base64-encoded JSON)."""
    envelope = json.loads(payload)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    decoded_body = json.loads(body)
    return decoded_body if isinstance(decoded_body, dict) else {}


def test_flower_sends_the_workers_no_broadcasts_on_a_timer(stack: Stack) -> None:
    stack.start_worker("copy", 1, pool="threads", args=("--no-planner",))
    wait_for_workers(stack.redis_url, 1)
    # Celery's broadcasts (pidbox) and events reach Redis as PUBLISHes to channels of these names.
    pubsub = redis.Redis.from_url(stack.redis_url).pubsub()
    pubsub.psubscribe("*celery.pidbox*", "*celeryev*")
    heartbeats: list[float] = []
    broadcasts: list[str] = []

    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message is None or message["type"] != "pmessage":
                continue
            body = decoded(message["data"])
            if b"pidbox" in message["channel"]:
                broadcasts.append(str(body.get("method")))
            elif body.get("type") == "worker-heartbeat":
                heartbeats.append(body["timestamp"])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    stack.start_flower()
    heartbeats_at_start = len(heartbeats)

    # Flower asked every worker to enable its task events every 5 s; a worker heartbeats every 2 s.
    wait_until(
        lambda: len(heartbeats) - heartbeats_at_start,
        what="6 worker heartbeats with Flower up",
        timeout_s=60,
        done=lambda n: n >= 6,
    )
    listening.clear()
    listener.join()
    pubsub.close()
    assert "enable_events" not in broadcasts, broadcasts


def test_a_worker_heartbeats_as_often_as_its_setting_says(stack: Stack) -> None:
    pubsub = redis.Redis.from_url(stack.redis_url).pubsub()
    pubsub.psubscribe("*celeryev*")
    stack.start_worker("copy", 1, pool="threads", args=("--no-planner",), NSMIGRATE_WORKER_HEARTBEAT_S="7.5")

    def heartbeat() -> dict[str, Any] | None:
        message = pubsub.get_message(timeout=0.2)
        if message is None or message["type"] != "pmessage":
            return None
        body = decoded(message["data"])
        return body if body.get("type") in {"worker-online", "worker-heartbeat"} else None

    # Every heartbeat (and the worker-online event) says how often they come: Flower reads it to tell a worker gone.
    event = wait_until(heartbeat, what="the worker's first heartbeat", timeout_s=60, interval_s=0)
    pubsub.close()
    assert event is not None and event["freq"] == 7.5

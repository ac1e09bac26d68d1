"""Reading Flower's HTTP API as an operator's tools would: the tasks it shows (``/api/tasks``), decoded."""

from __future__ import annotations

import ast
from typing import Any

import httpx

from nsmigrate.orchestrator.messaging.task_names import TaskName
from nsmigrate_sandbox.stack import Stack
from tests.polling import wait_until


def open_flower(stack: Stack, worker_prefix: str, **extra_env: str) -> httpx.Client:
    """Flower started on ``stack`` and a client of it, once the worker named ``worker_prefix@…`` is seen alive
    (its events reach Flower before any job)."""
    url = stack.start_flower(**extra_env)
    client = httpx.Client(base_url=url, timeout=10, auth=("admin", stack.flower_password or ""))
    wait_until(
        lambda: client.get("/api/workers", params={"status": "true"}).json(),
        what="the worker's events in Flower",
        done=lambda alive: any(name.startswith(f"{worker_prefix}@") and up for name, up in alive.items()),
        timeout_s=30,
        interval_s=0.25,
    )
    return client


def tasks_of(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """Flower's tasks (``/api/tasks``), kwargs and results decoded."""
    reply = client.get("/api/tasks", params=params)
    assert reply.status_code == 200, reply.text
    out = []
    for task in reply.json().values():
        task = dict(task)
        task["kwargs"] = ast.literal_eval(task["kwargs"]) if task.get("kwargs") else {}
        task["result"] = ast.literal_eval(task["result"]) if task.get("result") not in (None, "None") else None
        out.append(task)
    return out


def failures_of(client: httpx.Client, task: TaskName) -> list[dict[str, Any]]:
    """The FAILURE tasks named ``task`` in Flower, once there is one."""
    return wait_until(
        lambda: tasks_of(client, taskname=task.value, state="FAILURE"),
        what=f"a {task.value} FAILURE in Flower",
        timeout_s=60,
        interval_s=0.25,
    )

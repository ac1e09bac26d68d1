"""A worker's JSON log lines (``workers.fleet.json_logs``): one object per record, carrying the job, namespace, batch
and run of the task that logged it from its kwargs, and nothing of a task outside one (a real worker writing them:
tests/fleet/test_chaos_workers_killed.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery import Celery

from nsmigrate.workers.fleet.json_logs import KEYS, JsonFormatter


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("nsmigrate.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)


def logged(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_inside_a_task_names_its_job_namespace_batch_and_run(lines: io.StringIO) -> None:
    app = Celery("json-logs-test", set_as_current=False)
    log = logging.getLogger("nsmigrate.test_json_logs")

    @app.task(name="nsmigrate.copy_batch")
    def copy_batch(batch_id: int, **_: object) -> None:
        log.warning("batch %s failed:\n%s", batch_id, "two lines")

    copy_batch.apply(kwargs={"batch_id": 7, "job_id": 3, "run_id": 5, "namespace": "__default__"}, task_id="t-1")
    log.info("outside any task")

    inside, outside = logged(lines)
    assert list(inside) == [key for key in KEYS if key in inside]  # in the documented order
    assert {k: inside[k] for k in ("level", "logger", "task", "task_id", "job_id", "run_id", "batch_id")} == {
        "level": "WARNING",
        "logger": "nsmigrate.test_json_logs",
        "task": "nsmigrate.copy_batch",
        "task_id": "t-1",
        "job_id": 3,
        "run_id": 5,
        "batch_id": 7,
    }
    assert inside["namespace"] == "__default__" and inside["message"] == "batch 7 failed:\ntwo lines"
    assert str(inside["time"]).endswith("+00:00")
    assert set(outside) == {"time", "level", "logger", "message", "process"} and outside["level"] == "INFO"


def test_a_traceback_is_one_key_of_the_same_line(lines: io.StringIO) -> None:
    log = logging.getLogger("nsmigrate.test_json_logs")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")

    [line] = logged(lines)
    assert line["message"] == "it failed" and "ValueError: boom" in str(line["exception"])

"""Logs as JSON lines, when asked (``nsmigrate worker --log-format json``, ``NSMIGRATE_LOG_FORMAT=json``): one object
per record, with the job, namespace, batch and run of the task that logged it, read from the task's kwargs (the ids
every task is sent with for Flower, ``orchestrator.messaging.dispatch``), so that a log store can find a job's
lines without parsing text. The keys are listed in ``KEYS`` and documented in docs/manual.md (Logs)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from celery._state import get_current_task
from celery.signals import setup_logging

#: Every key a line may have, in order; a line has ``time``, ``level``, ``logger`` and ``message`` always, the others
#: when they are known (a task's ids only inside a task, ``exception`` only with a traceback).
KEYS = (
    "time",
    "level",
    "logger",
    "message",
    "process",
    "task",
    "task_id",
    "job_id",
    "run_id",
    "batch_id",
    "place_id",
    "namespace",
    "namespaces",
    "exception",
)
#: The task kwargs a line carries: what a task is sent with to name its job and namespace.
TASK_CONTEXT = ("job_id", "run_id", "batch_id", "place_id", "namespace", "namespaces")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's own newlines are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        task = get_current_task()
        request = getattr(task, "request", None) if task is not None else None
        if request is not None and getattr(request, "id", None):
            kwargs = request.kwargs or {}
            line.update(task=task.name, task_id=request.id)
            line.update({key: kwargs[key] for key in TASK_CONTEXT if key in kwargs})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _configured_here(**_: object) -> None:
    """Celery's ``setup_logging`` signal: answered, Celery leaves the logging configured by ``use_json_logs`` alone."""


def use_json_logs(level: int) -> None:
    """Write every record of this worker as a JSON line on stderr from now on, at ``level`` and above: the root
    logger's (nsmigrate's, Celery's and its tasks', Python's warnings) and the pool's (billiard's: a pool process
    that died). Called before the worker is built, so even its first warnings are lines; Celery then configures no
    logging of its own (its ``setup_logging`` signal is answered), and prefork children inherit this."""
    from billiard.util import get_logger as pool_logger

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    pool = pool_logger()  # does not propagate to the root logger
    pool.handlers = [handler]
    pool.setLevel(level)
    logging.captureWarnings(True)
    setup_logging.connect(_configured_here, weak=False)

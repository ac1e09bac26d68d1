"""A stand-in for a worker's dispatcher that records what a step sends instead of sending it, for tests that play a
task's steps one by one (``worker_context(..., dispatcher=SentTasks())``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nsmigrate.workers.context import WorkerContext


class SentTasks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.verify_groups: list[list[int]] = []  # the run ids of each verify_small_namespaces task
        self.rejudged_groups: list[list[int]] = []  # those of them sent by `nsmigrate verify` (rejudge)
        self.collection_steps: list[dict[str, Any]] = []  # the keyword arguments of each collection step sent
        self.convert_steps: list[dict[str, Any]] = []  # and of each convert step

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        yield

    def copy_batch(self, batch_id: int, **_: Any) -> None:
        self.sent.append(("copy", batch_id))

    def list_namespace(self, run_id: int, **_: Any) -> None:
        self.sent.append(("list", run_id))

    def verify_namespace(self, run_id: int, **_: Any) -> None:
        self.sent.append(("verify", run_id))

    def collection_step(self, job_id: int, **kwargs: Any) -> None:
        self.sent.append(("collection", job_id))
        self.collection_steps.append(kwargs)

    def convert_step(self, job_id: int, **kwargs: Any) -> None:
        self.sent.append(("convert", job_id))
        self.convert_steps.append(kwargs)

    def import_step(self, job_id: int, **_: Any) -> None:
        self.sent.append(("import", job_id))

    def verify_small_namespaces(self, run_ids: list[int], rejudge: bool = False, **_: Any) -> None:
        self.sent.extend(("verify", run_id) for run_id in run_ids)
        (self.rejudged_groups if rejudge else self.verify_groups).append(list(run_ids))


def sent(ctx: WorkerContext) -> list[tuple[str, int]]:
    """What the steps run with ``ctx`` sent so far: ("copy", batch id), ("list", run id), ("verify", run id)."""
    assert isinstance(ctx.dispatcher, SentTasks)
    return ctx.dispatcher.sent

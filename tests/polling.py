"""The one way a test waits for something: poll a real condition with a deadline, and fail saying what it waited for.

Tests never sleep until something has probably happened; they ask the system (the job table, Redis, a port file, an
HTTP API) until the answer is the expected one, or fail after ``timeout_s`` with the last answer seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.snapshot import JobStatus

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    interval_s: float = 0.1,
    done: Callable[[T], object] = bool,
    retry_on: tuple[type[BaseException], ...] = (),
    explain: Callable[[], object] | None = None,
) -> T:
    """Call ``probe`` every ``interval_s`` until ``done(value)`` is true and return that value.

    Parameters:
        probe: asks the system for its current state (one query, one request).
        what: what is awaited, for the failure message ("job 3 verified", "the port file").
        timeout_s: how long to keep asking before failing the test.
        interval_s: the pause between two probes.
        done: when the value is the awaited one (default: the value is truthy).
        retry_on: exceptions of ``probe`` that mean "ask again" (a service mid-restart refusing connections).
        explain: called once on timeout; its result is added to the message (logs, the job's batches…).

    Raises:
        pytest.fail.Exception: after ``timeout_s``, naming ``what`` and the last value or exception seen.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = probe()
        except retry_on as e:
            last = e
        else:
            if done(value):
                return value
            last = value
        if time.monotonic() > deadline:
            details = f"; {explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}; last seen: {repr(last)[:2000]}{details}")
        time.sleep(interval_s)


def wait_for_job(
    db: jobs_database.Database,
    job_id: int,
    done: Callable[[JobStatus], object],
    *,
    timeout_s: float = 120,
    interval_s: float = 0.2,
) -> JobStatus:
    """Poll the job table until ``done(job_status)`` and return that status; fail with the last status otherwise."""
    what = f"job {job_id}: {getattr(done, '__name__', 'the awaited state')}"
    return wait_until(
        lambda: jobs_status.job_status(db, job_id), what=what, timeout_s=timeout_s, interval_s=interval_s, done=done
    )


def until_raised(
    call: Callable[[], object], error: type[E], *, what: str, timeout_s: float, interval_s: float = 0.05
) -> E:
    """Call ``call`` again and again (a step of a job) until it raises ``error``, and return that exception; fail
    naming ``what`` when none did within ``timeout_s``."""

    def raised() -> E | None:
        try:
            call()
        except error as e:
            return e
        return None

    found: E = wait_until(raised, what=what, timeout_s=timeout_s, interval_s=interval_s)
    return found

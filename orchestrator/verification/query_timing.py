"""How nsmigrate times queries, in one place: verification's latency sample (``tenant.latency_percentiles``) and the
cut-over load check (``nsmigrate cutover check``) time each query with ``time_call`` and summarise the durations
with ``latency_figures``, so their figures mean the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from nsmigrate.orchestrator.verification.comparisons import percentile

T = TypeVar("T")


def time_call(call: Callable[[], T], clock: Callable[[], float] = time.perf_counter) -> tuple[float, T]:
    """``(milliseconds, result)`` of one call; its exception goes through untimed."""
    start = clock()
    result = call()
    return (clock() - start) * 1000, result


def latency_figures(durations_ms: Sequence[float]) -> dict[str, Any]:
    """P50/P95/P99 of query durations in ms, rounded to 0.01 (None without samples), and how many."""
    out: dict[str, Any] = {"samples": len(durations_ms)}
    for p in (50, 95, 99):
        out[f"p{p}_ms"] = round(percentile(durations_ms, p), 2) if durations_ms else None
    return out

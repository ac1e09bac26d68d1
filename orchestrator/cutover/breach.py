"""What the application's reads see while a rollout step is live, and when that is a breach, pure.

``nsmigrate cutover watch`` (``workers.steps.cutover_watch``) reads as the application does — through the job's
aliases, or from the namespaces the rollout sends to the target — and keeps one ``Sample`` per read: its side
(``new``: the target the step moved reads to; ``old``: the same query of the source, for comparison), its latency or
error, and whether it came back empty where the other side answered; with them, the reads the applications'
``DualWriteIndex`` measured and sent (``app_samples``). Over the last ``cutover.breach_window_s`` the new
side breaches when its P95 or P99 passes ``cutover.p95_ms``/``p99_ms``, or its share of failed or empty answers passes
``cutover.max_error_rate``; then reads go back to the last good step (``fallback_percent``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.spec.jobspec import Cutover
from nsmigrate.orchestrator.verification.query_timing import latency_figures

#: Reads of the new side a window needs before it can breach (fewer say nothing about a P95).
MIN_WINDOW_SAMPLES = 5


@dataclass(frozen=True)
class Sample:
    """One read: when (seconds on the watch's clock), which side, its latency (None: it failed), its error, and
    whether it was empty where the other side answered."""

    at_s: float
    side: str
    ms: float | None
    error: str | None = None
    empty: bool = False
    #: Who read: ``watch`` (``cutover watch``'s own reads) or ``app`` (an application's ``DualWriteIndex``, from its
    #: reports).
    reader: str = "watch"


def app_samples(report: dict[str, Any], epoch0_s: float) -> list[Sample]:
    """The samples of one application report (``ReadLog.take``: ``[at (epoch s), side, ms, error, empty]``) on a
    clock that started at ``epoch0_s`` (epoch seconds)."""
    return [
        Sample(at - epoch0_s, side, ms, error, bool(empty), reader="app")
        for at, side, ms, error, empty in report.get("samples") or []
        if side in ("new", "old")
    ]


def window_figures(samples: Sequence[Sample], now_s: float, window_s: float) -> dict[str, dict[str, Any]]:
    """Per side, over the samples of the last ``window_s`` seconds: P50/P95/P99, errors, empty answers, the rate of
    the two."""
    recent = [s for s in samples if s.at_s >= now_s - window_s]
    figures: dict[str, dict[str, Any]] = {}
    for side in ("new", "old"):
        mine = [s for s in recent if s.side == side]
        errors = sum(s.error is not None for s in mine)
        empty = sum(s.empty for s in mine)
        figures[side] = {
            **latency_figures([s.ms for s in mine if s.ms is not None]),
            "reads": len(mine),
            "errors": errors,
            "empty": empty,
            "error_rate": round((errors + empty) / len(mine), 4) if mine else 0.0,
            "by_reader": {reader: sum(s.reader == reader for s in mine) for reader in ("watch", "app")},
        }
    return figures


def breach_problems(figures: dict[str, dict[str, Any]], limits: Cutover) -> list[str]:
    """What in the new side's window breaks the spec's limits (empty: no breach); nothing before
    ``MIN_WINDOW_SAMPLES`` reads."""
    new = figures["new"]
    if new["reads"] < MIN_WINDOW_SAMPLES:
        return []
    problems = []
    for name, limit in (("p95_ms", limits.p95_ms), ("p99_ms", limits.p99_ms)):
        value = new.get(name)
        if value is not None and value > limit:
            problems.append(f"the new side's {name[:3].upper()} {value} ms is above cutover.{name} = {limit:g} ms")
    if new["error_rate"] > limits.max_error_rate:
        problems.append(
            f"{new['errors']} failed and {new['empty']} empty of the new side's {new['reads']} reads "
            f"({new['error_rate']:.2%}) is above cutover.max_error_rate = {limits.max_error_rate:.2%}"
        )
    return problems


def fallback_percent(percents: Sequence[int]) -> int:
    """The last good step of a rollout whose ``cutover set`` percentages are ``percents`` (oldest first): the newest
    step below the one live now, or 0 (all reads old)."""
    if not percents:
        return 0
    current = percents[-1]
    return next((p for p in reversed(percents[:-1]) if p < current), 0)


def side_line(side: str, figures: dict[str, Any]) -> str:
    """One side of a window, as `status`, `cutover watch` and the job page say it."""
    by_reader = figures.get("by_reader") or {}
    apps = f" ({by_reader['app']} by applications)" if by_reader.get("app") else ""
    return (
        f"{side}: {figures.get('reads', 0)} reads{apps}, P50 {figures.get('p50_ms')} ms, P95 {figures.get('p95_ms')} "
        f"ms, P99 {figures.get('p99_ms')} ms, {figures.get('errors', 0)} errors, {figures.get('empty', 0)} empty"
    )


def window_lines(detail: dict[str, Any], at: str) -> list[str]:
    """The newest ``cutover_reads`` event (``detail``, written ``at``) as lines: the window, then each side."""
    instances = int(detail.get("instances") or 0)
    readers = "cutover watch" + (f" and {instances} application instance(s)" if instances else "")
    head = f"reads at {detail.get('percent')} % new, window of {detail.get('window_s')} s to {at[:19]} ({readers}):"
    figures = detail.get("figures") or {}
    return [head, *(side_line(side, figures[side]) for side in ("new", "old") if side in figures)]


def breach_line(detail: dict[str, Any], at: str) -> str:
    """The newest ``cutover_breach`` event as one line."""
    return f"breach at {at[:19]} with reads {detail.get('percent')} % new: {'; '.join(detail.get('problems') or [])}"

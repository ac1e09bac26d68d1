"""When the reads of a live step are a breach (``orchestrator.cutover.breach``), and where reads go back."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.cutover.breach import (
    Sample,
    app_samples,
    breach_line,
    breach_problems,
    fallback_percent,
    window_figures,
    window_lines,
)
from nsmigrate.orchestrator.spec.cutover import Cutover

LIMITS = Cutover(p95_ms=100, p99_ms=200, max_error_rate=0.1, breach_window_s=10)


def reads(ms: float, n: int, start_s: float = 0.0, **kwargs: object) -> list[Sample]:
    return [Sample(start_s + i, "new", ms, **kwargs) for i in range(n)]  # type: ignore[arg-type]


def test_slow_reads_in_the_window_are_a_breach_and_older_ones_are_forgotten() -> None:
    slow = reads(500, 6)
    assert "cutover.p95_ms = 100 ms" in breach_problems(window_figures(slow, 6, 10), LIMITS)[0]
    assert breach_problems(window_figures(slow + reads(20, 12, start_s=10), 22, 10), LIMITS) == []


def test_failed_and_empty_reads_count_against_the_error_rate() -> None:
    samples = [*reads(20, 8), Sample(8, "new", None, "503"), Sample(9, "new", 20, empty=True)]
    [problem] = breach_problems(window_figures(samples, 9, 10), LIMITS)
    assert "1 failed and 1 empty" in problem and "cutover.max_error_rate" in problem


def test_too_few_reads_are_no_breach() -> None:
    assert breach_problems(window_figures(reads(500, 4), 4, 10), LIMITS) == []


@pytest.mark.parametrize(
    ("percents", "fallback"), [([], 0), ([5], 0), ([5, 25, 50], 25), ([5, 25, 50, 25, 50], 25), ([100, 0, 5], 0)]
)
def test_reads_go_back_to_the_last_good_step(percents: list[int], fallback: int) -> None:
    assert fallback_percent(percents) == fallback


def test_an_applications_report_is_samples_on_the_watchs_clock_judged_with_its_own() -> None:
    """``ReadLog.take``'s samples (epoch seconds) join the watch's reads on the clock it started at."""
    report = {"samples": [[1000.5, "new", 900.0, None, False], [1001.0, "old", 5.0, None, False], [1001, "x", 1, 0, 0]]}

    samples = app_samples(report, epoch0_s=1000.0)

    assert samples == [Sample(0.5, "new", 900.0, reader="app"), Sample(1.0, "old", 5.0, reader="app")]
    figures = window_figures([*reads(20, 5, start_s=1), *samples], 6, 10)
    assert figures["new"]["by_reader"] == {"watch": 5, "app": 1} and figures["old"]["by_reader"]["app"] == 1


def test_a_window_and_a_breach_read_as_status_says_them() -> None:
    figures = window_figures([*reads(20, 5), Sample(5, "new", 30, reader="app")], 5, 10)
    detail = {"percent": 25, "window_s": 10.0, "figures": figures, "instances": 2}

    head, new, old = window_lines(detail, "2026-11-26T10:00:00.123+00:00")

    assert head == (
        "reads at 25 % new, window of 10.0 s to 2026-11-26T10:00:00 (cutover watch and 2 application instance(s)):"
    )
    assert new.startswith("new: 6 reads (1 by applications), P50 20.0 ms") and old.startswith("old: 0 reads, P50 None")
    breach = {"percent": 25, "problems": ["the new side's P95 900 ms is above cutover.p95_ms = 100 ms"]}
    assert breach_line(breach, "2026-11-26T10:00:01") == (
        "breach at 2026-11-26T10:00:01 with reads 25 % new: the new side's P95 900 ms is above cutover.p95_ms = 100 ms"
    )

"""When the reads of a live step are a breach (``orchestrator.cutover.breach``), and where reads go back."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.cutover.breach import Sample, breach_problems, fallback_percent, window_figures
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

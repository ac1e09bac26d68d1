"""The pure rules of a cut-over (``orchestrator.cutover.rules``): rollout steps, which reads go new, the load check's
figures and verdict, and the cleanup gate."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from nsmigrate.orchestrator.cutover.rules import (
    ROLLOUT_STEPS,
    Rollout,
    check_problems,
    cleanup_gate,
    overlap,
    reads_new,
    rollout_from,
    rollout_problem,
)
from nsmigrate.orchestrator.spec.jobspec import Cutover
from nsmigrate.orchestrator.verification.query_timing import latency_figures

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACES = [f"creator_c{i}_twin_t{i}" for i in range(2000)]


def test_each_rollout_step_keeps_the_namespaces_of_the_one_before_and_reads_about_its_share() -> None:
    reading = {p: {ns for ns in NAMESPACES if reads_new(ns, p)} for p in ROLLOUT_STEPS}

    assert reading[0] == set() and reading[100] == set(NAMESPACES)
    for smaller, larger in itertools.pairwise(ROLLOUT_STEPS):
        assert reading[smaller] <= reading[larger]
    for p in (5, 25, 50):
        assert abs(len(reading[p]) / len(NAMESPACES) - p / 100) < 0.04, p


@pytest.mark.parametrize(("percent", "ok"), [(5, True), (25, True), (50, True), (100, True), (0, True), (30, False)])
def test_only_the_rollout_steps_are_accepted(percent: int, ok: bool) -> None:
    problem = rollout_problem(percent)
    assert (problem is None) is ok
    if not ok:
        assert "--percent 30" in (problem or "") and "5, 25, 50, 100" in (problem or "")


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], Rollout()),
        ([(5, T0)], Rollout(5, T0, None)),
        ([(5, T0), (100, T0 + timedelta(1)), (100, T0 + timedelta(2))], Rollout(100, T0, T0 + timedelta(1))),
        ([(100, T0), (50, T0 + timedelta(1)), (100, T0 + timedelta(2))], Rollout(100, T0, T0 + timedelta(2))),
        ([(100, T0), (0, T0 + timedelta(1))], Rollout(0, T0, None)),
    ],
)
def test_the_rollout_is_the_last_step_and_full_since_the_last_streak_of_100(
    steps: list[tuple[int, datetime]], expected: Rollout
) -> None:
    assert rollout_from(steps) == expected


def test_latency_figures_interpolate_between_ranks() -> None:
    figures = latency_figures([float(ms) for ms in range(1, 101)])  # 1..100 ms

    assert figures == {"samples": 100, "p50_ms": 50.5, "p95_ms": 95.05, "p99_ms": 99.01}
    assert latency_figures([]) == {"samples": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}


def test_overlap_is_the_share_of_the_source_answer_the_target_holds() -> None:
    assert overlap(["a", "b", "c", "d"], ["d", "c", "x", "y"]) == 0.5
    assert overlap([], []) == 1.0
    assert overlap([], ["a"]) == 0.0


def _figures(**overrides: object) -> dict[str, object]:
    figures: dict[str, object] = {
        "target": {"p50_ms": 10.0, "p95_ms": 50.0, "p99_ms": 90.0},
        "cold_query_ms": 120.0,
        "errors": 0,
        "queries": 200,
        "error_rate": 0.0,
        "agreement": 1.0,
    }
    figures.update(overrides)
    return figures


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({}, None),
        ({"target": {"p50_ms": 10.0, "p95_ms": 101.0, "p99_ms": 150.0}}, "cutover.p95_ms"),
        ({"target": {"p50_ms": 10.0, "p95_ms": 50.0, "p99_ms": 201.0}}, "cutover.p99_ms"),
        ({"target": {"p50_ms": None, "p95_ms": None, "p99_ms": None}}, "none of its queries succeeded"),
        ({"cold_query_ms": 501.0}, "cutover.cold_query_ms"),
        ({"cold_query_ms": 900.0, "cold_slowest": [["b", 900.0], ["a", 40.0]]}, "(the first query to b 900.0 ms)"),
        ({"cold_errors": ["c: NotFoundException: 404"]}, "1 first queries to target namespaces failed: c: NotFound"),
        ({"cold_query_ms": None}, "no cold query"),
        ({"errors": 3, "error_rate": 0.015}, "cutover.max_error_rate"),
        ({"agreement": 0.8}, "cutover.min_agreement"),
        ({"agreement": None}, "agreement unknown"),
        ({"agreement": None, "comparable_queries": 0}, None),  # every target also holds other sources' records
    ],
)
def test_the_check_holds_only_within_every_limit(overrides: dict[str, object], named: str | None) -> None:
    problems = check_problems(_figures(**overrides), Cutover())

    if named is None:
        assert problems == []
    else:
        assert len(problems) == 1 and named in problems[0], problems


def test_cleanup_gate_waits_for_a_sync_then_for_decommission_after_s() -> None:
    week = 7 * 86400.0
    full = Rollout(100, T0, T0 + timedelta(days=1))
    synced = T0 + timedelta(days=1, hours=1)

    def gate(rollout: Rollout, now: datetime, **kw: object) -> str | None:
        args: dict[str, object] = {"last_sync_at": synced, "last_write_failure_at": None, **kw}
        return cleanup_gate(rollout, week, now, **args)  # type: ignore[arg-type]

    assert gate(Rollout(), T0, last_sync_at=None) is None  # no cut-over: cleanup as before
    assert "50 % new" in (gate(Rollout(50, T0, None), T0 + timedelta(days=30)) or "")
    assert "no `nsmigrate sync`" in (gate(full, T0 + timedelta(days=30), last_sync_at=None) or "")
    assert "no `nsmigrate sync`" in (gate(full, T0 + timedelta(days=30), last_sync_at=T0 - timedelta(1)) or "")
    failed_after = T0 + timedelta(days=2)
    assert "dual write" in (gate(full, T0 + timedelta(days=30), last_write_failure_at=failed_after) or "")
    assert "until 2026-01-09" in (gate(full, T0 + timedelta(days=7)) or "")
    assert gate(full, T0 + timedelta(days=8)) is None
    # The override (--decommission-now) skips the waiting only: never the sync, never reads being 100 % new.
    assert gate(full, T0 + timedelta(days=1, hours=2), override=True) is None
    assert "dual write" in (gate(full, T0, last_write_failure_at=failed_after, override=True) or "")
    assert "no `nsmigrate sync`" in (gate(full, T0 + timedelta(days=2), last_sync_at=None, override=True) or "")
    for percent in (5, 25, 50):
        refused = gate(Rollout(percent, T0, None), T0 + timedelta(days=30), override=True) or ""
        assert f"reads are {percent} % new" in refused and "--percent 100` first" in refused

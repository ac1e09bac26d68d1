"""The rails of `cutover set` (``orchestrator.cutover.rails``): steps in order, `--force` skips one, a fresh passing
check, a soak with no breach before the next step, and a step back always allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nsmigrate.orchestrator.cutover.rails import StepHistory, next_step, skipped_steps, step_refusal
from nsmigrate.orchestrator.spec.jobspec import Cutover

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
LIMITS = Cutover()  # check_valid_s 3600, min_step_s 600


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def history(percent: int = 0, set_s: float | None = None, check_s: float | None = 60, **kwargs: object) -> StepHistory:
    """The rollout at ``percent`` since ``set_s`` seconds ago, its newest check ``check_s`` ago (passing)."""
    return StepHistory(
        percent=percent,
        set_at=ago(set_s) if set_s is not None else None,
        check_at=ago(check_s) if check_s is not None else None,
        check_passed=bool(kwargs.get("passed", True)),
        breach_at=ago(float(kwargs["breach_s"])) if "breach_s" in kwargs else None,  # type: ignore[arg-type]
    )


def refusal(wanted: int, past: StepHistory, *, forced: bool = False, limits: Cutover = LIMITS) -> str | None:
    return step_refusal(7, wanted, past, limits, NOW, forced=forced)


def test_the_spec_defaults_are_an_hour_for_a_check_and_ten_minutes_per_step() -> None:
    assert (LIMITS.check_valid_s, LIMITS.min_step_s) == (3600, 600)


@pytest.mark.parametrize(("current", "following"), [(0, 5), (5, 25), (25, 50), (50, 100), (100, 100)])
def test_the_steps_go_5_25_50_100(current: int, following: int) -> None:
    assert next_step(current) == following


@pytest.mark.parametrize(
    ("current", "wanted", "forced", "refused"),
    [
        (0, 5, False, False),
        (0, 25, False, True),  # a first step of 25 %: skips 5
        (0, 25, True, False),  # --force skips one
        (0, 50, True, True),  # ... never two
        (0, 100, False, True),
        (5, 50, True, False),
        (50, 100, False, False),
    ],
)
def test_steps_in_order_and_force_skips_one(current: int, wanted: int, forced: bool, refused: bool) -> None:
    past = history(current, set_s=None if current == 0 else 3600)

    problem = refusal(wanted, past, forced=forced)

    assert (problem is not None) is refused, problem
    if refused:
        assert f"the next step is {next_step(current)} %" in (problem or "")


def test_an_unforced_skip_names_the_command_that_forces_it() -> None:
    problem = refusal(25, history(0))

    assert problem is not None and "would skip 5 %" in problem
    assert "`nsmigrate cutover set 7 --reads new --percent 25 --force --reason TEXT`" in problem


@pytest.mark.parametrize(
    ("past", "words"),
    [
        (history(check_s=None), "no `cutover check` of job 7 was taken"),
        (history(passed=False), "failed"),
        (history(check_s=3601), "more than cutover.check_valid_s = 3600 s"),
    ],
)
def test_each_step_needs_a_fresh_passing_check(past: StepHistory, words: str) -> None:
    problem = refusal(5, past)

    assert problem is not None and words in problem and "`nsmigrate cutover check 7`" in problem


def test_the_next_step_waits_min_step_s_and_says_how_long_is_left() -> None:
    problem = refusal(25, history(5, set_s=450))

    assert problem is not None and "cutover.min_step_s = 600 s" in problem and "150 s left" in problem
    assert refusal(25, history(5, set_s=600)) is None


def test_a_breach_during_the_step_restarts_its_soak() -> None:
    problem = refusal(50, history(25, set_s=3000, breach_s=100))

    assert problem is not None and "a breach at" in problem and "500 s left" in problem


def test_a_check_older_than_its_validity_is_refused_even_with_force() -> None:
    assert refusal(25, history(0, check_s=7200), forced=True) is not None


@pytest.mark.parametrize("wanted", [0, 5, 25])
def test_a_step_back_or_a_repeat_is_always_allowed(wanted: int) -> None:
    # No check at all, a failed one, just set, a breach: none of it holds reads on the target.
    past = history(25, set_s=1, check_s=None, passed=False, breach_s=0)

    assert refusal(wanted, past) is None
    assert skipped_steps(25, wanted) == []

"""The rails of ``nsmigrate cutover set``, pure: which move of the applications' reads is allowed now.

A step toward the target moves live traffic onto a store that has not served it yet, so it is taken in order
(5 → 25 → 50 → 100 %; ``--force`` with a reason skips one step, never more), only after a passing ``cutover check``
of the job taken within ``cutover.check_valid_s``, and only once the step before has been live for
``cutover.min_step_s`` with no breach (a failed check or a ``cutover_breach`` event restarts that soak). A step back
toward the source (a smaller percentage, or ``--reads old``) is always allowed at once: it is the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS
from nsmigrate.orchestrator.spec.jobspec import Cutover


@dataclass(frozen=True)
class StepHistory:
    """What the rails look at, read from the job's audit log.

    ``percent``/``set_at``: the rollout now and when its newest ``cutover set`` was recorded (None: never);
    ``check_at``/``check_passed``: the newest ``cutover check`` (None: none taken); ``breach_at``: the newest breach
    (a failed check or a ``cutover_breach`` event) since ``set_at``, or None."""

    percent: int = 0
    set_at: datetime | None = None
    check_at: datetime | None = None
    check_passed: bool = False
    breach_at: datetime | None = None


def skipped_steps(current: int, wanted: int) -> list[int]:
    """The rollout steps strictly between ``current`` and ``wanted`` (a move up skips them)."""
    return [p for p in ROLLOUT_STEPS if current < p < wanted]


def next_step(current: int) -> int:
    """The step after ``current`` (100 stays 100)."""
    return next((p for p in ROLLOUT_STEPS if p > current), ROLLOUT_STEPS[-1])


def step_refusal(
    job_id: int, wanted: int, history: StepHistory, limits: Cutover, now: datetime, *, forced: bool = False
) -> str | None:
    """Why reads may not move to ``wanted`` % new now, or None. ``forced``: ``--force`` (skips one step)."""
    current = history.percent
    if wanted <= current:
        return None  # a repeat, or a step back toward the source: always allowed
    skipped = skipped_steps(current, wanted)
    steps = " → ".join(map(str, ROLLOUT_STEPS[1:]))
    if len(skipped) > 1 or (skipped and not forced):
        return (
            f"reads move {steps} % in order: from {current} % the next step is {next_step(current)} %, and "
            f"{wanted} % would skip {', '.join(f'{p} %' for p in skipped)} ("
            + (
                "`--force --reason TEXT` skips one step, never more)"
                if len(skipped) > 1
                else f"`nsmigrate cutover set {job_id} --reads new --percent {wanted} --force --reason TEXT` "
                "skips it, recorded with the reason)"
            )
        )
    check = f"`nsmigrate cutover check {job_id}`"
    if history.check_at is None:
        return (
            f"no `cutover check` of job {job_id} was taken: each step toward the target needs a passing one; "
            f"run {check}"
        )
    age_s = (now - history.check_at).total_seconds()
    if not history.check_passed:
        return (
            f"the newest `cutover check` of job {job_id} (at {_at(history.check_at)}) failed: the target is not "
            f"ready for more reads; fix what it names and run {check} until it passes"
        )
    if age_s > limits.check_valid_s:
        return (
            f"the newest passing `cutover check` of job {job_id} was taken {age_s:.0f} s ago, more than "
            f"cutover.check_valid_s = {limits.check_valid_s:g} s: run {check} again"
        )
    if current == 0 or history.set_at is None:
        return None  # the first step: nothing live to soak
    soak_from = max(history.set_at, history.breach_at or history.set_at)
    ready_at = soak_from + timedelta(seconds=limits.min_step_s)
    if now < ready_at:
        left = (ready_at - now).total_seconds()
        since = (
            f"a breach at {_at(history.breach_at)} restarted the soak of the {current} % step"
            if history.breach_at is not None and history.breach_at > history.set_at
            else f"reads have been {current} % new since {_at(history.set_at)}"
        )
        return (
            f"{since}; cutover.min_step_s = {limits.min_step_s:g} s asks each step to run that long with no breach "
            f"before the next: {left:.0f} s left (at {_at(ready_at)})"
        )
    return None


def _at(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when is not None else "?"

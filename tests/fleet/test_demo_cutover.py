"""`nsmigrate demo cutover` end to end (tests/demos.py): writes during the copy fail its first verification, by
design; the sync repairs them, the rollout keeps to its rails, and the new index holds every write the application
made."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_cutover_runs_end_to_end_and_verifies() -> None:
    output = play("cutover", verify_failed_expected=True)

    assert "no write was lost" in output
    # The rails, each refused once on the way (exit 1, as the demo checks): no check yet, a step out of order, a
    # step before its soak ended.
    assert "no step without a passing load check" in output and "a first step of 25 % is refused" in output
    assert "the next step waits cutover.min_step_s" in output and "soaks cutover.min_step_s = 2 s" in output

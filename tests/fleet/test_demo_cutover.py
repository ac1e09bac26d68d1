"""`nsmigrate demo cutover` end to end (tests/demos.py): writes during the copy fail its first verification, by
design; the sync repairs them, the rollout keeps to its rails, and the new index holds every write the application
made."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_cutover_runs_end_to_end_and_verifies() -> None:
    output = play("cutover", verify_failed_expected=True)

    assert "the cut-over, by alias and across indexes: done" in output
    assert "no write was lost" in output
    # The rails, each refused on the way (exit 1, as the demo checks): no check yet, a step out of order, a step
    # before its soak ended; each step soaked, watched.
    assert output.count("no step without a passing load check") == 2 and "a first step of 25 % is refused" in output
    assert "the next step waits cutover.min_step_s" in output and "soaks cutover.min_step_s = 2 s, watched" in output
    # Inside one index: the aliases moved back by the watch on a breach, then every one to its new namespace, and a
    # search through each answered the same before and after.
    assert "the watch sees it and moves the aliases back to the old namespaces" in output
    assert "every one of the 30 aliases reads its old namespace again" in output and "with reads 5 % new:" in output
    assert "same top-10 before and after the repoint: 30 of 30" in output
    # Across indexes: the breach at 25 % rolled back to 5 %, and the application's reads followed.
    assert "the watch sees it and moves reads back to 5 %" in output and "with reads 25 % new:" in output
    assert "by applications)" in output  # the watch judged the application's measured reads with its own

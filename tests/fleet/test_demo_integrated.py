"""`nsmigrate demo integrated` end to end (tests/demos.py): the seed text written into an integrated index the job
creates, verified."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_integrated_runs_end_to_end_and_verifies() -> None:
    play("integrated")

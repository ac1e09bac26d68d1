"""`nsmigrate demo cutover` end to end (tests/demos.py): writes during the copy fail its first verification, by
design; the sync repairs them, and the new index holds every write the application made."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_cutover_runs_end_to_end_and_verifies() -> None:
    output = play("cutover", verify_failed_expected=True)

    assert "no write was lost" in output

"""`nsmigrate demo erase` end to end (tests/demos.py): both erasures verified, every place checked empty, a.10
unchanged."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_erase_runs_end_to_end_and_verifies() -> None:
    play("erase")

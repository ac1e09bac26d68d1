"""`nsmigrate demo erase` end to end (tests/demos.py): both erasures verified, every place checked empty, a.10
unchanged, and the archive imported after the erasure written without a.1's records: the ledger held them back and
the import said so."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_erase_runs_end_to_end_and_verifies() -> None:
    output = " ".join(play("erase").split())

    assert "erased by erasure job" in output and "held back" in output and "of creator 'a.1'" in output
    assert "erase --lift --creator a.1" in output  # the import names how an operator would let them back in
    assert "the erasure ledger held back" in output and "of a.1's records from the import" in output

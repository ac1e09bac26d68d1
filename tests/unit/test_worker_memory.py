"""Workers keep the memory a batch freed for the next batch (glibc), instead of faulting fresh pages in each time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Allocate and free buffers of the sizes a copy batch uses (fetched JSON, upsert bodies) for 20 rounds, then print
# how many pages were faulted in per round after the first (glibc's defaults: ~5 % of them here).
_CHURN = textwrap.dedent(
    """
    import resource
    from workers.app import keep_freed_memory
    assert keep_freed_memory()
    sizes = [9 << 20, 2 << 20, 2 << 20, 17 << 20, 3 << 20]
    def one_round():
        buffers = [bytearray(n) for n in sizes]
        for b in buffers:
            b[::4096] = b"x" * len(range(0, len(b), 4096))  # touch every page
    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        one_round()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 20)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_freed_batch_memory_is_reused_without_page_faults() -> None:
    pages_per_round = (9 + 2 + 2 + 17 + 3) << 20 >> 12
    # A process of its own: the setting is process-wide and cannot be undone.
    out = subprocess.run([sys.executable, "-c", _CHURN], capture_output=True, text=True, check=True, cwd=REPO)
    kept = int(out.stdout)
    assert kept < pages_per_round // 100, f"{kept} page faults per round of {pages_per_round} pages"

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


# One thread allocates and frees a batch's buffers and stays alive; then another thread does the same and prints how
# many pages it faulted in: with an arena of its own (glibc's default for threads) it faults every page again.
_ANOTHER_THREAD = textwrap.dedent(
    """
    import resource, threading
    from workers.app import keep_freed_memory
    assert keep_freed_memory()
    sizes = [9 << 20, 2 << 20, 2 << 20, 3 << 20]
    faulted = []
    def one_batch():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffers = [bytearray(n) for n in sizes]
        for b in buffers:
            b[::4096] = b"x" * len(range(0, len(b), 4096))  # touch every page
        del buffers
        faulted.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    freed, done = threading.Event(), threading.Event()
    def first_thread():
        one_batch()
        freed.set()
        done.wait()  # stays alive, as a worker's threads do
    first = threading.Thread(target=first_thread)
    first.start()
    freed.wait()
    second = threading.Thread(target=one_batch)
    second.start()
    second.join()
    done.set()
    first.join()
    print(faulted[1])
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_a_thread_reuses_the_memory_another_thread_freed() -> None:
    pages_per_batch = (9 + 2 + 2 + 3) << 20 >> 12
    out = subprocess.run([sys.executable, "-c", _ANOTHER_THREAD], capture_output=True, text=True, check=True, cwd=REPO)
    faulted = int(out.stdout)
    assert faulted < pages_per_batch // 10, f"the second thread faulted {faulted} of {pages_per_batch} pages"


# A worker thread allocates a batch's buffers after the heap was touched at start (or not) and prints its faults.
_AFTER_PREFAULT = textwrap.dedent(
    """
    import resource, sys, threading
    from workers.app import keep_freed_memory, prefault_heap
    assert keep_freed_memory()
    if sys.argv[1] == "prefault":
        prefault_heap(32)
    faulted = []
    def first_batch():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffers = [bytearray(n) for n in (9 << 20, 2 << 20, 2 << 20, 3 << 20)]
        for b in buffers:
            b[::4096] = b"x" * len(range(0, len(b), 4096))  # touch every page
        faulted.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    thread = threading.Thread(target=first_batch)
    thread.start()
    thread.join()
    print(faulted[0])
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_a_prefaulted_heap_serves_the_first_batch_without_page_faults() -> None:
    pages_per_batch = (9 + 2 + 2 + 3) << 20 >> 12

    def first_batch_faults(mode: str) -> int:
        cmd = [sys.executable, "-c", _AFTER_PREFAULT, mode]
        return int(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout)

    assert first_batch_faults("cold") > pages_per_batch // 2  # the measure sees them when they happen
    assert first_batch_faults("prefault") < pages_per_batch // 10

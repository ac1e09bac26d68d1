"""The local data plane keeps the memory a request freed for the next one (glibc), instead of faulting fresh pages in
each time (``sandbox.memory``)."""

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
    from nsmigrate_sandbox.memory import keep_freed_memory
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


#: A copy batch's buffers, allocated and touched in the calling thread; appends the pages that faulted in to
#: ``faulted`` (a process of its own runs each script: the settings are process-wide and cannot be undone).
_ONE_BATCH = """
import resource, sys, threading
import nsmigrate_sandbox.pinecone_server  # a data-plane process: its modules loaded, its heap grown to their size
from nsmigrate_sandbox.memory import keep_freed_memory, prefault_heap
assert keep_freed_memory()
faulted = []
def one_batch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [bytearray(n) for n in (9 << 20, 2 << 20, 2 << 20, 3 << 20)]
    for b in buffers:
        b[::4096] = b"x" * len(range(0, len(b), 4096))  # touch every page
    del buffers
    faulted.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES_PER_BATCH = (9 + 2 + 2 + 3) << 20 >> 12


def _faults_printed(script: str, *args: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _ONE_BATCH + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_a_thread_reuses_the_memory_another_thread_freed() -> None:
    """One thread's batch frees its buffers and the thread stays alive; another thread's batch follows. With an arena
    of its own (glibc's default for threads) the second faults every page in again."""
    second_thread = """
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
    faulted = _faults_printed(second_thread)
    assert faulted < _PAGES_PER_BATCH // 10, f"the second thread faulted {faulted} of {_PAGES_PER_BATCH} pages"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_a_prefaulted_heap_serves_the_first_batch_without_page_faults() -> None:
    first_batch = """
        if sys.argv[1] == "prefault":
            prefault_heap(32)
        thread = threading.Thread(target=one_batch)
        thread.start()
        thread.join()
        print(faulted[0])
    """
    assert _faults_printed(first_batch, "cold") > _PAGES_PER_BATCH // 2  # the measure sees faults when they happen
    assert _faults_printed(first_batch, "prefault") < _PAGES_PER_BATCH // 10

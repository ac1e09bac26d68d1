"""How the local data plane's processes use memory: they keep what a request freed for the next one, in one heap for
all their threads, and can touch that heap before the run, so the bench measures the fleet rather than the page
faults of a fresh index. (The workers use glibc's defaults: keeping freed memory gave them no gain beyond the bench's
noise, ``bench/README.md``.)
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Freed memory a process keeps.
KEPT_MB = 256


def keep_freed_memory() -> bool:
    """Have glibc keep memory a worker frees for its next batch instead of handing it back to the OS at once.

    A copy batch allocates tens of MB (the fetched JSON, the upsert bodies) and frees them when it ends. By default
    glibc serves many of them with fresh ``mmap``s and trims the heap on ``free``, so batches keep touching new pages,
    and each first touch is a page fault (dear inside VMs). Up to ``KEPT_MB`` of freed memory is kept per process: a
    500 × 1536 batch is ~8.5 MB of JSON, which a copy holds about three times over (response, values, upsert bodies).

    All the process's threads share one heap (arena). By default glibc gives each thread of a threads worker its
    own, so each thread faulted in memory for its own first batches and no batch reused what another thread's batch
    freed. Python threads allocate while holding the interpreter lock, so they hardly contend for the arena's lock.

    What this saves on the bench: ``bench/README.md``.

    Returns False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    settings = ((_M_TRIM_THRESHOLD, KEPT_MB << 20), (_M_MMAP_THRESHOLD, 32 << 20), (_M_ARENA_MAX, 1))
    return all([bool(mallopt(param, value)) for param, value in settings])  # a list: every one is applied


def prefault_heap(mb: int) -> None:
    """Touch ``mb`` MiB of heap and free it again. ``keep_freed_memory`` keeps it, so the first batches find their
    memory faulted in instead of paying a page fault per 4 KiB. Call it in the process that runs the tasks: after a
    fork, a parent's pages would be copied, a fault each, on the child's first write."""
    # 1 MiB buffers come from the heap (under the mmap threshold); writing every byte faults every page in.
    touched = [b"\x01" * (1 << 20) for _ in range(mb)]
    del touched

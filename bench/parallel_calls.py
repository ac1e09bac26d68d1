"""A copy worker's parallel upserts, in process: ``--threads`` task threads each run ``--batches`` batches of
``--calls`` calls at once through ``run_parallel`` (``workers.transfer.concurrent_calls``), each call a 1 ms wait
standing for a request. Prints the process's CPU and the wall microseconds a batch spends beyond its calls' own wait:
what starting them costs, apart from the requests.

With commits it loads each one's ``concurrent_calls.py`` (``git show``), alternated ``--rounds`` times::

    .venv/bin/python -m bench.parallel_calls                  # this tree
    .venv/bin/python -m bench.parallel_calls 3d7a1d2 .        # a commit and this tree, alternated

Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

MODULE = "workers/transfer/concurrent_calls.py"
CALL_S = 0.001


def load(rev: str | None) -> ModuleType:
    """``concurrent_calls`` of commit ``rev`` (None or ``.``: this tree)."""
    root = Path(__file__).resolve().parents[1]
    path = root / MODULE
    if rev not in (None, "."):
        text = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=root, check=True, capture_output=True).stdout
        path = Path(tempfile.mkdtemp(prefix="nsmigrate-calls-")) / "concurrent_calls.py"
        path.write_bytes(text)
    spec = importlib.util.spec_from_file_location(f"calls_{rev or 'tree'}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(module: ModuleType, threads: int, batches: int, calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs beyond the calls' own wait) a batch."""

    def call(_: int) -> None:
        time.sleep(CALL_S)

    def task() -> None:
        for _ in range(batches):
            module.run_parallel(call, list(range(calls)), calls)

    cpu, wall = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=task) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    n = threads * batches
    return (time.process_time() - cpu) / n * 1e6, ((time.perf_counter() - wall) / batches - CALL_S) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="*", help="commits to compare, `.` for this tree (none: this tree)")
    parser.add_argument("--threads", type=int, default=16, help="task threads (a copy worker's -c)")
    parser.add_argument("--batches", type=int, default=30, help="batches each task thread runs")
    parser.add_argument("--calls", type=int, default=4, help="calls a batch runs at once (parallel_upserts)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    modules = {rev if rev not in (None, ".") else "this tree": load(rev) for rev in (args.revs or [None])}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in modules}
    for _ in range(args.rounds):
        for name, module in modules.items():
            figures[name].append(measure(module, args.threads, args.batches, args.calls))
    for name, runs in figures.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{name}: {cpu:.0f} µs of CPU a batch, {wall:.0f} µs of wall beyond its calls (medians of {len(runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

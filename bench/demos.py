"""Benchmark: what each ``nsmigrate demo SCENARIO`` costs, as the demo tests play it (``--workers 2``).

For each scenario, ``--runs`` times, one after the other: the wall clock until the demo exits, and the CPU seconds
of its whole process tree (the demo, its workers and their prefork children, Flower, Redis, Postgres and its
backends). This process makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so a descendant whose own
parent died first (a prefork child of a worker the demo killed) is reaped here too and its CPU counted in
``RUSAGE_CHILDREN``. Each run's output goes to a log with the seconds since the start before every line: the phases
of a scenario, read off its own messages. Prints the median and the range per scenario, and the machine's load.

    .venv/bin/python -m bench.demos                          # every scenario, 3 runs each
    .venv/bin/python -m bench.demos cutover pgvector --runs 5
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nsmigrate.cli.demo import SCENARIOS

_PR_SET_CHILD_SUBREAPER = 36


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def play(scenario: str, log: Path) -> tuple[int, float, float]:
    """Play ``scenario`` once; its exit code, wall seconds and the CPU seconds of its whole process tree."""
    cpu_before, started = cpu_of_children(), time.monotonic()
    argv = [sys.executable, "-m", "nsmigrate", "demo", scenario, "--workers", "2"]
    env = {**os.environ, "COLUMNS": "200"}
    with open(log, "w") as out:
        demo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert demo.stdout is not None
        for line in demo.stdout:
            out.write(f"{time.monotonic() - started:7.2f} {line}")
        code = demo.wait()
    wall = time.monotonic() - started
    while True:  # every orphan of the tree, reaped here: its CPU is then in RUSAGE_CHILDREN
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    return code, wall, cpu_of_children() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help="default: every scenario")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"no scenario {unknown}; choose from {', '.join(SCENARIOS)}")
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    logs = Path(tempfile.mkdtemp(prefix="nsmigrate-bench-demos-"))
    print(f"logs (seconds since the start before each line): {logs}")
    for scenario in args.scenarios:
        walls, cpus, loads = [], [], []
        for run in range(args.runs):
            loads.append(os.getloadavg()[0])
            code, wall, cpu = play(scenario, logs / f"{scenario}-{run}.log")
            if code != 0:
                sys.exit(f"{scenario} exited {code}: see {logs / f'{scenario}-{run}.log'}")
            walls.append(wall)
            cpus.append(cpu)
        print(
            f"{scenario:20} wall {statistics.median(walls):6.1f} s ({min(walls):.1f}–{max(walls):.1f}), "
            f"CPU {statistics.median(cpus):5.1f} s ({min(cpus):.1f}–{max(cpus):.1f}), "
            f"load {min(loads):.1f}–{max(loads):.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

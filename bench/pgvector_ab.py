"""A/B of two commits on the pgvector → pgvector bench (``bench.pgvector_vs_rival``), alternated in one run.

As ``bench.ab`` does for ``make bench``: each commit runs from its own git worktree with its own ``.venv`` (made under
``/tmp/nsmigrate-ab/`` and reused), run 1 A then B, run 2 B then A and so on (ABBA), so a drift of the machine over
the run favours neither. Both run *this* tree's bench and rival (``bench/pgvector_vs_rival.py``,
``bench/pgvector_rival.py`` are copied into the other worktree first): only the product differs. Every bench run
alternates the rival and the fleet itself, so its fleet ÷ rival is measured against the machine of the moment.

Prints, per data set and side, the median over the runs of each run's median fleet ÷ rival (rival s ÷ fleet s),
their range, the fleet's and the rival's user clocks, the workers' CPU seconds per 1,000 vectors and Postgres's CPU
seconds (fleet / rival), and the load average before each run::

    .venv/bin/python -m bench.pgvector_ab main my-branch --runs 4 -- --rounds 2
    .venv/bin/python -m bench.pgvector_ab main my-branch --runs 4 --sets seed -- --rounds 3

Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.ab import order, worktree

#: The files of this tree a run of the other side is given, so both measure with the same bench and rival.
BENCH_FILES = ("bench/pgvector_vs_rival.py", "bench/pgvector_rival.py")


def run_bench(path: Path, bench_args: list[str], keep: Path) -> list[dict[str, Any]]:
    """One ``bench.pgvector_vs_rival`` run in the worktree at ``path``: its JSON result per data set."""
    done = subprocess.run(
        [str(path / ".venv/bin/python"), "-m", "bench.pgvector_vs_rival", *bench_args],
        cwd=path,
        capture_output=True,
        text=True,
    )
    keep.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the bench of {path} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    decoder, text, results = json.JSONDecoder(), done.stdout, []
    at = text.find("{")
    while at >= 0:
        result, end = decoder.raw_decode(text, at)
        results.append(result)
        at = text.find("{", end)
    return results


def report(runs: list[tuple[str, float, list[dict[str, Any]]]], names: dict[str, str]) -> str:
    lines = [f"A = {names['A']}, B = {names['B']}; runs in order: {' '.join(side for side, _, _ in runs)}"]
    sets = list(dict.fromkeys(result["set"] for _, _, results in runs for result in results))
    for name in sets:
        lines.append(name)
        for side in ("A", "B"):
            mine = [(load, r) for s, load, results in runs if s == side for r in results if r["set"] == name]
            ratios = [r["fleet_over_rival"] for _, r in mine]
            job_s = statistics.median(x for _, r in mine for x in r["job_s"])  # job row → last batch

            def median(key: str, at: int | None = None) -> float:
                return statistics.median(r[key] if at is None else r[key][at] for _, r in mine)  # noqa: B023

            lines.append(
                f"  {side}: fleet ÷ rival {statistics.median(ratios):.2f}× (runs "
                f"{', '.join(f'{x:.2f}' for x in ratios)}); rival {median('rival_s_median'):.2f} s, fleet "
                f"{median('fleet_s_median'):.2f} s (job clock {job_s:.2f} s); worker CPU s/1k "
                f"{median('worker_cpu_s_per_1k'):.3f}; Postgres CPU s fleet/rival "
                f"{median('postgres_cpu_s_fleet_rival', 0):.2f}/"
                f"{median('postgres_cpu_s_fleet_rival', 1):.2f}; load before {', '.join(f'{x:.1f}' for x, _ in mine)}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to bench.pgvector_vs_rival (e.g. -- --rounds 2 --write-mb-per-s 1000).",
    )
    parser.add_argument("a", help="commit A (the baseline), e.g. main or a sha")
    parser.add_argument("b", help="commit B (the change)")
    parser.add_argument("--runs", type=int, default=4, help="bench runs, alternated ABBA (default 4)")
    parser.add_argument("--sets", default="seed,large", help="data sets, comma-separated: seed, large")
    parser.add_argument(
        "--worktrees",
        type=Path,
        default=Path(tempfile.gettempdir()) / "nsmigrate-ab",
        help="where the commits' worktrees are made (kept and reused: each has its own .venv)",
    )
    args, extra = parser.parse_known_args(argv)
    repo = Path(__file__).resolve().parent.parent
    args.worktrees.mkdir(parents=True, exist_ok=True)
    paths = {side: worktree(repo, rev, args.worktrees) for side, rev in (("A", args.a), ("B", args.b))}
    for path in paths.values():
        for name in BENCH_FILES:
            shutil.copyfile(repo / name, path / name)
    outputs = Path(tempfile.mkdtemp(prefix="pgvector-outputs-", dir=args.worktrees))
    print(f"bench outputs in {outputs}", file=sys.stderr)
    names = {"A": f"{args.a} ({paths['A'].name})", "B": f"{args.b} ({paths['B'].name})"}
    bench_args = ["--sets", args.sets, "--json", *[e for e in extra if e != "--"]]
    runs: list[tuple[str, float, list[dict[str, Any]]]] = []
    for n in range(args.runs):
        side = order(n // 2)[n % 2]
        load = os.getloadavg()[0]
        results = run_bench(paths[side], bench_args, outputs / f"run{n + 1}-{side}.txt")
        runs.append((side, load, results))
        shown = ", ".join(f"{r['set']}: {r['fleet_over_rival']}×" for r in results)
        print(f"run {n + 1}/{args.runs} {side} (load {load:.1f}): {shown}", file=sys.stderr, flush=True)
    print(report(runs, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

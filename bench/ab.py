"""A/B of two commits: `make bench`'s measurement (``bench.fleet_vs_loop``) run for each, alternated, in one run.

One job's figures move by ±15 % from run to run on a small machine, and the machine itself drifts (other work,
memory the host has or has not backed), so a change is only measured against the commit before it *in the same run*,
alternated: pair 1 runs A then B, pair 2 B then A, and so on (ABBA), so a drift over the run favours neither. Each
commit runs from its own git worktree with its own ``.venv`` (``scripts/bootstrap.sh``), so it measures its own code
and its own dependencies.

For each data set and fleet job (fresh, warm) it prints, over the pairs: the median of B's figure over A's and their
range, for the fleet's vectors/s relative to the loop's in the same run (the loop is the yardstick of how fast the
machine was just then) and for worker CPU seconds per 1,000 vectors, and how many pairs favour B. A change is beyond
the noise when every pair agrees on its direction (the range excludes 1.0); fewer than that is noise.

    .venv/bin/python -m bench.ab 5756a2d main --pairs 4
    .venv/bin/python -m bench.ab main my-branch --pairs 6 --sets seed -- --fleets 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

#: One row of ``bench.fleet_vs_loop``'s table, in either of its layouts: job, loop vec/s, fleet vec/s, fleet÷loop,
#: range, 429s, CPU s/1k vec (up to 7267e06); job, loop s, job s, user s, job ×loop, user ×loop, range, 429s, CPU s/1k
#: vec (since the user's clock was added).
_ROW = re.compile(
    r"(?P<kind>fresh|warm) workers\s+(?P<loop>[\d.]+)\s+(?P<fleet>[\d.]+)\s+(?P<ratio>[\d.]+)×\s+\S+"
    r"\s+[\d.]+%\s+[\d.]+%\s+(?P<cpu>[\d.]+)\s*$"
)
_ROW_SECONDS = re.compile(
    r"(?P<kind>fresh|warm) workers\s+(?P<loop_s>[\d.]+)\s+(?P<job_s>[\d.]+)\s+(?P<user_s>[\d.]+)\s+[\d.]+×"
    r"\s+[\d.]+×\s+\S+\s+[\d.]+%\s+(?P<cpu>[\d.]+)\s*$"
)
_SET = re.compile(r"^(?P<set>[a-z]+) \((?P<vectors>\d+)×\d+, \d+ ns\)")
#: A job's CPU line: its workers' CPU seconds with one decimal (finer than the table's per-1k figure on a large set).
_CPU = re.compile(
    r"(?:CPU s, )?fleet, (?P<kind>fresh|warm) workers\b.*CPU s: workers (?P<cpu>[\d.]+),|"
    r"CPU s, fleet, (?P<kind_old>fresh|warm) workers \([\d.]+ s\): workers (?P<cpu_old>[\d.]+),"
)


@dataclasses.dataclass(frozen=True)
class Figures:
    """One fleet job kind of one data set in one bench run."""

    loop_vps: float
    fleet_vps: float
    cpu_per_1k: float
    #: The loop's seconds ÷ the user's clock (command to last batch); None before the bench printed that clock.
    user_vs_loop: float | None = None

    @property
    def vs_loop(self) -> float:
        """The fleet's speed relative to the loop measured in the same run (unrounded, unlike the table's)."""
        return self.fleet_vps / self.loop_vps


def parse_bench(output: str) -> dict[tuple[str, str], Figures]:
    """``bench.fleet_vs_loop``'s table → {(data set, "fresh" | "warm"): figures}. Worker CPU per 1k vectors is taken
    from whichever of the table (two decimals per 1k) and the job's CPU line (one decimal in all) is finer."""
    figures: dict[tuple[str, str], Figures] = {}
    data_set, vectors = None, 0
    for line in output.splitlines():
        if (named := _SET.match(line)) is not None:
            data_set, vectors = named["set"], int(named["vectors"])
        if data_set is None:
            continue
        if (row := _ROW.search(line)) is not None:
            figures[(data_set, row["kind"])] = Figures(float(row["loop"]), float(row["fleet"]), float(row["cpu"]))
        elif (row := _ROW_SECONDS.search(line)) is not None:
            # the same vectors copied by the loop and the job: vectors/s from seconds
            loop_vps, fleet_vps = vectors / float(row["loop_s"]), vectors / float(row["job_s"])
            user_vs_loop = float(row["loop_s"]) / float(row["user_s"])
            figures[(data_set, row["kind"])] = Figures(loop_vps, fleet_vps, float(row["cpu"]), user_vs_loop)
        elif (cpu := _CPU.search(line)) is not None and (data_set, kind := cpu["kind"] or cpu["kind_old"]) in figures:
            table = figures[(data_set, kind)]
            total_s = float(cpu["cpu"] or cpu["cpu_old"])
            # resolution relative to the figure: 0.05 s of the total against 0.005 s of the per-1k figure
            if total_s and 0.05 / total_s < 0.005 / max(table.cpu_per_1k, 1e-9):
                figures[(data_set, kind)] = dataclasses.replace(table, cpu_per_1k=total_s / vectors * 1000)
    return figures


def commit_of(repo: Path, rev: str) -> str:
    """The full hash of commit ``rev`` of the repository at ``repo``."""
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def worktree(repo: Path, rev: str, root: Path) -> Path:
    """A worktree of ``rev`` under ``root`` with its ``.venv`` installed (reused when it is already there)."""
    sha = commit_of(repo, rev)
    path = root / sha[:12]
    if not path.exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(path), sha], check=True)
    subprocess.run(["scripts/bootstrap.sh"], cwd=path, check=True)
    return path


def run_bench(path: Path, bench_args: list[str], keep: Path) -> dict[tuple[str, str], Figures]:
    """One ``bench.fleet_vs_loop`` run of the commit checked out at ``path``; its output is kept in ``keep``."""
    done = subprocess.run(
        [str(path / ".venv/bin/python"), "-m", "bench.fleet_vs_loop", *bench_args],
        cwd=path,
        capture_output=True,
        text=True,
    )
    keep.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(
            f"the bench of {path} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    figures = parse_bench(done.stdout)
    if not figures:
        raise RuntimeError(f"no figures in the bench output of {path}:\n{done.stdout[-3000:]}")
    return figures


def order(pair: int) -> tuple[str, str]:
    """ABBA: which side runs first in each pair."""
    return ("A", "B") if pair % 2 == 0 else ("B", "A")


@dataclasses.dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    favour_b: int  # pairs where B's figure is the better one
    pairs: int

    @classmethod
    def of(cls, ratios: list[float], *, higher_is_better: bool) -> Spread:
        better = sum(1 for r in ratios if (r > 1) == higher_is_better and r != 1)
        return cls(statistics.median(ratios), min(ratios), max(ratios), better, len(ratios))

    @property
    def beyond_noise(self) -> bool:
        """Every pair agrees on the direction."""
        return self.favour_b in (0, self.pairs)

    def __str__(self) -> str:
        verdict = "beyond noise" if self.beyond_noise else "within noise"
        return (
            f"{self.median:.3f} ({self.low:.3f}–{self.high:.3f}), {self.favour_b}/{self.pairs} pairs favour B, "
            f"{verdict}"
        )


def report(runs: dict[str, list[dict[tuple[str, str], Figures]]], names: dict[str, str]) -> str:
    """The comparison over the pairs, as text."""
    lines = [f"A = {names['A']}, B = {names['B']}; {len(runs['A'])} pairs; ratios are B ÷ A, median (min–max)"]
    keys = sorted(set().union(*(set(r) for r in runs["A"])), key=lambda k: (k[0] != "seed", k))
    for key in keys:
        pairs = [(a[key], b[key]) for a, b in zip(runs["A"], runs["B"], strict=True) if key in a and key in b]
        if not pairs:
            continue
        speed = Spread.of([b.vs_loop / a.vs_loop for a, b in pairs], higher_is_better=True)
        cpu = Spread.of([b.cpu_per_1k / a.cpu_per_1k for a, b in pairs], higher_is_better=False)
        lines += [
            f"{key[0]} set, {key[1]} fleet:",
            f"  fleet vec/s ÷ loop vec/s   A {_median(a.vs_loop for a, _ in pairs):5.2f}×   "
            f"B {_median(b.vs_loop for _, b in pairs):5.2f}×   B÷A {speed}",
            f"  fleet vec/s                A {_median(a.fleet_vps for a, _ in pairs):7.1f}   "
            f"B {_median(b.fleet_vps for _, b in pairs):7.1f}",
            f"  worker CPU s per 1k vec    A {_median(a.cpu_per_1k for a, _ in pairs):6.3f}   "
            f"B {_median(b.cpu_per_1k for _, b in pairs):6.3f}   B÷A {cpu}",
        ]
        users = [(a.user_vs_loop, b.user_vs_loop) for a, b in pairs]
        if all(a is not None and b is not None for a, b in users):
            user = Spread.of([b / a for a, b in users if a and b], higher_is_better=True)
            lines.append(
                f"  user's clock: loop s ÷ s   A {_median(a for a, _ in users if a):5.2f}×   "
                f"B {_median(b for _, b in users if b):5.2f}×   B÷A {user}"
            )
    return "\n".join(lines)


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the bench (bench.fleet_vs_loop) for two commits, alternated in pairs (ABBA), and compare.",
        epilog="Arguments after -- go to bench.fleet_vs_loop (e.g. -- --fleets 1 --copy-pool prefork).",
    )
    parser.add_argument("a", nargs="?", help="commit A (the baseline), e.g. main or a sha")
    parser.add_argument("b", nargs="?", help="commit B (the change)")
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="only compare again the outputs an earlier run kept in DIR"
    )
    parser.add_argument("--pairs", type=int, default=4, help="A/B pairs to run (default 4)")
    parser.add_argument("--sets", default="seed,large", help="data sets, comma-separated: seed, large")
    parser.add_argument("--fleets", type=int, default=1, help="fleets per bench run (fleet_vs_loop's --fleets)")
    parser.add_argument(
        "--worktrees",
        type=Path,
        default=Path(tempfile.gettempdir()) / "nsmigrate-ab",
        help="where the commits' worktrees are made (kept and reused: each has its own .venv)",
    )
    args, extra = parser.parse_known_args(argv)
    if args.report is not None:
        return report_kept(args.report)
    if args.a is None or args.b is None:
        parser.error("name commits A and B (or --report DIR)")
    if args.pairs < 1:
        parser.error("--pairs must be ≥ 1")
    bench_args = ["--sets", args.sets, "--fleets", str(args.fleets), *[e for e in extra if e != "--"]]
    repo = Path(__file__).resolve().parent.parent
    args.worktrees.mkdir(parents=True, exist_ok=True)
    paths = {"A": worktree(repo, args.a, args.worktrees), "B": worktree(repo, args.b, args.worktrees)}
    outputs = Path(tempfile.mkdtemp(prefix="outputs-", dir=args.worktrees))
    print(f"bench outputs in {outputs}", file=sys.stderr)
    names = {"A": f"{args.a} ({paths['A'].name})", "B": f"{args.b} ({paths['B'].name})"}
    (outputs / "sides.json").write_text(json.dumps(names))
    runs: dict[str, list[dict[tuple[str, str], Figures]]] = {"A": [], "B": []}
    for pair in range(args.pairs):
        for side in order(pair):
            started = time.monotonic()
            runs[side].append(run_bench(paths[side], bench_args, outputs / f"pair{pair + 1}-{side}.txt"))
            print(
                f"pair {pair + 1}/{args.pairs} {side} ({paths[side].name}) in {time.monotonic() - started:.0f} s: "
                + ", ".join(
                    f"{s}/{k} {f.vs_loop:.2f}× {f.cpu_per_1k:.2f} CPU-s/1k" for (s, k), f in runs[side][-1].items()
                ),
                file=sys.stderr,
                flush=True,
            )
    print(report(runs, names))
    return 0


def report_kept(outputs: Path) -> int:
    """The comparison of the runs an earlier ``bench.ab`` kept in ``outputs`` (``pair<N>-<side>.txt``)."""
    sides = outputs / "sides.json"
    names = json.loads(sides.read_text()) if sides.exists() else {"A": "A", "B": "B"}
    runs: dict[str, list[dict[tuple[str, str], Figures]]] = {"A": [], "B": []}
    pair = 1
    while all((outputs / f"pair{pair}-{side}.txt").exists() for side in runs):
        for side in runs:
            runs[side].append(parse_bench((outputs / f"pair{pair}-{side}.txt").read_text()))
        pair += 1
    if not runs["A"]:
        raise SystemExit(f"no complete pair of outputs in {outputs}")
    print(report(runs, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of two commits on ``bench.many_namespaces``: each commit from its own worktree and ``.venv`` (``bench.ab``),
alternated A B, B A, … so a drift of the machine favours neither; prints each run's figures and B ÷ A of their
medians.

    .venv/bin/python -m bench.ab_many 5188790 main --pairs 2 --namespaces 2000
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.ab import order, worktree

#: The figures read from ``bench.many_namespaces``'s output: name → the pattern of its line.
FIGURES = {
    "copy clock s": r"copy clock \(job row → last batch\)\s+([\d.]+) s",
    "verify tail s": r"verify tail \(last batch → last verdict\)\s+([\d.]+) s",
    "all verified ÷ copy clock": r"all verified ÷ copy clock\s+([\d.]+)",
    "copy CPU ms/namespace": r"worker CPU ms per namespace: copy ([\d.]+)",
    "verify CPU ms/namespace": r"worker CPU ms per namespace: .*, verify ([\d.]+);",
    "verify ÷ copy CPU": r"worker CPU ms per namespace: .*; verify ÷ copy ([\d.]+)",
    "postgres CPU s": r"other CPU s: .*postgres ([\d.]+)",
    "redis CPU s": r"other CPU s: .*redis ([\d.]+)",
}


def figures_of(output: str) -> dict[str, float]:
    found = {name: re.search(pattern, output) for name, pattern in FIGURES.items()}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise RuntimeError(f"no {', '.join(missing)} in the bench's output:\n{output[-3000:]}")
    return {name: float(match.group(1)) for name, match in found.items() if match is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="commit A (the baseline)")
    parser.add_argument("b", help="commit B (the change)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--namespaces", type=int, default=2000)
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    root = Path(tempfile.gettempdir()) / "nsmigrate-ab"
    root.mkdir(exist_ok=True)
    paths = {"A": worktree(repo, args.a, root), "B": worktree(repo, args.b, root)}
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for pair in range(args.pairs):
        for side in order(pair):
            bench = ["-m", "bench.many_namespaces", "--namespaces", str(args.namespaces)]
            done = subprocess.run(
                [str(paths[side] / ".venv/bin/python"), *bench],
                cwd=paths[side],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the bench of {side} failed ({done.returncode}):\n{done.stdout[-3000:]}")
            runs[side].append(figures_of(done.stdout))
            print(f"pair {pair + 1} {side}: " + ", ".join(f"{k} {v:g}" for k, v in runs[side][-1].items()), flush=True)
    print(f"\n{args.namespaces} namespaces, A = {args.a}, B = {args.b}, {args.pairs} pair(s); medians:")
    for name in FIGURES:
        a, b = (statistics.median(r[name] for r in runs[side]) for side in ("A", "B"))
        print(f"{name:28} A {a:8.2f}  B {b:8.2f}  B ÷ A {b / a:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: what a user waits for before a job exists — start-up of the read-only commands, and planning.

Every command runs as a user runs it, in its own process (``python -m nsmigrate …``), ``--repeats`` times
(hyperfine-like:
the median wall clock, the median CPU seconds of the process, and the spread). Planning runs against the local
Pinecone data plane with the seed-shaped data set (one process per index, 50 ms added to every request), for two
specs: the bench's copy (``bench.fleet_vs_loop``: index to index, no routing) and the seeds' own creator routing in
place (the default namespace routed vector by vector, the UUID namespaces renamed; collision checks read ids). It
prints how many data-plane requests one plan made. For each command it also names the heavy packages it imported.

    .venv/bin/python -m bench.startup                 # all of it
    .venv/bin/python -m bench.startup --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fleet_vs_loop import LATENCY_MS, DataPlane, _wait_for_planner, _worker, load_source
from nsmigrate_sandbox.seed import seed_dataset, write_twins_csv
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

#: Packages a command should import only when it uses them (what `--help`, `status` and `jobs` must not load).
HEAVY = ("celery", "kombu", "billiard", "pinecone", "pyarrow", "numpy", "redis", "supabase", "psycopg", "flower")


def timed(argv: list[str], env: dict[str, str], repeats: int) -> tuple[list[float], list[float], str]:
    """Wall and CPU seconds of ``python -m nsmigrate ARGV`` over ``repeats`` runs, and its output of the last run
    (stdout,
    then stderr after a line ``--- stderr``)."""
    walls, cpus, output = [], [], ""
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nsmigrate", *argv], env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"`nsmigrate {' '.join(argv)}` exited {proc.returncode}: {proc.stderr[-2000:]}")
        output = proc.stdout + "\n--- stderr\n" + proc.stderr
    return walls, cpus, output


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    """The packages of ``HEAVY`` that ``python -m nsmigrate ARGV`` imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nsmigrate", *argv], env=env, capture_output=True, text=True
    )
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    return sorted(loaded & set(HEAVY))


def in_process_plan(path: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``launch.prepare`` (what `nsmigrate plan` does after its start-up), in this process."""
    from nsmigrate.orchestrator import launch
    from nsmigrate.orchestrator.spec.jobspec import load_spec
    from nsmigrate.workers.stores import open_retrying_store

    spec = load_spec(path)
    launch.prepare(spec, open_retrying_store, path.parent)  # clients and imports made once, as in one command
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, started = time.process_time(), time.perf_counter()
        launch.prepare(spec, open_retrying_store, path.parent)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def row(label: str, walls: list[float], cpus: list[float], extra: str = "") -> None:
    print(
        f"{label:<44}{statistics.median(walls):>8.3f}{min(walls):>8.3f}{max(walls):>8.3f}"
        f"{statistics.median(cpus):>8.3f}  {extra}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (median reported)")
    args = parser.parse_args(argv)
    data = seed_dataset()
    with RedisServer() as redis, PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="nsmigrate-su-") as tmp:
        workdir = Path(tmp)
        plane = DataPlane(data.dimension, workdir, indexes=("src", "dst"))
        try:
            load_source(plane, data)
            plane.set_faults(latency_ms=LATENCY_MS)
            env = dict(
                os.environ,
                NSMIGRATE_DATABASE_URL=pg.url,
                NSMIGRATE_REDIS_URL=redis.url,
                PINECONE_API_KEY=SANDBOX_API_KEY,
            )
            twins = write_twins_csv(data.twins, workdir / "twins.csv")
            specs = {
                "copy (bench spec)": {
                    "name": "su-copy",
                    "source": {"kind": "pinecone", "host": plane.hosts["src"]},
                    "target": {"kind": "pinecone", "host": plane.hosts["dst"]},
                },
                "creator routing in place (seeds)": {
                    "name": "su-creator",
                    "source": {"kind": "pinecone", "host": plane.hosts["src"]},
                    "target": {"kind": "pinecone", "host": plane.hosts["src"]},
                    "namespaces": {"include": ["*"], "exclude": ["creator_*", "public"]},
                    "routing": {"mode": "creator", "creators": {"source": "file", "path": str(twins)}},
                    "enrich": {"creator_fields": True, "migrated_from": True},
                },
            }
            paths = {}
            for label, spec in specs.items():
                paths[label] = workdir / f"{spec['name']}.yaml"
                paths[label].write_text(json.dumps(spec))
            # A job for `status` to show (no worker runs: its tasks wait in Redis).
            _, _, out = timed(["run", str(paths["copy (bench spec)"]), "--new"], env, 1)
            job_id = out.split("\n--- stderr\n")[0].strip().splitlines()[-1]
            print(
                f"\nseed data set ({data.total} vectors, {len(data.namespaces)} namespaces), {LATENCY_MS} ms per "
                f"data-plane request; {args.repeats} runs of each command; {os.cpu_count()} cores"
            )
            print(f"{'command':<44}{'wall s':>8}{'min':>8}{'max':>8}{'CPU s':>8}  heavy packages imported")
            for cmd in (["--help"], ["status", job_id], ["status", job_id, "--json"], ["jobs"]):
                walls, cpus, _ = timed(cmd, env, args.repeats)
                row("nsmigrate " + " ".join(cmd), walls, cpus, ", ".join(heavy_imports(cmd, env)) or "none")
            for label, path in paths.items():
                before = plane.counts()[0]
                walls, cpus, _ = timed(["plan", str(path)], env, args.repeats)
                requests = (plane.counts()[0] - before) / args.repeats
                row(f"nsmigrate plan: {label}", walls, cpus, f"{requests:.0f} data-plane requests per plan")
            # The same plans in this process, without the command's start-up: the time is mostly round trips at
            # 50 ms each, so it says how many follow one another even on a busy machine.
            os.environ["PINECONE_API_KEY"] = SANDBOX_API_KEY
            for label, path in paths.items():
                walls, cpus = in_process_plan(path, args.repeats)
                row(f"plan in-process: {label}", walls, cpus, f"≈ {statistics.median(walls) / 0.05:.0f} × 50 ms")
            # With a fleet up: its list worker's planner plans what it can (``workers.fleet.plan_server``).
            planner = _worker(env, "list", "threads", 4, "planner", workdir)
            try:
                wait_for_workers(redis.url, 1)
                _wait_for_planner(redis.url)
                for label, path in paths.items():
                    walls, cpus, out = timed(["plan", str(path)], env, args.repeats)
                    local = [ln for ln in out.splitlines() if ln.startswith("planning in this command: ")]
                    where = local[0].removeprefix("planning ") if local else "by the fleet's planner"
                    row(f"nsmigrate plan, fleet up: {label}", walls, cpus, where)
            finally:
                planner.terminate()
                planner.wait(20)
        finally:
            plane.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

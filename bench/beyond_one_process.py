"""Benchmark: work larger than one process can serve, the peer (``bench.peer``) against fleets of more worker
processes.

Several source indexes (``--sources``), each of many namespaces of large vectors (dimension ``--dimension``, 4,096 by
default: each fetched page and upsert is megabytes of JSON), all to be copied at once, each into its own target index.
The data plane is ``bench.fleet_vs_loop``'s (each index its own process, 50 ms added per request, Pinecone's
serverless per-second limits enforced); the peer and the fleet get the same budgets, nsmigrate's spec defaults.

- peer: one ``python -m bench.peer`` process copying every source at once (a pair of clients, budgets and bound on
  requests in flight per source), timed from its start to its last write answered;
- fleet: for each count of copy worker processes in ``--copy-workers`` (one list worker × 16 threads, N copy workers
  × 16 threads), one job per source started together as a user starts them (``nsmigrate run SPEC --wait`` each, in
  its own process), timed from the first command's start to the last batch of the last job.

The peer decodes every fetched vector and encodes it again (the SDK's objects, then JSON) in one interpreter: it can
use one core. The fleet passes the fetched JSON through and spreads the copy over its worker processes. Each round
times the peer and every fleet shape, the order alternated; per fleet shape it prints the median user clock, the
fleet ÷ peer ratio of the rounds (peer seconds ÷ fleet seconds: above 1 the fleet is faster) with its range, and
the CPU seconds of each contender's own processes and of the data plane; and the machine's load averages.

    .venv/bin/python -m bench.beyond_one_process                    # 3 sources, copy workers 1,2,3, 2 rounds
    .venv/bin/python -m bench.beyond_one_process --sources 2 --namespaces 8 --copy-workers 1,2 --rounds 1
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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.fleet_vs_loop import (
    LATENCY_MS,
    SERVER_LIMITS,
    DataPlane,
    FleetShape,
    _cpu_seconds,
    _wait_for_planner,
    _worker,
    load_source,
    stop_processes,
    warm_source,
)
from bench.peer import Budgets
from bench.peer_vs_fleet import check_copied, children_cpu
from bench.user_clock import job_clock, run_cli
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate_sandbox.seed import SeedData, seed_dataset
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers


@dataclass(frozen=True)
class Work:
    """The data: ``sources`` indexes of ``namespaces`` namespaces each, ``vectors`` vectors per index."""

    sources: int = 3
    namespaces: int = 12
    vectors: int = 2_400
    dimension: int = 4_096

    def data(self, source: int) -> SeedData:
        # Uneven namespace sizes (the seed set's shape), different vectors in every source.
        return seed_dataset(
            seed=source,
            dimension=self.dimension,
            n_vectors=self.vectors,
            n_twin_namespaces=self.namespaces,
            default_count=self.vectors // (2 * self.namespaces),
            values_as="numpy",  # a list of floats per vector would take the bench ~1 GB
        )

    def describe(self) -> str:
        return (
            f"{self.sources} source indexes × {self.namespaces + 1} namespaces, {self.vectors:,} vectors of dimension "
            f"{self.dimension:,} each ({self.sources * self.vectors:,} vectors)"
        )


@dataclass
class Timings:
    """Seconds per round: the peer's, and each fleet shape's (by copy workers); CPU seconds of each run."""

    peer: list[float] = field(default_factory=list)
    peer_cpu: list[float] = field(default_factory=list)
    fleet: dict[int, list[float]] = field(default_factory=dict)
    fleet_cpu: dict[int, list[float]] = field(default_factory=dict)
    plane_cpu: dict[str, list[float]] = field(default_factory=dict)


def run_peer(plane: DataPlane, sources: int, budgets: Budgets) -> tuple[float, float]:
    """One peer process copying every source into its ``peer`` index; (start → last write, its CPU seconds)."""
    command = [sys.executable, "-m", "bench.peer", "--budgets", json.dumps(asdict(budgets))]
    for n in range(sources):
        command += ["--source", plane.hosts[f"src{n}"], "--target", plane.hosts[f"peer{n}"]]
    env = dict(os.environ, PINECONE_API_KEY=SANDBOX_API_KEY)
    cpu_before, started = children_cpu(), time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench.peer exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)["last_write"] - started, children_cpu() - cpu_before


def run_fleet(
    plane: DataPlane,
    sources: int,
    shape: FleetShape,
    db: jobs_database.Database,
    env: dict[str, str],
    workdir: Path,
    label: str,
) -> float:
    """One job per source on the standing fleet, their commands started together; first start → last batch."""
    specs = [
        {
            "name": f"{label}-src{n}",
            "source": {"kind": "pinecone", "host": plane.hosts[f"src{n}"]},
            "target": {"kind": "pinecone", "host": plane.hosts[f"fleet{n}"]},
            "max_batches_in_flight": 64,
            "batch_size": shape.batch_size,
            "parallel_upserts": shape.parallel_upserts,
            "auto_verify": False,
        }  # no `rate`: the spec's defaults, the peer's budgets
        for n in range(sources)
    ]
    deadline_s = float(os.environ.get("BENCH_DEADLINE_S", "600"))
    with ThreadPoolExecutor(sources) as pool:
        runs = list(pool.map(lambda spec: run_cli(spec, env, workdir, deadline_s), specs))
    finished = max(job_clock(db, run.job_id)[1] for run in runs)
    return finished - min(run.started for run in runs)


def bench(work: Work, copy_workers: list[int], rounds: int, tmp: Path) -> tuple[Timings, list[SeedData]]:
    data = [work.data(n) for n in range(work.sources)]
    per_index_mb = (work.vectors * work.dimension * 13) >> 20  # ~13 bytes per value as float32 JSON text
    names = tuple(f"{role}{n}" for n in range(work.sources) for role in ("src", "peer", "fleet"))
    plane = DataPlane(work.dimension, tmp, stored_mb=per_index_mb, indexes=names)
    budgets = Budgets.nsmigrate_defaults()
    timings = Timings(fleet={n: [] for n in copy_workers}, fleet_cpu={n: [] for n in copy_workers})
    try:
        for n, source_data in enumerate(data):
            load_source(plane, source_data, f"src{n}")
            warm_source(plane, source_data, f"src{n}")
        plane.set_faults(latency_ms=LATENCY_MS, **SERVER_LIMITS)
        with RedisServer() as redis, PostgresServer() as pg:
            env = dict(
                os.environ,
                NSMIGRATE_DATABASE_URL=pg.url,
                NSMIGRATE_REDIS_URL=redis.url,
                PINECONE_API_KEY=SANDBOX_API_KEY,
            )
            db = jobs_database.Database(pg.url)
            try:
                for round_no in range(rounds):
                    contenders: list[int | None] = [None, *copy_workers]  # None: the peer
                    for contender in contenders if round_no % 2 == 0 else reversed(contenders):
                        role = "peer" if contender is None else "fleet"
                        for n in range(work.sources):
                            plane.admin(f"{role}{n}", "/_sandbox/reset", {})
                        plane_before = plane.cpu_seconds()
                        if contender is None:
                            seconds, cpu = run_peer(plane, work.sources, budgets)
                            timings.peer.append(seconds)
                            timings.peer_cpu.append(cpu)
                        else:
                            seconds, cpu = _fleet_round(plane, work, contender, db, env, tmp, f"r{round_no}")
                            timings.fleet[contender].append(seconds)
                            timings.fleet_cpu[contender].append(cpu)
                        timings.plane_cpu.setdefault(str(contender), []).append(plane.cpu_seconds() - plane_before)
                        for n, source_data in enumerate(data):
                            check_copied(plane, f"{role}{n}", source_data)
                        who = "peer" if contender is None else f"fleet, {contender} copy workers"
                        print(f"  round {round_no + 1}: {who} {seconds:.2f} s", file=sys.stderr, flush=True)
            finally:
                db.dispose()
    finally:
        plane.stop()
    return timings, data


def _fleet_round(
    plane: DataPlane,
    work: Work,
    copy_workers: int,
    db: jobs_database.Database,
    env: dict[str, str],
    tmp: Path,
    label: str,
) -> tuple[float, float]:
    """A fleet of ``copy_workers`` copy processes started for this round (its start-up not timed: a fleet stands
    before its user types `run`); (user's clock, its workers' and commands' CPU seconds)."""
    shape = FleetShape(copy_workers=copy_workers)
    workdir = tmp / f"{label}-copy{copy_workers}"
    workdir.mkdir()
    workers = [_worker(env, "list,verify", shape.list_pool, shape.list_concurrency, "list0", workdir)]
    workers += [
        _worker(env, "copy", shape.copy_pool, shape.copy_concurrency, f"copy{n}", workdir) for n in range(copy_workers)
    ]
    try:
        wait_for_workers(env["NSMIGRATE_REDIS_URL"], len(workers))
        _wait_for_planner(env["NSMIGRATE_REDIS_URL"])
        cpu_before = _cpu_seconds(workers) + children_cpu()
        seconds = run_fleet(plane, work.sources, shape, db, env, workdir, f"{label}-copy{copy_workers}")
        return seconds, _cpu_seconds(workers) + children_cpu() - cpu_before
    finally:
        stop_processes(workers)


def _ratios(peer: list[float], fleet: list[float]) -> str:
    pairs = sorted(p / f for p, f in zip(peer, fleet, strict=True))
    return f"{statistics.median(pairs):.2f}× ({pairs[0]:.2f}–{pairs[-1]:.2f})"


def report(work: Work, timings: Timings) -> list[str]:
    vectors = work.sources * work.vectors
    lines = [f"{'contender':<34}{'user clock s':>13}{'vec/s':>8}{'CPU s':>7}{'data plane CPU s':>18}   fleet ÷ peer"]
    peer_s = statistics.median(timings.peer)
    lines.append(
        f"{'peer, one process':<34}{peer_s:>13.2f}{vectors / peer_s:>8.0f}{statistics.median(timings.peer_cpu):>7.1f}"
        f"{statistics.median(timings.plane_cpu['None']):>18.1f}"
    )
    for copy_workers, seconds in timings.fleet.items():
        median = statistics.median(seconds)
        label = f"fleet, {copy_workers} copy worker{'s' if copy_workers > 1 else ''}"
        lines.append(
            f"{label:<34}{median:>13.2f}{vectors / median:>8.0f}"
            f"{statistics.median(timings.fleet_cpu[copy_workers]):>7.1f}"
            f"{statistics.median(timings.plane_cpu[str(copy_workers)]):>18.1f}   {_ratios(timings.peer, seconds)}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Copy several source indexes of large vectors at once with the single-process peer (bench.peer) "
        "and with nsmigrate fleets of more copy worker processes, alternated in rounds; print fleet ÷ peer.",
    )
    defaults = Work()
    parser.add_argument("--sources", type=int, default=defaults.sources, help="source indexes (default %(default)s)")
    parser.add_argument(
        "--namespaces", type=int, default=defaults.namespaces, help="namespaces per source besides the default one"
    )
    parser.add_argument("--vectors", type=int, default=defaults.vectors, help="vectors per source (%(default)s)")
    parser.add_argument("--dimension", type=int, default=defaults.dimension, help="vector dimension (%(default)s)")
    parser.add_argument("--copy-workers", default="1,2,3", help="fleet shapes: copy worker processes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each timing every contender (default 2)")
    args = parser.parse_args(argv)
    try:
        copy_workers = [int(n) for n in args.copy_workers.split(",")]
    except ValueError:
        parser.error(f"--copy-workers: {args.copy_workers!r} is not a comma-separated list of whole numbers")
    for name in ("sources", "namespaces", "vectors", "dimension", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be ≥ 1")
    if min(copy_workers) < 1:
        parser.error("--copy-workers: each count must be ≥ 1")
    work = Work(args.sources, args.namespaces, args.vectors, args.dimension)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="beyond-bench-")  # kept only if a run goes wrong: its worker logs
    timings, _ = bench(work, copy_workers, args.rounds, Path(tmp))
    shutil.rmtree(tmp)
    loads = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True))
    print(
        f"\nbeyond one process: {work.describe()}; local Pinecone data plane, {LATENCY_MS} ms added per request, "
        f"serverless limits enforced; peer and fleet under nsmigrate's default budgets; fleet: one list worker × "
        f"threads 16, N copy workers × threads {FleetShape().copy_concurrency}, one job per source; median of "
        f"{args.rounds} round(s), alternated; "
        f"{os.cpu_count()} cores, load averages 1/5/15 min before/after: {loads}"
    )
    print("\n".join(report(work, timings)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

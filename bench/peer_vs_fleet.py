"""Benchmark: the strongest single-process rival (``bench.peer``) and the nsmigrate fleet (and, with ``--loop``, the
seeds' loop), in one run.

The data plane of ``bench.fleet_vs_loop`` (each index its own process, 50 ms added per request, Pinecone's serverless
per-second limits enforced) and its fleet shape, started once per data set and standing. Data sets: ``seed`` (805 ×
3,072 over 31 namespaces), ``large`` (20,000 × 1,536 over 50), ``many`` (6,000 × 1,536 over 2,000: per-namespace
costs). Each round copies the whole source once per contender, into that contender's emptied index; the order
alternates between rounds so no contender always runs first on a machine whose load moves. The peer and the fleet
get the same budgets, nsmigrate's spec defaults (``rate.*``).

- peer: ``python -m bench.peer`` in its own process, timed from its start (interpreter, imports) to its last write
  answered;
- fleet: ``nsmigrate run SPEC --wait`` in its own process, the user's clock (the command to the job's last batch) and
  the job's clock (its row in the job table to its last batch). Its first round runs on freshly started workers;
- loop (``--loop``): the seeds' sequential list → fetch → upsert, timed from its first request.

Printed per data set: the floor its budgets set (``bench.floors``), each contender's median seconds, vectors/s and
multiple of the floor, the fleet against the peer (peer seconds ÷ fleet seconds: above 1 the fleet is faster), with
its start-up (the user's clock against the peer's process) and without it (the job clock against the peer's own
clock, its first request to its last answer), with the range over the rounds; the CPU seconds of each contender's own
processes (on a machine loaded by other work the kernel shares the cores per process, which favours the fleet's
several processes over the peer's one: read these beside the clocks); the job table's statements per batch; each
fleet job's timeline (``bench.user_clock``); and the machine's load averages before and after.

    .venv/bin/python -m bench.peer_vs_fleet                          # seed (7 rounds) and large (3)
    .venv/bin/python -m bench.peer_vs_fleet --sets many --rounds 3   # 2,000 small namespaces
    .venv/bin/python -m bench.peer_vs_fleet --sets seed --batch-size 100 --parallel-upserts 2   # another spec shape
    .venv/bin/python -m bench.peer_vs_fleet --sets large --list-workers 2 --list-concurrency 8  # another fleet shape
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.fleet_vs_loop import (
    DATA_SETS,
    LATENCY_MS,
    SERVER_LIMITS,
    DataPlane,
    FleetShape,
    _cpu_seconds,
    _wait_for_planner,
    _worker,
    load_source,
    sequential_loop,
    stop_processes,
    warm_source,
)
from bench.floors import floor_of
from bench.peer import Budgets
from bench.user_clock import (
    STATEMENT_COUNTING,
    JobTableStatements,
    StatementCount,
    batches_of,
    job_clock,
    run_cli,
    timeline,
    timeline_lines,
)
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.workers.transfer.ratelimit import window_for
from nsmigrate_sandbox.seed import SeedData, seed_dataset
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

CONTENDERS = ("loop", "peer", "fleet")
#: Longer than the data plane's one-second window of requests an index counts against its limits.
SOURCE_WINDOW_S = 1.1
#: The data sets of this bench: ``bench.fleet_vs_loop``'s two, and 2,000 small namespaces (three vectors each on
#: average), where per-namespace costs decide the time.
#: Rounds of a data set unless ``--rounds`` says: a seed round takes about 2 s, and its median steadies with more.
DEFAULT_ROUNDS = {"seed": 7}
PEER_DATA_SETS: dict[str, dict[str, Any]] = {
    **DATA_SETS,
    "many": dict(n_vectors=6_000, dimension=1536, n_twin_namespaces=2_000, default_count=0),
}


@dataclass
class Rounds:
    """Seconds per round of each contender on one data set (the fleet's user clock under "fleet")."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in CONTENDERS})
    fleet_job_seconds: list[float] = field(default_factory=list)
    #: The peer's own clock: its first request to its last answer.
    peer_copy_seconds: list[float] = field(default_factory=list)
    #: Each fleet job's steps on the user's clock (``bench.user_clock.timeline``).
    fleet_timelines: list[dict[str, float | None]] = field(default_factory=list)
    #: Each fleet job's job-table statements, from the command's start to its exit, and its batches.
    fleet_statements: list[tuple[StatementCount, int]] = field(default_factory=list)
    #: Seconds from each contender's start to the source's fetch that filled its budget's first window (None: fewer
    #: fetches than that): every later fetch waits for a slot a window after one of these, so this sets the end of a
    #: job bound by its fetch budget (``first_window_lines``).
    first_window: dict[str, list[float | None]] = field(default_factory=lambda: {"peer": [], "fleet": []})
    #: Seconds from each contender's start to the source's first list and first fetch: how soon its data-plane work
    #: began (``first_requests_lines``).
    first_requests: dict[str, list[tuple[float | None, float | None]]] = field(
        default_factory=lambda: {"peer": [], "fleet": []}
    )
    #: CPU seconds of each fleet round's `nsmigrate run` command (in ``cpu["fleet"]`` too).
    command_cpu: list[float] = field(default_factory=list)
    #: CPU seconds of each contender's own processes per round: the peer's one; the fleet's workers and its command.
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"peer": [], "fleet": []})
    #: CPU seconds of everything a round ran on this machine: the contender's processes, the data plane, Redis and
    #: Postgres (``services``). Divided by the cores, the least time the round could take here, whatever the budgets.
    machine_cpu: dict[str, list[float]] = field(default_factory=lambda: {"peer": [], "fleet": []})


def children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for (a peer, a command)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def whole_reads() -> bool:
    """Whether the fleet reads small namespaces by query here (its ``NSMIGRATE_WHOLE_READS``, from this environment)."""
    return os.environ.get("NSMIGRATE_WHOLE_READS", "false").strip().lower() in ("1", "true", "yes", "on")


def run_peer(plane: DataPlane, budgets: Budgets) -> tuple[float, float]:
    """``python -m bench.peer`` from source to its index; the user's clock (its start, interpreter and imports
    included, to its last write answered: the fleet's user clock ends at its last batch too), and its own clock.
    It reads as the fleet does: by query where ``NSMIGRATE_WHOLE_READS`` (the fleet's setting) is true, else fetched."""
    command = [sys.executable, "-m", "bench.peer", "--source", plane.hosts["src"], "--target", plane.hosts["peer"]]
    if not whole_reads():
        command.append("--fetch-only")
    env = dict(os.environ, PINECONE_API_KEY=SANDBOX_API_KEY)
    started = time.time()
    done = subprocess.run([*command, "--budgets", json.dumps(asdict(budgets))], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench.peer exited {done.returncode}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    return result["last_write"] - started, result["seconds"]


def run_fleet(
    plane: DataPlane,
    shape: FleetShape,
    db: jobs_database.Database,
    env: dict[str, str],
    workdir: Path,
    name: str,
    statements: JobTableStatements,
) -> tuple[float, float, dict[str, float | None], StatementCount]:
    """One job on the standing fleet, started as a user starts it; (user's clock, job clock) in seconds, its
    timeline and the job table's statements while the command ran."""
    spec = {
        "name": name,
        "source": {"kind": "pinecone", "host": plane.hosts["src"]},
        "target": {"kind": "pinecone", "host": plane.hosts["fleet"]},
        "max_batches_in_flight": 64,
        "batch_size": shape.batch_size,
        "parallel_upserts": shape.parallel_upserts,
        "auto_verify": False,
    }  # no `rate`: the spec's defaults, the peer's budgets
    statements.reset()
    cli = run_cli(spec, env, workdir, float(os.environ.get("BENCH_DEADLINE_S", "600")))
    counted = statements.read()
    created, finished = job_clock(db, cli.job_id)
    steps = timeline(db, cli, plane.admin("fleet", "/_sandbox/stats"))
    return finished - cli.started, finished - created, steps, counted


def _first_window_full(source_stats: dict[str, Any], budgets: Budgets, started: float) -> float | None:
    """Seconds from ``started`` to the source's fetch that filled the fetch budget's first window (its
    ``window_for(read_rps)`` limit-th since the source's stats were reset)."""
    limit, _ = window_for(budgets.read_rps)
    times = source_stats.get("first_request_times", {}).get("fetch", [])
    return times[limit - 1] - started if len(times) >= limit else None


def _first_requests(source_stats: dict[str, Any], started: float) -> tuple[float | None, float | None]:
    """Seconds from ``started`` to the source's first list and first fetch since its stats were reset."""
    times = source_stats.get("request_times", {})
    first = [times.get(op, {}).get("first") for op in ("list", "fetch")]
    return tuple(None if t is None else t - started for t in first)  # type: ignore[return-value]


def check_copied(plane: DataPlane, index: str, data: SeedData) -> None:
    held = plane.admin(index, "/_sandbox/stats")["vector_count"]
    if held != data.total:
        raise RuntimeError(f"index {index} holds {held} vectors after its copy, not the source's {data.total}")


def bench_set(
    name: str,
    rounds: int,
    redis_url: str,
    database_url: str,
    tmp: Path,
    contenders: tuple[str, ...],
    shape: FleetShape,
    services: list[subprocess.Popen[bytes]],
) -> tuple[SeedData, Rounds]:
    """All rounds of data set ``name``, with its own data plane and standing fleet (logs in ``tmp/name``); ``services``:
    Redis's and Postgres's processes, whose CPU counts in the machine's floor."""
    data = seed_dataset(**PEER_DATA_SETS[name])
    workdir = tmp / name
    workdir.mkdir()
    budgets = Budgets.nsmigrate_defaults()
    plane = DataPlane(
        data.dimension, workdir, stored_mb=(data.total * data.dimension * 13) >> 20, indexes=("src", *contenders)
    )
    env = dict(
        os.environ,
        NSMIGRATE_DATABASE_URL=database_url,
        NSMIGRATE_REDIS_URL=redis_url,
        PINECONE_API_KEY=SANDBOX_API_KEY,
    )
    # The command as a user runs it: whole reads are the workers' setting, and another NSMIGRATE_ variable in its
    # environment makes it load every setting before it hands the spec over (0.3 s).
    command_env = {k: v for k, v in env.items() if k != "NSMIGRATE_WHOLE_READS"}
    workers = [_worker(env, "list,verify", shape.list_pool, shape.list_concurrency, "list0", workdir)]
    workers += [
        _worker(env, "copy", shape.copy_pool, shape.copy_concurrency, f"copy{n}", workdir)
        for n in range(shape.copy_workers)
    ]
    db = jobs_database.Database(database_url)
    statements = JobTableStatements(database_url)
    result = Rounds()
    try:
        load_source(plane, data)
        warm_source(plane, data)
        plane.set_faults(latency_ms=LATENCY_MS, **SERVER_LIMITS)
        wait_for_workers(redis_url, len(workers))  # the fleet stands before the user types `run`
        _wait_for_planner(redis_url)
        for n in range(rounds):
            for contender in contenders if n % 2 == 0 else reversed(contenders):
                plane.admin(contender, "/_sandbox/reset", {})
                # The source counts each second's requests per index: none of the warm-up's or the contender's before
                # may be in the window when this one starts, or its first fetches are answered 429.
                time.sleep(SOURCE_WINDOW_S)
                plane.admin("src", "/_sandbox/stats/reset", {})  # its first fetches are this contender's
                started = time.time()
                children_before = children_cpu()  # a peer's or a command's, once it has exited
                cpu_before = _cpu_seconds(workers) + children_before
                shared_before = _cpu_seconds(plane.procs + services)
                if contender == "loop":
                    result.seconds["loop"].append(sequential_loop(plane, data).seconds)
                elif contender == "peer":
                    wall_s, copy_s = run_peer(plane, budgets)
                    result.seconds["peer"].append(wall_s)
                    result.peer_copy_seconds.append(copy_s)
                else:
                    job_name = f"peer-bench-{name}-{n}"
                    user_s, job_s, steps, counted = run_fleet(
                        plane, shape, db, command_env, workdir, job_name, statements
                    )
                    result.seconds["fleet"].append(user_s)
                    result.fleet_job_seconds.append(job_s)
                    result.fleet_timelines.append(steps)
                    result.command_cpu.append(children_cpu() - children_before)
                    result.fleet_statements.append((counted, batches_of(db, job_name)))
                if contender != "loop":  # the loop runs in this process
                    own = _cpu_seconds(workers) + children_cpu() - cpu_before
                    result.cpu[contender].append(own)
                    result.machine_cpu[contender].append(own + _cpu_seconds(plane.procs + services) - shared_before)
                check_copied(plane, contender, data)
                source_stats = plane.admin("src", "/_sandbox/stats")
                result.first_window[contender].append(_first_window_full(source_stats, budgets, started))
                result.first_requests[contender].append(_first_requests(source_stats, started))
                seconds = result.seconds[contender][-1]
                print(f"  {name} round {n + 1}: {contender} {seconds:.2f} s", file=sys.stderr, flush=True)
    finally:
        db.dispose()
        statements.dispose()
        stop_processes(workers)
        plane.stop()
    return data, result


def ratios(numerators: list[float], denominators: list[float]) -> str:
    """Median ratio of the rounds' pairs and its range, e.g. ``1.05× (0.98–1.10)``."""
    pairs = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    return f"{statistics.median(pairs):.2f}× ({pairs[0]:.2f}–{pairs[-1]:.2f})"


def machine_floor(rounds: Rounds, peer: list[float], fleet: list[float]) -> list[str]:
    """Each contender's CPU with the data plane's, Redis's and Postgres's in its rounds, over this machine's cores: a
    floor of its own, below which no round could end here whatever the budgets allow (exited Postgres backends'
    CPU is not counted: it is at least this)."""
    cores = os.cpu_count() or 1
    lines = []
    for contender, seconds in (("peer", peer), ("fleet", fleet)):
        used = rounds.machine_cpu[contender]
        if used:
            cpu_s = statistics.median(used)
            floor_s = cpu_s / cores
            lines.append(
                f"  {contender}: the machine's floor {floor_s:.2f} s ({cpu_s:.2f} CPU-s with the data plane, Redis and "
                f"Postgres ÷ {cores} cores); its time {statistics.median(seconds) / floor_s:.2f}× it"
            )
    return lines


def first_window_lines(rounds: Rounds) -> list[str]:
    """When each contender's fetches filled the budget's first window, per round: on a job bound by its fetch budget
    the last fetch goes a whole number of windows after it, so the one that fills it sooner ends sooner."""
    shown = {c: [f"{s:.2f}" if s is not None else "–" for s in rounds.first_window[c]] for c in ("peer", "fleet")}
    if not any(s is not None for c in shown for s in rounds.first_window[c]):
        return []  # fewer fetches than one window holds
    return [
        "  the fetch budget's first window full, seconds from the start (each round): "
        + "; ".join(f"{c} {', '.join(times)}" for c, times in shown.items())
    ]


def first_requests_lines(rounds: Rounds) -> list[str]:
    """When each contender's first list and first fetch reached the source, per round."""

    def shown(t: float | None) -> str:
        return "–" if t is None else f"{t:.3f}"

    return [
        "  the source's first list / first fetch, seconds from the start (each round): "
        + "; ".join(
            f"{c} {', '.join(f'{shown(a)}/{shown(b)}' for a, b in rounds.first_requests[c])}" for c in ("peer", "fleet")
        )
    ]


def report(name: str, data: SeedData, rounds: Rounds) -> list[str]:
    loop, peer, user = (rounds.seconds[c] for c in CONTENDERS)
    job = rounds.fleet_job_seconds
    budgets = Budgets.nsmigrate_defaults()
    floor = floor_of(data, budgets.read_rps, budgets.list_rps, budgets.write_rps, whole_reads())
    label = f"{name} ({data.total}×{data.dimension}, {len(data.namespaces)} ns)"
    lines = [label, f"  the floor its budgets set: {floor.describe()}"]
    for contender, seconds in (
        ("seeds' loop", loop),
        ("peer, start → last write", peer),
        ("peer, own clock", rounds.peer_copy_seconds),
        ("fleet, run → last batch", user),
        ("fleet, job clock", job),
    ):
        if not seconds:
            continue
        median = statistics.median(seconds)
        versus_loop = f"   ÷ loop {ratios(loop, seconds)}" if loop else ""
        lines.append(
            f"  {contender:<26}{median:>8.2f} s{data.total / median:>9.0f} vec/s   "
            f"{median / floor.seconds:>5.2f}× the floor{versus_loop}"
        )
    lines += [
        f"  fleet ÷ peer, each with its start-up (peer s ÷ fleet s, > 1 = fleet faster): {ratios(peer, user)}",
        f"  fleet ÷ peer, job clock against the peer's own clock:                        "
        f"{ratios(rounds.peer_copy_seconds, job)}",
        f"  CPU s of their own processes (median): peer {statistics.median(rounds.cpu['peer']):.2f} (one process), "
        f"fleet {statistics.median(rounds.cpu['fleet']):.2f} (its workers and its command, "
        f"{statistics.median(rounds.command_cpu):.2f})",
        *machine_floor(rounds, peer, user),
        *first_requests_lines(rounds),
        *first_window_lines(rounds),
    ]
    labels = [f"round {n + 1}" for n in range(len(rounds.fleet_timelines))]
    for n, (counted, batches) in enumerate(rounds.fleet_statements):
        lines.append(f"  fleet round {n + 1}, job table while the command ran: {counted.per_batch(batches)}")
    lines += [f"    {calls:>5}  {text}" for calls, text in rounds.fleet_statements[-1][0].top]
    lines += timeline_lines(
        "fleet job, seconds from `nsmigrate run` (round 1 on fresh workers)", rounds.fleet_timelines, labels
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the seeds' loop, the single-process asyncio peer (bench.peer) and the nsmigrate fleet on "
        "the same data sets and data plane, alternated in rounds, and print their ratios from this one run.",
    )
    parser.add_argument(
        "--sets",
        default="seed,large",
        help=f"data sets, comma-separated: {', '.join(PEER_DATA_SETS)} (default seed,large)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds per data set, each timing every contender (default: 3, and 7 of the seed set, whose round takes "
        "about 2 s: more rounds steady its median)",
    )
    parser.add_argument("--loop", action="store_true", help="time the seeds' sequential loop too")
    default = FleetShape()
    parser.add_argument("--batch-size", type=int, default=default.batch_size, help="the fleet jobs' batch_size")
    parser.add_argument(
        "--parallel-upserts", type=int, default=default.parallel_upserts, help="the fleet jobs' parallel_upserts"
    )
    parser.add_argument("--list-workers", type=int, default=default.list_workers, help="list worker processes")
    parser.add_argument(
        "--list-concurrency", type=int, default=default.list_concurrency, help="threads per list worker"
    )
    args = parser.parse_args(argv)
    shape = dataclasses.replace(
        default,
        batch_size=args.batch_size,
        parallel_upserts=args.parallel_upserts,
        list_workers=args.list_workers,
        list_concurrency=args.list_concurrency,
    )
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be ≥ 1")
    unknown = [name for name in args.sets.split(",") if name not in PEER_DATA_SETS]
    if unknown:
        parser.error(f"--sets: unknown data set {', '.join(unknown)}; choose from {', '.join(PEER_DATA_SETS)}")
    contenders = CONTENDERS if args.loop else CONTENDERS[1:]
    load_before = os.getloadavg()
    lines = []
    tmp = tempfile.mkdtemp(prefix="peer-bench-")  # kept only if a run goes wrong: its worker logs
    with RedisServer() as redis, PostgresServer(preload=STATEMENT_COUNTING) as pg:
        for name in args.sets.split(","):
            services = [p for p in (redis.process, pg.process) if p is not None]
            count = args.rounds or DEFAULT_ROUNDS.get(name, 3)
            data, rounds = bench_set(name, count, redis.url, pg.url, Path(tmp), contenders, shape, services)
            lines += report(name, data, rounds)
    shutil.rmtree(tmp)
    loads = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True))
    print(
        f"\nlocal Pinecone data plane, {LATENCY_MS} ms added per request, serverless limits enforced; fleet: "
        f"{shape.describe()}; peer and fleet under nsmigrate's default budgets; the median of each set's rounds, "
        f"alternated; {os.cpu_count()} cores, load averages 1/5/15 min before/after: {loads}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A fleet over hosts: the same job with its workers on 1 and on 3 worker hosts, at the same latency.

The hosts are network namespaces on this machine (``sandbox.hosts``, root only): a services host with Redis,
Postgres and the local Pinecone data plane (https), ``--delay-ms`` added each way between it and every other host
(``sandbox.delay_relay``), and worker hosts each running one ``nsmigrate worker`` (threads pool, ``--slots``). Every
data-plane request also takes ``--latency-ms`` (Pinecone's own time to answer). The job is started from the root
namespace as a user starts it, ``nsmigrate run SPEC --wait`` (``bench.user_clock``), alternately with 1 and 3 hosts,
``--rounds`` times; the target is emptied and the queues flushed before each job. Prints vectors per second on the
user's clock and on the job's clock, and 3 hosts ÷ 1 host.

The hosts share this machine's cores: what 3 hosts gain here is latency hidden by more task slots in flight, not
more CPU. ``python -m bench.hosts --help``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import redis as redis_lib
from pinecone import Index

from bench.user_clock import job_clock, run_cli
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate_sandbox.hosts import HostNetwork, unavailable
from nsmigrate_sandbox.services_host import ServicesHost
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

SRC, DST = "bench-src", "bench-dst"
WORKER_HOSTS = ["w1", "w2", "w3"]


def admin(services: ServicesHost, index: str, path: str, body: dict[str, object]) -> None:
    """POST to the data plane's ``/_sandbox/`` admin endpoint of ``index``."""
    with httpx.Client(verify=services.ca_file) as client:
        url = f"{services.indexes[index]}/_sandbox/{path}"
        client.post(url, json=body, headers={"Api-Key": SANDBOX_API_KEY}).raise_for_status()


def load(services: ServicesHost, namespaces: int, per_namespace: int, dimension: int) -> None:
    index = Index(host=services.indexes[SRC], api_key=SANDBOX_API_KEY, ssl_ca_certs=services.ca_file)
    rng = np.random.default_rng(1)
    for n in range(namespaces):
        vectors = [
            {"id": f"ns{n}-{i:06d}", "values": rng.random(dimension).tolist(), "metadata": {"i": i}}
            for i in range(per_namespace)
        ]
        for start in range(0, len(vectors), 200):
            index.upsert(vectors=vectors[start : start + 200], namespace=f"ns{n}")


def one_job(
    network: HostNetwork, services: ServicesHost, hosts: int, args: argparse.Namespace, workdir: Path, name: str
) -> tuple[float, float]:
    """The job with workers on ``hosts`` hosts: (vectors/s on the user's clock, on the job's clock)."""
    redis_lib.Redis.from_url(services.redis_url).flushdb()
    admin(services, DST, "reset", {})
    started = len(network.processes)
    for host in WORKER_HOSTS[:hosts]:
        services.start_worker(network, host, args.slots, workdir)
    try:
        wait_for_workers(services.redis_url, hosts)
        spec = {
            "name": name,
            "source": {"kind": "pinecone", "host": services.indexes[SRC]},
            "target": {"kind": "pinecone", "host": services.indexes[DST]},
            "batch_size": args.batch_size,
            "rate": {"read_rps": 10_000, "list_rps": 10_000, "write_rps": 10_000},
        }
        cli = run_cli(spec, services.env(), workdir, deadline_s=600)
        db = jobs_database.Database(services.database_url)
        try:
            created, finished = job_clock(db, cli.job_id)
        finally:
            db.dispose()
    finally:
        for host in WORKER_HOSTS[:hosts]:
            network.kill_host(host)
        del network.processes[started:]
    vectors = args.namespaces * args.per_namespace
    return vectors / (finished - cli.started), vectors / (finished - created)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=6)
    parser.add_argument("--per-namespace", type=int, default=1000)
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4, help="task slots (threads) of each host's worker")
    parser.add_argument("--delay-ms", type=float, default=5, help="added each way between hosts")
    parser.add_argument("--latency-ms", type=float, default=20, help="added to every data-plane request")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of jobs (1 host, 3 hosts), alternated")
    args = parser.parse_args(argv)
    why_not = unavailable()
    if why_not is not None:
        print(f"bench.hosts: NOT RUN: {why_not}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="nsmigrate-bench-hosts-"))
    network = HostNetwork.create(["services", *WORKER_HOSTS])
    try:
        services = ServicesHost.start(
            network, "services", [f"{SRC}:{args.dimension}", f"{DST}:{args.dimension}"], args.delay_ms, workdir
        )
        load(services, args.namespaces, args.per_namespace, args.dimension)
        for index in (SRC, DST):
            admin(services, index, "faults", {"latency_ms": args.latency_ms})
        results: dict[int, list[tuple[float, float]]] = {1: [], 3: []}
        for r in range(args.rounds):
            for hosts in (1, 3) if r % 2 == 0 else (3, 1):
                results[hosts].append(one_job(network, services, hosts, args, workdir, f"hosts-{r}-{hosts}"))
                user, job = results[hosts][-1]
                print(f"round {r + 1}, {hosts} worker host(s): {user:,.0f} vec/s user's clock, {job:,.0f} job clock")
    finally:
        network.destroy()
    vectors = args.namespaces * args.per_namespace
    print(
        f"\n{vectors:,} vectors × {args.dimension} in {args.namespaces} namespaces; {args.delay_ms:g} ms each way "
        f"between hosts, {args.latency_ms:g} ms per data-plane request; one threads worker × {args.slots} per host"
    )
    for hosts in (1, 3):
        users, job_clocks = zip(*results[hosts], strict=True)
        print(
            f"{hosts} worker host(s): median {statistics.median(users):,.0f} vec/s user's clock "
            f"({min(users):,.0f}–{max(users):,.0f}), {statistics.median(job_clocks):,.0f} job clock"
        )
    ratios = [b[0] / a[0] for a, b in zip(results[1], results[3], strict=True)]
    spread = f"{min(ratios):.2f}–{max(ratios):.2f}×"
    print(f"3 hosts ÷ 1 host, user's clock: median {statistics.median(ratios):.2f}× ({spread})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

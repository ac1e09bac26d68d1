"""Benchmark: what the fleet's long-running processes cost while they wait.

Each subject runs alone against its own Redis and Postgres, as an operator runs it (``python -m nsmigrate worker …``,
``flower``, ``metrics``; the sandbox's data plane and PostgREST stand-in as their own processes). After it is up and
has settled, the bench reads, at the start and the end of a window: the CPU seconds of the subject's processes (its
pool's children included, from ``/proc``) and Redis's ``INFO commandstats`` (the commands every client sent, the
bench's own ``INFO`` left out). It prints CPU seconds per minute and Redis commands per second, by command.

    .venv/bin/python -m bench.idle                          # every subject, 60 s windows
    .venv/bin/python -m bench.idle --window 30 --only worker-threads-8 flower
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.status_view import REPO, runnable
from nsmigrate_sandbox.services import PostgresServer, RedisServer, die_with_parent, free_port, wait_for_port
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

#: Seconds a subject runs before its window opens: its start-up (imports, warm-up, first connections) is not idling.
SETTLE_S = 10.0


def _on_cpu_s(pid: int) -> float:
    """Seconds ``pid``'s threads have run, to the nanosecond (``/proc/PID/task/*/schedstat``: ``stat``'s clock ticks
    of 10 ms are too coarse for a process that runs a few ms a second)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (a prefork pool's children)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # After the command's closing parenthesis: the state, then the parent's pid.
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # ended meanwhile
            continue
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += _on_cpu_s(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per Redis command since the server started (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(fields["calls"]) for name, fields in stats.items()}


@dataclass
class Reading:
    subject: str
    window_s: float
    cpu_s: float
    #: The subject's own process, without its children (the rest of ``cpu_s``: a prefork pool's children).
    main_cpu_s: float
    commands: dict[str, int]

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_s * 60 / self.window_s

    @property
    def commands_per_s(self) -> float:
        return sum(self.commands.values()) / self.window_s

    def line(self) -> str:
        top = sorted(self.commands.items(), key=lambda kv: -kv[1])[:6]
        by_command = ", ".join(f"{name} {count / self.window_s:.2f}" for name, count in top) or "none"
        return (
            f"{self.subject:<18} {self.cpu_per_minute:6.3f} CPU-s/min"
            f" (main process {self.main_cpu_s * 60 / self.window_s:.3f})"
            f"  {self.commands_per_s:5.2f} Redis cmd/s"
            f"  ({by_command})"
        )


def measure(subject: str, root: int, client: redis.Redis, window_s: float) -> Reading:
    """The CPU and Redis commands of ``root``'s process tree over ``window_s`` seconds from now."""
    cpu_before, main_before, counts_before = cpu_seconds(root), _on_cpu_s(root), command_counts(client)
    started = time.monotonic()
    time.sleep(window_s)
    counts_after, cpu_after, main_after = command_counts(client), cpu_seconds(root), _on_cpu_s(root)
    elapsed = time.monotonic() - started
    commands = {name: n - counts_before.get(name, 0) for name, n in counts_after.items()}
    commands["info"] = commands.get("info", 0) - 1  # the bench's own reading
    return Reading(
        subject, elapsed, cpu_after - cpu_before, main_after - main_before, {k: v for k, v in commands.items() if v > 0}
    )


@dataclass
class Services:
    redis: RedisServer
    postgres: PostgresServer
    workdir: Path
    checkout: Path
    flower_password: str = secrets.token_urlsafe(12)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            NSMIGRATE_DATABASE_URL=self.postgres.url,
            NSMIGRATE_REDIS_URL=self.redis.url,
            NSMIGRATE_FLOWER_PASSWORD=self.flower_password,
            PINECONE_API_KEY=SANDBOX_API_KEY,
            PYTHONUNBUFFERED="1",
        )
        return env

    def run(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """``python ARGV`` in ``checkout`` (its code, e.g. another commit's), as ``sandbox.services.spawn`` starts
        a child: in a session of its own, stopped with this process."""
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.checkout,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )


def _worker(pool: str, concurrency: int) -> Callable[[Services], subprocess.Popen[bytes]]:
    def start(services: Services) -> subprocess.Popen[bytes]:
        name = f"idle-{pool}-{concurrency}"
        argv = ["-m", "nsmigrate", "worker", "-c", str(concurrency), "--pool", pool, "--hostname", f"{name}@%h"]
        proc = services.run(name, [*argv, "--loglevel", "WARNING"])
        wait_for_workers(services.redis.url, 1)
        return proc

    return start


def _server(name: str, argv: list[str]) -> Callable[[Services], subprocess.Popen[bytes]]:
    def start(services: Services) -> subprocess.Popen[bytes]:
        port = free_port()
        proc = services.run(name, [*argv, "--port", str(port)])
        wait_for_port(port, 60, proc)
        return proc

    return start


def _postgrest(services: Services) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = services.run(
        "postgrest", ["-m", "nsmigrate_sandbox.postgrest", "--database-url", services.postgres.url, "--port", str(port)]
    )
    wait_for_port(port, 60, proc)
    return proc


def _data_plane(services: Services) -> subprocess.Popen[bytes]:
    port_file = services.workdir / "data-plane.json"
    proc = services.run(
        "data-plane", ["-m", "nsmigrate_sandbox.pinecone_server", "--index", "idle:8", "--port-file", str(port_file)]
    )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the data plane did not start: see {services.workdir / 'data-plane.log'}")
        time.sleep(0.1)
    return proc


SUBJECTS: dict[str, Callable[[Services], subprocess.Popen[bytes]]] = {
    "worker-prefork-8": _worker("prefork", 8),
    "worker-prefork-2": _worker("prefork", 2),
    "worker-threads-8": _worker("threads", 8),
    "flower": _server("flower", ["-m", "nsmigrate", "flower", "--wait-for-workers", "0"]),
    "metrics": _server("metrics", ["-m", "nsmigrate", "metrics"]),
    "data-plane": _data_plane,
    "postgrest": _postgrest,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per subject (default 60)")
    parser.add_argument("--only", nargs="+", choices=sorted(SUBJECTS), help="these subjects (default: all)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path.cwd(),
        help="run the subjects from this directory's code (e.g. `git archive main | tar -x -C DIR`); default: here",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nsmigrate-idle-"))
    checkout = args.checkout.resolve()
    if checkout != REPO:
        runnable(checkout)  # another commit's files: its own parts, not this checkout's
    print(f"code of {checkout}; logs in {workdir}; {args.window:g} s windows, {SETTLE_S:g} s to settle", flush=True)
    with RedisServer() as redis_server, PostgresServer() as postgres:
        services = Services(redis_server, postgres, workdir, checkout)
        client = redis.Redis.from_url(redis_server.url)
        for subject in args.only or list(SUBJECTS):
            client.flushall()  # a worker's queues and Flower's state start empty for each subject
            proc = SUBJECTS[subject](services)
            try:
                time.sleep(SETTLE_S)
                print(measure(subject, proc.pid, client, args.window).line(), flush=True)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

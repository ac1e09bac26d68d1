"""The services host of a multi-host fleet (``sandbox.hosts``): Redis, Postgres (pgvector) and the local Pinecone data
plane, served on the host's address with latency added.

Run in the host's namespace (``ServicesHost.start`` does ``ip netns exec``)::

    python -m nsmigrate_sandbox.services_host --address 10.77.5.2 --delay-ms 5 --index src:8 --index dst:8 \\
        --state-file F

Each server is the suite's own launcher (``sandbox.services``, ``sandbox.pinecone_server``) on the host's loopback;
the host's address carries one ``DelayRelay`` per port, so every other host sees the servers ``delay`` away each way.
The data plane serves https with a certificate made for the address (``ca_file``; workers trust it through
``SSL_CERT_FILE``): a Pinecone key only crosses a network over TLS. ``F`` receives the URLs as JSON once all serve;
SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nsmigrate_sandbox.delay_relay import DelayRelay
from nsmigrate_sandbox.hosts import HostNetwork
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox, parse_index_arg
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY


def make_certificate(address: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the IP ``address`` (its own CA) and its key, written to ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nsmigrate sandbox {address}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def serve(
    address: str, delay_s: float, indexes: list[IndexSpec], workdir: Path
) -> tuple[dict[str, Any], Callable[[], None]]:
    """Start the servers and their relays; returns the URLs and a function that stops everything."""
    cert, key = make_certificate(address, workdir)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    redis = RedisServer().start()
    postgres = PostgresServer().start()
    pinecone = PineconeSandbox(indexes, tls=tls).start()
    relays = [
        DelayRelay((address, port), ("127.0.0.1", port), delay_s).start()
        for port in (redis.port, postgres.port, *(urlsplit(url).port for url in pinecone_urls(pinecone)))
        if port is not None
    ]

    def on_host(url: str) -> str:
        return url.replace("127.0.0.1", address)

    urls = {
        "redis_url": on_host(redis.url),
        "database_url": on_host(postgres.url),
        "control": on_host(pinecone.control_host),
        "indexes": {name: on_host(pinecone.host(name)) for name in pinecone.names()},
        "ca_file": str(cert),
    }

    def stop() -> None:
        for relay in relays:
            relay.stop()
        pinecone.stop()
        postgres.destroy()
        redis.stop()

    return urls, stop


def pinecone_urls(pinecone: PineconeSandbox) -> list[str]:
    return [pinecone.control_host, *(pinecone.host(name) for name in pinecone.names())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsmigrate_sandbox.services_host", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--address", required=True, help="this host's address (in its network namespace)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="latency added each way for other hosts")
    parser.add_argument("--index", action="append", type=parse_index_arg, required=True, help="name:dimension")
    parser.add_argument("--state-file", type=Path, required=True, help="where the URLs are written as JSON")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    workdir = args.state_file.parent
    urls, stop = serve(args.address, args.delay_ms / 1000, args.index, workdir)
    try:
        tmp = args.state_file.with_name(args.state_file.name + ".tmp")
        tmp.write_text(json.dumps(urls))
        os.replace(tmp, args.state_file)  # whole or absent for a reader polling for it
        stopping.wait()
    finally:
        stop()
    return 0


@dataclass
class ServicesHost:
    """The services host as its starter sees it: the process and the URLs it serves."""

    redis_url: str
    database_url: str
    control: str
    indexes: dict[str, str]
    ca_file: str

    @classmethod
    def start(
        cls, network: HostNetwork, host: str, indexes: list[str], delay_ms: float, workdir: Path, timeout_s: float = 90
    ) -> ServicesHost:
        """Start it on ``host`` (``indexes`` as ``name:dimension``) and wait until it serves."""
        state = workdir / "services.json"
        args = [sys.executable, "-m", "nsmigrate_sandbox.services_host", "--address", network.address(host)]
        args += ["--delay-ms", str(delay_ms), "--state-file", str(state)]
        for index in indexes:
            args += ["--index", index]
        proc = network.start(host, args, dict(os.environ), workdir / "services.log")
        deadline = time.monotonic() + timeout_s
        while not state.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "services.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the services host did not start (exit {proc.poll()}):\n{log}")
            time.sleep(0.1)
        return cls(**json.loads(state.read_text()))

    def env(self, **extra: str) -> dict[str, str]:
        """What a worker or a command on any host needs: the job table, the broker, the key, and trust in the data
        plane's certificate (``SSL_CERT_FILE``, which the SDK's HTTP client reads)."""
        env = dict(os.environ)
        env.update(
            {
                "NSMIGRATE_DATABASE_URL": self.database_url,
                "NSMIGRATE_REDIS_URL": self.redis_url,
                "PINECONE_API_KEY": SANDBOX_API_KEY,
                "SSL_CERT_FILE": self.ca_file,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def start_worker(
        self, network: HostNetwork, host: str, concurrency: int, log_dir: Path, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        """The real ``nsmigrate worker`` (list, copy and verify queues, a threads pool) on ``host``."""
        nsmigrate = str(Path(sys.executable).with_name("nsmigrate"))
        argv = [nsmigrate, "worker", "--queues", "list,copy,verify", "--pool", "threads"]
        argv += ["--concurrency", str(concurrency), "--hostname", f"{host}@{network.namespace(host)}"]
        argv += ["--loglevel", "WARNING"]
        return network.start(host, argv, self.env(**extra_env), log_dir / f"worker-{host}.log")


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 27, cases 6 and 7, as a user meets them (`python -m nsmigrate …` in its own process, a real `nsmigrate worker`
and its planner, real Redis and Postgres, the Pinecone SDK): a secret never leaves.

Case 6: a spec names only key variables the operator allowed (``NSMIGRATE_ALLOWED_KEY_VARS``), checked where the
key is read, in the command and in the fleet's planner and workers; a key goes only over TLS or to loopback, and
never to a host with credentials in it. A real listener socket on 127.0.0.1 records whatever reaches it.

Case 7: connection errors show the job table's and Redis's URLs through the one redaction (``orchestrator.redaction``):
no password, whether in the user info (a raw ``@`` in it included) or in the query string."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as redis_lib

from nsmigrate.orchestrator.errors import SpecError, StoreError
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY
from nsmigrate.orchestrator.spec.jobspec import CreatorMapping
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.orchestrator.tenancy.creator_mapping import load_supabase
from nsmigrate.workers.context import WorkerContext
from nsmigrate_sandbox.services import RedisServer, free_port
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import cli, job_ids, write_spec
from tests.polling import wait_until

WORKER_SECRET = "worker-supabase-secret-7f3a"


class Listener:
    """A socket on ``address`` (127.0.0.1 by default) that records every byte sent to it and answers each request 401
    (so a client that did send gives up at once rather than retrying)."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((address, 0))
        self.host = f"http://{address}:{self.sock.getsockname()[1]}"
        self.received = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    data = b""
            with self._lock:
                self.received += data

    def got(self) -> bytes:
        with self._lock:
            return self.received


@pytest.fixture
def listener() -> Iterator[Listener]:
    made = Listener()
    yield made
    made.sock.close()


def start_planner_with(stack: Stack, **env: str) -> None:
    """A worker (its planner on) whose environment also holds ``env``, once its heartbeat is there."""
    stack.start_worker("list,copy,verify,cleanup", 2, pool="threads", **env)
    client = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: client.get(PLANNER_KEY), what="the planner's heartbeat", timeout_s=60)


def test_the_fleets_planner_never_sends_a_key_the_operator_did_not_allow(stack: Stack, listener: Listener) -> None:
    start_planner_with(stack, SUPABASE_KEY=WORKER_SECRET)
    spec = write_spec(stack, source={"kind": "pinecone", "host": listener.host, "api_key_env": "SUPABASE_KEY"})

    done = cli(stack, "run", str(spec))  # this shell holds no SUPABASE_KEY: only the worker does

    message = one_error(done)
    assert "api_key_env SUPABASE_KEY is not a key variable the operator allowed" in message
    assert "NSMIGRATE_ALLOWED_KEY_VARS: PINECONE_API_KEY, PINECONE_API_KEY_*" in message
    assert WORKER_SECRET.encode() not in listener.got() and WORKER_SECRET not in done.stdout + done.stderr
    assert listener.got() == b""  # nothing was sent at all
    assert job_ids(stack) == []


def test_the_command_planning_by_itself_refuses_the_same(stack: Stack, listener: Listener) -> None:
    spec = write_spec(stack, source={"kind": "pinecone", "host": listener.host, "api_key_env": "SUPABASE_KEY"})

    done = cli(stack, "plan", str(spec), "--plan-here", SUPABASE_KEY=WORKER_SECRET)

    assert "api_key_env SUPABASE_KEY is not a key variable the operator allowed" in one_error(done)
    assert listener.got() == b""


def test_a_worker_refuses_the_key_of_a_job_planned_under_a_looser_setting(
    database_url: str,
    redis_url: str,
    listener: Listener,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job table holds a spec a command let through (its operator allowed SUPABASE_KEY); this worker did not.
    monkeypatch.setenv("SUPABASE_KEY", WORKER_SECRET)
    store = worker_context(database_url, redis_url).store
    spec = PineconeStoreSpec(host=listener.host, api_key_env="SUPABASE_KEY")

    with pytest.raises(StoreError) as err:
        store(spec)

    assert "api_key_env SUPABASE_KEY is not a key variable the operator allowed" in str(err.value)
    assert listener.got() == b""


def test_the_operators_setting_decides_which_variables_a_spec_may_name(stack: Stack) -> None:
    stack.pinecone.load("src", "alpha", [("a-1", [0.5] * 8, {})])
    mine = {"kind": "pinecone", "host": stack.pinecone.host("src"), "api_key_env": "VEC_KEY"}
    allowed = {"VEC_KEY": "sandbox-key", "NSMIGRATE_ALLOWED_KEY_VARS": "VEC_*"}

    chosen = cli(
        stack,
        "plan",
        str(write_spec(stack, source=mine, target={**mine, "host": stack.pinecone.host("dst")})),
        "--plan-here",
        **allowed,
    )
    default = cli(stack, "plan", str(write_spec(stack, "default-key", source=mine)), "--plan-here", **allowed)

    assert chosen.returncode == 0, chosen.stderr
    assert "alpha" in chosen.stdout  # planned with the key it was allowed to read
    # The setting replaces the default: PINECONE_API_KEY (the target's) is not in it.
    assert "api_key_env PINECONE_API_KEY is not a key variable the operator allowed" in one_error(default)
    assert "(NSMIGRATE_ALLOWED_KEY_VARS: VEC_*)" in default.stderr


# A host that is not loopback by name, yet reaches this machine: Linux connects 0.0.0.0 to the local host, so a key
# sent by mistake lands in the test's own listener instead of crossing the network (tests never send elsewhere).
UNSPECIFIED = "0.0.0.0"


def unspecified_listener() -> Listener:
    """A listener on 127.0.0.1 addressed as ``http://0.0.0.0:PORT``."""
    listener = Listener()
    listener.host = listener.host.replace("127.0.0.1", UNSPECIFIED)
    return listener


def test_the_fleet_sends_no_key_over_plain_http_to_a_host_that_is_not_loopback(stack: Stack) -> None:
    address = UNSPECIFIED
    listener = unspecified_listener()
    start_planner_with(stack)
    spec = write_spec(stack, source={"kind": "pinecone", "host": listener.host})

    done = cli(stack, "run", str(spec))  # the worker's planner holds PINECONE_API_KEY

    message = one_error(done)
    assert f"the index address is plain http to {address}, which is not loopback" in message
    assert listener.got() == b""  # no request, so no key, crossed the network
    assert job_ids(stack) == []
    listener.sock.close()


@pytest.mark.parametrize(
    "target",
    [
        {"host": "http://0.0.0.0:5081"},
        {"host": "http://idx-abc.svc.example.invalid"},
        {"index": "dst", "control_host": "http://0.0.0.0:5081"},  # the control plane gets the key too
        {"index": "new", "control_host": "http://0.0.0.0:5081", "create": {}},
    ],
)
def test_a_key_goes_only_over_tls_or_to_loopback(stack: Stack, target: dict[str, object]) -> None:
    spec = write_spec(stack, target={"kind": "pinecone", **target})

    message = one_error(cli(stack, "plan", str(spec), "--plan-here"))

    address = str(target.get("control_host") or target["host"]).removeprefix("http://").split(":")[0]
    assert f"address is plain http to {address}, which is not loopback" in message
    assert job_ids(stack) == []


@pytest.mark.parametrize("field", ["host", "control_host"])
def test_a_store_address_with_credentials_is_refused_without_echoing_them(stack: Stack, field: str) -> None:
    address = {"host": stack.pinecone.host("dst")} | {field: "https://user:hunter2@idx-abc.svc.example.io"}
    spec = write_spec(stack, target={"kind": "pinecone", **address})

    done = cli(stack, "plan", str(spec), "--plan-here")

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"target.{field}: the address holds credentials (user@ or user:password@)" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert job_ids(stack) == []


def nsmigrate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nsmigrate", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.strip().count("\n") == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("command", [["jobs"], ["status", "1"]])
def test_the_job_tables_connection_error_shows_no_password(command: list[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://app:p@ss-TAIL1@127.0.0.1:{port}/jobs?password=QUERY1"

    message = one_error(nsmigrate(*command, "--database-url", url))

    assert f"cannot open the job table at postgresql+psycopg://app:***@127.0.0.1:{port}/jobs?password=***" in message
    assert "TAIL1" not in message and "QUERY1" not in message and "p@ss" not in message


# The password in the user info (a raw @ in it), or as ?password= (moved into the user info, where kombu reads it).
@pytest.mark.parametrize("credentials", [(":p@ss-TAIL2@", ""), ("", "?password=p@ss-QUERY2")])
def test_redis_connection_error_shows_no_password(
    database_url: str, tmp_path: Path, credentials: tuple[str, str]
) -> None:
    spec = tmp_path / "job.yaml"
    hosts = {"kind": "pinecone", "host": "http://127.0.0.1:9"}
    spec.write_text(json.dumps({"name": "job", "source": hosts, "target": hosts}))
    port = free_port()
    userinfo, query = credentials
    url = f"redis://{userinfo}127.0.0.1:{port}/0{query}"

    message = one_error(
        nsmigrate("run", str(spec), "--plan-here", "--redis-url", url, NSMIGRATE_DATABASE_URL=database_url)
    )

    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in message
    assert "TAIL2" not in message and "QUERY2" not in message and "p@ss" not in message


def test_a_redis_password_given_as_a_query_parameter_reaches_workers_and_commands(
    stack: Stack, password_redis_server: RedisServer
) -> None:
    server = password_redis_server
    assert server.password is not None
    redis_lib.Redis.from_url(server.url).flushall()
    url = f"redis://127.0.0.1:{server.port}/0?password={quote(server.password, safe='')}"
    stack.pinecone.load("src", "ns", [(f"v{i}", [0.1 * (i + 1)] * 8, {"i": i}) for i in range(12)])
    worker = stack.start_worker("list,copy,verify", 2, pool="threads", name="pw", NSMIGRATE_REDIS_URL=url)

    done = cli(stack, "run", str(write_spec(stack)), "--wait", NSMIGRATE_REDIS_URL=url)

    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.pinecone.count("dst", "ns") == 12  # listed, copied and verified by the worker, through kombu
    assert worker.poll() is None
    log = (stack.workdir / "worker-pw.log").read_text()
    for text in (done.stdout + done.stderr, log):
        assert "Traceback" not in text
        assert server.password not in text and quote(server.password, safe="") not in text


def test_a_supabase_key_goes_only_over_tls_or_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    address = UNSPECIFIED
    listener = unspecified_listener()
    monkeypatch.setenv("NSM_TEST_SUPABASE_URL", listener.host)
    monkeypatch.setenv("NSM_TEST_SUPABASE_KEY", WORKER_SECRET)
    mapping = CreatorMapping(source="supabase", url_env="NSM_TEST_SUPABASE_URL", key_env="NSM_TEST_SUPABASE_KEY")

    with pytest.raises(SpecError) as err:
        load_supabase(mapping)

    assert f"the URL in NSM_TEST_SUPABASE_URL is plain http to {address}, which is not loopback" in str(err.value)
    assert listener.got() == b""
    listener.sock.close()

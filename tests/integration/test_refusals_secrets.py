"""Issue 27, cases 6 and 7, as a user meets them (`python -m cli …` in its own process, real Redis and Postgres):
a secret never leaves through a message. Connection errors show the job table's and Redis's URLs through the one
redaction (``orchestrator.redaction``): no password, whether in the user info (a raw ``@`` in it included) or in the
query string."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.services import free_port

pytestmark = pytest.mark.integration


def nsmigrate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
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


def test_redis_connection_error_shows_no_password(database_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    hosts = {"kind": "pinecone", "host": "http://127.0.0.1:9"}
    spec.write_text(json.dumps({"name": "job", "source": hosts, "target": hosts}))
    port = free_port()
    url = f"redis://:p@ss-TAIL2@127.0.0.1:{port}/0?password=QUERY2"

    message = one_error(
        nsmigrate("run", str(spec), "--plan-here", "--redis-url", url, NSMIGRATE_DATABASE_URL=database_url)
    )

    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0?password=***" in message
    assert "TAIL2" not in message and "QUERY2" not in message and "p@ss" not in message

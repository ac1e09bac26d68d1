"""The sandbox's services as commands (``python -m nsmigrate_sandbox.pinecone_server``,
``python -m nsmigrate_sandbox.postgrest``): each
serves until SIGTERM, never logs a key, and the data plane prefaults the heap it is asked to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from pinecone import Pinecone
from supabase import create_client

from nsmigrate_sandbox.postgrest import create_tenancy_tables, load_tenancy
from nsmigrate_sandbox.services import free_port, wait_for_port
from tests.polling import wait_until

KEY = "sandbox-service-key"
REPO = Path(__file__).resolve().parents[2]


def test_the_data_plane_serves_until_sigterm_and_never_logs_the_api_key(tmp_path: Path) -> None:
    port_file = tmp_path / "hosts.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nsmigrate_sandbox.pinecone_server",
            "--index",
            "cli-a:4:dotproduct:pod",
            "--index",
            "cli-b:4",
            "--port-file",
            str(port_file),
            "--verbose",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:

        def port_file_written() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            return port_file.exists()

        wait_until(port_file_written, what="the CLI to write its port file", timeout_s=20, interval_s=0.05)
        hosts = json.loads(port_file.read_text())
        assert set(hosts["indexes"]) == {"cli-a", "cli-b"}
        secret = "sk-very-secret-value"
        idx = Pinecone(api_key=secret).Index(host=hosts["indexes"]["cli-a"])
        assert idx.upsert(vectors=[("a", [1, 2, 3, 4])]).upserted_count == 1
        assert httpx.get(f"{hosts['control']}/_sandbox/hosts", timeout=5).json() == hosts
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert json.loads(out.decode().splitlines()[0]) == hosts
    assert "POST /vectors/upsert" in err.decode()
    assert secret not in err.decode() + out.decode()
    assert not port_file.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_data_plane_prefaults_the_heap_it_is_asked_to(tmp_path: Path) -> None:
    """``--prefault-mb`` (the bench's data plane): that much heap is touched before the server answers, and kept."""

    def resident_mb_when_serving(prefault_mb: int) -> float:
        port_file = tmp_path / f"hosts-{prefault_mb}.json"
        cmd = [
            sys.executable,
            "-m",
            "nsmigrate_sandbox.pinecone_server",
            "--index",
            "pf:4",
            "--port-file",
            str(port_file),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([*cmd, "--prefault-mb", str(prefault_mb)], cwd=REPO, env=env)
        try:

            def port_file_written() -> bool:
                assert proc.poll() is None, "the CLI exited"
                return port_file.exists()

            wait_until(port_file_written, what="the CLI to start (its port file)", timeout_s=20, interval_s=0.05)
            return float(psutil.Process(proc.pid).memory_info().rss) / 2**20
        finally:
            proc.terminate()
            proc.wait(20)

    assert resident_mb_when_serving(64) - resident_mb_when_serving(0) >= 48


def test_the_postgrest_standin_serves_until_sigterm(database_url: str) -> None:
    create_tenancy_tables(database_url)
    load_tenancy(database_url, twins={"t1": "c1"})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SUPABASE_KEY"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nsmigrate_sandbox.postgrest", "--database-url", database_url, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, 20, process)  # type: ignore[arg-type]
        supabase = create_client(f"http://127.0.0.1:{port}", KEY)
        assert supabase.table("twins").select("id,creator_id").execute().data == [{"id": "t1", "creator_id": "c1"}]
        supabase.postgrest.aclose()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        stdout = process.stdout.read().decode() if process.stdout else ""
        assert f"http://127.0.0.1:{port}" in stdout
        assert KEY not in stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

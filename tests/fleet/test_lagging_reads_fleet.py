"""The seeds' jobs against a data plane whose reads lag its writes by a few seconds, as Pinecone's do (list, query,
search and counts; fetch sees a write at once): real workers, and each job ends verified on its own, without a second
`verify`. Into an integrated index (``migrations/seeds-integrated.yaml``) verification waits by the LSN the copy's
writes were answered before it searches; in the seeds' pod index (``migrations/creator-namespaces.yaml``), which gives
no LSN, by listing the target again until every copy fetch found is listed. And the data plane as a process takes
its lag from the command line or the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nsmigrate import migrations
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import RunState
from nsmigrate_sandbox.pinecone_server import VECTOR_LAG_S, Faults, IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset, write_twins_csv
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet import LITE_DIMENSION, LITE_INDEX, all_verified, creator_spec
from tests.fleet.test_text_jobs import start_job as start_creating_job
from tests.fleet_jobs import start_job
from tests.polling import wait_for_job, wait_until

LAG_S = 4.0
SERVERLESS = "seeds-serverless"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec(LITE_INDEX, dimension=LITE_DIMENSION, metric="cosine", kind="pod"),
        IndexSpec(SERVERLESS, dimension=LITE_DIMENSION, metric="cosine"),
    ]


@pytest.fixture(scope="module")
def lite_seed() -> SeedData:
    return seed_dataset(dimension=LITE_DIMENSION)


def seeds_integrated_spec(stack: Stack) -> dict[str, Any]:
    """``migrations/seeds-integrated.yaml`` against this stack: the seeds' serverless index by host, the integrated
    index the job creates on the stack's control plane."""
    spec: dict[str, Any] = yaml.safe_load((Path(migrations.__file__).parent / "seeds-integrated.yaml").read_text())
    spec["source"] = {"kind": "pinecone", "host": stack.pinecone.host(SERVERLESS)}
    spec["target"] |= {"control_host": stack.pinecone.control_host}
    spec.pop("cutover", None)
    return spec


def test_the_seeds_job_into_an_integrated_index_ends_verified_although_search_lags(
    stack: Stack, lite_seed: SeedData
) -> None:
    lite_seed.load_into(stack.pinecone, SERVERLESS)
    stack.pinecone.initial_faults = Faults(freshness_lag_s=LAG_S)  # the index the job creates lags
    stack.start_worker("list,copy,verify,cleanup", 8, pool="threads")
    db, _, job_id = start_creating_job(stack, seeds_integrated_spec(stack))

    status = wait_for_job(db, job_id, all_verified, timeout_s=240)

    runs = jobs_and_runs.runs_of(db, job_id)
    assert [r.state for r in status.runs] == [RunState.VERIFIED] * len(lite_seed.namespaces), [
        (r.source_namespace, (r.verification or {}).get("reasons")) for r in runs
    ]
    for run in runs:
        reads = run.verification["reads"][run.target_namespace]
        # The copy's LSN was recorded; the wait ends when the reads reach it, or when a read of its own already
        # shows every write (whichever the wait sees first: the lag may end between its two reads).
        assert reads["lsn"] >= 1 and reads["caught_up"], reads
        assert reads["by"] == "polling" or reads["reconciled"] >= reads["lsn"], reads
        assert run.verification["text_search"]["passed"]
    assert stack.pinecone.faults("seeds-integrated").freshness_lag_s == LAG_S
    db.dispose()


def test_the_seeds_job_in_the_pod_index_ends_verified_although_reads_lag(stack: Stack, lite_seed: SeedData) -> None:
    lite_seed.load_into(stack.pinecone, LITE_INDEX)
    stack.pinecone.set_faults(LITE_INDEX, Faults(freshness_lag_s=LAG_S))
    twins_csv = write_twins_csv(lite_seed.twins, stack.workdir / "twins.csv")
    stack.start_worker("list,copy,verify,cleanup", 8, pool="threads")
    db, _, job_id = start_job(stack, creator_spec(stack, twins_csv, LITE_INDEX))

    status = wait_for_job(db, job_id, all_verified, timeout_s=240)

    assert [r.state for r in status.runs] == [RunState.VERIFIED] * len(lite_seed.namespaces)
    fixed = [r for r in jobs_and_runs.runs_of(db, job_id) if r.target_namespace is not None]
    for run in fixed:
        reads = run.verification["reads"][run.target_namespace]
        assert reads["by"] == "polling" and reads["caught_up"], reads
    db.dispose()


def test_the_command_line_takes_the_lag_and_refuses_a_bad_one(tmp_path: Path) -> None:
    port_file = tmp_path / "hosts.json"
    command = [sys.executable, "-m", "nsmigrate_sandbox.pinecone_server", "--index", "cli:2", "--port-file"]
    bad = subprocess.run(
        [*command, str(port_file)],
        env={**os.environ, "NSMIGRATE_SANDBOX_FRESHNESS_LAG_S": "-3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "the freshness lag is seconds within 0..3600" in bad.stderr
    quiet = {k: v for k, v in os.environ.items() if k != "NSMIGRATE_SANDBOX_FRESHNESS_LAG_S"}
    for told, lag_s in ((["--freshness-lag-s", "1.5"], 1.5), ([], VECTOR_LAG_S)):  # none told: the service's lag
        server = subprocess.Popen([*command, str(port_file), *told], stdout=subprocess.DEVNULL, env=quiet)
        try:
            hosts = wait_until(
                lambda: json.loads(port_file.read_text()) if port_file.exists() else None,
                what="the sandbox's port file",
                timeout_s=60,
            )
            assert httpx.get(hosts["indexes"]["cli"] + "/_sandbox/stats", timeout=10).json()["freshness_lag_s"] == lag_s
        finally:
            server.terminate()
            server.wait(timeout=30)

"""One large namespace listed as several prefix chains by a real `nsmigrate worker`, through the real SDK against the
local data plane: every id lands in exactly one batch and is copied, including ids no prefix reaches (non-ASCII
ones first seen past the first page, and an id that equals a split prefix), which the rest chain lists; and a
lister killed mid-way (its worker restarted) resumes every chain from the recorded state without batching an id
twice."""

from __future__ import annotations

import random
import signal
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch, recovery
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.listing.prefix_chains import SPLIT_MIN_IDS, ChainState
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import Batch, NamespaceRun, RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.chaos import FAST_RECOVERY, fault_landed, start_standby, take_over
from tests.polling import wait_for_job, wait_until

DIM = 4


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("big-src", DIM), IndexSpec("big-dst", DIM)]


def load(stack: Stack, ids: list[str]) -> None:
    rng = random.Random(3)
    stack.pinecone.load(
        "big-src", "big", [(i, [rng.random() for _ in range(DIM)], {"k": n}) for n, i in enumerate(ids)]
    )


def spec(stack: Stack, max_batches_in_flight: int = 16) -> dict[str, Any]:
    """Index big-src's namespace to big-dst, in batches of 100."""
    store = {"src": "source", "dst": "target"}
    return {
        "name": "one-big-namespace",
        **{role: {"kind": "pinecone", "host": stack.pinecone.host(f"big-{i}")} for i, role in store.items()},
        "batch_size": 100,
        "max_batches_in_flight": max_batches_in_flight,
    }


def start(stack: Stack, data: dict[str, Any]) -> tuple[jobs_database.Database, int]:
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    prepared = launch.prepare(parse_spec(data), open_retrying_store, stack.workdir)
    return db, launch.launch(db, Dispatcher(settings), prepared)


def batched_ids(db: jobs_database.Database, job_id: int) -> Counter[str]:
    with db.transaction() as s:
        rows = s.execute(
            sa.select(Batch.ids)
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == job_id)
        ).scalars()
        return Counter(i for ids in rows for i in ids)


def verified(status: JobStatus) -> bool:
    """Copied and verified (the id sets and contents of source and target compared)."""
    return all(r.state == RunState.VERIFIED for r in status.runs)


def test_every_id_is_batched_once_and_copied_including_those_no_prefix_reaches(stack: Stack) -> None:
    ids = [f"doc-{n}#chunk-{n % 3}" for n in range(SPLIT_MIN_IDS + 1500)]
    # Past the first page: characters the first page never showed (the rest chain finds them), and "doc-1", which
    # equals a prefix the split may choose.
    ids += ["doc-1", "~tilde-1", "{brace}-2", "|bar|-3", "Zebra"]  # ASCII only: Pinecone's ids are
    load(stack, ids)
    stack.start_worker("list,copy,verify", 8, pool="threads")

    db, job_id = start(stack, spec(stack))
    status = wait_for_job(db, job_id, verified, timeout_s=180)

    counts = batched_ids(db, job_id)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert status.totals.copied == len(ids)
    assert set(stack.pinecone.snapshot("big-dst")["big"]) == set(ids)
    run = jobs_and_runs.runs_of(db, job_id)[0]
    assert run.listed == len(ids)
    db.dispose()


def test_a_lister_killed_mid_way_resumes_every_chain(stack: Stack) -> None:
    rng = random.Random(11)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(SPLIT_MIN_IDS * 2)]
    load(stack, ids)
    stack.pinecone.set_faults("big-src", Faults(latency_ms=40))
    lister = stack.start_worker("list", 2, pool="threads", name="lister", **FAST_RECOVERY)
    # the copy worker lists too once the lister is dead: a new list worker, without a boot of its own
    copier = start_standby(stack, "copier", 4, consuming="copy,verify", **FAST_RECOVERY)
    db, job_id = start(stack, spec(stack, max_batches_in_flight=6))
    run_id = jobs_and_runs.runs_of(db, job_id)[0].id

    def chains_part_listed() -> bool:
        state = ChainState.decode(jobs_and_runs.get_run(db, run_id).list_token)
        return state is not None and len(state.chains) > 1 and 0 < state.listed < len(ids) // 2

    wait_until(chains_part_listed, what="the chains to have listed part of the namespace", timeout_s=120)
    stack.kill(lister, signal.SIGKILL)
    fault_landed(stack)
    take_over(stack, copier, "list")
    recovery.resume(db, Dispatcher(Settings(database_url=stack.database_url, redis_url=stack.redis_url)), job_id)
    wait_for_job(db, job_id, verified, timeout_s=240)

    counts = batched_ids(db, job_id)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert set(stack.pinecone.snapshot("big-dst")["big"]) == set(ids)
    db.dispose()

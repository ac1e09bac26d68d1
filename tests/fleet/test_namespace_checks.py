"""Planning overlapped with copying (``launch.start_or_resume``), as a user runs it: `nsmigrate run SPEC --wait` in
its own process, real workers, Redis, Postgres and the Pinecone SDK on the local data plane. The namespaces that need
no check of their own copy while the others' ids are still being read; a namespace that fails its own check is
refused and nothing reaches its target; a job-wide refusal writes nothing at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pinecone import Pinecone

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import Batch, Event, NamespaceRun
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack

#: "a" and "b" both write into "shared" and share the id "dup"; reading the ids of "a" (the collision check) takes 21
#: list pages, while "c" and "d" have no check of their own.
NAMESPACES: dict[str, list[str] | int] = {
    "a": [*(f"a-{i:05d}" for i in range(2_000)), "dup"],
    "b": ["dup", "b-1", "b-2"],
    "c": 20,
    "d": 15,
}
ROUTES = {"a": "shared", "b": "shared", "c": "c", "d": "d"}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", dimension=8), IndexSpec("dst", dimension=8)]


@pytest.fixture
def source(stack: Stack) -> Stack:
    """The stack with ``NAMESPACES`` in its source index, no worker yet."""
    for n, (ns, ids) in enumerate(NAMESPACES.items()):
        names = [f"{ns}-{i}" for i in range(ids)] if isinstance(ids, int) else ids
        stack.pinecone.load("src", ns, [(i, [0.1 * (n + 1)] * 8, {"ns": ns}) for i in names])
    return stack


@pytest.fixture
def loaded(source: Stack) -> Stack:
    """The loaded stack and a worker for every queue."""
    source.start_worker("list,copy,verify,cleanup", 8, pool="threads")
    return source


def run(stack: Stack, routes: dict[str, str], **extra: Any) -> subprocess.CompletedProcess[str]:
    spec = {
        "name": "checked",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "routing": {"mode": "explicit", "map": routes},
        **extra,
    }
    path: Path = stack.workdir / "checked.yaml"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "nsmigrate", "run", str(path), "--wait", "--plan-here"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def target_counts(stack: Stack) -> dict[str, int]:
    return {ns: n for ns, n in stack.pinecone.service("dst").store.counts().items() if n}


def test_a_namespace_that_fails_its_own_check_is_refused_while_the_others_copy(loaded: Stack) -> None:
    # Two list requests a second, planning's and the fleet's budget each: checking "a" takes over ten seconds,
    # and "c" and "d" (one page each) are copied meanwhile.
    done = run(loaded, ROUTES, rate={"list_rps": 2})

    assert done.returncode == 1, done.stdout + done.stderr  # not every namespace passed
    for refused in ("'a'", "'b'"):
        assert f"namespace {refused} refused" in done.stderr
    assert "'shared'" in done.stderr and "dup" in done.stderr and "allow_id_overwrite" in done.stderr
    assert target_counts(loaded) == {"c": 20, "d": 15}  # nothing of a or b reached "shared"

    db = jobs_database.Database(loaded.database_url)
    try:
        with db.transaction() as s:
            runs = {r.source_namespace: r for r in s.scalars(sa.select(NamespaceRun))}
            refusals = {
                e.detail["namespace"]: e.at for e in s.scalars(sa.select(Event)) if e.action == "namespace_refused"
            }
            first_copy = s.scalar(
                sa.select(sa.func.min(Batch.started_at))
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.source_namespace.in_(["c", "d"]))
            )
            shared_batches = s.scalar(
                sa.select(sa.func.count())
                .select_from(Batch)
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.source_namespace.in_(["a", "b"]))
            )
    finally:
        db.dispose()
    assert {ns: r.state for ns, r in runs.items()} == {
        "a": "cancelled",
        "b": "cancelled",
        "c": "verified",
        "d": "verified",
    }
    assert "dup" in (runs["a"].last_error or "") and "dup" in (runs["b"].last_error or "")
    assert shared_batches == 0  # neither refused namespace was ever listed for copying
    assert set(refusals) == {"a", "b"}
    # The others copied while "a" was still being checked: their first batch started before its refusal.
    assert first_copy is not None and first_copy < min(refusals.values())


def test_a_job_wide_refusal_writes_nothing(source: Stack) -> None:
    """Refused while planning, so no worker is needed: a job row written anyway is what the job table shows."""
    routes = {ns: target for ns, target in ROUTES.items() if ns != "d"}  # "d" has nowhere to go: the whole job

    done = run(source, routes)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "routing.map has no target" in done.stderr and "d" in done.stderr
    assert target_counts(source) == {}
    db = jobs_database.Database(source.database_url)
    try:
        assert jobs_status.list_jobs(db) == []
    finally:
        db.dispose()


def test_namespaces_whose_check_passes_are_copied_after_it(loaded: Stack, pinecone_api_key: str) -> None:
    """Without the shared id, "a" and "b" are checked (their ids read) and pass: both copy into "shared"."""
    Pinecone(api_key=pinecone_api_key).Index(host=loaded.pinecone.host("src")).delete(ids=["dup"], namespace="b")

    done = run(loaded, ROUTES)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "refused" not in done.stderr
    assert target_counts(loaded) == {"shared": 2_003, "c": 20, "d": 15}

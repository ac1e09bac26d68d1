"""A cut-over by namespace alias inside one index, on the real stack: `nsmigrate cutover aliases|set` repoint the
aliases the application reads through (the real Pinecone SDK, no nsmigrate code and no job table on its side) against
the local data plane, with real workers, Redis and Postgres; cleanup and rollback keep what an alias serves. Where
the aliases point is read from the data plane's REST API and from what the SDK's answers name, not from nsmigrate."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.workers.context import WorkerContext
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet.test_sync_rollback import DIM, cli, events, states, wait_final
from tests.fleet_jobs import start_job
from tests.polling import wait_until

NAMESPACES = ["ns0", "ns1", "ns2"]
ALIASES = [f"live.{ns}" for ns in NAMESPACES]
#: A load check that passes on a busy machine in a second, and no soak between steps.
STEPPING = {"qps": 10, "duration_s": 1, "p95_ms": 2000, "p99_ms": 2000, "cold_query_ms": 2000, "min_step_s": 0}
#: Limits a loaded machine's local reads stay far below, and a latency fault far above them: which side breaches is
#: the fault's doing, not the machine's speed. Five reads of 3 s each fit in the window.
BREACHING = {"p95_ms": 1000, "p99_ms": 1000, "breach_window_s": 20}
SLOW_MS = 3000


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("one", DIM)]


@pytest.fixture(scope="module")
def fleet(module_stack: Stack) -> Stack:
    module_stack.start_worker("list,copy,verify", 4, pool="threads")
    return module_stack


@pytest.fixture
def stack(fleet: Stack, shared_stack: Stack) -> Stack:
    return shared_stack


def in_place(stack: Stack, **cutover: Any) -> tuple[jobs_database.Database, int]:
    """ns0..ns2 (20 vectors each) copied to v2-ns0..v2-ns2 of the same index and verified; aliases `live.{source}`."""
    rng = np.random.default_rng(11)
    for n, ns in enumerate(NAMESPACES):
        stack.pinecone.load("one", ns, [(f"v{n}-{i:03d}", rng.random(DIM).tolist(), {"n": n}) for i in range(20)])
    host = stack.pinecone.host("one")
    spec = {
        "name": "in-place",
        "source": {"kind": "pinecone", "host": host},
        "target": {"kind": "pinecone", "host": host},
        "routing": {"mode": "explicit", "map": {ns: f"v2-{ns}" for ns in NAMESPACES}},
        "batch_size": 20,
        "verify": {"count_timeout_s": 2},
        "cleanup": {"mode": "manual"},
        "cutover": {"aliases": "live.{source}", **STEPPING, **cutover},
    }
    db, _, job_id = start_job(stack, spec)
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    return db, job_id


def rest(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Pinecone's REST API of index `one` (API 2026-07), as any client calls it."""
    reply = httpx.request(
        method,
        stack.pinecone.host("one") + path,
        content=json.dumps(body) if body is not None else None,
        headers={"Api-Key": SANDBOX_API_KEY, "X-Pinecone-Api-Version": "2026-07", "Content-Type": "application/json"},
    )
    assert reply.status_code < 300, reply.text
    return reply.json() if reply.content else None


def alias_targets(stack: Stack) -> dict[str, str]:
    return {a["name"]: a["target_namespace"] for a in rest(stack, "GET", "/namespace-aliases")["namespace_aliases"]}


def served(stack: Stack) -> dict[str, str]:
    """The application's reads: each alias queried with the SDK → the namespace its answer says served it."""
    app = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("one"))
    probe = [0.5] * DIM
    answers = {alias: app.query(vector=probe, top_k=3, namespace=alias) for alias in ALIASES}
    assert all(len(a.matches) == 3 for a in answers.values())  # each alias reads a whole namespace
    return {alias: answer.namespace for alias, answer in answers.items()}


def set_reads(stack: Stack, job_id: int, *args: str) -> Any:
    return cli(stack, "cutover", "set", str(job_id), "--reads", *args)


def test_aliases_move_reads_step_by_step_by_a_fixed_share_and_back_in_one_call(stack: Stack) -> None:
    db, job_id = in_place(stack)

    made = cli(stack, "cutover", "aliases", str(job_id))
    assert made.exit_code == 0, made.output
    assert served(stack) == dict(zip(ALIASES, NAMESPACES, strict=True))  # at first: the old namespaces
    again = cli(stack, "cutover", "aliases", str(job_id))  # safe to repeat
    assert again.exit_code == 0 and "0 created, 0 repointed" in again.output, again.output
    checked = cli(stack, "cutover", "check", str(job_id))
    assert checked.exit_code == 0, checked.output

    moved: set[str] = set()
    for percent in (5, 25, 50, 100):
        step = set_reads(stack, job_id, "new", "--percent", str(percent))
        assert step.exit_code == 0, step.output
        now = served(stack)
        new = {alias for alias, ns in now.items() if ns == f"v2-{alias.removeprefix('live.')}"}
        # ⌈n·p/100⌉ of the n aliases, each step keeping those of the one before; the rest still read old.
        assert len(new) == math.ceil(len(ALIASES) * percent / 100) and new >= moved, (percent, now)
        assert all(now[alias] == alias.removeprefix("live.") for alias in set(ALIASES) - new)
        moved = new
    assert set_reads(stack, job_id, "new", "--percent", "100").exit_code == 0  # a repeat: done

    back = set_reads(stack, job_id, "old")

    assert back.exit_code == 0, back.output
    assert served(stack) == dict(zip(ALIASES, NAMESPACES, strict=True))
    steps = events(db, job_id, "cutover_set")
    assert [e["detail"]["percent"] for e in steps] == [5, 25, 50, 100, 0]
    assert steps[-2]["detail"]["aliases"] == {alias: f"v2-{ns}" for alias, ns in zip(ALIASES, NAMESPACES, strict=True)}
    assert alias_targets(stack) == steps[-1]["detail"]["aliases"]


def test_someone_elses_alias_of_a_job_name_is_refused_and_nothing_is_changed(stack: Stack) -> None:
    _, job_id = in_place(stack)
    rest(stack, "POST", "/namespace-aliases", {"name": "live.ns1", "target_namespace": "ns0"})

    refused = cli(stack, "cutover", "aliases", str(job_id))

    assert refused.exit_code == 1, refused.output
    assert "'live.ns1' points at 'ns0'" in refused.output and "nothing was changed" in refused.output
    assert alias_targets(stack) == {"live.ns1": "ns0"}


def test_cleanup_and_rollback_keep_what_the_job_aliases_serve_until_a_step_repoints_them(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    from nsmigrate.workers.steps.syncing import sync_run

    db, job_id = in_place(stack, decommission_after_s=3600)
    job = str(job_id)
    made = cli(stack, "cutover", "aliases", job)
    assert made.exit_code == 0, made.output

    refused = cli(stack, "cleanup", job, "--yes")
    assert refused.exit_code == 1, refused.output
    assert f"`nsmigrate cutover set {job_id} --reads new --percent 100` repoints" in refused.output, refused.output
    checked = cli(stack, "cutover", "check", job)
    assert checked.exit_code == 0, checked.output
    for percent in ("5", "25", "50", "100"):
        step = set_reads(stack, job_id, "new", "--percent", percent)
        assert step.exit_code == 0, step.output
    refused = cli(stack, "rollback", job, "--yes")
    assert refused.exit_code != 0, refused.output
    assert f"`nsmigrate cutover set {job_id} --reads old` points" in refused.output, refused.output
    assert sorted(stack.pinecone.snapshot("one")) == sorted(NAMESPACES + [f"v2-{ns}" for ns in NAMESPACES])

    ctx = worker_context(stack.database_url, stack.redis_url)
    for run in jobs_and_runs.runs_of(db, job_id):
        sync_run(ctx, run.id, actor="tester")
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    done = cli(stack, "cleanup", job, "--yes", "--decommission-now")

    assert done.exit_code == 0, done.output
    assert sorted(stack.pinecone.snapshot("one")) == [f"v2-{ns}" for ns in NAMESPACES]  # the sources went
    assert set(served(stack).values()) == {f"v2-{ns}" for ns in NAMESPACES}  # the aliases still serve the copies

    # Rolled back after the cleanup: the originals are written back and verified first, then the rollback stops for
    # the aliases, which `cutover set --reads old` may now point at them; then the copies go.
    stopped = cli(stack, "rollback", job, "--yes")
    assert stopped.exit_code == 1, stopped.output
    assert f"`nsmigrate cutover set {job_id} --reads old` points" in stopped.output, stopped.output
    back = set_reads(stack, job_id, "old")
    assert back.exit_code == 0, back.output
    stack.pinecone.settle("one")  # the application wrote nothing since: its reads show the rewritten originals
    assert set(served(stack).values()) == set(NAMESPACES)
    rolled = cli(stack, "rollback", job, "--yes")
    assert rolled.exit_code == 0, rolled.output
    assert sorted(stack.pinecone.snapshot("one")) == sorted(NAMESPACES)


class AliasReader:
    """The application: a thread reading every alias with the SDK until stopped, keeping (began, alias, the namespace
    that served it) of each read on this process's monotonic clock."""

    def __init__(self, stack: Stack) -> None:
        self.app = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host("one"))
        self.reads: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="application reads", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for alias in ALIASES:
                began = time.monotonic()
                answer = self.app.query(vector=[0.5] * DIM, top_k=1, namespace=alias)
                self.reads.append((began, alias, answer.namespace))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_breach_on_the_new_side_moves_the_aliases_back_within_its_window(stack: Stack) -> None:
    from nsmigrate_sandbox.pinecone_server import Faults

    db, job_id = in_place(stack, **BREACHING)
    made = cli(stack, "cutover", "aliases", str(job_id))
    assert made.exit_code == 0, made.output
    checked = cli(stack, "cutover", "check", str(job_id))
    assert checked.exit_code == 0, checked.output
    step = set_reads(stack, job_id, "new", "--percent", "5")
    assert step.exit_code == 0, step.output
    [moved] = [alias for alias, ns in served(stack).items() if ns.startswith("v2-")]
    calm = cli(stack, "cutover", "watch", str(job_id), "--duration", "1")
    assert calm.exit_code == 0 and "no breach" in calm.output, calm.output

    reader = AliasReader(stack)
    try:
        # Only the new namespaces serve slowly now: the old ones, in the same index, answer as before.
        slow = [f"v2-{ns}" for ns in NAMESPACES]
        stack.pinecone.set_faults("one", Faults(latency_ms=SLOW_MS, latency_namespaces=slow))
        breach = cli(stack, "cutover", "watch", str(job_id), "--duration", "30")
        rolled_back = time.monotonic()
        wait_until(lambda: [r for r in reader.reads if r[0] > rolled_back][3:], what="reads after it", timeout_s=30)
    finally:
        reader.stop()
        stack.pinecone.set_faults("one", Faults())

    assert breach.exit_code == 1 and "reads moved back to 0 % new" in breach.output, breach.output
    assert any(alias == moved and ns.startswith("v2-") for began, alias, ns in reader.reads if began < rolled_back)
    assert {ns for began, _, ns in reader.reads if began > rolled_back} <= set(
        NAMESPACES
    )  # no read of the breaching side
    assert served(stack) == dict(zip(ALIASES, NAMESPACES, strict=True))
    [evidence] = [e["detail"] for e in events(db, job_id, "cutover_breach")]
    assert evidence["percent"] == 5 and "cutover.p95_ms = 1000 ms" in evidence["problems"][0]
    window = evidence["window"]
    # Only the new side breached: the old side, read beside it on the same machine, stayed below the limit.
    assert window["new"]["reads"] >= 5, window
    assert window["old"]["p95_ms"] < BREACHING["p95_ms"] < window["new"]["p95_ms"], window
    # Within its window, on its own clock.
    assert window["decided_at_s"] - window["breaching_since_s"] <= BREACHING["breach_window_s"], window
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 0]


def all_new(stack: Stack, **cutover: Any) -> tuple[jobs_database.Database, int]:
    """``in_place``, its aliases made and stepped to 100 % new (each alias serving its copy)."""
    db, job_id = in_place(stack, **cutover)
    made = cli(stack, "cutover", "aliases", str(job_id))
    assert made.exit_code == 0, made.output
    checked = cli(stack, "cutover", "check", str(job_id))
    assert checked.exit_code == 0, checked.output
    for percent in ("5", "25", "50", "100"):
        step = set_reads(stack, job_id, "new", "--percent", percent)
        assert step.exit_code == 0, step.output
    assert served(stack) == {f"live.{ns}": f"v2-{ns}" for ns in NAMESPACES}
    return db, job_id


def test_a_namespace_whose_copy_is_not_verified_keeps_its_alias_on_the_old_namespace(stack: Stack) -> None:
    # Reads are 100 % new when a namespace joins the job (`sync --new-namespaces`): its copy is still to be made, so
    # its alias serves the old namespace until it is verified; the others stay on their copies.
    db, job_id = all_new(stack)
    stack.pinecone.load("one", "ns3", [("late-0", [0.5] * DIM, {"n": 3})])
    late = Plan(
        runs=[NamespacePlan("ns3", "v2-ns3", 1, 1, None, None)], estimate=Estimate(0, 0, 0, 0, 0, 0.0), twins={}
    )
    jobs_and_runs.add_runs(db, job_id, late, source_label="one", target_label="one")

    made = cli(stack, "cutover", "aliases", str(job_id))

    assert made.exit_code == 0, made.output
    assert alias_targets(stack) == {"live.ns3": "ns3", **{f"live.{ns}": f"v2-{ns}" for ns in NAMESPACES}}


@pytest.mark.parametrize("when", ["reads all new", "before any alias"])
def test_an_alias_never_serves_a_source_a_cleanup_deleted_from(stack: Stack, when: str) -> None:
    # A cleanup that deleted part of ns1 and then found ids written meanwhile leaves its run verify_failed with its
    # deletes counted. `cutover aliases` (safe to repeat) sent ns1's alias back to the half-deleted source; and a
    # cleanup made before any alias (cleanup.mode auto) had each alias made on its emptied source.
    db, job_id = all_new(stack) if when == "reads all new" else in_place(stack)
    first = next(r for r in jobs_and_runs.runs_of(db, job_id) if r.source_namespace == "ns1")
    rest(stack, "POST", "/vectors/delete", {"ids": [f"v1-{i:03d}" for i in range(5)], "namespace": "ns1"})
    with db.transaction() as s:
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == first.id)
            .values(state=RunState.VERIFY_FAILED, cleanup={"deleted_count": 5}, verification={"passed": False})
        )

    made = cli(stack, "cutover", "aliases", str(job_id))

    assert made.exit_code == 0, made.output
    assert alias_targets(stack)["live.ns1"] == "v2-ns1"
    copies = {f"live.{ns}": f"v2-{ns}" for ns in NAMESPACES}
    others = {f"live.{ns}": ns for ns in NAMESPACES if ns != "ns1"}
    assert alias_targets(stack) == (copies if when == "reads all new" else {**others, "live.ns1": "v2-ns1"})


def test_a_breach_whose_aliases_cannot_all_move_back_says_how_to_finish_it(stack: Stack) -> None:
    """Reads are 100 % new when the new side breaches, and Pinecone refuses every alias repoint: the watch says reads
    did not go back, that some aliases may have, and the command that moves the rest; run once the service answers,
    that command brings every alias to the last good step."""
    from nsmigrate_sandbox.pinecone_server import Faults

    db, job_id = all_new(stack, **BREACHING)
    env = {**stack.env(), "NSMIGRATE_RETRY_ATTEMPTS": "2", "NSMIGRATE_RETRY_MAX_WAIT_S": "0.05"}
    slow = [f"v2-{ns}" for ns in NAMESPACES]
    refused = {"error_rate_5xx": 1.0, "error_ops": ("repoint_namespace_alias",)}
    reader = AliasReader(stack)
    try:
        stack.pinecone.set_faults("one", Faults(latency_ms=SLOW_MS, latency_namespaces=slow, **refused))
        breach = CliRunner().invoke(app, ["cutover", "watch", str(job_id), "--duration", "30"], env=env)
    finally:
        reader.stop()
        stack.pinecone.set_faults("one", Faults())

    said = " ".join(breach.output.split())
    assert breach.exit_code == 1 and "reads could not go back" in said, breach.output
    assert f"`nsmigrate cutover set {job_id} --reads new --percent 50` moves the rest back" in said, breach.output
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 25, 50, 100]

    back = set_reads(stack, job_id, "new", "--percent", "50")

    assert back.exit_code == 0, back.output
    moved = {alias for alias, ns in alias_targets(stack).items() if ns.startswith("v2-")}
    assert 0 < len(moved) < len(NAMESPACES) and served(stack) == alias_targets(stack)


def test_a_breach_while_a_cleanup_deletes_the_sources_leaves_the_aliases_on_the_copies(stack: Stack) -> None:
    """Reads are 100 % new and a cleanup is deleting the sources when the new side breaches. Reads cannot go back
    (the sources are going), so the watch says so; it must not move the aliases first, or the application would read
    the sources while they are emptied (and, at the end, through an alias nothing may drop)."""
    from nsmigrate_sandbox.pinecone_server import Faults

    db, job_id = all_new(stack, **BREACHING)
    copies = {f"live.{ns}": f"v2-{ns}" for ns in NAMESPACES}
    first = jobs_and_runs.runs_of(db, job_id)[0]
    with db.transaction() as s:  # a cleanup of the first source under way (as `start_cleanup` leaves it)
        s.execute(sa.update(NamespaceRun).where(NamespaceRun.id == first.id).values(state=RunState.CLEANING))

    reader = AliasReader(stack)
    try:
        slow = [f"v2-{ns}" for ns in NAMESPACES]
        stack.pinecone.set_faults("one", Faults(latency_ms=SLOW_MS, latency_namespaces=slow))
        breach = cli(stack, "cutover", "watch", str(job_id), "--duration", "30")
    finally:
        reader.stop()
        stack.pinecone.set_faults("one", Faults())

    assert breach.exit_code == 1 and "cannot go back to its source" in breach.output, breach.output
    assert alias_targets(stack) == copies and served(stack) == copies  # the aliases never moved
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 25, 50, 100]


def test_a_cleanup_that_starts_while_the_aliases_move_back_sends_them_to_the_copies_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cutover set --reads old` is asked before the aliases move, and a cleanup may start in between (the step first
    warms the namespaces it moves). Its record of the step is then refused (the sources are being deleted): the
    aliases, moved already, go back to the copies rather than serve the sources while they are emptied."""
    from nsmigrate.cli import cutover as cutover_cli

    db, job_id = all_new(stack)
    copies = {f"live.{ns}": f"v2-{ns}" for ns in NAMESPACES}
    first = jobs_and_runs.runs_of(db, job_id)[0]
    warm_step = cutover_cli.warm_step

    def a_cleanup_starts_meanwhile(*args: Any, **kwargs: Any) -> Any:
        with db.transaction() as s:
            s.execute(sa.update(NamespaceRun).where(NamespaceRun.id == first.id).values(state=RunState.CLEANING))
        return warm_step(*args, **kwargs)

    monkeypatch.setattr(cutover_cli, "warm_step", a_cleanup_starts_meanwhile)

    back = set_reads(stack, job_id, "old")

    assert back.exit_code == 1 and "cannot go back to its source" in back.output, back.output
    assert alias_targets(stack) == copies and served(stack) == copies


def test_an_erased_twins_aliases_are_not_made_again_and_the_rest_move_on_and_back(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    """An erasure of a twin deletes both its namespaces and removes the aliases serving them. Making such an alias
    again, Pinecone refuses (its namespace is gone): every later step, and the way back, failed part-way on it. The
    erased twin's alias is left out; the others move as the steps say."""
    from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
    from nsmigrate.workers.steps import erasing
    from nsmigrate.workers.stores import open_retrying_store

    db, job_id = in_place(stack)
    assert cli(stack, "cutover", "aliases", str(job_id)).exit_code == 0
    with db.transaction() as s:  # ns0 held the twin t1 of creator c1, copied to v2-ns0 for them
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id, NamespaceRun.source_namespace == "ns0")
            .values(creator_id="c1", twin_id="t1")
        )
    ctx = worker_context(stack.database_url, stack.redis_url)
    plan = erasing.plan_erasure(ctx.db, "c1", None, open_retrying_store)
    erasure = jobs_erasure.create_erasure(ctx.db, "erase-c1", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erasure):
        erasing.erase_place(ctx, place.id)
    assert jobs_erasure.erasure_receipt(ctx.db, erasure)["verified"]
    assert "live.ns0" not in alias_targets(stack)

    assert cli(stack, "cutover", "check", str(job_id)).exit_code == 0
    for percent in ("5", "25", "50", "100"):
        forward = set_reads(stack, job_id, "new", "--percent", percent)
        assert forward.exit_code == 0, forward.output
    assert alias_targets(stack) == {"live.ns1": "v2-ns1", "live.ns2": "v2-ns2"}
    assert "1 of an erased twin, removed by its erasure" in " ".join(forward.output.split())
    back = set_reads(stack, job_id, "old")
    assert back.exit_code == 0, back.output
    assert alias_targets(stack) == {"live.ns1": "ns1", "live.ns2": "ns2"}


def test_a_roll_back_while_a_step_warms_up_leaves_the_aliases_where_the_rollout_is(
    stack: Stack, worker_context: Callable[..., WorkerContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cutover set --percent 50` warms the targets for seconds; a watch's roll back to 0 % lands meanwhile. The step
    reads the rollout again under the move's lock and is refused before any alias moves (from 0 % the next step is
    5 %); before, it moved them, was refused by the rails, and pointed them back to the 25 % it had read first, which
    the rollout no longer was."""
    from nsmigrate.cli import cutover as cutover_command
    from nsmigrate.orchestrator.cutover import published
    from nsmigrate.orchestrator.cutover import rollout as rollout_rows
    from nsmigrate.workers.steps.alias_cutover import point_aliases

    db, job_id = in_place(stack)
    assert cli(stack, "cutover", "aliases", str(job_id)).exit_code == 0
    assert cli(stack, "cutover", "check", str(job_id)).exit_code == 0
    for percent in ("5", "25"):
        assert set_reads(stack, job_id, "new", "--percent", percent).exit_code == 0
    ctx = worker_context(stack.database_url, stack.redis_url)
    warm = cutover_command.warm_step

    def warm_then_rolled_back(*args: Any, **kwargs: Any) -> Any:
        warmed = warm(*args, **kwargs)
        with published.moving_reads(ctx.redis, job_id):  # the watch's roll back, as it moves reads
            point_aliases(ctx, job_id, 0)
            rollout_rows.set_rollout(ctx.db, job_id, 0, "watch", reason="breach")
        return warmed

    monkeypatch.setattr(cutover_command, "warm_step", warm_then_rolled_back)
    moved = set_reads(stack, job_id, "new", "--percent", "50")

    assert moved.exit_code == 1, moved.output
    assert "from 0 % the next step is 5 %" in " ".join(moved.output.split()), moved.output
    assert rollout_rows.rollout_of(db, job_id).percent == 0
    assert alias_targets(stack) == {alias: alias.removeprefix("live.") for alias in ALIASES}


def test_every_command_that_points_the_aliases_does_it_under_the_jobs_move_lock(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeated `cutover set` and `cutover aliases` point the aliases where the rollout is: under the lock a watch's
    roll back takes too, they read the rollout after any move under way, never before it."""
    from nsmigrate.orchestrator.cutover import published

    _, job_id = in_place(stack)
    assert cli(stack, "cutover", "aliases", str(job_id)).exit_code == 0
    taken: list[int] = []
    moving_reads = published.moving_reads

    def recorded(redis: Any, job: int) -> Any:
        taken.append(job)
        return moving_reads(redis, job)

    monkeypatch.setattr(published, "moving_reads", recorded)
    assert cli(stack, "cutover", "aliases", str(job_id)).exit_code == 0
    assert set_reads(stack, job_id, "old").exit_code == 0  # a repeat: reads are 0 % new already

    assert taken == [job_id, job_id]

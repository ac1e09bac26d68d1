"""The cut-over, from verified copy to switched traffic: an application dual-writes while the job copies, then
the README's cut-over runbook, command by command (``sync``, ``cutover check``, ``cutover set`` 5 → 100 % on its
rails: a step without a check, a step out of order and a step too soon are refused; a gated ``cleanup``), each run
on the same command line app a user runs, in this process (no interpreter start per step).

The seed data set is in index ``app-old``; the job copies it to ``app-new``. An application thread writes through
``orchestrator.cutover.dualwrite.DualWriteIndex`` (upserts of new ids, updates, deletes) during the copy and keeps its
own ledger of what it wrote. The demo exits 0 only when every command answered as the runbook says and the new index
holds exactly the ledger: every vector the application wrote, none it deleted (read from the data plane, not from
the job's verification).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import click
import numpy as np
import yaml

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, demo_stack
from nsmigrate.cli.main import app as nsmigrate_app
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex
from nsmigrate.orchestrator.cutover.rollout import last_check
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, reads_new
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import seed_dataset

OLD, NEW, JOB = "app-old", "app-new", "cutover-demo"
#: The application's writes during the copy, at most (it stops when the copy settles).
MAX_WRITES = 300
#: How long the demo waits for the application's reads to follow a `cutover set` (its cache: APP_CACHE_S).
FOLLOW_TIMEOUT_S = 15
#: How old the application's copy of the rollout may be (DualWriteIndex's max_age_s): how soon its reads follow.
APP_CACHE_S = 0.25
#: The load check: 20 QPS for 3 s, 60 queries over the 30 namespaces (a real one runs 60 s). Each rollout step
#: needs a passing check, and the local data plane shares a busy machine with the demo's workers, so the demo's
#: latency limits are wide (it shows the flow, not this machine's latency; a real index keeps the defaults). Each
#: step soaks SOAK_S, not the default 10 minutes.
SOAK_S = 2.0
LOAD_CHECK = {
    "qps": 20,
    "duration_s": 3,
    "p95_ms": 10_000,
    "p99_ms": 20_000,
    "cold_query_ms": 20_000,
    "min_step_s": SOAK_S,
}
#: How long verification polls a namespace's count that is stable but differs from the source's (default 60 s).
#: The wait is for Pinecone's eventually consistent counts; the local data plane's are exact at once. Here the
#: application writes on through the verification: a namespace it wrote to between the verification's listing and
#: its count reading holds a count that will never agree, and waited the whole minute for it.
COUNT_TIMEOUT_S = 2

Ledger = dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]]


def run(options: DemoOptions) -> int:
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo cutover[/]: {OLD} → {NEW} while an application dual-writes")
    indexes = [IndexSpec(OLD, dimension=seed.dimension), IndexSpec(NEW, dimension=seed.dimension)]
    with demo_stack(indexes, options) as demo:
        seed.load_into(demo.stack.pinecone, OLD)
        ledger: Ledger = {
            ns: {id_: (values, dict(meta or {})) for id_, (values, meta) in records.items()}
            for ns, records in demo.stack.pinecone.snapshot(OLD).items()
        }
        app = App(demo, ledger, seed.dimension)
        outcome = demo.run_job(_spec(demo), on_launch=app.start)
        app.stop()
        console.print(
            f"the application wrote {app.writes} times during the copy ({app.counts}); "
            f"{len(app.failures)} failed on the old index"
        )
        if app.failures:
            console.print("[bold red]the application's writes failed[/]", *app.failures[:3])
            return 1
        # Writes during the copy fail its verification (ids missing, contents changed): the sync repairs them.
        ok, job = True, str(outcome.job_id)
        ok &= _step(
            "the final sync copies what the copy missed", 0, "sync", job, "--propagate-deletes", "--yes", "--wait"
        )
        reads_new_at = ("cutover", "set", job, "--reads", "new", "--percent")
        ok &= _step("the rails: no step without a passing load check", 1, *reads_new_at, "5")
        ok &= _checked(demo, outcome.job_id)
        ok &= _step("the rails: a first step of 25 % is refused (5 % comes first)", 1, *reads_new_at, "25")
        for percent in ROLLOUT_STEPS[1:]:
            if percent > ROLLOUT_STEPS[1]:
                _soak()
            ok &= _step(f"{percent} % of reads to the new index", 0, *reads_new_at, str(percent))
            ok &= app.follows(percent)
            if percent == ROLLOUT_STEPS[1]:
                ok &= _step("the rails: the next step waits cutover.min_step_s", 1, *reads_new_at, "25")
            if percent == 50:
                ok &= _step("cleanup is refused while reads are not all new", 1, "cleanup", job, "--yes")
        ok &= _step("cleanup is refused: no sync since the cut-over began", 1, "cleanup", job, "--yes")
        ok &= _step("a sync after the cut-over began", 0, "sync", job, "--wait")
        ok &= _step("cleanup is refused: reads not new for decommission_after_s", 1, "cleanup", job, "--yes")
        ok &= _step("cleanup, not waiting the 7 days", 0, "cleanup", job, "--yes", "--decommission-now")
        ok &= _step("the job's status", 0, "status", job)
        ok &= _nothing_lost(demo, ledger)
        console.print(
            "[bold green]cut-over done[/]" if ok else f"[bold red]cut-over demo failed[/]: {'; '.join(_missed)}"
        )
        return 0 if ok else 1


def _checked(demo: DemoStack, job_id: int) -> bool:
    """`nsmigrate cutover check`: it must pass, as every rollout step needs a passing check (the demo's latency
    limits are wider than a real index's: see LOAD_CHECK)."""
    console.print(f"\n[bold]the load check of the target[/]\n$ nsmigrate cutover check {job_id}")
    _nsmigrate("cutover", "check", str(job_id))
    report = last_check(demo.db, job_id) or {}
    if not report.get("passed"):
        _missed.append("the load check of the target did not pass: the rollout stops there")
    return bool(report.get("passed"))


def _soak() -> None:
    """Let the step before run cutover.min_step_s (the demo's: SOAK_S) with no breach, as the rails ask."""
    if not _missed:
        console.print(f"\n[dim]the step soaks cutover.min_step_s = {SOAK_S:g} s (a real rollout: 10 minutes)…[/]")
        time.sleep(SOAK_S)


def _spec(demo: DemoStack) -> Any:
    path = demo.stack.workdir / f"{JOB}.yaml"
    path.write_text(
        yaml.safe_dump(spec_of(demo.stack.pinecone.host(OLD), demo.stack.pinecone.host(NEW)), sort_keys=False)
    )
    return path


def spec_of(old_host: str, new_host: str) -> dict[str, Any]:
    """The demo job's spec: the index at ``old_host`` copied to the one at ``new_host``, cleaned up on request."""
    return {
        "name": JOB,
        "description": "nsmigrate demo cutover: the seed data set to a new index while the application writes",
        "source": {"kind": "pinecone", "host": old_host},
        "target": {"kind": "pinecone", "host": new_host},
        "cleanup": {"mode": "manual"},
        "verify": {"count_timeout_s": COUNT_TIMEOUT_S},
        "cutover": LOAD_CHECK,
    }


#: The steps that did not answer as the runbook says, for the demo's last line.
_missed: list[str] = []


def _nsmigrate(*args: str) -> int:
    """``nsmigrate ARGS`` on the app the command line runs, in this process; its exit code."""
    try:
        code = nsmigrate_app(list(args), prog_name="nsmigrate", standalone_mode=False)
    except click.ClickException as e:  # a usage error: shown as the command line shows it
        e.show()
        return e.exit_code
    except click.Abort:
        return 1
    return int(code or 0)


def _step(what: str, expected: int, *args: str) -> bool:
    """Run ``nsmigrate ARGS`` as a user would; whether it exited ``expected``. Skipped once a step went wrong: the
    runbook's next steps (a cleanup among them) assume the ones before them answered as it says."""
    if _missed:
        console.print(f"\n[yellow]skipped[/] {what}: `nsmigrate {' '.join(args)}` (an earlier step went wrong)")
        return False
    console.print(f"\n[bold]{what}[/]\n$ nsmigrate {' '.join(args)}")
    code = _nsmigrate(*args)
    if code != expected:
        console.print(f"[red]exit code {code}, expected {expected}[/]")
        _missed.append(f"`nsmigrate {' '.join(args)}` exited {code}, expected {expected}")
    return code == expected


class App:
    """The application: a thread dual-writing through ``DualWriteIndex`` and a ledger of what it wrote."""

    def __init__(self, demo: DemoStack, ledger: Ledger, dimension: int) -> None:
        self.demo, self.ledger, self.dimension = demo, ledger, dimension
        self.writes, self.counts, self.failures = 0, {"upsert": 0, "update": 0, "delete": 0}, list[str]()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.index: DualWriteIndex | None = None

    def start(self, job_id: int) -> None:
        old, new = self.demo.index(OLD), self.demo.index(NEW)
        _step(
            "the cut-over published for the application (no job table on its side)",
            0,
            "cutover",
            "publish",
            str(job_id),
        )
        self.index = DualWriteIndex(
            old=old, new=new, job_id=job_id, redis_url=self.demo.settings.redis_url, max_age_s=APP_CACHE_S
        )
        self._thread = threading.Thread(target=self._write, name="dual-writing app", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _write(self) -> None:
        assert self.index is not None
        rng = np.random.default_rng(30)
        namespaces = sorted(self.ledger)
        while not self._stop.is_set() and self.writes < MAX_WRITES:
            ns = namespaces[self.writes % len(namespaces)]
            kind = ("upsert", "update", "delete")[self.writes % 3]
            try:
                self._one(kind, ns, rng)
            except Exception as e:  # the old index refused: the application's own error
                self.failures.append(f"{kind} in {ns!r}: {e}")
            self.writes += 1

    def _one(self, kind: str, ns: str, rng: np.random.Generator) -> None:
        assert self.index is not None
        records = self.ledger[ns]
        if kind != "upsert" and not records:
            kind = "upsert"  # nothing left to change in this namespace
        elif kind == "delete" and len(records) == 1:
            # Never empties a namespace: one whose copy was made and whose source then lists no ids is a vanished
            # source, which `sync --propagate-deletes` refuses by design (a seed namespace holds a single vector).
            kind = "update"
        if kind == "delete":
            id_ = sorted(records)[int(rng.integers(len(records)))]
            self.index.delete(ids=[id_], namespace=ns)
            del records[id_]
        else:
            existing = sorted(records) if kind == "update" else []
            id_ = existing[int(rng.integers(len(existing)))] if existing else f"app-{self.writes}"
            values = rng.random(self.dimension).astype(np.float32)
            metadata = {"written_by": "app", "write": self.writes}
            self.index.upsert(vectors=[(id_, values.tolist(), metadata)], namespace=ns)
            records[id_] = (values, metadata)
        self.counts[kind] += 1

    def follows(self, percent: int) -> bool:
        """Whether the application's reads reach the namespaces ``percent`` selects, answered by the new index
        (only the copy carries ``migrated_from``), within ``FOLLOW_TIMEOUT_S``."""
        assert self.index is not None
        if _missed:  # the step that should have moved them went wrong
            return False
        expected = {ns for ns in self.ledger if reads_new(ns, percent)}
        probes = {ns: next(iter(records.values()))[0].tolist() for ns, records in self.ledger.items() if records}
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while True:  # the application's cache of the rollout is at most max_age_s old
            answered_new = {ns for ns, vector in probes.items() if self._answered_by_new(ns, vector)}
            ok = answered_new == expected & set(probes)
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        console.print(
            f"the application's reads: {len(answered_new)} of {len(probes)} namespaces answered by {NEW} "
            f"(expected {len(expected & set(probes))})" + ("" if ok else " [red]— they did not follow[/]")
        )
        if not ok:
            _missed.append(f"the application's reads did not follow {percent} %")
        return ok

    def _answered_by_new(self, ns: str, vector: list[float]) -> bool:
        assert self.index is not None
        matches = self.index.query(vector=vector, top_k=1, namespace=ns, include_metadata=True).matches
        return bool(matches) and "migrated_from" in (matches[0].metadata or {})


def _nothing_lost(demo: DemoStack, ledger: Ledger) -> bool:
    """The new index holds exactly what the application's ledger says: read from the data plane."""
    held = demo.stack.pinecone.snapshot(NEW)
    lost, extra, differ = 0, 0, 0
    for ns, records in ledger.items():
        have = held.get(ns, {})
        lost += len(set(records) - set(have))
        extra += len(set(have) - set(records))
        for id_ in set(records) & set(have):
            values, metadata = records[id_]
            got_values, got_metadata = have[id_]
            same_metadata = all((got_metadata or {}).get(k) == v for k, v in metadata.items())
            differ += not (np.allclose(got_values, values, atol=1e-6) and same_metadata)
    total = sum(len(r) for r in ledger.values())
    ok = lost == extra == differ == 0
    console.print(
        f"\n[bold]independent check[/] of {NEW} against the application's ledger ({total} vectors): {lost} lost, "
        f"{extra} that should be gone, {differ} different" + (" — no write was lost" if ok else " [red]FAILED[/]")
    )
    return ok

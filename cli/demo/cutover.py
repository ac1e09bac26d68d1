"""``nsmigrate demo cutover``: moving the application's reads from a verified copy, twice — inside one index by
namespace alias (``cli.demo.cutover_aliases``: the seeds' refactor into ``creator_{c}_twin_{t}`` namespaces), and
across two indexes by ``DualWriteIndex`` (below) — each on its rails (a step refused before a check and one out of
order, a check, a short soak), with a breach injected on the target that the watch rolls back by itself, then a clean
rollout to 100 %. Every command runs on the same command line app a user runs, in this process
(``cli.demo.runbook``).

Across indexes, the seed data set is in index ``app-old``; the job copies it to ``app-new``. An application thread
writes through ``DualWriteIndex`` (upserts of new ids, updates, deletes) during the copy, following the cut-over the
fleet publishes in Redis (no job table on its side), and keeps its own ledger of what it wrote; then the runbook: sync,
check, steps, the breach at 25 % and the roll back to 5 % (the application's reads follow back), the rollout to
100 %, a gated ``cleanup``. The demo exits 0 only when every command answered as the runbook says, every search
through an alias answered the same before and after its repoint, and the new index holds exactly the application's
ledger: every vector it wrote, none it deleted (read from the data plane, not from the job's verification).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import yaml

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.cutover_aliases import INDEX as ALIAS_INDEX
from nsmigrate.cli.demo.cutover_aliases import run_aliases
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, demo_stack
from nsmigrate.cli.demo.runbook import BREACH_LATENCY_MS, LIMITS, Runbook
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS, reads_new
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.seed import seed_dataset

OLD, NEW, JOB = "app-old", "app-new", "cutover-demo"
#: The application's writes during the copy, at most (it stops when the copy settles).
MAX_WRITES = 300
#: How long the demo waits for the application's reads to follow a `cutover set` (its cache: APP_CACHE_S).
FOLLOW_TIMEOUT_S = 15
#: How old the application's copy of the rollout may be (DualWriteIndex's max_age_s): how soon its reads follow.
APP_CACHE_S = 0.25
#: How long verification polls a namespace's count that is stable but differs from the source's (default 60 s).
#: The wait is for Pinecone's eventually consistent counts; the local data plane's are exact at once. Here the
#: application writes on through the verification: a namespace it wrote to between the verification's listing and
#: its count reading holds a count that will never agree, and waited the whole minute for it.
COUNT_TIMEOUT_S = 2
#: The step the breach is injected at, and the step the watch rolls it back to.
BREACHED, FALLBACK = 25, 5
#: The share of the application's reads its DualWriteIndex also sends to the other side, to compare.
COMPARE_SHARE = 0.5
#: The reading application's pause between two reads.
READ_PAUSE_S = 0.05

Ledger = dict[str, dict[str, tuple[np.ndarray, dict[str, Any]]]]


def run(options: DemoOptions) -> int:
    seed = seed_dataset()
    console.print("[bold]nsmigrate demo cutover[/]: inside one index by alias, then across indexes by DualWriteIndex")
    indexes = [IndexSpec(name, dimension=seed.dimension) for name in (ALIAS_INDEX, OLD, NEW)]
    with demo_stack(indexes, options) as demo:
        book = Runbook()
        run_aliases(demo, book, seed)
        if book.ok:
            _across_indexes(demo, book, seed)
        return book.last_line("the cut-over, by alias and across indexes")


def _across_indexes(demo: DemoStack, book: Runbook, seed: Any) -> None:
    console.print(f"\n[bold]2. across indexes, by DualWriteIndex[/]: {OLD} → {NEW} while an application dual-writes")
    seed.load_into(demo.stack.pinecone, OLD)
    ledger: Ledger = {
        ns: {id_: (values, dict(meta or {})) for id_, (values, meta) in records.items()}
        for ns, records in demo.stack.pinecone.snapshot(OLD).items()
    }
    app = App(demo, book, ledger, seed.dimension)
    outcome = demo.run_job(_spec(demo), on_launch=app.start)
    app.stop()
    console.print(
        f"the application wrote {app.writes} times during the copy ({app.counts}); "
        f"{len(app.failures)} failed on the old index"
    )
    if app.failures:
        book.miss(f"the application's writes failed: {app.failures[:3]}")
        return
    # Writes during the copy fail its verification (ids missing, contents changed): the sync repairs them.
    job_id, job = outcome.job_id, str(outcome.job_id)
    book.step("the final sync copies what the copy missed", 0, "sync", job, "--propagate-deletes", "--yes", "--wait")
    reads_new_at = ("cutover", "set", job, "--reads", "new", "--percent")
    book.step("the rails: no step without a passing load check", 1, *reads_new_at, "5")
    book.check(demo.db, job_id)
    book.step("the rails: a first step of 25 % is refused (5 % comes first)", 1, *reads_new_at, "25")
    app.read_on()
    for percent in ROLLOUT_STEPS[1:]:
        book.step(f"{percent} % of reads to the new index", 0, *reads_new_at, str(percent))
        app.follows(percent)
        if percent == ROLLOUT_STEPS[1]:
            book.step("the rails: the next step waits cutover.min_step_s", 1, *reads_new_at, "25")
        if percent == BREACHED and book.ok:
            _breach(demo, book, app, job)
            book.soak(job_id)  # the breach restarted the soak of the step reads went back to
            book.step(f"{percent} % again, once the target is healthy", 0, *reads_new_at, str(percent))
            app.follows(percent)
        if percent == 50:
            book.step("cleanup is refused while reads are not all new", 1, "cleanup", job, "--yes")
        book.soak(job_id)
    app.close()
    book.step("cleanup is refused: no sync since the cut-over began", 1, "cleanup", job, "--yes")
    book.step("a sync after the cut-over began", 0, "sync", job, "--wait")
    book.step("cleanup is refused: reads not new for decommission_after_s", 1, "cleanup", job, "--yes")
    book.step("cleanup, not waiting the 7 days", 0, "cleanup", job, "--yes", "--decommission-now")
    book.step("the job's status: the rollout and what the reads saw", 0, "status", job)
    if app.failures:
        book.miss(f"the application's reads failed: {app.failures[:3]}")
    if book.ok:
        _nothing_lost(demo, book, ledger)


def _breach(demo: DemoStack, book: Runbook, app: App, job: str) -> None:
    """The new index serves every read slowly: the watch judges the application's reads with its own, moves reads
    back to the last good step and publishes it; the application's reads follow within its cache's age."""
    console.print(f"\n[bold]a breach on the target[/]: {NEW} answers {BREACH_LATENCY_MS} ms late")
    demo.stack.pinecone.set_faults(NEW, Faults(latency_ms=BREACH_LATENCY_MS))
    try:
        watch = ("cutover", "watch", job, "--duration", "120")
        book.step(f"the watch sees it and moves reads back to {FALLBACK} %", 1, *watch)
    finally:
        demo.stack.pinecone.set_faults(NEW, Faults())
    app.follows(FALLBACK)


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
        "cutover": LIMITS,
    }


class App:
    """The application: a thread dual-writing through ``DualWriteIndex`` and a ledger of what it wrote; then, through
    the rollout, a thread reading its namespaces, whose reads the wrapper measures and the watch judges."""

    def __init__(self, demo: DemoStack, book: Runbook, ledger: Ledger, dimension: int) -> None:
        self.demo, self.book, self.ledger, self.dimension = demo, book, ledger, dimension
        self.writes, self.counts, self.failures = 0, {"upsert": 0, "update": 0, "delete": 0}, list[str]()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.index: DualWriteIndex | None = None

    def start(self, job_id: int) -> None:
        old, new = self.demo.index(OLD), self.demo.index(NEW)
        self.book.step("the cut-over published for the application (no job table on its side)", 0, *_publish(job_id))
        self.index = DualWriteIndex(
            old=old,
            new=new,
            job_id=job_id,
            redis_url=self.demo.settings.redis_url,
            max_age_s=APP_CACHE_S,
            compare_share=COMPARE_SHARE,
        )
        self._thread = threading.Thread(target=self._write, name="dual-writing app", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read_on(self) -> None:
        """Read the namespaces through the wrapper from now on, one after the other, until ``close``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._read, name="reading app", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.index is not None
        probes = [(ns, next(iter(records.values()))[0].tolist()) for ns, records in self.ledger.items() if records]
        n = 0
        while not self._stop.wait(READ_PAUSE_S):  # an application's pace, not a wait for a condition
            ns, vector = probes[n % len(probes)]
            n += 1
            try:
                self.index.query(vector=vector, top_k=3, namespace=ns)
            except Exception as e:  # the watch judges these; the demo goes on
                self.failures.append(f"read of {ns!r}: {e}")

    def close(self) -> None:
        self.stop()
        if self.index is not None:
            self.index.close()  # its last measured reads sent

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
        if not self.book.ok:  # the step that should have moved them went wrong
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
        return ok or self.book.miss(f"the application's reads did not follow {percent} %")

    def _answered_by_new(self, ns: str, vector: list[float]) -> bool:
        assert self.index is not None
        matches = self.index.query(vector=vector, top_k=1, namespace=ns, include_metadata=True).matches
        return bool(matches) and "migrated_from" in (matches[0].metadata or {})


def _publish(job_id: int) -> tuple[str, ...]:
    return ("cutover", "publish", str(job_id))


def _nothing_lost(demo: DemoStack, book: Runbook, ledger: Ledger) -> bool:
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
    return ok or book.miss("the new index does not hold what the application wrote")

"""The cut-over demo's runbook, shared by its two ways (``cli.demo.cutover``: across indexes, ``cli.demo.
cutover_aliases``: inside one index): each command run as a user runs it, on the same command line app, in this
process, and whether it answered as the runbook says; the limits both jobs' specs carry; the breach injected on the
target.

A step that did not answer as expected is kept (``missed``), and every step after it is skipped: the runbook's next
steps (a cleanup among them) assume the ones before answered as it says.
"""

from __future__ import annotations

import click

from nsmigrate.cli.console import console
from nsmigrate.cli.main import app as nsmigrate_app
from nsmigrate.orchestrator.cutover.rollout import last_check
from nsmigrate.orchestrator.jobs.database import Database

#: Each step soaks this long (the spec's cutover.min_step_s; a real rollout: 10 minutes), watched.
SOAK_S = 2.0
#: The breach injected on the target: every read of it this much slower than cutover.p95_ms allows.
BREACH_LATENCY_MS = 2500
#: The limits of both demo jobs. The local data plane shares a busy machine with the demo's workers, so the load check
#: is light (10 QPS for 2 s) and its latency limits far above a real index's (defaults: P95 100 ms, P99 200 ms), yet
#: below the injected breach, which a watch judges over a window holding at least five of its reads.
LIMITS = {
    "qps": 10,
    "duration_s": 2,
    "p95_ms": 1500,
    "p99_ms": 3000,
    "cold_query_ms": 20_000,
    "min_step_s": SOAK_S,
    "breach_window_s": 20,
}


class Runbook:
    """The commands a demo plays, in order, and the ones that did not answer as expected."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.missed

    def miss(self, what: str) -> bool:
        """Keep ``what`` went wrong (the demo's last line names it); False, for ``ok &= …``."""
        console.print(f"[red]{what}[/]")
        self.missed.append(what)
        return False

    def step(self, what: str, expected: int, *args: str) -> bool:
        """Run ``nsmigrate ARGS`` as a user would; whether it exited ``expected`` (skipped once a step went wrong)."""
        if self.missed:
            console.print(f"\n[yellow]skipped[/] {what}: `nsmigrate {' '.join(args)}` (an earlier step went wrong)")
            return False
        console.print(f"\n[bold]{what}[/]\n$ nsmigrate {' '.join(args)}")
        code = nsmigrate(*args)
        if code != expected:
            return self.miss(f"`nsmigrate {' '.join(args)}` exited {code}, expected {expected}")
        return True

    def check(self, db: Database, job_id: int) -> bool:
        """`nsmigrate cutover check`: it must pass, as every step toward the target needs a passing check."""
        self.step("the load check of the target (every namespace's first query, then 10 QPS)", 0, *_check(job_id))
        if self.missed:
            return False
        report = last_check(db, job_id) or {}
        return bool(report.get("passed")) or self.miss("the load check of the target did not pass")

    def soak(self, job_id: int) -> bool:
        """A short soak: `cutover watch` for cutover.min_step_s (the demo's SOAK_S), as the rails ask of each step."""
        return self.step(
            f"the step soaks cutover.min_step_s = {SOAK_S:g} s, watched (a real rollout: 10 minutes)",
            0,
            "cutover",
            "watch",
            str(job_id),
            "--duration",
            f"{SOAK_S:g}",
        )

    def last_line(self, what: str) -> int:
        console.print(f"\n[bold green]{what}: done[/]" if self.ok else f"\n[bold red]{what} failed[/]: {self.missed}")
        return 0 if self.ok else 1


def _check(job_id: int) -> tuple[str, ...]:
    return ("cutover", "check", str(job_id))


def nsmigrate(*args: str) -> int:
    """``nsmigrate ARGS`` on the app the command line runs, in this process; its exit code."""
    try:
        code = nsmigrate_app(list(args), prog_name="nsmigrate", standalone_mode=False)
    except click.ClickException as e:  # a usage error: shown as the command line shows it
        e.show()
        return e.exit_code
    except click.Abort:
        return 1
    return int(code or 0)

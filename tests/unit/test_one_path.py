"""One path per job, read from the product's source: a migrate job is written and its unfinished work taken up in
exactly one place each, and every way of starting one goes through ``launch.start_or_resume``."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("cli", "orchestrator", "workers")


def _callers() -> dict[str, set[str]]:
    """Called name → the functions calling it, as ``path::function`` (``path::`` at module level)."""
    found: dict[str, set[str]] = defaultdict(set)
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            where = str(path.relative_to(REPO))
            _visit(ast.parse(path.read_text()), where, "", found)
    return found


def _visit(node: ast.AST, where: str, function: str, found: dict[str, set[str]]) -> None:
    for child in ast.iter_child_nodes(node):
        inner = function
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not function:
            inner = child.name  # a nested function counts as its enclosing one
        if isinstance(child, ast.Call):
            called = child.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
            if name is not None:
                found[name].add(f"{where}::{function}")
        _visit(child, where, inner, found)


CALLERS = _callers()


def test_only_start_or_resume_writes_a_migrate_job_or_chooses_between_a_new_one_and_the_unfinished_one() -> None:
    assert CALLERS["create_job"] == {"orchestrator/launch.py::launch"}
    # ``Starting.start``, which ``start_or_resume`` drives: the job is written once the job-wide checks passed
    assert CALLERS["launch"] == {"orchestrator/launch.py::start"}
    assert CALLERS["Starting"] == {"orchestrator/launch.py::start_or_resume"}
    assert CALLERS["latest_unfinished_job"] == {"orchestrator/launch.py::start_or_resume"}
    # Runs of namespaces made after a job's plan are written into it once planned with the same checks.
    assert CALLERS["add_runs"] == {"orchestrator/late_runs.py::start"}
    assert CALLERS["prepare_and_start"] == {"orchestrator/late_runs.py::add_late_namespaces"}


def test_the_command_the_fleets_plan_server_and_the_demos_start_a_job_through_the_same_function() -> None:
    assert CALLERS["start_or_resume"] == {
        "cli/run.py::_run_here",
        "workers/fleet/plan_server.py::answer",
        "cli/demo/harness.py::run_job",
    }


def test_unfinished_work_is_sent_again_from_one_module() -> None:
    """`nsmigrate resume`, a `run` of an unfinished job and the fleet's sweep for stalled runs all go through
    ``recovery.resume``; nothing else turns what the job table says is left into messages."""
    assert CALLERS["resume"] == {
        "cli/actions.py::resume",
        "orchestrator/launch.py::start_or_resume",
        "orchestrator/recovery.py::resend_stalled",
    }
    assert CALLERS["unfinished_work"] == {"orchestrator/recovery.py::resume"}
    assert CALLERS["claim_stalled_runs"] == {"orchestrator/recovery.py::resend_stalled"}

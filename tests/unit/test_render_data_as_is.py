"""What the CLI draws shows data as it is: ids in error messages (``[job_id=3 …]``), brackets and colons in
namespace names are not read as rich markup or emoji codes."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from nsmigrate.cli import render
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.planning.summary import PlanSummary
from tests.unit.test_watch_polling import one_run_status

ERROR = "StoreError: refused [job_id=3 namespace=a:smile:b] — run again"


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=400, color_system=None))
    return out


def test_a_runs_error_keeps_its_ids_in_the_status_table(drawn: io.StringIO) -> None:
    status = one_run_status(RunState.LIST_FAILED)
    run = replace(status.runs[0], source_namespace="[bold]a:smile:", last_error=ERROR)
    render.print_summary(replace(status, runs=(run,)))
    text = drawn.getvalue()
    assert "[job_id=3 namespace=a:smile:b]" in text
    assert "[bold]a:smile:" in text


def test_a_plan_shows_namespaces_lines_and_warnings_as_they_are(drawn: io.StringIO) -> None:
    render.print_plan(
        PlanSummary(
            title="plan",
            columns=["source namespace", "target namespace", "vectors", "batches"],
            rows=[["[red]x", "y:smile:", "1", "1"]],
            lines=["routes of [b] (1 vectors): public 1"],
            warnings=["namespace [x] is empty :("],
        )
    )
    text = drawn.getvalue()
    for shown in ("[red]x", "y:smile:", "routes of [b] (1 vectors)", "warning: namespace [x] is empty :("):
        assert shown in text

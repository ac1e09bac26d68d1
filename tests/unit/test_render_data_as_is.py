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
from nsmigrate.orchestrator.snapshot import BatchCounts
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


def test_a_run_with_failed_batches_shows_their_error_not_its_older_verdict(drawn: io.StringIO) -> None:
    status = one_run_status(RunState.COPYING)
    verdict = "2 ids missing in the target"
    run = replace(status.runs[0], failed=8, batches=BatchCounts(done=3, failed=1), last_error=ERROR)
    render.print_summary(replace(status, runs=(replace(run, verification=verdict),)))
    assert ERROR in drawn.getvalue() and verdict not in drawn.getvalue()

    drawn.seek(0), drawn.truncate()
    repaired = replace(run, failed=0, batches=BatchCounts(done=4), verification=verdict)
    render.print_summary(replace(status, runs=(repaired,)))
    assert verdict in drawn.getvalue() and ERROR not in drawn.getvalue()


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


def _plan_of(namespaces: int) -> PlanSummary:
    return PlanSummary(
        title="plan",
        columns=["source namespace", "target namespace", "vectors", "batches"],
        rows=[[f"ns{n:04}", f"creator_{n}", "3", "1"] for n in range(namespaces)],
        lines=[f"{namespaces} namespaces"],
    )


def test_runs_plan_lists_the_first_namespaces_and_says_where_the_rest_are(drawn: io.StringIO) -> None:
    render.print_plan(_plan_of(render.SUMMARY_ROWS + 25), more_hint="`nsmigrate status 7 --all` lists every one")
    text = drawn.getvalue()
    shown = [line for line in text.splitlines() if "│ ns" in line]
    assert len(shown) == render.SUMMARY_ROWS
    assert "ns0000" in shown[0] and f"ns{render.SUMMARY_ROWS - 1:04}" in shown[-1]
    assert "25 more namespaces (`nsmigrate status 7 --all` lists every one)" in text
    assert f"{render.SUMMARY_ROWS + 25} namespaces" in text  # the plan's lines all stay


def test_a_plan_shows_every_namespace_when_it_fits_or_when_asked(drawn: io.StringIO) -> None:
    render.print_plan(_plan_of(render.SUMMARY_ROWS), more_hint="hint")
    render.print_plan(_plan_of(render.SUMMARY_ROWS + 25))  # `plan`: every row
    text = drawn.getvalue()
    assert len([line for line in text.splitlines() if "│ ns" in line]) == 2 * render.SUMMARY_ROWS + 25
    assert "more namespaces" not in text

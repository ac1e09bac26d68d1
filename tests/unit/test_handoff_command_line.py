"""Which command lines ``cli.handoff.read_run`` hands to the fleet before the command line loads: only a ``run SPEC``
that typer would accept as it is; everything else is left to typer."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsmigrate.cli.handoff import read_run


def test_a_plain_run_is_read_with_its_flags_and_urls() -> None:
    read = read_run(["run", "job.yaml", "--wait", "--new", "--redis-url", "redis://r:6379/0", "--json"])

    assert read == (Path("job.yaml"), {"wait": True, "new": True, "json": True}, {"--redis-url": "redis://r:6379/0"})


def test_urls_are_read_in_both_spellings() -> None:
    read = read_run(["run", "--database-url=postgresql://h/db", "job.yaml"])

    assert read is not None and read[2] == {"--database-url": "postgresql://h/db"}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["plan", "job.yaml"],  # only `run`
        ["run"],  # no spec: typer says so
        ["run", "job.yaml", "--help"],
        ["run", "job.yaml", "--plan-here"],  # the command plans it itself
        ["run", "job.yaml", "--new", "--resume"],  # refused by `run`: nothing may be sent
        ["run", "a.yaml", "b.yaml"],
        ["run", "job.yaml", "--redis-url"],  # a value missing
        ["run", "job.yaml", "--redis-url", "--wait"],
        ["run", "--", "job.yaml"],
        ["run", "job.yaml", "--wiat"],  # a typo typer reports
    ],
)
def test_anything_else_is_left_to_the_command_line(argv: list[str]) -> None:
    assert read_run(argv) is None

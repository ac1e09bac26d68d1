"""The ``nsmigrate`` command's entry point: hands a plain ``run SPEC`` to the fleet's planner first
(``cli.handoff.send_early``), then loads the command line (``cli.main``) and runs it as always."""

from __future__ import annotations

import sys


def main() -> None:
    from nsmigrate.cli import handoff

    handoff.send_early(sys.argv[1:])
    try:
        from nsmigrate.cli.main import main as command_line

        command_line()
    except BaseException:
        # The command stopped before it waited for the planner's answer (an interrupt, a crash while loading): a
        # spec it pushed early is taken back, so no job starts that the command never reported.
        if not handoff.withdraw_untaken():
            print(
                "nsmigrate: the fleet's planner already has the spec: its job may start; see `nsmigrate jobs`",
                file=sys.stderr,
            )
        raise

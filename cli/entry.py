"""The ``nsmigrate`` command's entry point: hands a plain ``run SPEC`` to the fleet's planner first
(``cli.handoff.send_early``), then loads the command line (``cli.main``) and runs it as always, and ends the process
at once when it is done (``exit_at_once``)."""

from __future__ import annotations

import atexit
import os
import sys
import threading


def main() -> None:
    from nsmigrate.cli import handoff

    handoff.send_early(sys.argv[1:])
    try:
        from nsmigrate.cli.main import main as command_line

        command_line()
    except BaseException as e:
        # The command stopped before it waited for the planner's answer (an interrupt, a crash while loading): a
        # spec it pushed early is taken back, so no job starts that the command never reported.
        if not handoff.withdraw_untaken():
            print(
                "nsmigrate: the fleet's planner already has the spec: its job may start; see `nsmigrate jobs`",
                file=sys.stderr,
            )
        if isinstance(e, SystemExit):  # the command line always ends so, its exit code given
            exit_at_once(e.code)
        raise


def exit_at_once(code: object) -> None:
    """End the process with ``code`` now: its output flushed and its ``atexit`` handlers run (logging's, temporary
    directories'), but not the interpreter's teardown, which frees every module one by one (rich, typer, psycopg,
    SQLAlchemy…): ~50 ms, 0.1 s on a busy machine, after a waited-for job had ended. Returns, leaving the exit to
    the interpreter, when the code is a message to print or another thread is still to be waited for."""
    if not (code is None or isinstance(code, int)):
        return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a pipe closed early: the interpreter ends as it always did
    os._exit(code or 0)

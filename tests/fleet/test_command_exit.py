"""The ``nsmigrate`` entry point ends the process at once when the command is done (``cli.entry.exit_at_once``): its
output is all there, its exit code kept and its ``atexit`` handlers run, but the interpreter's teardown is skipped; a
thread still to be waited for keeps the usual exit.

Each case runs the real entry point in a child interpreter that leaves two marks: one from an ``atexit`` handler (must
be written), one from an object freed only by the interpreter's teardown (written only when the teardown ran)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import atexit, os, sys, threading, time
    marks = sys.argv[1]

    def mark(what):
        with open(marks, "a") as f:
            f.write(what + "\\n")

    class FreedAtTeardown:  # writes through what it holds: the teardown may have emptied the modules already
        def __init__(self):
            self.fd, self.write = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT), os.write

        def __del__(self):
            self.write(self.fd, b"teardown\\n")

    kept = FreedAtTeardown()
    atexit.register(mark, "atexit")
    if sys.argv[2] == "thread":
        threading.Thread(target=time.sleep, args=(3,)).start()  # still running when the command ends
    from nsmigrate.cli.entry import main
    sys.argv = ["nsmigrate", *sys.argv[3:]]
    main()
    """
)


def run_probe(tmp_path: Path, thread: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    marks = tmp_path / "marks"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(marks), thread, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return done, marks.read_text().splitlines() if marks.exists() else []


def test_a_command_that_ends_exits_with_its_output_and_handlers_but_no_teardown(tmp_path: Path) -> None:
    done, marks = run_probe(tmp_path, "no-thread", "--help")

    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and done.stdout.rstrip().endswith("╯")  # all of it, through a pipe
    assert marks == ["atexit"]


def test_a_failing_command_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    done, marks = run_probe(tmp_path, "no-thread", "status", "--no-such-option")

    assert done.returncode == 2
    assert "No such option" in done.stderr
    assert marks == ["atexit"]


def test_a_thread_still_running_is_waited_for_as_usual(tmp_path: Path) -> None:
    done, marks = run_probe(tmp_path, "thread", "--help")

    assert done.returncode == 0, done.stderr
    assert marks[0] == "atexit" and "teardown" in marks  # the interpreter's own exit, teardown included

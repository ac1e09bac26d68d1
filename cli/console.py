"""The two consoles the CLI prints to, its one error format, and Ctrl-C. Imports nothing of the product, so the root
command can report an error without loading the job table."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

console = Console()
# soft_wrap: an error stays one line (no wrapping at 80 columns in pipes and logs).
err_console = Console(stderr=True, soft_wrap=True)


#: A command's exit code when Ctrl-C (SIGINT) stopped it: what a shell reports for a process SIGINT ended, 128 + 2.
EXIT_INTERRUPTED = 130


def print_interrupted(message: str) -> None:
    """``interrupted: <message>`` on stderr, as one line: what Ctrl-C stopped and what goes on without it."""
    err_console.print(f"[bold yellow]interrupted:[/] {escape(message)}")


@contextmanager
def ctrl_c_asks_to_stop() -> Iterator[Callable[[], bool]]:
    """While open, the first Ctrl-C (SIGINT) only asks to stop: the function yielded says whether it was pressed, and
    the step under way finishes (a chunk of deletes done and counted) before the caller stops. A second Ctrl-C
    interrupts at once, as usual. Outside the main thread (no signal handler there) nothing is ever asked."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def ask(_signum: int, _frame: object) -> None:
        asked.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def human_output_on_stderr(asked: bool = True) -> Iterator[None]:
    """While open (when ``asked``), what the command draws for a person (tables, progress, notes) goes to stderr, so
    that stdout holds only the JSON document a ``--json`` command prints (``print_json``)."""
    if not asked:
        yield
        return
    console.stderr = True
    try:
        yield
    finally:
        console.stderr = False


def print_json(document: object) -> None:
    """One JSON document on stdout (``--json``): UTF-8, indented, keys as the manual's "JSON output" lists them."""
    import orjson  # only for the commands that print JSON

    sys.stdout.flush()
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, as one line."""
    # escape(): messages hold "[job_id=3]"-style ids and lists, which rich would otherwise read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}")

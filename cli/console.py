"""The two consoles the CLI prints to, and its one error format. Imports nothing of the product, so the root command
can report an error without loading the job table."""

from __future__ import annotations

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


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, as one line."""
    # escape(): messages hold "[job_id=3]"-style ids and lists, which rich would otherwise read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}")

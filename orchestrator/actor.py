"""Who is acting, as the audit log records it. Its own module: a command names its user before it loads the job table
(``orchestrator.messaging.submissions`` carries it to the fleet's planner)."""

from __future__ import annotations

import getpass
import socket


def default_actor() -> str:
    """user@host of this process (a worker passes its own hostname)."""
    try:
        user = getpass.getuser()
    except OSError:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"

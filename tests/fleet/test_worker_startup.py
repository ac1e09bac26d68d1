"""What a worker's start costs: `nsmigrate worker` builds Celery's worker object itself, without Celery's command
line (which imports every celery subcommand and the plugins registered with it: Flower, Tornado, prompt_toolkit),
and a prefork pool's children share what the main process loaded (``gc.freeze()`` before the pool starts)."""

from __future__ import annotations

import socket
from pathlib import Path

from nsmigrate_sandbox.stack import Stack, wait_for_workers

#: Modules that only Celery's command line loads into a worker.
COMMAND_LINE_MODULES = {"celery.bin.celery", "click_repl", "click_didyoumean", "prompt_toolkit"}


def imported_modules(log: Path) -> set[str]:
    """The modules a process imported, from its ``PYTHONPROFILEIMPORTTIME`` lines (an import statement's; Python does
    not log a module loaded through ``importlib.import_module`` itself, only what that module's statements import)."""
    return {line.rsplit("|", 1)[-1].strip() for line in log.read_text().splitlines() if line.startswith("import time:")}


def test_a_worker_answers_under_its_name_without_loading_celerys_command_line(stack: Stack) -> None:
    log = stack.workdir / "worker-lean.log"
    stack.start_worker("copy", 1, name="lean", log_path=log, PYTHONPROFILEIMPORTTIME="1")

    assert wait_for_workers(stack.redis_url, 1) == [f"lean@{socket.gethostname()}"]
    imported = imported_modules(log)
    # The log holds the whole start: the pool's and the consumer's modules, loaded as the worker object starts.
    assert {"billiard.pool", "celery.worker.consumer.consumer", "nsmigrate.workers.fleet.app"} <= imported
    assert not COMMAND_LINE_MODULES & imported

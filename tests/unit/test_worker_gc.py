"""What a process loaded stays out of its garbage collections: a command's modules load with the collector paused
and are frozen (``cli.main``), and a worker freezes what it loaded right before its pool starts
(``workers.fleet.app``): a prefork child's garbage collections then never touch, and so never copy, the pages it
shares with the main process."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import typer
from celery.signals import celeryd_after_setup

import nsmigrate.cli.main
import nsmigrate.workers.fleet.app


def test_the_objects_loaded_before_the_pool_starts_are_frozen() -> None:
    gc.unfreeze()
    try:
        celeryd_after_setup.send(sender="w@host", instance=None, conf=None)

        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_commands_module_loads_with_the_collector_paused_and_what_it_loaded_is_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collecting_while_loaded: list[bool] = []
    group = typer.Typer()

    @group.command()
    def hello() -> None:
        """A command."""

    def import_module(name: str) -> SimpleNamespace:
        collecting_while_loaded.append(gc.isenabled())
        return SimpleNamespace(app=group)

    monkeypatch.setattr(nsmigrate.cli.main.importlib, "import_module", import_module)
    gc.unfreeze()
    try:
        commands = nsmigrate.cli.main._commands_of("tests.a_command_group_loaded_once")

        assert list(commands) == ["hello"]
        assert collecting_while_loaded == [False]
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

"""The settings: each one documented in the manual's table with its default, and each one read by the code (a
setting nothing reads would tell an operator they tuned something when they did not)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nsmigrate.orchestrator.settings import DEFAULTS, Settings

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| `NSMIGRATE_([A-Z0-9_]+)` \| `([^`]*)` \|", re.MULTILINE)


def documented() -> dict[str, str]:
    """Setting name → the default the manual's configuration table shows."""
    text = (ROOT / "docs" / "manual.md").read_text()
    return {name.lower(): default for name, default in _ROW.findall(text)}


def test_every_setting_is_in_the_manual_with_its_default_and_nothing_else_is() -> None:
    table = documented()
    assert set(table) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert table[name] == str(field.default), name


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_read_by_the_code(name: str) -> None:
    sources = [
        path
        for package in ("cli", "orchestrator", "workers")
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "orchestrator" / "settings.py"
    ]
    read = re.compile(rf"(?<!spec)\.{name}\b")  # a job spec's field of the same name is not this setting
    assert any(read.search(path.read_text()) for path in sources), f"nothing reads settings.{name}"


def test_the_environment_overrides_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSMIGRATE_IDENTITY_MARKER_TIMEOUT_S", "45")
    assert Settings().identity_marker_timeout_s == 45
    assert DEFAULTS.identity_marker_timeout_s == 20  # the defaults never read the environment

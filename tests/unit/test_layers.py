"""The layer contract in pyproject.toml (``[tool.importlinter]``), checked on every test run: cli above workers above
orchestrator, and the sandbox and the benchmarks outside the product.
import-linter sees imports inside functions too."""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter import cli  # noqa: F401  (configures import-linter's adapters)
from importlinter.application.use_cases import lint_imports

REPO = Path(__file__).resolve().parents[2]


def test_the_packages_keep_the_layer_contract(capsys: pytest.CaptureFixture[str]) -> None:
    # In process, without the command's logging set-up (it would disable every logger configured before it).
    passed = lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None, no_logo=True)

    out = capsys.readouterr().out
    assert passed, out
    assert "0 broken" in out, out

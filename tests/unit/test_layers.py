"""The layer contract in pyproject.toml (``[tool.importlinter]``), checked on every test run: cli above workers above
orchestrator, and the sandbox and the benchmarks outside the product.
import-linter sees imports inside functions too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_packages_keep_the_layer_contract() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")

    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout

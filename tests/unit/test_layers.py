"""The layer contract in pyproject.toml (``[tool.importlinter]``), checked on every test run: cli above workers above
orchestrator, and the sandbox and the benchmarks outside the product.
import-linter sees imports inside functions too.

import-linter reads a package from one folder, and nsmigrate's parts live in the repository's top-level folders
(setup.py maps them): it reads a view of the installed layout made of links to those folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from importlinter import cli  # noqa: F401  (configures import-linter's adapters)
from importlinter.application.use_cases import lint_imports

REPO = Path(__file__).resolve().parents[2]
#: The installed layout: package → its folder in the repository.
LAYOUT = {
    "nsmigrate/__init__.py": "nsmigrate/__init__.py",
    "nsmigrate/cli": "cli",
    "nsmigrate/orchestrator": "orchestrator",
    "nsmigrate/workers": "workers",
    "nsmigrate/migrations": "migrations",
    "nsmigrate_sandbox": "sandbox",
    "bench": "bench",
}


def test_the_packages_keep_the_layer_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for installed, folder in LAYOUT.items():
        link = tmp_path / installed
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO / folder)
    # import-linter finds a package as an import would: this process's own nsmigrate (from the repository) is set
    # aside for the check, and the view comes first on the path.
    for name in [n for n in sys.modules if n.split(".")[0] in ("nsmigrate", "nsmigrate_sandbox", "bench")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))

    # In process, without the command's logging set-up (it would disable every logger configured before it).
    passed = lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None, no_logo=True)

    out = capsys.readouterr().out
    assert passed, out
    assert "0 broken" in out, out

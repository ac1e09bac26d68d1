"""mypy over the product, the sandbox and the benchmarks (``make typecheck``), checked on every test run so a type
error fails CI like a lint error.

mypy reads a package from one folder: it checks the view of the installed layout that ``make typecheck`` builds
(build/typecheck, links to the folders setup.py maps), in this process, with its cache kept there between runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

from tests.unit.test_layers import LAYOUT

REPO = Path(__file__).resolve().parents[2]
VIEW = REPO / "build" / "typecheck"


def _link_view() -> None:
    """The links of ``make typecheck``'s view, made where missing (the cache beside them is kept)."""
    for installed, folder in LAYOUT.items():
        link, target = VIEW / installed, REPO / folder
        if link.is_symlink() and link.resolve() == target:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def test_mypy_finds_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _link_view()
    monkeypatch.chdir(VIEW)  # mypy finds -p packages from its working folder first
    config = ["--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(VIEW / ".mypy_cache")]
    out, err, status = api.run([*config, "-p", "nsmigrate", "-p", "nsmigrate_sandbox", "-p", "bench"])
    assert status == 0, out + err
    assert "Success: no issues found" in out, out

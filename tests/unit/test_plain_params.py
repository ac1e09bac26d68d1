"""Plain command-line values (strings, paths, flags) read without pydantic (``cli.plain_params``): the same values and
the same refusals as typer's own reading (``tests/fleet/test_cli_layout.py``: `run` loads no pydantic to hand a spec
to the fleet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.core import _TyperParameter
from typer.testing import CliRunner

from nsmigrate.cli import plain_params

assert plain_params.install()  # the pinned typer has what it replaces (tests/unit/test_pinned_versions.py too)

app = typer.Typer()
seen: dict[str, object] = {}


@app.command()
def probe(
    spec: Annotated[Path, typer.Argument()],
    must_exist: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    name: Annotated[str | None, typer.Option()] = None,
    flag: Annotated[bool, typer.Option("--flag")] = False,
    count: Annotated[int, typer.Option(min=1)] = 3,
) -> None:
    seen.update(spec=spec, must_exist=must_exist, name=name, flag=flag, count=count)


def read(argv: list[str]) -> tuple[int, str, dict[str, object]]:
    seen.clear()
    result = CliRunner().invoke(app, argv)
    return result.exit_code, result.output, dict(seen)


def read_by_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, dict[str, object]]:
    with monkeypatch.context() as patched:
        patched.setattr(_TyperParameter, "get_runtime_param", plain_params.TYPERS_OWN)
        return read(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["a/b.yaml", "--must-exist", "PRESENT", "--name", "n", "--flag", "--count", "7"],
        ["s.yaml"],
        ["s.yaml", "--must-exist", "MISSING"],
        ["s.yaml", "--must-exist", "DIRECTORY"],
        ["s.yaml", "--count", "many"],
        ["s.yaml", "--count", "0"],
        ["s.yaml", "--name", ""],
        ["--help"],
    ],
)
def test_plain_values_and_refusals_are_typers_own(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "present.yaml").write_text("x")
    places = {"PRESENT": tmp_path / "present.yaml", "MISSING": tmp_path / "nope", "DIRECTORY": tmp_path}
    argv = [str(places.get(arg, arg)) for arg in argv]

    assert read(argv) == read_by_typer(argv, monkeypatch)


def test_a_path_is_a_path_and_defaults_stay_defaults() -> None:
    code, output, values = read(["s.yaml"])

    assert code == 0, output
    assert values == {"spec": Path("s.yaml"), "must_exist": None, "name": None, "flag": False, "count": 3}
    assert isinstance(values["spec"], Path)

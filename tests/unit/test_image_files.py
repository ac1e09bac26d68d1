"""The image holds every package the wheel needs, and docker-compose.yml starts commands the CLI has.

Read from the files, without Docker (none runs on these machines): the packages ``pyproject.toml`` declares against
the Dockerfile's ``COPY`` lines, and each compose service's ``nsmigrate …`` command against the real command's
options. ``tests/fleet/test_image.py`` builds and installs that file set.
"""

from __future__ import annotations

import ast
import re

import pytest
import typer
import yaml
from typer.exceptions import TyperException

from nsmigrate.cli.main import app
from tests.image import REPO, copied_sources

# ${VAR:-default} in a compose command: Compose puts the default there when VAR is unset.
DEFAULTED = re.compile(r"^\$\{\w+:-([^}]*)\}$")


def declared_package_folders() -> set[str]:
    """The folders the wheel's one package is made of: ``nsmigrate/`` and the parts ``setup.py`` maps into it
    (``PARTS``, read without running setup.py)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    (parts,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and any(getattr(t, "id", None) == "PARTS" for t in getattr(node, "targets", [getattr(node, "target", None)]))
    ]
    return {"nsmigrate", *ast.literal_eval(parts).values()}


def test_every_package_of_the_wheel_is_copied_into_the_image() -> None:
    copied = {source.rstrip("/") for source in copied_sources()}

    missing = sorted(declared_package_folders() - copied)

    assert not missing, f"the Dockerfile must COPY {missing}: the wheel built in the image would lack them"
    assert {"pyproject.toml", "setup.py"} <= copied
    assert "sandbox" not in copied, "the image runs the product: the stand-ins are not part of it"


def compose_commands() -> list[tuple[str, list[str]]]:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    commands = []
    for name, service in services.items():
        argv = [str(part) for part in service.get("command") or []]
        if argv[:1] == ["nsmigrate"]:
            commands.append((name, [DEFAULTED.sub(r"\1", part) for part in argv[1:]]))
    return commands


@pytest.mark.parametrize(("service", "argv"), compose_commands(), ids=[name for name, _ in compose_commands()])
def test_compose_commands_parse_against_the_cli(service: str, argv: list[str]) -> None:
    root_command = typer.main.get_command(app)
    try:
        # Parses (and type-checks) every argument as running the command would, without running it.
        root = root_command.make_context("nsmigrate", list(argv))  # `--help` alone ends here, with exit code 0
        name, command, rest = root_command.resolve_command(root, list(argv))  # type: ignore[attr-defined]
        assert command is not None, f"{service}: nsmigrate has no command {name!r}"
        command.make_context(name, rest, parent=root)
    except typer.Exit as e:
        assert e.exit_code == 0, f"{service}: `nsmigrate {' '.join(argv)}` exits {e.exit_code}"
    except TyperException as e:  # typer's own click: a usage error (unknown option, bad value)
        pytest.fail(f"{service}: `nsmigrate {' '.join(argv)}` is refused by the CLI: {e}")

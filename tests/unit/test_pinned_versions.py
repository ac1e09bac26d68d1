"""Pinned installs: constraints.txt pins every dependency, bootstrap and the image install with it, Celery and
kombu are pinned to the minor whose private consumer methods the worker calls, and `nsmigrate --version` and the
``nsmigrate_build_info`` metric say what this nsmigrate is and runs on."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

from celery.worker.consumer import Consumer
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.workers.build_info import BuildInfoCollector
from nsmigrate.workers.stores.pinecone.rest import API_VERSION
from tests.image import REPO


def constraints() -> dict[str, str]:
    """constraints.txt: distribution (normalised) → its pinned version."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} pins no exact version"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = pinned
    return pins


def requirements() -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]


def test_constraints_pin_every_dependency_within_what_pyproject_allows() -> None:
    pins = constraints()
    for requirement in requirements():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
    assert not any(name.startswith("nsmigrate") for name in pins)


def test_celery_and_kombu_are_pinned_to_the_minor_whose_private_methods_the_worker_calls() -> None:
    pinned = {r.name.lower(): r.specifier for r in requirements() if r.name.lower() in ("celery", "kombu")}
    assert set(pinned) == {"celery", "kombu"}
    for name, specifier in pinned.items():
        (only,) = list(specifier)
        assert only.operator == "==" and only.version.endswith(".*"), f"{name}: {specifier} is not one minor"
        assert specifier.contains(version(name)), f"installed {name} {version(name)} is outside {specifier}"
    # the private methods workers/fleet/app.py calls: still there in the pinned minor
    assert callable(Consumer._flush_events) and callable(Consumer._cancel_connection_timer_entries)
    assert SpecifierSet(str(pinned["celery"])).contains(constraints()["celery"])


def test_bootstrap_and_the_image_install_with_the_constraints() -> None:
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*-c constraints\.txt [^\n]*-e \"\.\[dev\]\"", bootstrap)
    assert re.search(r"^COPY [^\n]*constraints\.txt", dockerfile, re.M)
    assert re.search(r"^RUN pip install -c constraints\.txt \.", dockerfile, re.M)


def test_version_prints_nsmigrate_the_pinecone_api_and_celery_and_kombu() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"nsmigrate {version('nsmigrate')}"
    assert f"Pinecone API {API_VERSION}" in result.output
    assert f"Celery {version('celery')}, kombu {version('kombu')}" in result.output


def test_build_info_is_one_series_labelled_with_the_versions() -> None:
    registry = CollectorRegistry()
    registry.register(BuildInfoCollector())

    text = generate_latest(registry).decode()

    (line,) = [x for x in text.splitlines() if x.startswith("nsmigrate_build_info{")]
    assert line.endswith(" 1.0")
    for label, value in {
        "version": version("nsmigrate"),
        "pinecone_api_version": API_VERSION,
        "celery_version": version("celery"),
        "kombu_version": version("kombu"),
    }.items():
        assert f'{label}="{value}"' in line


def test_the_pinned_typer_has_the_parameter_internals_plain_params_replaces() -> None:
    # cli.plain_params replaces typer's reading of plain values (strings, paths, flags); a typer without
    # ``_TyperParameter.get_runtime_param``, ``typer._coercion`` or ``coerce_cli_path`` keeps its own.
    from nsmigrate.cli import plain_params

    assert plain_params.install()
    assert plain_params.TYPERS_OWN is not None

"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

No Docker runs on these machines, so the compose file is validated against the Compose Specification's JSON schema
(copied into tests/fixtures/reference) and then against what a safe deployment of this project needs: a worker pool for
every queue, no secret written in the file, Flower behind basic auth on loopback only, and start-up ordered by health
checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for

from nsmigrate.cli.services import WORKER_POOLS
from nsmigrate.orchestrator.messaging.task_names import Queue

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SCHEMA_FILE = REPO / "tests/fixtures/reference/compose-spec/compose-spec.json"

# Env names that hold credentials; their value must come from the host (interpolation), never from this file.
SECRET_NAME = re.compile(r"(KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL)", re.IGNORECASE)
# ${VAR}, ${VAR:?message}, ${VAR?message} (required) or ${VAR:-} (empty default): never a literal fallback value.
INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?\?[^}]*)|:-)?\}$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]+:(?P<password>[^@]+)@", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two Compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def option(argv: list[str], name: str) -> str | None:
    for i, part in enumerate(argv):
        if part == name and i + 1 < len(argv):
            return argv[i + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SCHEMA_FILE.is_file():
        pytest.fail(
            f"the Compose Specification schema is missing at {SCHEMA_FILE}: it ships with the tests "
            "(compose-spec/compose-spec.json from github.com/compose-spec/compose-spec); restore it"
        )
    schema = json.loads(SCHEMA_FILE.read_text())
    # The schema declares draft-07 with an https URI that jsonschema does not map, hence the explicit default.
    validator_class = validator_for(schema, default=Draft7Validator)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def test_every_queue_has_a_worker_pool(services: dict[str, dict[str, Any]]) -> None:
    consumed: dict[str, list[str]] = {}
    for name, service in services.items():
        argv = command(service)
        if argv[:2] == ["nsmigrate", "worker"]:
            queues = option(argv, "--queues")
            assert queues, f"{name} runs a worker without --queues"
            assert option(argv, "--concurrency"), f"{name} runs a worker without --concurrency"
            pool = option(argv, "--pool") or "prefork"
            assert re.sub(r"^\$\{\w+:-(\w+)\}$", r"\1", pool) in WORKER_POOLS, f"{name} runs an unknown pool {pool}"
            for queue in queues.split(","):
                consumed.setdefault(queue, []).append(name)
    assert set(consumed) == {q.value for q in Queue}, consumed
    for queue in Queue:
        assert f"worker-{queue.value}" in consumed[queue.value]


def test_workers_run_the_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if command(service)[:1] == ["nsmigrate"]:
            build = service.get("build")
            assert isinstance(build, dict), f"{name} must be built from this repository"
            assert build.get("context") == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_copy_pool_scales(services: dict[str, dict[str, Any]]) -> None:
    copy = services["worker-copy"]
    assert "replicas" in (copy.get("deploy") or {}) or option(command(copy), "--concurrency")


def test_no_literal_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION.match(value), (
                    f"{name}: {key} must come from the host as ${{{key}:?...}}, not be written in the compose file"
                )
            url = URL_PASSWORD.match(value)
            if url:
                assert INTERPOLATION.match(url.group("password")), f"{name}: {key} has a literal password in its URL"


def test_required_credentials_fail_fast(services: dict[str, dict[str, Any]]) -> None:
    assert environment(services["worker-copy"])["PINECONE_API_KEY"].startswith("${PINECONE_API_KEY:?")
    assert environment(services["postgres"])["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_flower_has_basic_auth_and_binds_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert command(flower)[:2] == ["nsmigrate", "flower"]
    assert option(command(flower), "--port") == "5555"
    # The CLI binds 127.0.0.1 by default, which inside a container would make the published port unreachable.
    assert option(command(flower), "--address") == "0.0.0.0"
    env = environment(flower)
    assert env["NSMIGRATE_FLOWER_PASSWORD"].startswith("${NSMIGRATE_FLOWER_PASSWORD:?"), "Flower needs a password"
    assert env.get("NSMIGRATE_FLOWER_USER")
    ports = flower.get("ports") or []
    assert ports, "Flower's port is published"
    for port in ports:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
        assert host_ip == "127.0.0.1", f"Flower must be published on the host's loopback only, not {port!r}"


def test_only_the_monitors_are_published_and_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["flower", "grafana", "metrics", "prometheus"], "Redis, Postgres, workers stay on the network"
    for name in published:
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} must be published on the host's loopback only"


def test_start_up_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (the long form)"
        for target, rule in depends.items():
            assert rule.get("condition") == "service_healthy", f"{name} must wait for {target} to be healthy"
            assert "healthcheck" in services[target], f"{name} waits on {target}, which has no healthcheck"
        assert "healthcheck" in service or depends, f"{name} has no healthcheck and depends on nothing healthy"
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


#: How many times Compose restarts an nsmigrate process that failed: enough for a crash, not a loop.
RESTARTS_MAX = 10


def test_nsmigrate_processes_restart_on_failure_a_bounded_number_of_times(services: dict[str, dict[str, Any]]) -> None:
    """A worker (or Flower) whose Redis password is wrong exits 2 at once: `unless-stopped` or `always` restarted it
    in a loop for ever. Compose's ``on-failure:N`` (Docker's own policy) restarts a failure N times, and never a
    warm shutdown (exit 0)."""
    for name, service in services.items():
        if command(service)[:1] != ["nsmigrate"] or "tools" in service.get("profiles", []):
            continue
        restart = str(service.get("restart", "no"))
        bounded = re.fullmatch(r"on-failure:(\d+)", restart)
        assert bounded is not None and 1 <= int(bounded.group(1)) <= RESTARTS_MAX, (
            f"{name}: restart: {restart}; use on-failure:N (1 ≤ N ≤ {RESTARTS_MAX}) so that a configuration error "
            "stops instead of restarting for ever"
        )


def test_images_and_volumes(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    assert services["redis"]["image"] == "redis:7"
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    volume = services["postgres"]["volumes"][0]
    assert volume.split(":")[0] in compose.get("volumes", {}), "Postgres keeps its data in a named volume"


def test_dockerfile_installs_the_package_as_a_non_root_user() -> None:
    assert DOCKERFILE.is_file(), "docker-compose.yml builds from a Dockerfile in the repository root"
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    installs = r"\bpip install (?:--[\w-]+ |-c constraints\.txt )*\.(\s|$)"  # the pinned versions (constraints.txt)
    assert any(re.search(installs, line) for line in instructions), "pip install ."
    users = [line.split(None, 1)[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    copied = " ".join(line for line in instructions if line.startswith("COPY "))
    assert "pyproject.toml" in copied
    assert not re.search(r"COPY \. ", copied), "copy the package only, so a local .env never lands in the image"

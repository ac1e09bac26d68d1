"""deploy/kubernetes/: the fleet's manifests, validated offline (no cluster runs here).

Every resource is validated by ``kubernetes-validate`` (PyPI) against the Kubernetes API schemas it bundles, strictly
(an unknown field is an error), for the oldest and newest Kubernetes versions the manual names. KEDA's kinds
(``ScaledObject``, ``TriggerAuthentication``) are custom resources whose schemas it does not bundle: it cannot find
one and says so, and they are skipped there and checked here against KEDA's documented fields instead. Then what a
safe fleet needs: a worker pool per queue, secrets only by reference, a grace period that lets a batch finish, and
commands the CLI really takes."""

from __future__ import annotations

import copy
import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nsmigrate.cli.main import load_command
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.workers.stores.pinecone.store import PineconeStore

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy/kubernetes"
#: The Kubernetes versions the manual says the manifests are for (docs/manual.md: The fleet on Kubernetes).
VERSIONS = ("1.29.0", "1.37.0")
#: Custom resources of KEDA, which kubernetes-validate has no schema for: skipped there, checked below.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
#: The keys of the Secret `nsmigrate` the operator creates (the manual lists them); the manifests only name them.
SECRET_KEYS = {"database-url", "redis-url", "pinecone-api-key", "flower-password", "redis-address", "redis-password"}
#: Environment variables that carry a secret: each must come from a secretKeyRef.
SECRET_ENV = {"NSMIGRATE_DATABASE_URL", "NSMIGRATE_REDIS_URL", "PINECONE_API_KEY", "NSMIGRATE_FLOWER_PASSWORD"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every resource file (the kustomization is not a resource), by its path under deploy/kubernetes."""
    return {
        str(path.relative_to(KUBERNETES)): documents(path)
        for path in sorted(KUBERNETES.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def resources() -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def containers() -> list[dict[str, Any]]:
    return [c for d in of_kind("Deployment").values() for c in d["spec"]["template"]["spec"]["containers"]]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_validates_strictly_offline_and_only_kedas_kinds_are_skipped(version: str) -> None:
    skipped = []
    for path, docs in manifests().items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                skipped.append(doc["kind"])
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
    assert set(skipped) == KEDA_KINDS


def test_the_validator_refuses_a_misspelt_field_so_the_check_above_can_fail() -> None:
    deployment = copy.deepcopy(of_kind("Deployment")["nsmigrate-worker-copy"])
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_kustomization_applies_every_resource_file_but_the_keda_example() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {path for path in manifests() if not path.startswith("keda/")}
    assert set(kustomization["resources"]) == files


def test_one_worker_pool_per_queue_each_started_with_options_the_worker_command_takes() -> None:
    workers = {name: d for name, d in of_kind("Deployment").items() if name.startswith("nsmigrate-worker-")}
    queues = {}
    worker_command = load_command("worker")
    for name, deployment in workers.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert command[:2] == ["nsmigrate", "worker"], name
        worker_command.make_context("worker", list(command[2:]))  # an unknown option or a bad value raises
        queues[option(command, "--queues")] = name
    assert sorted(queues) == sorted(q.value for q in Queue)
    assert all(name == f"nsmigrate-worker-{queue}" for queue, name in queues.items())


def test_each_queues_pool_is_the_one_docker_compose_runs() -> None:
    """The two deployments are one fleet: each queue's worker has docker-compose.yml's pool and width (its defaults
    where compose reads a variable), so a figure measured on one holds on the other."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]

    def shape(command: list[str]) -> tuple[str, str]:
        pool = option(command, "--pool") if "--pool" in command else "prefork"
        defaults = [re.sub(r"^\$\{\w+:-(\w+)\}$", r"\1", value) for value in (pool, option(command, "--concurrency"))]
        return defaults[0], defaults[1]

    for name, deployment in of_kind("Deployment").items():
        if not name.startswith("nsmigrate-worker-"):
            continue
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        queue = name.removeprefix("nsmigrate-worker-")
        expected = [str(part) for part in compose[f"worker-{queue}"]["command"]]
        assert shape(container["command"]) == shape(expected), queue


@pytest.mark.parametrize("name", ["flower", "metrics"])
def test_flower_and_the_exporter_run_with_options_their_commands_take_and_a_service(name: str) -> None:
    deployment = of_kind("Deployment")[f"nsmigrate-{name}"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["nsmigrate", name]
    load_command(name).make_context(name, list(container["command"][2:]))
    port = int(option(container["command"], "--port"))
    service = of_kind("Service")[f"nsmigrate-{name}"]
    assert service["spec"]["type"] == "ClusterIP"  # reached through the cluster: port-forward or your Ingress
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["containerPort"] for p in container["ports"]] == [port]


def test_secrets_are_only_referenced_never_written() -> None:
    assert not of_kind("Secret")  # the operator creates it; no value of it is in the repository
    for container in containers():
        by_name = {e["name"]: e for e in container.get("env", [])}
        for name in SECRET_ENV & set(by_name):
            ref = by_name[name].get("valueFrom", {}).get("secretKeyRef")
            assert ref and ref["name"] == "nsmigrate" and ref["key"] in SECRET_KEYS, (container["name"], name)
            assert "value" not in by_name[name]
    config = of_kind("ConfigMap")["nsmigrate-config"]["data"]
    assert not SECRET_ENV & set(config)
    [auth] = of_kind("TriggerAuthentication").values()
    assert all(ref["name"] == "nsmigrate" and ref["key"] in SECRET_KEYS for ref in auth["spec"]["secretTargetRef"])


def test_every_process_gets_the_settings_it_needs_from_the_secret_or_the_config() -> None:
    needs = {
        "worker": {"NSMIGRATE_DATABASE_URL", "NSMIGRATE_REDIS_URL", "PINECONE_API_KEY"},
        "flower": {"NSMIGRATE_REDIS_URL", "NSMIGRATE_FLOWER_PASSWORD"},
        "metrics": {"NSMIGRATE_DATABASE_URL", "NSMIGRATE_FLOWER_PASSWORD"},
    }
    for container in containers():
        assert needs[container["name"]] <= {e["name"] for e in container["env"]}, container["name"]
        assert container["envFrom"] == [{"configMapRef": {"name": "nsmigrate-config"}}]


def test_the_grace_period_lets_a_batch_that_backs_off_to_the_end_finish_before_redelivery() -> None:
    # A batch fetches, then upserts: two requests in series, each up to `retry_attempts` attempts of up to the
    # store's timeout, with up to `retry_max_wait_s` between two. A pod stopped (SIGTERM) finishes its running
    # batches within the grace period; killed before, a batch would wait for redelivery and count a lost attempt.
    timeout_s = inspect.signature(PineconeStore.__init__).parameters["timeout_s"].default
    attempts, wait_s = DEFAULTS.retry_attempts, DEFAULTS.retry_max_wait_s
    budget_s = 2 * (attempts * timeout_s + (attempts - 1) * wait_s)
    visibility_s = int(of_kind("ConfigMap")["nsmigrate-config"]["data"]["NSMIGRATE_VISIBILITY_TIMEOUT_S"])
    for name, deployment in of_kind("Deployment").items():
        if name.startswith("nsmigrate-worker-"):
            grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            # long enough for the batch, and over before Redis would hand its task to another worker
            assert budget_s <= grace_s < visibility_s, (name, budget_s, grace_s, visibility_s)


def test_workers_serve_the_metrics_their_pods_announce_and_prefork_pools_have_their_directory() -> None:
    for name, deployment in of_kind("Deployment").items():
        template = deployment["spec"]["template"]
        [container] = template["spec"]["containers"]
        announced = template["metadata"].get("annotations", {}).get("prometheus.io/port")
        if name.startswith("nsmigrate-worker-"):
            command = container["command"]
            assert announced == option(command, "--metrics-port") and option(command, "--metrics-address") == "0.0.0.0"
            env = {e["name"]: e.get("value") for e in container["env"]}
            if option(command, "--pool") == "prefork":  # `nsmigrate worker` refuses --metrics-port without it
                assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        elif name == "nsmigrate-metrics":
            assert announced == option(container["command"], "--port")


def test_every_image_is_this_release_and_every_pod_runs_unprivileged() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "nsmigrate", "newTag": version}]
    for deployment in of_kind("Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["image"] == f"nsmigrate:{version}"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["limits"]["memory"]  # an out-of-memory kill is the pod's, not the node's


def test_keda_scales_the_copy_workers_on_the_copy_queues_length_as_its_redis_list_scaler_reads_it() -> None:
    # KEDA's documented fields (keda.sh/docs, scalers/redis-lists): a `redis` trigger with `listName` and
    # `listLength` (a string), the address and password from a TriggerAuthentication.
    [scaled] = of_kind("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = of_kind("Deployment")[spec["scaleTargetRef"]["name"]]
    assert option(target["spec"]["template"]["spec"]["containers"][0]["command"], "--queues") == Queue.COPY.value
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == Queue.COPY.value
    assert all(isinstance(value, str) for value in trigger["metadata"].values())  # KEDA reads them as strings
    assert int(trigger["metadata"]["listLength"]) > 0
    assert set(trigger["metadata"]) <= {"listName", "listLength", "activationListLength", "databaseIndex", "enableTLS"}
    auth = of_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "password"}

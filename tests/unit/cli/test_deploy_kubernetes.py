"""deploy/kubernetes/ parses, hangs together, and runs only commands the CLI has."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.cli.test_deploy_files import ROOT, _cli_has

MANIFESTS = ROOT / "deploy" / "kubernetes"
SECRET = "mcjobs-secrets"
REFERENCE = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")


def _documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def _pod_specs() -> dict[str, dict[str, Any]]:
    workloads = {**_of_kind("Deployment"), **_of_kind("Job")}
    return {name: d["spec"]["template"]["spec"] for name, d in workloads.items()}


def _config() -> dict[str, str]:
    data: dict[str, str] = _of_kind("ConfigMap")["mcjobs-config"]["data"]
    return data


def test_every_manifest_names_its_kind_and_api_version() -> None:
    documents = _documents()
    assert len(documents) >= 7
    for document in documents:
        assert document["apiVersion"] and document["kind"], document
        assert document["metadata"]["name"].startswith("mcjobs-")


def test_the_service_shape_is_api_worker_beat_pgbouncer_and_a_migrate_job() -> None:
    deployments = _of_kind("Deployment")
    assert set(deployments) == {"mcjobs-api", "mcjobs-worker", "mcjobs-beat", "mcjobs-pgbouncer"}
    assert "mcjobs-migrate" in _of_kind("Job")
    assert deployments["mcjobs-api"]["spec"]["replicas"] >= 2
    assert deployments["mcjobs-worker"]["spec"]["replicas"] >= 2
    beat = deployments["mcjobs-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("name", ["mcjobs-api", "mcjobs-worker", "mcjobs-beat", "mcjobs-pgbouncer"])
def test_each_deployment_selects_its_own_pods(name: str) -> None:
    spec = _of_kind("Deployment")[name]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_each_service_selects_pods_of_some_deployment() -> None:
    pod_labels = [
        d["spec"]["template"]["metadata"]["labels"] for d in _of_kind("Deployment").values()
    ]
    for name, service in _of_kind("Service").items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), name


def test_every_mcjobs_command_exists_in_the_cli() -> None:
    commands: list[list[str]] = []
    for spec in _pod_specs().values():
        for container in spec["containers"]:
            command = container.get("command", [])
            if command[:1] == ["mcjobs"]:
                commands.append(command[1:])
            probe = (container.get("livenessProbe") or {}).get("exec", {}).get("command", [])
            if probe[:1] == ["mcjobs"]:
                commands.append(probe[1:])
            elif probe[:2] == ["sh", "-c"]:
                commands.append(probe[2].split()[1:])
    assert len(commands) >= 5
    assert [c for c in commands if not _cli_has(c)] == []


def test_every_variable_reference_is_defined_before_it_is_used() -> None:
    config = set(_config())
    for name, spec in _pod_specs().items():
        for container in spec["containers"]:
            defined = set(config) if container.get("envFrom") else set()
            for variable in container.get("env", []):
                for used in REFERENCE.findall(str(variable.get("value", ""))):
                    assert used in defined, f"{name}: {variable['name']} uses $({used}) too early"
                defined.add(variable["name"])
                secret = variable.get("valueFrom", {}).get("secretKeyRef")
                if secret is not None:
                    assert secret["name"] == SECRET


def test_the_service_reaches_postgresql_through_pgbouncer_and_celery_through_rabbitmq() -> None:
    assert _config()["DB_PREPARED_STATEMENTS"] == "false"
    pgbouncer_env = {
        v["name"]: v.get("value") for v in _pod_specs()["mcjobs-pgbouncer"]["containers"][0]["env"]
    }
    assert pgbouncer_env["POOL_MODE"] == "transaction"
    for name in ("mcjobs-api", "mcjobs-worker", "mcjobs-beat"):
        env = {v["name"]: v.get("value") for v in _pod_specs()[name]["containers"][0]["env"]}
        assert "@mcjobs-pgbouncer:6432/" in env["DATABASE_URL"], name
        assert env["BROKER_URL"].startswith("amqp://"), name
    migrate = {
        v["name"]: v.get("value") for v in _pod_specs()["mcjobs-migrate"]["containers"][0]["env"]
    }
    assert "pgbouncer" not in migrate["DATABASE_URL"]


def test_compose_has_the_same_shape() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"pgbouncer", "rabbitmq", "redis", "api", "worker", "beat", "migrate"} <= set(services)
    env = services["worker"]["environment"]
    assert env["DB_PREPARED_STATEMENTS"] == "false"
    assert "@pgbouncer:6432/" in env["DATABASE_URL"]
    assert env["BROKER_URL"].startswith("amqp://")
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    assert "pgbouncer" not in services["migrate"]["environment"]["DATABASE_URL"]

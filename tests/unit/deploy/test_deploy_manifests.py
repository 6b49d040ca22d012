"""deploy/docker-compose.yml and deploy/kubernetes/ agree with the code they run (issue 10).

Each file must parse; every command must be one `runctl-bot` accepts, with the role its service is for; every
environment variable must be one the bot reads (bot.config's Settings, through `env_name`) or one of the few
read elsewhere; the shipped settings must load; probes hit the routes bot/web.py serves.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.credentials import EnvProvider

from bot.cli import build_parser
from bot.config import Settings, env_name, load_settings
from tests.unit.deploy.deploy_support import ROOT

COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
# Variables the bot's processes read outside Settings, and the file that reads each.
READ_ELSEWHERE: dict[str, Path] = {
    "RUNCTL_SKIP_MIGRATE": ROOT / "docker-entrypoint.sh",
    "RUNCTL_CONFIG": ROOT / "bot" / "config.py",
}
# The boto3 credential chain's environment variables (read by botocore itself).
AWS_CREDENTIALS = frozenset({EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY, *EnvProvider.TOKENS})
# Compose-only: interpolated into the file (never read by the bot).
COMPOSE_ONLY = frozenset({"POSTGRES_PASSWORD", "BOT_IMAGE_TAG"})
BOT_SERVICES = ("migrate", "web", "scheduler")
ROLE_OF_SERVICE = {"web": "web", "scheduler": "scheduler"}
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", re.IGNORECASE)
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
_DOCUMENTED_ENV = re.compile(r"^\s*#\s+([A-Z][A-Z0-9_]+)[=:]", re.MULTILINE)


@cache
def known_env_names() -> frozenset[str]:
    names: set[str] = set()
    for field in Settings.model_fields:
        names.update(env_name(field).split(" or "))
    return frozenset(names | set(READ_ELSEWHERE) | AWS_CREDENTIALS)


def _unknown(names: Iterator[str] | Sequence[str], where: str) -> list[str]:
    return [f"{where}: {name}" for name in names if name not in known_env_names()]


def parse_command(argv: Sequence[str], where: str) -> argparse.Namespace:
    """Parse `argv` the way the installed `runctl-bot` would, failing with the offending command."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert argv and argv[0] in scripts, f"{where}: {list(argv)} does not start with a console script"
    try:
        return build_parser().parse_args(list(argv[1:]))
    except SystemExit:
        pytest.fail(f"{where}: `{' '.join(argv)}` is not a runctl-bot command line")


def _load_settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# --- docker compose ------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict) and "services" in loaded, f"{COMPOSE} has no services"
    return loaded


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"{COMPOSE.name} has no {name!r} service"
    return dict(services[name])


def test_compose_runs_two_web_replicas_one_scheduler_and_postgres_16() -> None:
    assert service("web").get("deploy", {}).get("replicas") == 2
    assert service("scheduler").get("deploy", {}).get("replicas", 1) == 1
    assert str(service("db")["image"]).startswith("postgres:16")


@pytest.mark.parametrize("name", BOT_SERVICES)
def test_compose_commands_are_real_runctl_bot_commands(name: str) -> None:
    args = parse_command(service(name)["command"], f"{COMPOSE.name} {name}")
    if name == "migrate":
        assert args.command == "migrate"
    else:
        assert args.command == "serve" and args.role == ROLE_OF_SERVICE[name], f"{name}: wrong role"


def test_compose_migrates_once_before_anything_serves() -> None:
    migrate = service("migrate")
    assert migrate.get("restart") == "no", "the migration is a one-shot"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("web", "scheduler"):
        depends = service(name)["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        environment = service(name)["environment"]
        assert environment.get("RUNCTL_SKIP_MIGRATE") == "1", f"{name}: the entrypoint would migrate again"


@pytest.mark.parametrize("name", ("web", "scheduler"))
def test_compose_health_checks_hit_healthz_on_the_bots_port(name: str) -> None:
    check = " ".join(service(name)["healthcheck"]["test"])
    port = service(name)["environment"]["RUNCTL_PORT"]
    assert f"127.0.0.1:{port}/healthz" in check, f"{name}: {check}"


@pytest.mark.parametrize("name", BOT_SERVICES)
def test_compose_sets_only_variables_the_bot_reads(name: str) -> None:
    unknown = _unknown(list(service(name)["environment"]), f"{COMPOSE.name} {name}")
    assert not unknown, "unknown environment variables:\n  " + "\n  ".join(unknown)
    assert service(name)["env_file"] == [".env"]


def test_compose_documents_only_variables_that_exist() -> None:
    documented = _DOCUMENTED_ENV.findall(COMPOSE.read_text(encoding="utf-8"))
    assert "SLACK_BOT_TOKEN" in documented, "the .env example in the header comment is gone"
    unknown = [n for n in _unknown(documented, "the .env example") if n.split(": ")[1] not in COMPOSE_ONLY]
    assert not unknown, "the .env example names variables nothing reads:\n  " + "\n  ".join(unknown)


def test_compose_holds_no_secrets() -> None:
    for name, spec in compose()["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            literal = _INTERPOLATION.sub("", str(value))
            if _SECRET_NAME.search(key):
                assert not literal, f"{name}: {key} must come from .env, not the compose file"
            if key == "DATABASE_URL":
                assert re.search(r"://[^:/]+:\$\{", str(value)), f"{name}: the database password is literal"
    assert not re.search(r"xox[abp]-[A-Za-z0-9-]{6,}", COMPOSE.read_text(encoding="utf-8")), "a Slack token"


@pytest.mark.parametrize("name", BOT_SERVICES)
def test_compose_settings_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: _INTERPOLATION.sub("placeholder", str(v)) for k, v in service(name)["environment"].items()}
    settings = _load_settings_from(env, monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://runctl:placeholder@db:5432/")
    assert settings.host == "0.0.0.0"


# --- kubernetes ----------------------------------------------------------------------------------------


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    documents: list[dict[str, Any]] = []
    files = sorted(KUBERNETES.glob("*.yaml"))
    assert files, f"no manifests in {KUBERNETES}"
    for path in files:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(document), (
                f"{path.name}: not a Kubernetes object"
            )
            documents.append(document)
    return tuple(documents)


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/kubernetes, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] in ("Deployment", "Job")]


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def the_container(workload: Mapping[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container expected"
    return dict(containers[0])


def configmap_data() -> dict[str, str]:
    return {k: str(v) for k, v in resource("ConfigMap", "runctl-bot-config")["data"].items()}


def secret_data() -> dict[str, str]:
    return {k: str(v) for k, v in resource("Secret", "runctl-bot-secrets")["stringData"].items()}


@pytest.mark.parametrize(("name", "role", "replicas"), [("web", "web", 2), ("scheduler", "scheduler", 1)])
def test_kubernetes_deployments_run_their_role(name: str, role: str, replicas: int) -> None:
    deployment = resource("Deployment", f"runctl-bot-{name}")
    assert deployment["spec"]["replicas"] == replicas
    args = parse_command(the_container(deployment)["args"], f"Deployment runctl-bot-{name}")
    assert args.command == "serve" and args.role == role
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kubernetes_migration_job_migrates() -> None:
    job = resource("Job", "runctl-bot-migrate")
    args = parse_command(the_container(job)["args"], "Job runctl-bot-migrate")
    assert args.command == "migrate"
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert configmap_data().get("RUNCTL_SKIP_MIGRATE") == "1", "serve's entrypoint would migrate again"


@pytest.mark.parametrize("name", ("web", "scheduler"))
def test_kubernetes_probes_hit_the_bots_routes_on_its_port(name: str) -> None:
    container = the_container(resource("Deployment", f"runctl-bot-{name}"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path, f"{name}: {probe} must GET {path}"
        assert ports[http["port"]] == int(configmap_data()["RUNCTL_PORT"]), f"{name}: {probe} port"


def test_kubernetes_service_selects_only_web_pods() -> None:
    selector = resource("Service", "runctl-bot-web")["spec"]["selector"]
    for workload in workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selected = selector.items() <= labels.items()
        assert selected == (workload["metadata"]["name"] == "runctl-bot-web"), workload["metadata"]["name"]
    web_ports = {p["name"] for p in the_container(resource("Deployment", "runctl-bot-web"))["ports"]}
    for port in resource("Service", "runctl-bot-web")["spec"]["ports"]:
        assert port["targetPort"] in web_ports


def test_kubernetes_pods_run_unprivileged_with_bounded_resources() -> None:
    for workload in workloads():
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        container = the_container(workload)
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"


def test_kubernetes_references_resolve() -> None:
    images = set()
    for workload in workloads():
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        resource("ServiceAccount", pod["serviceAccountName"])
        container = the_container(workload)
        images.add(container["image"])
        for source in container["envFrom"]:
            if "configMapRef" in source:
                resource("ConfigMap", source["configMapRef"]["name"])
            else:
                resource("Secret", source["secretRef"]["name"])
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in pod.get("volumes", [])}, name
    assert len(images) == 1, f"every workload must run the same image: {images}"


def test_kubernetes_sets_only_variables_the_bot_reads() -> None:
    unknown = _unknown(list(configmap_data()), "ConfigMap") + _unknown(list(secret_data()), "Secret")
    for workload in workloads():
        names = [e["name"] for e in the_container(workload).get("env", [])]
        unknown += _unknown(names, workload["metadata"]["name"])
    for path in (KUBERNETES / "configmap.yaml", KUBERNETES / "secret.example.yaml"):
        unknown += _unknown(_DOCUMENTED_ENV.findall(path.read_text(encoding="utf-8")), f"{path.name} comment")
    assert not unknown, "unknown environment variables:\n  " + "\n  ".join(unknown)


def test_kubernetes_secret_is_a_template() -> None:
    data = secret_data()
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL"} <= set(data)
    assert all("REPLACE-ME" in value for value in data.values()), "every secret value must be a placeholder"
    assert not any(_SECRET_NAME.search(key) for key in configmap_data()), "secrets belong in the Secret"


def test_kubernetes_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load_settings_from({**configmap_data(), **secret_data()}, monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.port == int(configmap_data()["RUNCTL_PORT"])


# --- the variables read outside Settings ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READ_ELSEWHERE))
def test_variables_read_elsewhere_are_really_read_there(name: str) -> None:
    assert name in READ_ELSEWHERE[name].read_text(encoding="utf-8"), (
        f"{READ_ELSEWHERE[name]} no longer reads it"
    )

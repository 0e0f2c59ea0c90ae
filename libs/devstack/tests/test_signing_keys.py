"""The dev stack's signing keys: made once per data folder, private, and the public file to match."""

from __future__ import annotations

import json
from pathlib import Path

from mfaplane_devstack.signing_keys import ensure_signing_keys, private_key_path, public_keys_path
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

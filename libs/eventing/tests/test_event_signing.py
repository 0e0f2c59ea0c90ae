"""Events signed a batch at a time: each still proves its publisher on its own, and nothing else passes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from mfaplane_contracts.topics import IDENTITY_EVENTS
from mfaplane_eventing import event_signing
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys, UntrustedSignature

IDENTITY = ServiceKey.generate()


def stored(name: str) -> bytes:
    user = str(uuid.uuid4())
    return json.dumps({
        "event_id": str(uuid.uuid4()), "type": "UserCreated", "schema_version": 1, "aggregate_type": "user",
        "aggregate_id": user, "aggregate_version": 1, "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()), "causation_id": None, "command_id": None, "actor": "admin:x",
        "payload": {"user_id": user, "email": f"{name}@example.com", "name": name},
        "key_id": None, "signature": None, "proof": None}).encode()


class CountingKeys(TrustedKeys):
    def __init__(self) -> None:
        super().__init__(TrustedKeys.from_json(json.dumps({"identity": [IDENTITY.public_base64()]}))._keys)
        self.verifications = 0

    def verify(self, kid: str, signature: bytes, data: bytes) -> str:
        self.verifications += 1
        return super().verify(kid, signature, data)


def reason(document: dict, keys: TrustedKeys) -> str:
    with pytest.raises(UntrustedSignature) as refusal:
        event_signing.check(document, IDENTITY_EVENTS.name, keys)
    return refusal.value.reason


def test_each_event_of_a_batch_proves_its_publisher_with_one_verification_for_all() -> None:
    keys = CountingKeys()
    published = [json.loads(v) for v in event_signing.sign_batch([stored(f"u{i}") for i in range(7)], IDENTITY)]
    for document in published:
        event_signing.check(document, IDENTITY_EVENTS.name, keys)
    assert len({d["signature"] for d in published}) == 1 and [d["proof"]["index"] for d in published] == list(range(7))
    assert keys.verifications == 1


def test_a_proof_taken_to_another_event_or_changed_content_fails() -> None:
    keys = CountingKeys()
    first, second, *_ = [json.loads(v) for v in event_signing.sign_batch([stored(f"v{i}") for i in range(3)], IDENTITY)]
    assert reason({**second, "proof": first["proof"]}, keys) == "bad_signature"
    assert reason({**first, "payload": {**first["payload"], "email": "attacker@example.com"}}, keys) == "bad_signature"
    assert reason({**first, "proof": {**first["proof"], "path": []}}, keys) == "bad_signature"
    assert reason({**first, "proof": None}, keys) == "unsigned"
    event_signing.check(first, IDENTITY_EVENTS.name, keys)  # untouched, it still holds


def test_what_one_key_set_verified_is_not_taken_for_another() -> None:
    """A key retired from one set (a fresh process, an auditor's file) is not trusted there from a cache."""
    document = json.loads(event_signing.sign_batch([stored("w")], IDENTITY)[0])
    event_signing.check(document, IDENTITY_EVENTS.name, CountingKeys())
    other = TrustedKeys.from_json(json.dumps({"identity": [ServiceKey.generate().public_base64()]}))
    assert reason(document, other) == "unknown_key"

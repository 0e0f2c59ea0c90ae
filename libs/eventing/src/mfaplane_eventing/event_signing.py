"""Signed events: a consumer applies an event only if the service that owns its topic signed it.

Anything that can reach the broker could otherwise publish a `UserDeleted` and have MFA dropped.
Kafka ACLs keep other clients off a topic, but a consumer must not depend on the broker's
configuration alone, nor on every client certificate staying secret: the signature is checked
where the event takes effect.

The outbox relay signs, as it publishes: it is where a service speaks on the bus, and it signs
what was stored before signing existed, or is queued again by `republish`, just as it signs what is
new. The event store keeps events unsigned; they are the service's own, in its own database.

Three checks, in order, each a stable reason for metrics and the dead letter:
- `unsigned`, `unknown_key`, `bad_signature`: the Ed25519 signature over `signing_input` (every
  field of the envelope but the signature, key id included) under the key the envelope names;
- `not_topic_owner`: the key belongs to the service that owns the topic the event arrived on (the
  topic catalog), so the notifier's key cannot speak for identity;
- `foreign_type`: the event's type is one the contracts publish on that topic, so even the owner's
  key cannot put an mfa event on the identity topic.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mfaplane_contracts.envelope import canonical, signing_input
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_contracts.topics import TOPICS_BY_NAME
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys, UntrustedSignature


def sign(value: bytes, key: ServiceKey) -> bytes:
    """The published form of a stored envelope: the same fields, with `key`'s id and signature."""
    document = json.loads(value)
    document["key_id"] = key.key_id
    document["signature"] = base64.b64encode(key.sign(signing_input(document))).decode()
    return canonical(document).encode()


def check(document: dict[str, Any], topic: str, keys: TrustedKeys) -> None:
    """Returns if `document` (a decoded envelope) was signed by the owner of `topic`; else UntrustedSignature."""
    kid, signature = document.get("key_id"), document.get("signature")
    if not kid or not isinstance(signature, str):
        raise UntrustedSignature("unsigned", "the event carries no signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise UntrustedSignature("bad_signature", "the signature is not base64") from None
    signer = keys.verify(kid, raw, signing_input(document))
    owner = TOPICS_BY_NAME[topic].owner if topic in TOPICS_BY_NAME else None
    if signer != owner:
        raise UntrustedSignature("not_topic_owner", f"signed by {signer}, but {topic} belongs to {owner}")
    payload_type = EVENT_TYPES.get(document.get("type"))
    if payload_type is not None and payload_type.topic != topic:
        raise UntrustedSignature("foreign_type", f"{document.get('type')} is not published on {topic}")

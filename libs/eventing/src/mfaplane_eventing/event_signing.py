"""Signed events: a consumer applies an event only if the service that owns its topic signed it.

Anything that can reach the broker could otherwise publish a `UserDeleted` and have MFA dropped.
Kafka ACLs keep other clients off a topic, but a consumer must not depend on the broker's
configuration alone, nor on every client certificate staying secret: the signature is checked
where the event takes effect.

The outbox relay signs, as it publishes: it is where a service speaks on the bus, and it signs
what was stored before signing existed, or is queued again by `republish`, just as it signs what is
new. The event store keeps events unsigned; they are the service's own, in its own database.

It signs a batch at once: the root of the Merkle tree over the batch's events (merkle.py), and each
event carries the signature and its inclusion proof. An Ed25519 verification costs more than a
whole event's handling elsewhere, and three consumers check each event, so a signature per event
would cost a bulk require much of its throughput (docs/performance.md); per batch, a consumer
verifies each root once (`_VerifiedRoots`) and hashes a few times per event.

Three checks, in order, each a stable reason for metrics and the dead letter:
- `unsigned`, `unknown_key`, `bad_signature`: the event is a leaf of a tree whose root the key the
  envelope names signed (`signing_input` covers every field but the signature and the proof, the
  key id included);
- `not_topic_owner`: the key belongs to the service that owns the topic the event arrived on (the
  topic catalog), so the notifier's key cannot speak for identity;
- `foreign_type`: the event's type is one the contracts publish on that topic, so even the owner's
  key cannot put an mfa event on the identity topic.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from typing import Any
from weakref import WeakKeyDictionary

from mfaplane_contracts.envelope import BATCH_CONTEXT, canonical, signing_input
from mfaplane_contracts.registry import EVENT_TYPES
from mfaplane_contracts.topics import TOPICS_BY_NAME
from mfaplane_eventing import merkle
from mfaplane_eventing.service_keys import ServiceKey, TrustedKeys, UntrustedSignature


def sign_batch(values: list[bytes], key: ServiceKey) -> list[bytes]:
    """The published form of stored envelopes: the same fields, with `key`'s id, the signature of their
    tree's root and each one's proof."""
    documents = [json.loads(value) | {"key_id": key.key_id, "signature": None, "proof": None} for value in values]
    root, paths = merkle.tree([merkle.leaf_hash(signing_input(document)) for document in documents])
    signature = base64.b64encode(key.sign(BATCH_CONTEXT + root)).decode()
    for index, (document, path) in enumerate(zip(documents, paths, strict=True)):
        document["signature"] = signature
        document["proof"] = {"index": index, "size": len(documents),
                             "path": [base64.b64encode(sibling).decode() for sibling in path]}
    return [canonical(document).encode() for document in documents]


class _VerifiedRoots:
    """The (key id, root, signature) triples one key set verified before, and whose key made them:
    each batch's signature is verified once, not once per event. Bounded; the oldest go first."""

    def __init__(self, keys: TrustedKeys, size: int = 4096) -> None:
        self._keys = keys
        self._size = size
        self._signers: OrderedDict[tuple[str, bytes, bytes], str] = OrderedDict()

    def signer(self, kid: str, root: bytes, signature: bytes) -> str:
        seen = (kid, root, signature)
        if seen not in self._signers:
            self._signers[seen] = self._keys.verify(kid, signature, BATCH_CONTEXT + root)
            if len(self._signers) > self._size:
                self._signers.popitem(last=False)
        return self._signers[seen]


# One cache per key set: what a set verified says nothing about another (one without a retired key).
_VERIFIED: WeakKeyDictionary[TrustedKeys, _VerifiedRoots] = WeakKeyDictionary()


def check(document: dict[str, Any], topic: str, keys: TrustedKeys) -> None:
    """Returns if `document` (a decoded envelope) was signed by the owner of `topic`; else UntrustedSignature."""
    kid, signature, proof = document.get("key_id"), document.get("signature"), document.get("proof")
    if not kid or not isinstance(signature, str) or not isinstance(proof, dict):
        raise UntrustedSignature("unsigned", "the event carries no signature")
    try:
        raw = base64.b64decode(signature, validate=True)
        path = [base64.b64decode(sibling, validate=True) for sibling in proof["path"]]
        root = merkle.root_from(merkle.leaf_hash(signing_input(document)), proof["index"], proof["size"], path)
    except (ValueError, KeyError, TypeError, merkle.NotIncluded):  # ValueError: not base64, or not ASCII
        raise UntrustedSignature("bad_signature", "the signature or its proof is malformed") from None
    if keys not in _VERIFIED:
        _VERIFIED[keys] = _VerifiedRoots(keys)
    signer = _VERIFIED[keys].signer(kid, root, raw)
    owner = TOPICS_BY_NAME[topic].owner if topic in TOPICS_BY_NAME else None
    if signer != owner:
        raise UntrustedSignature("not_topic_owner", f"signed by {signer}, but {topic} belongs to {owner}")
    payload_type = EVENT_TYPES.get(document.get("type", ""))
    if payload_type is not None and payload_type.topic != topic:
        raise UntrustedSignature("foreign_type", f"{document.get('type')} is not published on {topic}")

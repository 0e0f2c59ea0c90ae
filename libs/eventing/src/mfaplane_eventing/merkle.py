"""Merkle trees of a batch of events: RFC 6962's tree hash and RFC 9162's inclusion proofs.

The outbox relay signs a batch by signing the root of the tree over its events (event_signing.py):
one Ed25519 signature per batch instead of one per event, and a consumer verifies one per batch
too. Each event carries its inclusion proof (its index, the batch's size and the sibling hashes
from leaf to root), so it can still be checked on its own, by any consumer and by an auditor.

Leaves and inner nodes are hashed with different prefixes (0x00, 0x01), so no inner node can pass
for a leaf (the second-preimage attack on plain Merkle trees). The split of n leaves is RFC 6962's
(the largest power of two below n on the left), and verification is RFC 9162 section 2.1.3.2
step by step; the tests check both against each other for every size up to a batch's.
"""

from __future__ import annotations

import hashlib

LEAF_PREFIX, NODE_PREFIX = b"\x00", b"\x01"


class NotIncluded(Exception):
    """The proof does not lead from the leaf to a root."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over `leaves` (leaf hashes) and each leaf's inclusion path, siblings from leaf to root."""
    if not leaves:
        raise ValueError("a tree needs a leaf")
    if len(leaves) == 1:
        return leaves[0], [[]]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    left, left_paths = tree(leaves[:split])
    right, right_paths = tree(leaves[split:])
    return _node(left, right), [path + [right] for path in left_paths] + [path + [left] for path in right_paths]


def root_from(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """The root that `path` leads to from `leaf` at `index` of `size` (RFC 9162 2.1.3.2), or NotIncluded."""
    if not 0 <= index < size:
        raise NotIncluded("index outside the tree")
    position, last, node = index, size - 1, leaf
    for sibling in path:
        if last == 0:
            raise NotIncluded("path longer than the tree")
        if position & 1 or position == last:
            node = _node(sibling, node)
            while not position & 1 and position != 0:
                position, last = position >> 1, last >> 1
        else:
            node = _node(node, sibling)
        position, last = position >> 1, last >> 1
    if last != 0:
        raise NotIncluded("path shorter than the tree")
    return node

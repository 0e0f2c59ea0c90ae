"""The Merkle tree a batch of events is signed by: every leaf's proof leads to the root, and nothing else does."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfaplane_eventing import merkle

BATCH = 500  # the relay's largest batch (RELAY_BATCH_SIZE's default)


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(str(i).encode()) for i in range(count)]


def rfc6962_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 section 2.1's MTH, written from its definition, to check `tree`'s root against."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(hashes[:k]) + rfc6962_root(hashes[k:])).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100, BATCH])
def test_every_leaf_proves_its_place_under_the_root(size: int) -> None:
    hashes = leaves(size)
    root, paths = merkle.tree(hashes)
    assert root == rfc6962_root(hashes)
    assert all(merkle.root_from(leaf, i, size, paths[i]) == root for i, leaf in enumerate(hashes))
    assert max(len(path) for path in paths) == (size - 1).bit_length()


@given(st.integers(1, 200), st.data())
def test_a_changed_leaf_or_sibling_leads_elsewhere(size: int, data: st.DataObject) -> None:
    """(The size is no commitment: what the key signs is the root. A leaf's path may also fit a tree
    of another size, and lead to the same root: the same leaf, proven under the same signature.)"""
    hashes = leaves(size)
    root, paths = merkle.tree(hashes)
    i = data.draw(st.integers(0, size - 1))
    assert merkle.root_from(merkle.leaf_hash(b"forged"), i, size, paths[i]) != root
    assert all(merkle.root_from(hashes[j], i, size, paths[i]) != root for j in range(size) if j != i)
    if paths[i]:
        j = data.draw(st.integers(0, len(paths[i]) - 1))
        changed = paths[i][:j] + [hashlib.sha256(paths[i][j]).digest()] + paths[i][j + 1:]
        assert merkle.root_from(hashes[i], i, size, changed) != root


def test_an_inner_node_cannot_pass_for_a_leaf() -> None:
    """The second-preimage attack: present the left half's root as a leaf of a smaller tree."""
    hashes = leaves(4)
    root, _ = merkle.tree(hashes)
    left, _ = merkle.tree(hashes[:2])
    right, _ = merkle.tree(hashes[2:])
    assert merkle.root_from(merkle.leaf_hash(left), 0, 2, [right]) != root

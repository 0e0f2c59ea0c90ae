"""The protected-resource aggregate, given events / when command / then events: a system is renamed and
deleted once, and a deleted one is not found by anything after."""

from __future__ import annotations

import uuid

import pytest

from mfaplane_contracts.identity_events import SystemDeleted, SystemMFAEnabled, SystemRegistered, SystemRenamed
from mfaplane_eventing.aggregate import Rejected, fold
from mfaplane_identity import resource
from mfaplane_identity.resource import Resource

ID = uuid.uuid4()
REGISTERED = SystemRegistered(system_id=ID, name="build-01", kind="linux")


def given(*events) -> Resource:
    return fold(resource.apply, Resource(), events)


def test_a_system_is_renamed_and_the_same_name_again_changes_nothing() -> None:
    assert resource.rename(given(REGISTERED), ID, "build-02") == [SystemRenamed(system_id=ID, name="build-02")]
    assert resource.rename(given(REGISTERED, SystemRenamed(system_id=ID, name="build-02")), ID, "build-02") == []


def test_a_system_is_deleted_once_and_then_found_by_nothing() -> None:
    assert resource.delete(given(REGISTERED), ID) == [SystemDeleted(system_id=ID)]
    gone = given(REGISTERED, SystemMFAEnabled(system_id=ID), SystemDeleted(system_id=ID))
    assert not gone.live
    for decide, args in ((resource.delete, ()), (resource.rename, ("again",)), (resource.set_mfa, (False,))):
        with pytest.raises(Rejected) as refusal:
            decide(gone, ID, *args)
        assert (refusal.value.code, refusal.value.status) == ("system_not_found", 404)
    with pytest.raises(Rejected, match="already exists"):
        resource.register(gone, ID, "build-01", "linux")


def test_nothing_is_done_to_a_system_never_registered() -> None:
    for decide, args in ((resource.delete, ()), (resource.rename, ("x",)), (resource.set_mfa, (True,))):
        with pytest.raises(Rejected):
            decide(given(), ID, *args)

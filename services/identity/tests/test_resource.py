"""The protected-resource aggregate, given events / when command / then events: a system is renamed and
deleted once, and a deleted one is not found by anything after."""

from __future__ import annotations

import uuid

import pytest

from mfaplane_contracts.identity_events import (ApplicationSignInConfigured, SignInSettings, SystemDeleted,
                                               SystemMFAEnabled, SystemRegistered, SystemRenamed)
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


APPLICATION = SystemRegistered(system_id=ID, name="Wiki", kind="sso_application")
OIDC = SignInSettings(protocol="oidc", redirect_uris=["https://wiki.example.com/oidc/callback"])


def test_an_application_is_configured_for_sign_in_and_the_same_settings_again_change_nothing() -> None:
    configured = ApplicationSignInConfigured(system_id=ID, **OIDC.model_dump())
    assert resource.configure_sign_in(given(APPLICATION), ID, OIDC) == [configured]
    assert resource.configure_sign_in(given(APPLICATION, configured), ID, OIDC) == []
    saml = SignInSettings(protocol="saml", entity_id="https://wiki.example.com/saml",
                          acs_urls=["https://wiki.example.com/saml/acs"])
    assert given(APPLICATION, configured, *resource.configure_sign_in(given(APPLICATION, configured), ID, saml)
                 ).sign_in == saml


def test_a_system_that_is_no_application_is_not_configured_for_sign_in() -> None:
    with pytest.raises(Rejected) as refusal:
        resource.configure_sign_in(given(REGISTERED), ID, OIDC)
    assert (refusal.value.code, refusal.value.status) == ("not_an_application", 409)

"""Every command and every refusal of the system aggregate (a protected macOS or Linux system, or an SSO
application), given events / when command / then events: an id is registered once, a deleted system
is found by nothing after, and only an application is configured for sign-in, with settings of its
protocol that send users back over https only (http to this machine alone)."""

from __future__ import annotations

import re
import uuid

import pytest
from pydantic import ValidationError

from mfaplane_contracts.identity_events import (
    ApplicationSignInConfigured,
    SignInSettings,
    SystemDeleted,
    SystemMFADisabled,
    SystemMFAEnabled,
    SystemRegistered,
    SystemRenamed,
)
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_identity import system

ID = uuid.uuid4()
REGISTERED = SystemRegistered(system_id=ID, name="build-01", kind="linux")
APPLICATION = SystemRegistered(system_id=ID, name="Wiki", kind="sso_application")
GONE = SystemDeleted(system_id=ID)
OIDC = SignInSettings(protocol="oidc", redirect_uris=["https://wiki.example.com/oidc/callback"])
SAML = SignInSettings(protocol="saml", entity_id="https://wiki.example.com/saml",
                      acs_urls=["https://wiki.example.com/saml/acs"])


# RegisterSystem


@pytest.mark.parametrize("kind", ["macos", "linux", "sso_application"])
def test_a_system_or_an_application_is_registered_with_mfa_off(systems, kind) -> None:
    registered = SystemRegistered(system_id=ID, name="build-01", kind=kind)
    then = systems.given().when(system.register, ID, "build-01", kind).then(registered)
    assert then.state.live and not then.state.mfa_enabled and then.state.sign_in is None


@pytest.mark.parametrize("history", [[REGISTERED], [REGISTERED, GONE]], ids=["registered", "deleted"])
def test_an_id_once_taken_is_never_registered_again(systems, history) -> None:
    then = systems.given(*history).when(system.register, ID, "build-01", "linux")
    assert then.rejected("system_exists", Refusal.CONFLICT).detail == ("A system or application with this id already "
                                                                      "exists.")


# SetSystemMFA


def test_mfa_is_switched_on_and_off_and_the_switch_it_already_has_changes_nothing(systems) -> None:
    systems.given(REGISTERED).when(system.set_mfa, ID, False).then()
    on = systems.given(REGISTERED).when(system.set_mfa, ID, True).then(SystemMFAEnabled(system_id=ID))
    assert on.state.mfa_enabled
    systems.given(REGISTERED, *on.events).when(system.set_mfa, ID, True).then()
    off = systems.given(REGISTERED, *on.events).when(system.set_mfa, ID, False)
    assert not off.then(SystemMFADisabled(system_id=ID)).state.mfa_enabled


# RenameSystem


def test_a_system_is_renamed_and_the_same_name_again_changes_nothing(systems) -> None:
    then = systems.given(REGISTERED).when(system.rename, ID, "build-02").then(SystemRenamed(system_id=ID,
                                                                                               name="build-02"))
    assert then.state.name == "build-02"
    systems.given(REGISTERED, *then.events).when(system.rename, ID, "build-02").then()


# ConfigureSignIn


def test_an_application_is_configured_for_sign_in_and_the_same_settings_again_change_nothing(systems) -> None:
    configured = ApplicationSignInConfigured(system_id=ID, **OIDC.model_dump())
    then = systems.given(APPLICATION).when(system.configure_sign_in, ID, OIDC).then(configured)
    assert then.state.sign_in == OIDC
    systems.given(APPLICATION, configured).when(system.configure_sign_in, ID, OIDC).then()


def test_new_settings_replace_the_old_ones_whatever_their_protocol(systems) -> None:
    configured = ApplicationSignInConfigured(system_id=ID, **OIDC.model_dump())
    then = systems.given(APPLICATION, configured).when(system.configure_sign_in, ID, SAML).then(
        ApplicationSignInConfigured(system_id=ID, **SAML.model_dump()))
    assert then.state.sign_in == SAML


@pytest.mark.parametrize("kind", ["macos", "linux"])
def test_a_system_that_is_no_application_is_not_configured_for_sign_in(systems, kind) -> None:
    then = systems.given(SystemRegistered(system_id=ID, name="build-01", kind=kind)).when(
        system.configure_sign_in, ID, OIDC)
    assert then.rejected("not_an_application", Refusal.CONFLICT).detail == ("Only an SSO application signs users in "
                                                                           "through the gateway.")


@pytest.mark.parametrize("url", ["https://wiki.example.com/cb\r\nSet-Cookie: a=b", "https://wiki.example.com/c b",
                                 "https://wiki.example.com/cb\x00", "https://wiki.example.com:99999/cb",
                                 "https://wiki.example.com:http/cb", "https://wiki.example.com:0/cb",
                                 "https://wiki.example.com:/cb", "https://wiki.example.com/cb\u2028"])
@pytest.mark.parametrize("protocol", ["oidc", "saml"])
def test_an_address_no_application_could_send_is_refused_when_set(systems, url, protocol) -> None:
    settings = (SignInSettings(protocol="oidc", redirect_uris=[url]) if protocol == "oidc" else
                SignInSettings(protocol="saml", entity_id="https://wiki.example.com/saml", acs_urls=[url]))
    then = systems.given(APPLICATION).when(system.configure_sign_in, ID, settings)
    assert then.rejected("invalid_application_url", Refusal.UNPROCESSABLE).detail == (
        "A redirect or ACS URL has a space, a control character or an invalid port.")


@pytest.mark.parametrize("url", ["https://wiki.example.com/callback", "https://wiki.example.com:8443/cb?tenant=1",
                                 "http://localhost:8080/callback", "http://127.0.0.1/cb", "http://[::1]:3000/cb"])
def test_an_application_sends_users_back_over_https_or_to_this_machine(url) -> None:
    assert SignInSettings(protocol="oidc", redirect_uris=[url]).redirect_uris == [url]
    assert SignInSettings(protocol="saml", entity_id="wiki", acs_urls=[url]).acs_urls == [url]


NOT_HTTPS = re.escape("must be an https URL (http only for localhost)")
NOT_BARE = "must have no fragment and no user name or password"


@pytest.mark.parametrize("url, why", [
    ("http://wiki.example.com/callback", NOT_HTTPS),
    ("http://localhost.evil.example/callback", NOT_HTTPS),
    ("http://127.0.0.1.evil.example/cb", NOT_HTTPS),
    ("javascript://wiki.example.com/%0aalert(1)", NOT_HTTPS),
    ("https:///callback", NOT_HTTPS),
    ("wiki.example.com/callback", NOT_HTTPS),
    ("https://wiki.example.com/callback#token", NOT_BARE),
    ("https://wiki.example.com/callback#", NOT_BARE),
    ("https://wiki.example.com@evil.example/callback", NOT_BARE),
    ("https://user:secret@wiki.example.com/callback", NOT_BARE),
])
def test_a_url_to_send_users_back_to_elsewhere_is_refused(url, why) -> None:
    for settings in ({"protocol": "oidc", "redirect_uris": [url]},
                     {"protocol": "saml", "entity_id": "wiki", "acs_urls": [url]}):
        with pytest.raises(ValidationError, match=why):
            SignInSettings(**settings)


@pytest.mark.parametrize("settings", [
    {"protocol": "oidc"},
    {"protocol": "oidc", "redirect_uris": ["https://wiki.example.com/cb"], "entity_id": "wiki"},
    {"protocol": "oidc", "redirect_uris": ["https://wiki.example.com/cb"], "acs_urls": ["https://wiki.example.com/acs"]},
], ids=["no redirect URI", "an entity id", "an ACS URL"])
def test_openid_connect_takes_redirect_uris_and_nothing_of_saml(settings) -> None:
    with pytest.raises(ValidationError, match="OpenID Connect takes redirect_uris"):
        SignInSettings(**settings)


@pytest.mark.parametrize("settings", [
    {"protocol": "saml", "acs_urls": ["https://wiki.example.com/acs"]},
    {"protocol": "saml", "entity_id": "wiki"},
    {"protocol": "saml", "entity_id": "wiki", "acs_urls": ["https://wiki.example.com/acs"],
     "redirect_uris": ["https://wiki.example.com/cb"]},
], ids=["no entity id", "no ACS URL", "a redirect URI"])
def test_saml_takes_an_entity_id_and_acs_urls_and_no_redirect_uri(settings) -> None:
    with pytest.raises(ValidationError, match="SAML takes entity_id and acs_urls"):
        SignInSettings(**settings)


def test_an_entity_id_has_no_blank_and_at_most_20_urls_are_kept() -> None:
    with pytest.raises(ValidationError, match="entity_id"):
        SignInSettings(protocol="saml", entity_id="wiki app", acs_urls=["https://wiki.example.com/acs"])
    with pytest.raises(ValidationError, match="redirect_uris"):
        SignInSettings(protocol="oidc", redirect_uris=[f"https://wiki.example.com/cb{i}" for i in range(21)])


# DeleteSystem, and every operation on a system that is not there

OPERATIONS = [
    pytest.param(system.rename, ("again",), id="rename"),
    pytest.param(system.set_mfa, (True,), id="switch mfa on"),
    pytest.param(system.set_mfa, (False,), id="switch mfa off"),
    pytest.param(system.configure_sign_in, (OIDC,), id="configure sign-in"),
    pytest.param(system.delete, (), id="delete"),
]


def test_a_system_is_deleted(systems) -> None:
    then = systems.given(APPLICATION, SystemMFAEnabled(system_id=ID)).when(system.delete, ID).then(GONE)
    assert not then.state.live


@pytest.mark.parametrize("decide, args", OPERATIONS)
@pytest.mark.parametrize("history", [[], [APPLICATION, SystemMFAEnabled(system_id=ID), GONE]],
                         ids=["never registered", "deleted"])
def test_nothing_is_done_to_a_system_never_registered_or_deleted(systems, history, decide, args) -> None:
    then = systems.given(*history).when(decide, ID, *args)
    assert then.rejected("system_not_found", Refusal.NOT_FOUND).detail == "No such system or application."


# Binding a key to a system (api_keys' system_agent and sso_client roles)


@pytest.mark.parametrize(("role", "kind"), [("system_agent", "macos"), ("system_agent", "linux"),
                                            ("sso_client", "sso_application")])
def test_a_key_is_bound_to_a_system_of_its_kind(role, kind) -> None:
    system.bind_key(system.apply(system.System(), SystemRegistered(system_id=ID, name="x", kind=kind)), role)


@pytest.mark.parametrize(("role", "kind", "detail"), [
    ("system_agent", "sso_application", "A key of role system_agent is bound to a system of kind macos or linux."),
    ("sso_client", "linux", "A key of role sso_client is bound to a system of kind sso_application."),
    ("sso_client", "macos", "A key of role sso_client is bound to a system of kind sso_application."),
])
def test_a_key_is_not_bound_to_a_system_of_another_kind(role, kind, detail) -> None:
    state = system.apply(system.System(), SystemRegistered(system_id=ID, name="x", kind=kind))
    with pytest.raises(Rejected) as refused:
        system.bind_key(state, role)
    assert (refused.value.code, refused.value.kind, refused.value.detail) == ("wrong_system_kind", Refusal.CONFLICT,
                                                                              detail)


def test_no_key_is_bound_to_a_system_deleted_or_never_registered() -> None:
    for state in (system.System(), system.apply(system.apply(system.System(), REGISTERED), GONE)):
        with pytest.raises(Rejected) as refused:
            system.bind_key(state, "system_agent")
        assert refused.value.code == "system_not_found"

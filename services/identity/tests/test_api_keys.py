"""Every command and every refusal of the API key aggregate, given events / when command / then events: a
key is created once and revoked once; a system agent's or SSO client's key names its one system, and no
other key names one; every key expires within a year; a key is found only by its own id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mfaplane_contracts.identity_api import NewApiKey
from mfaplane_contracts.identity_events import ApiKeyCreated, ApiKeyRevoked
from mfaplane_eventing.aggregate import Refusal
from mfaplane_identity import api_keys

ID = uuid.uuid4()
HOST = uuid.uuid4()
EXPIRES_AT = datetime(2026, 8, 1, tzinfo=UTC)
CREATED = ApiKeyCreated(key_id=ID, role="admin", name="CI", expires_at=EXPIRES_AT)


# CreateApiKey


def test_a_key_is_created_with_its_role_name_expiry_and_system(keys) -> None:
    keys.given().when(api_keys.create, ID, "admin", "CI", EXPIRES_AT).then(CREATED)
    keys.given().when(api_keys.create, ID, "system_agent", "build-01 agent", EXPIRES_AT, HOST).then(
        ApiKeyCreated(key_id=ID, role="system_agent", name="build-01 agent", expires_at=EXPIRES_AT, system_id=HOST))


@pytest.mark.parametrize("history", [[CREATED], [CREATED, ApiKeyRevoked(key_id=ID)]], ids=["active", "revoked"])
def test_a_key_id_once_taken_is_never_created_again(keys, history) -> None:
    then = keys.given(*history).when(api_keys.create, ID, "admin", "CI again", EXPIRES_AT)
    assert then.rejected("api_key_exists", Refusal.CONFLICT).detail == "An API key with this id already exists."


@pytest.mark.parametrize("role", ["system_agent", "sso_client"])
def test_an_agent_or_sso_client_key_names_its_system(role) -> None:
    assert NewApiKey(role=role, name="build-01", system_id=HOST).system_id == HOST
    with pytest.raises(ValidationError, match="system_id is required for a system_agent or sso_client key"):
        NewApiKey(role=role, name="build-01")


@pytest.mark.parametrize("role", ["admin", "auditor", "portal"])
def test_no_other_key_is_bound_to_a_system(role) -> None:
    assert NewApiKey(role=role, name="CI").system_id is None
    with pytest.raises(ValidationError, match="and only for those"):
        NewApiKey(role=role, name="CI", system_id=HOST)


def test_a_key_expires_after_90_days_unless_told_and_within_a_year() -> None:
    assert NewApiKey(role="admin", name="CI").expires_in_days == 90
    assert [NewApiKey(role="admin", name="CI", expires_in_days=days).expires_in_days for days in (1, 365)] == [1, 365]
    for days in (0, 366):
        with pytest.raises(ValidationError, match="expires_in_days"):
            NewApiKey(role="admin", name="CI", expires_in_days=days)


# RevokeApiKey


def test_a_key_is_revoked_once_and_revoking_it_again_changes_nothing(keys) -> None:
    then = keys.given(CREATED).when(api_keys.revoke, ID).then(ApiKeyRevoked(key_id=ID))
    assert then.state.revoked
    keys.given(CREATED, *then.events).when(api_keys.revoke, ID).then()


def test_a_key_never_created_is_not_revoked(keys) -> None:
    refused = keys.given().when(api_keys.revoke, ID).rejected("api_key_not_found", Refusal.NOT_FOUND)
    assert refused.detail == "No such API key."


# The key's id, which finds its row before the hash is compared


def test_a_key_names_its_own_id_and_a_forged_one_names_none() -> None:
    key = api_keys.new_key(ID)
    assert api_keys.key_id_of(key) == ID
    _, _, secret = key.split("_", 2)
    for forged in ("mfp_forged_key", f"mfp_{ID.hex}", f"mfk_{ID.hex}_{secret}", f"mfp_{ID.hex[:-1]}z_{secret}",
                   f"{ID.hex}_{secret}", ""):
        assert api_keys.key_id_of(forged) is None, forged

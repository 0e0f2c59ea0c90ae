"""The internal endpoints both sides of a hop share: a command's id comes from who sent it, the command,
its aggregate and the Idempotency-Key, so the same command retried is one command whichever route
carried it, and nothing else shares its id."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from mfaplane_contracts import identity_api, mfa_api
from mfaplane_contracts.commands import CommandReceipt

ALICE = {"scope": "user_portal", "principal_id": uuid.uuid4()}
BOB = {"scope": "user_portal", "principal_id": uuid.uuid4()}


def test_a_retry_is_the_same_command() -> None:
    assert mfa_api.REQUIRE.command_id("admin:1", ALICE, "k") == mfa_api.REQUIRE.command_id("admin:1", ALICE, "k")


def test_a_bulk_item_is_its_action_s_own_command() -> None:
    carried = {action: (endpoint.path.rsplit("/", 1)[1], endpoint.command)
               for action, endpoint in mfa_api.BATCH_ACTIONS.items()}
    assert carried == {"require": ("require", "RequireMFA"), "extend": ("extend", "ExtendEnrollment"),
                       "reset": ("reset", "ResetMFA")}


@pytest.mark.parametrize("other", [
    (mfa_api.REQUIRE, "admin:2", ALICE, "k"),  # another actor's key
    (mfa_api.REQUIRE, "admin:1", BOB, "k"),  # another aggregate
    (mfa_api.EXTEND, "admin:1", ALICE, "k"),  # another command
    (mfa_api.REQUIRE, "admin:1", ALICE, "k2"),  # another key
])
def test_anything_else_is_another_command(other) -> None:
    endpoint, actor, params, key = other
    assert endpoint.command_id(actor, params, key) != mfa_api.REQUIRE.command_id("admin:1", ALICE, "k")


def test_without_a_key_every_call_is_a_new_command() -> None:
    assert mfa_api.REQUIRE.command_id("admin:1", ALICE, None) != mfa_api.REQUIRE.command_id("admin:1", ALICE, None)


def test_a_query_is_no_command() -> None:
    assert mfa_api.VIEW.command_id("admin:1", ALICE, "k") != mfa_api.VIEW.command_id("admin:1", ALICE, "k")


def test_the_path_is_filled_from_the_parameters() -> None:
    assert mfa_api.VERIFY.url(ALICE) == f"/enrollments/user_portal/{ALICE['principal_id']}/verify"
    assert identity_api.SYSTEM_STATE.url({"system_id": "s"}) == "/systems/s"


def test_an_answer_is_read_into_its_model_and_tolerates_new_fields() -> None:
    content = b'{"aggregate_id": "a", "version": 2, "event_ids": [], "duplicate": false, "added_later": 1}'
    assert mfa_api.REQUIRE.read(content) == CommandReceipt(aggregate_id="a", version=2, event_ids=[], duplicate=False)
    listed = identity_api.LIST_API_KEYS.read(b"[]")
    assert listed == []


def test_a_request_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValidationError):
        identity_api.MFASwitch.model_validate({"enabled": True, "also": 1})

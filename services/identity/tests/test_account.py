"""Every command and every refusal of the account aggregate, given events / when command / then events: an
id is created once, an operation on users reaches no admin and no deleted user (and the other way round),
and a password reset link works once, before it expires, while no newer one was sent, on its own kind's
portal.

Two rules are the identity service's, kept by its database in the transaction that appends the events,
and tested end to end (tests/): an email or login name another principal has, and the last admin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts.identity_events import (
    AdminCreated,
    AdminDeleted,
    AdminPasswordChanged,
    AdminPasswordResetRequested,
    AdminSessionsEnded,
    UserCreated,
    UserDeleted,
    UserLoginNameChanged,
    UserPasswordChanged,
    UserPasswordResetRequested,
    UserSessionsEnded,
    UserUpdated,
)
from mfaplane_eventing.aggregate import Refusal
from mfaplane_identity import account

ID = uuid.uuid4()
USER = UserCreated(user_id=ID, email="ada@example.com", name="Ada")
ADMIN = AdminCreated(admin_id=ID, email="root@example.com", name="Root")
USER_GONE, ADMIN_GONE = UserDeleted(user_id=ID), AdminDeleted(admin_id=ID)
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
RESET, NEWER_RESET = uuid.uuid4(), uuid.uuid4()
USER_RESET = UserPasswordResetRequested(user_id=ID, reset_id=RESET, expires_at=NOW + timedelta(hours=24))
ADMIN_RESET = AdminPasswordResetRequested(admin_id=ID, reset_id=RESET, expires_at=NOW + timedelta(hours=24))


# Creation


def test_a_user_is_created_without_a_login_name(accounts) -> None:
    then = accounts.given().when(account.create_user, ID, "ada@example.com", "Ada").then(USER)
    assert (then.state.kind, then.state.login_name) == ("user", None)


def test_a_user_is_created_with_a_login_name(accounts) -> None:
    then = accounts.given().when(account.create_user, ID, "ada@example.com", "Ada", "ada").then(
        USER, UserLoginNameChanged(user_id=ID, login_name="ada"))
    assert then.state.login_name == "ada"


def test_an_admin_is_created(accounts) -> None:
    assert accounts.given().when(account.create_admin, ID, "root@example.com", "Root").then(ADMIN).state.kind == "admin"


@pytest.mark.parametrize("history", [[USER], [ADMIN], [USER, USER_GONE], [ADMIN, ADMIN_GONE]],
                         ids=["a user", "an admin", "a deleted user", "a deleted admin"])
def test_an_id_once_taken_is_never_created_again(accounts, history) -> None:
    """Not even after a deletion: the new principal would inherit the old one's history."""
    given = accounts.given(*history)
    refusal = given.when(account.create_user, ID, "eve@example.com", "Eve").rejected("user_exists", Refusal.CONFLICT)
    assert refusal.detail == "A user with this id already exists."
    refusal = given.when(account.create_admin, ID, "eve@example.com", "Eve").rejected("admin_exists", Refusal.CONFLICT)
    assert refusal.detail == "An admin with this id already exists."


# UpdateUser


def test_a_user_s_name_and_email_change_alone_or_together(accounts) -> None:
    given = accounts.given(USER)
    given.when(account.update_user, ID, None, "Ada L.").then(UserUpdated(user_id=ID, email="ada@example.com",
                                                                         name="Ada L."))
    given.when(account.update_user, ID, "ada@lovelace.example", None).then(
        UserUpdated(user_id=ID, email="ada@lovelace.example", name="Ada"))
    then = given.when(account.update_user, ID, "ada@lovelace.example", "Ada L.").then(
        UserUpdated(user_id=ID, email="ada@lovelace.example", name="Ada L."))
    assert (then.state.email, then.state.name) == ("ada@lovelace.example", "Ada L.")


def test_an_update_to_what_the_user_already_has_changes_nothing(accounts) -> None:
    accounts.given(USER).when(account.update_user, ID, None, None).then()
    accounts.given(USER).when(account.update_user, ID, "ada@example.com", "Ada").then()
    renamed = UserUpdated(user_id=ID, email="ada@example.com", name="Ada L.")
    accounts.given(USER, renamed).when(account.update_user, ID, None, "Ada L.").then()


# SetLoginName


def test_a_login_name_is_set_changed_and_cleared(accounts) -> None:
    ada = UserLoginNameChanged(user_id=ID, login_name="ada")
    accounts.given(USER).when(account.set_login_name, ID, "ada").then(ada)
    named = accounts.given(USER, ada)
    named.when(account.set_login_name, ID, "alovelace").then(UserLoginNameChanged(user_id=ID, login_name="alovelace"))
    assert named.when(account.set_login_name, ID, None).then(
        UserLoginNameChanged(user_id=ID, login_name=None)).state.login_name is None


def test_the_login_name_the_user_already_has_changes_nothing(accounts) -> None:
    accounts.given(USER, UserLoginNameChanged(user_id=ID, login_name="ada")).when(account.set_login_name, ID,
                                                                                   "ada").then()
    accounts.given(USER).when(account.set_login_name, ID, None).then()


# DeleteUser, DeleteAdmin, EndSessions


def test_a_user_is_deleted(accounts) -> None:
    assert accounts.given(USER).when(account.delete_user, ID).then(USER_GONE).state.deleted


def test_an_admin_is_deleted(accounts) -> None:
    assert accounts.given(ADMIN).when(account.delete_admin, ID).then(ADMIN_GONE).state.deleted


def test_an_admin_ends_every_session_of_a_user_or_an_admin_each_by_its_own_kind(accounts) -> None:
    """Always an event, with no session open too: the audit trail shows the admin acted."""
    accounts.given(USER).when(account.end_sessions, "user", ID).then(UserSessionsEnded(user_id=ID))
    accounts.given(ADMIN).when(account.end_sessions, "admin", ID).then(AdminSessionsEnded(admin_id=ID))


# ChangePassword


def test_an_owner_or_an_admin_changes_a_password_of_its_own_kind(accounts) -> None:
    accounts.given(USER).when(account.change_password, "user", ID).then(UserPasswordChanged(user_id=ID))
    accounts.given(ADMIN).when(account.change_password, "admin", ID).then(AdminPasswordChanged(admin_id=ID))


# Every operation on a kind finds only a live principal of that kind.

LATER = NOW + timedelta(hours=24)
USER_OPERATIONS = [
    pytest.param(account.update_user, (ID, None, "Renamed"), id="rename"),
    pytest.param(account.update_user, (ID, "other@example.com", None), id="new email"),
    pytest.param(account.set_login_name, (ID, "root"), id="set login name"),
    pytest.param(account.set_login_name, (ID, None), id="clear login name"),
    pytest.param(account.delete_user, (ID,), id="delete"),
    pytest.param(account.change_password, ("user", ID), id="change password"),
    pytest.param(account.request_password_reset, ("user", ID, RESET, LATER), id="request reset"),
    pytest.param(account.end_sessions, ("user", ID), id="end sessions"),
]
ADMIN_OPERATIONS = [
    pytest.param(account.delete_admin, (ID,), id="delete"),
    pytest.param(account.change_password, ("admin", ID), id="change password"),
    pytest.param(account.request_password_reset, ("admin", ID, RESET, LATER), id="request reset"),
    pytest.param(account.end_sessions, ("admin", ID), id="end sessions"),
]


@pytest.mark.parametrize("decide, args", USER_OPERATIONS)
@pytest.mark.parametrize("history", [[], [ADMIN], [USER, USER_GONE], [ADMIN, ADMIN_GONE]],
                         ids=["nobody", "an admin", "a deleted user", "a deleted admin"])
def test_a_user_operation_finds_no_admin_nobody_and_no_deleted_user(accounts, history, decide, args) -> None:
    then = accounts.given(*history).when(decide, *args)
    assert then.rejected("user_not_found", Refusal.NOT_FOUND).detail == "No such user."


@pytest.mark.parametrize("decide, args", ADMIN_OPERATIONS)
@pytest.mark.parametrize("history", [[], [USER], [ADMIN, ADMIN_GONE], [USER, USER_GONE]],
                         ids=["nobody", "a user", "a deleted admin", "a deleted user"])
def test_an_admin_operation_finds_no_user_nobody_and_no_deleted_admin(accounts, history, decide, args) -> None:
    then = accounts.given(*history).when(decide, *args)
    assert then.rejected("admin_not_found", Refusal.NOT_FOUND).detail == "No such admin."


# RequestPasswordReset, RedeemPasswordReset

INVALID_RESET = ("The reset link is invalid, expired, already used or replaced by a newer one; ask an "
                 "administrator for a new one.")


def refused_reset(accounts, *history, kind: str = "user", reset_id: uuid.UUID = RESET, now: datetime = NOW) -> None:
    """Whichever condition failed, the holder of the link learns only that it does not work."""
    then = accounts.given(*history).when(account.redeem_password_reset, kind, ID, reset_id, now)
    assert then.rejected("invalid_reset_token", Refusal.INVALID).detail == INVALID_RESET


def test_a_reset_is_requested_for_a_user_or_an_admin(accounts) -> None:
    then = accounts.given(USER).when(account.request_password_reset, "user", ID, RESET, LATER).then(USER_RESET)
    assert (then.state.open_reset, then.state.reset_expires_at) == (RESET, LATER)
    accounts.given(ADMIN).when(account.request_password_reset, "admin", ID, RESET, LATER).then(ADMIN_RESET)


def test_a_newer_reset_supersedes_the_open_one(accounts) -> None:
    newer = UserPasswordResetRequested(user_id=ID, reset_id=NEWER_RESET, expires_at=NOW + timedelta(hours=30))
    then = accounts.given(USER, USER_RESET).when(account.request_password_reset, "user", ID, NEWER_RESET,
                                                 newer.expires_at).then(newer)
    assert then.state.open_reset == NEWER_RESET
    refused_reset(accounts, USER, USER_RESET, newer)
    accounts.given(USER, USER_RESET, newer).when(account.redeem_password_reset, "user", ID, NEWER_RESET, NOW).then(
        UserPasswordChanged(user_id=ID, reset_id=NEWER_RESET))


def test_the_open_reset_sets_the_password_once_and_the_change_names_it(accounts) -> None:
    then = accounts.given(USER, USER_RESET).when(account.redeem_password_reset, "user", ID, RESET, NOW).then(
        UserPasswordChanged(user_id=ID, reset_id=RESET))
    assert then.state.open_reset is None
    refused_reset(accounts, USER, USER_RESET, *then.events)


def test_an_admin_s_reset_sets_the_admin_s_password_on_the_admin_console(accounts) -> None:
    accounts.given(ADMIN, ADMIN_RESET).when(account.redeem_password_reset, "admin", ID, RESET, NOW).then(
        AdminPasswordChanged(admin_id=ID, reset_id=RESET))
    refused_reset(accounts, ADMIN, ADMIN_RESET, kind="user")


def test_a_reset_is_refused_from_the_moment_it_expires(accounts) -> None:
    accounts.given(USER, USER_RESET).when(account.redeem_password_reset, "user", ID, RESET,
                                          USER_RESET.expires_at - timedelta(seconds=1)).then(
        UserPasswordChanged(user_id=ID, reset_id=RESET))
    refused_reset(accounts, USER, USER_RESET, now=USER_RESET.expires_at)


def test_any_password_change_closes_the_open_reset(accounts) -> None:
    then = accounts.given(USER, USER_RESET).when(account.change_password, "user", ID).then(
        UserPasswordChanged(user_id=ID))
    assert then.state.open_reset is None
    refused_reset(accounts, USER, USER_RESET, *then.events)


def test_a_reset_is_refused_for_another_kind_an_unknown_id_nobody_or_the_deleted(accounts) -> None:
    refused_reset(accounts, USER, USER_RESET, kind="admin")
    refused_reset(accounts, USER, USER_RESET, reset_id=uuid.uuid4())
    refused_reset(accounts, USER)
    refused_reset(accounts)
    refused_reset(accounts, USER, USER_RESET, USER_GONE)
    refused_reset(accounts, ADMIN, ADMIN_RESET, ADMIN_GONE, kind="admin")

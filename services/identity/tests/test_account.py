"""The account aggregate, given events / when command / then events: an operation on users never
reaches an admin, an admin is deleted only as an admin, and a password reset link works once, before
it expires, while no newer one was sent, on its own kind's portal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mfaplane_contracts.identity_events import (AdminCreated, AdminDeleted, AdminPasswordChanged,
                                               AdminPasswordResetRequested, AdminSessionsEnded, UserCreated,
                                               UserDeleted, UserLoginNameChanged, UserPasswordChanged, UserPasswordResetRequested,
                                               UserSessionsEnded, UserUpdated)
from mfaplane_eventing.aggregate import Rejected, fold
from mfaplane_identity import account
from mfaplane_identity.account import Account

ID = uuid.uuid4()
USER = UserCreated(user_id=ID, email="ada@example.com", name="Ada")
ADMIN = AdminCreated(admin_id=ID, email="root@example.com", name="Root")


def given(*events) -> Account:
    return fold(account.apply, Account(), events)


def refused(code: str, decide, *args) -> None:
    with pytest.raises(Rejected) as refusal:
        decide(*args)
    assert (refusal.value.code, refusal.value.status) == (code, 404)


def test_a_user_is_renamed_and_deleted() -> None:
    assert account.update_user(given(USER), ID, None, "Ada L.") == [
        UserUpdated(user_id=ID, email="ada@example.com", name="Ada L.")]
    assert account.delete_user(given(USER), ID) == [UserDeleted(user_id=ID)]


def test_a_user_is_created_with_a_login_name_which_is_changed_and_cleared() -> None:
    assert account.create_user(given(), ID, "ada@example.com", "Ada", "ada") == [
        USER, UserLoginNameChanged(user_id=ID, login_name="ada")]
    named = given(USER, UserLoginNameChanged(user_id=ID, login_name="ada"))
    assert account.set_login_name(named, ID, "ada") == []
    assert account.set_login_name(named, ID, "alovelace") == [UserLoginNameChanged(user_id=ID, login_name="alovelace")]
    assert account.set_login_name(named, ID, None) == [UserLoginNameChanged(user_id=ID, login_name=None)]
    assert account.set_login_name(given(USER), ID, None) == []


def test_the_user_operations_do_not_find_an_admin() -> None:
    refused("user_not_found", account.set_login_name, given(ADMIN), ID, "root")
    refused("user_not_found", account.update_user, given(ADMIN), ID, None, "Renamed")
    refused("user_not_found", account.update_user, given(ADMIN), ID, "other@example.com", None)
    refused("user_not_found", account.delete_user, given(ADMIN), ID)


def test_an_admin_is_deleted_once() -> None:
    assert account.delete_admin(given(ADMIN), ID) == [AdminDeleted(admin_id=ID)]
    refused("admin_not_found", account.delete_admin, given(ADMIN, AdminDeleted(admin_id=ID)), ID)


def test_deleting_an_admin_does_not_find_a_user_or_nobody() -> None:
    refused("admin_not_found", account.delete_admin, given(USER), ID)
    refused("admin_not_found", account.delete_admin, given(), ID)


def test_a_deleted_admin_is_not_found_by_the_user_operations_either() -> None:
    refused("user_not_found", account.delete_user, given(ADMIN, AdminDeleted(admin_id=ID)), ID)


def test_an_admin_ends_every_session_of_a_user_or_an_admin_each_by_its_own_kind() -> None:
    assert account.end_sessions(given(USER), "user", ID) == [UserSessionsEnded(user_id=ID)]
    assert account.end_sessions(given(ADMIN), "admin", ID) == [AdminSessionsEnded(admin_id=ID)]
    refused("user_not_found", account.end_sessions, given(ADMIN), "user", ID)
    refused("admin_not_found", account.end_sessions, given(ADMIN, AdminDeleted(admin_id=ID)), "admin", ID)
    refused("user_not_found", account.end_sessions, given(), "user", ID)


NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
RESET, NEWER_RESET = uuid.uuid4(), uuid.uuid4()
USER_RESET = UserPasswordResetRequested(user_id=ID, reset_id=RESET, expires_at=NOW + timedelta(hours=24))


def refused_reset(state: Account, kind: str = "user", reset_id: uuid.UUID = RESET, now: datetime = NOW) -> None:
    with pytest.raises(Rejected) as refusal:
        account.redeem_password_reset(state, kind, ID, reset_id, now)
    assert (refusal.value.code, refusal.value.status) == ("invalid_reset_token", 400)


def test_an_owner_or_an_admin_changes_a_password_of_its_own_kind() -> None:
    assert account.change_password(given(USER), "user", ID) == [UserPasswordChanged(user_id=ID)]
    assert account.change_password(given(ADMIN), "admin", ID) == [AdminPasswordChanged(admin_id=ID)]
    refused("user_not_found", account.change_password, given(ADMIN), "user", ID)
    refused("admin_not_found", account.change_password, given(ADMIN, AdminDeleted(admin_id=ID)), "admin", ID)


def test_a_reset_is_requested_for_a_live_principal_of_the_kind_named() -> None:
    expires_at = NOW + timedelta(hours=24)
    assert account.request_password_reset(given(USER), "user", ID, RESET, expires_at) == [USER_RESET]
    assert account.request_password_reset(given(ADMIN), "admin", ID, RESET, expires_at) == [
        AdminPasswordResetRequested(admin_id=ID, reset_id=RESET, expires_at=expires_at)]
    refused("user_not_found", account.request_password_reset, given(ADMIN), "user", ID, RESET, expires_at)
    refused("user_not_found", account.request_password_reset, given(USER, UserDeleted(user_id=ID)), "user", ID,
            RESET, expires_at)


def test_the_open_reset_sets_the_password_once_and_the_change_names_it() -> None:
    assert account.redeem_password_reset(given(USER, USER_RESET), "user", ID, RESET, NOW) == [
        UserPasswordChanged(user_id=ID, reset_id=RESET)]
    refused_reset(given(USER, USER_RESET, UserPasswordChanged(user_id=ID, reset_id=RESET)))


def test_a_reset_is_refused_once_expired_superseded_or_closed_by_another_change() -> None:
    refused_reset(given(USER, USER_RESET), now=USER_RESET.expires_at)
    newer = UserPasswordResetRequested(user_id=ID, reset_id=NEWER_RESET, expires_at=NOW + timedelta(hours=30))
    refused_reset(given(USER, USER_RESET, newer))
    assert account.redeem_password_reset(given(USER, USER_RESET, newer), "user", ID, NEWER_RESET, NOW) == [
        UserPasswordChanged(user_id=ID, reset_id=NEWER_RESET)]
    refused_reset(given(USER, USER_RESET, UserPasswordChanged(user_id=ID)))


def test_a_reset_is_refused_for_another_kind_an_unknown_id_nobody_or_the_deleted() -> None:
    refused_reset(given(USER, USER_RESET), kind="admin")
    refused_reset(given(USER, USER_RESET), reset_id=uuid.uuid4())
    refused_reset(given(USER))
    refused_reset(given())
    refused_reset(given(USER, USER_RESET, UserDeleted(user_id=ID)))

"""The account aggregate, given events / when command / then events: an operation on users never
reaches an admin, and an admin is deleted only as an admin."""

from __future__ import annotations

import uuid

import pytest

from mfaplane_contracts.identity_events import AdminCreated, AdminDeleted, UserCreated, UserDeleted, UserUpdated
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


def test_the_user_operations_do_not_find_an_admin() -> None:
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

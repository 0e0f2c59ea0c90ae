"""Examples of the public API's request bodies and answers, by the type of each, which the OpenAPI document
shows beside each operation's schema (api_docs.show_examples). They tell one story: Ada, a user whose MFA
an admin, Grace, requires, on the Linux host build-01. Keys and tokens have the form of real ones, but
their secret part reads EXAMPLE: none opens anything.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from mfaplane_contracts.identity_events import SignInSettings
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_gateway.api import paging
from mfaplane_gateway.api.admin_api import AdminAccount, AdminPage, ApiKeyPage, IssuedApiKey, ListedApiKey, NewApiKey
from mfaplane_gateway.api.enrollment_admin import EnrollmentPeriod, RequirePeriod
from mfaplane_gateway.api.principals import NewPrincipal
from mfaplane_gateway.api.receipts import Receipt
from mfaplane_gateway.api.resources_api import (
    AuthorizeRequest,
    BulkMFASwitch,
    Decision,
    MFASwitch,
    NewSystem,
    SignIn,
    System,
    SystemChanges,
    SystemPage,
)
from mfaplane_gateway.api.users import NewUser, User, UserChanges, UserPage
from mfaplane_gateway.audit import audit_order
from mfaplane_gateway.audit.audit_api import AuditRecord, PrincipalStateAt
from mfaplane_gateway.bulk.bulk import BulkRequest, DryRun, Operation
from mfaplane_gateway.bulk.login_names import LoginNames
from mfaplane_gateway.bulk.piecewise import BulkResult
from mfaplane_gateway.bulk.user_import import ImportRequest, ImportResult
from mfaplane_gateway.edge import portal_account, sign_in
from mfaplane_gateway.edge.passwords_api import PasswordChange, ResetRedemption, ResetRequested
from mfaplane_gateway.read_models import principals_query

ADA = "0b6f1c52-8a3e-4d07-9e51-3c2a7d94f6b1"
ALAN = "5d2e8f31-1b4c-4a96-8f0e-7a3b9c6d2e45"
KATHERINE = "a71d3b08-6e2f-4c59-9b14-8f0c5e2d7a36"
GRACE = "9c4a7e15-3f2b-4d81-a6c9-1e5f8b3d7a20"  # an admin
BUILD_HOST = "4e8b2a91-7c3d-4f56-b1e0-9d2c6a5f3e87"
EXPENSES_APP = "c3f9d6e2-2a8b-4e71-8d05-6b1f4c9a3e52"
EXPENSES = "https://expenses.example.com"
ISSUER = "https://mfa.example.com"
APPLICATION_SIGN_IN = "RVhBTVBMRS1hcHBsaWNhdGlvbi1zaWduLWluLXRva2Vu"
KEY_ID = "8c1f0e4a-2b7d-4c3e-9a6f-5b1d2e3c4a5b"
EVENT_ID = "e2a45c17-9b3d-4f08-a6e1-5c7d2b9f4a83"
OPERATION_ID = "7f3b9e2d-4c1a-4d86-b5f0-2e8a6c3d9b14"
NOW = "2027-03-08T09:30:00Z"
SESSION_END = "2027-03-08T17:30:00Z"  # eight hours on, the sessions' default lifetime
DEADLINE = "2027-03-15T09:30:00Z"  # seven days on, the default enrollment period
KEY_EXPIRES = "2027-06-06T09:30:00Z"  # 90 days on, the API keys' default lifetime
NOT_A_SECRET = "EXAMPLE-only-not-a-real-secret-EXAMPLE-only"  # 43 characters, as a key's secret part is
PASSWORD = "correct horse battery staple"
APP_CODE = "492039"
RECOVERY_CODES = ["7KQM-2XHD-9RPA-4TWC", "M3JB-8NVE-Q5GK-2HYS", "C6TW-4PZR-7XMD-9AKE", "R2HN-5YQB-3JVT-8WGM",
                  "F9KA-6MXC-2TRP-5DNH", "W4EV-9BJS-6QHZ-3KMT", "H8PD-3RGY-5WNC-7VAJ", "Z5XT-7KME-4HBQ-2RPF",
                  "B3NG-8DWA-6ZKV-9SQC", "Q7YH-2CTF-8MPR-4XEW"]


def _signed(payload: Any, timestamp: str = "aQ_kmw") -> str:
    """A token in the form the gateway signs sessions and challenges in, its signature plainly not one."""
    data = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{data}.{timestamp}.EXAMPLE-signature"


SESSION = _signed("3f9a6c21-7d4e-4b85-a0c3-9e1f2d8b5a47")
CHALLENGE = _signed({"c": "61d8e3a9-2f5b-4c07-8e4d-1a9b7c3f6e20", "p": ADA, "k": "user",
                     "e": "ada.lovelace@example.com", "u": "code", "t": "2027-03-08T09:30:00+00:00"})


def example(summary: str, value: Any) -> dict[str, Any]:
    """An OpenAPI Example Object."""
    return {"summary": summary, "value": value}


def _receipt(about: str = ADA, aggregate_id: str | None = None, version: int = 2) -> dict[str, Any]:
    aggregate_id = aggregate_id or about
    return {"id": about, "aggregate_id": aggregate_id, "version": version, "event_ids": [EVENT_ID],
            "duplicate": False, "consistency_token": f"{aggregate_id}@{version}"}


def _principal(**changes: Any) -> dict[str, Any]:
    """Ada, enrolling: MFA required with seven days to set it up, of which about five are left."""
    return {"id": ADA, "email": "ada.lovelace@example.com", "name": "Ada Lovelace", "status": "enrolling",
            "required": True, "set_up": False, "mfa_active": False, "deadline": DEADLINE,
            "time_remaining_seconds": 432000, "enrollment_days": 7, "dismissals": 1, "last_verified_at": None,
            "throttled_until": None, "codes_locked": False, **changes}


ENROLLING_USER = _principal(login_name="ada")
ACTIVE_ADMIN = _principal(id=GRACE, email="grace.hopper@example.com", name="Grace Hopper", status="active",
                          set_up=True, mfa_active=True, deadline=None, time_remaining_seconds=None,
                          enrollment_days=None, dismissals=0, last_verified_at=NOW)
NEXT_CURSOR = paging.encode_cursor(principals_query.listing("user", "email"), "ada.lovelace@example.com",
                                   uuid.UUID(ADA))
SYSTEMS = [{"id": BUILD_HOST, "name": "build-01", "kind": "linux", "mfa_enabled": True},
           {"id": EXPENSES_APP, "name": "Expenses", "kind": "sso_application", "mfa_enabled": False}]
LISTED_KEY = {"key_id": KEY_ID, "role": "system_agent", "system_id": BUILD_HOST, "name": "PAM agent on build-01",
              "created_at": NOW, "created_by": f"admin:{GRACE}", "expires_at": KEY_EXPIRES, "status": "active"}
RUNNING = {"id": OPERATION_ID, "action": "require", "enrollment_days": 7, "state": "running", "total": 4000,
           "done": 1500, "changed": 1480, "unchanged": 20, "failed": [], "created_at": NOW, "completed_at": None,
           "consistency_token": f"bulk:{OPERATION_ID}"}
ENROLLMENT = f"user_portal:{ADA}"

EXAMPLES: dict[Any, dict[str, dict[str, Any]]] = {
    # users and admins
    NewUser: {"user": example("A user with a login name on protected systems", {
        "email": "ada.lovelace@example.com", "name": "Ada Lovelace", "password": PASSWORD, "login_name": "ada"})},
    NewPrincipal: {"admin": example("An admin", {
        "email": "grace.hopper@example.com", "name": "Grace Hopper", "password": PASSWORD})},
    UserChanges: {"rename": example("A new name and login name; the email stays", {
        "name": "Ada King", "login_name": "aking"})},
    User: {"enrolling": example("Required, with days left to set up", ENROLLING_USER)},
    UserPage: {"page": example("A page, and the cursor of the next", {
        "items": [ENROLLING_USER], "next_cursor": NEXT_CURSOR})},
    AdminAccount: {"active": example("MFA set up", ACTIVE_ADMIN)},
    AdminPage: {"last_page": example("The last page", {"items": [ACTIVE_ADMIN], "next_cursor": None})},
    dict[MFAStatus, int]: {"counts": example("Users by MFA status", {
        "active": 3120, "enrolling": 640, "expired": 12, "configured_not_required": 85, "required_no_period": 3,
        "none": 140})},
    Receipt: {"receipt": example("A change stored", _receipt(ADA, ENROLLMENT))},
    ResetRequested: {"mailed": example("A reset link mailed", {
        **_receipt(ADA), "expires_at": "2027-03-09T09:30:00Z"})},
    LoginNames: {"names": example("Set one, clear another", {"items": [
        {"user_id": ADA, "login_name": "ada"}, {"user_id": KATHERINE, "login_name": None}]})},
    BulkResult: {"one_refused": example("One changed, one as it was, one refused", {
        "changed": [ADA], "unchanged": [ALAN], "failed": {KATHERINE: "login_name_taken"},
        "consistency_token": "bulk:2d6f8a13-5e9c-4b72-a0d4-8c3e1f7b6a95"})},
    ImportRequest: {"dry_run": example("Two rows, checked and not written", {"dry_run": True, "rows": [
        {"email": "ada.lovelace@example.com", "name": "Ada Lovelace", "password": "", "login_name": "ada"},
        {"email": "alan.turing@example", "name": "Alan Turing", "password": "", "login_name": ""}]})},
    ImportResult: {"dry_run": example("A dry run: one row would be created, one is invalid", {"rows": [
        {"row": 0, "outcome": "create", "code": None, "detail": None, "user_id": None, "reset_link_mailed": False},
        {"row": 1, "outcome": "invalid", "code": "invalid_row",
         "detail": "email: Value error, value is not a valid email address: The part after the @-sign is not valid. "
                   "It should have a period.",
         "user_id": None, "reset_link_mailed": False}], "consistency_token": None})},
    # MFA of one user or admin, and of many
    RequirePeriod: {"period": example("Seven days to set up", {"enrollment_days": 7}),
                    "at_next_sign_in": example("Set up at the next sign-in", {"enrollment_days": None})},
    EnrollmentPeriod: {"period": example("Fourteen days, counted from now", {"enrollment_days": 14})},
    BulkRequest: {
        "filter": example("Every user matching a filter, as a dry run first", {
            "action": "require", "enrollment_days": 7, "filter": {"status": ["none"], "q": "@example.com"},
            "dry_run": True}),
        "ids": example("Listed users", {"action": "extend", "enrollment_days": 14, "user_ids": [ADA, ALAN]})},
    DryRun: {"dry_run": example("A dry run", {
        "would_change": [ADA], "unchanged": [ALAN], "refused": [{"user_id": KATHERINE, "reason": "already_set_up"}],
        "not_found": []})},
    Operation: {
        "running": example("Running", RUNNING),
        "completed": example("Completed", {**RUNNING, "state": "completed", "done": 3998, "changed": 3978,
                                           "failed": [{"user_id": KATHERINE, "reason": "user_not_found"},
                                                      {"user_id": ALAN, "reason": "user_not_found"}],
                                           "completed_at": "2027-03-08T09:30:04Z"})},
    # API keys
    NewApiKey: {"agent": example("A key for the agent on one host", {
        "role": "system_agent", "name": "PAM agent on build-01", "expires_in_days": 90, "system_id": BUILD_HOST})},
    IssuedApiKey: {"issued": example("The key, shown this once", {
        **_receipt(KEY_ID, version=1), "key_id": KEY_ID, "role": "system_agent", "system_id": BUILD_HOST,
        "expires_at": KEY_EXPIRES, "key": f"mfp_{KEY_ID.replace('-', '')}_{NOT_A_SECRET}"})},
    ApiKeyPage: {"page": example("With API-Version: a page", {"items": [LISTED_KEY], "next_cursor": None})},
    list[ListedApiKey]: {"bare_array": example("Without API-Version (deprecated): every key", [LISTED_KEY])},
    # systems and applications
    NewSystem: {"host": example("A Linux host", {"name": "build-01", "kind": "linux"})},
    SystemChanges: {"rename": example("A new name", {"name": "build-02"})},
    MFASwitch: {"on": example("MFA on", {"enabled": True})},
    BulkMFASwitch: {"on": example("MFA on for two", {"enabled": True, "system_ids": [BUILD_HOST, EXPENSES_APP]})},
    SystemPage: {"page": example("With API-Version: a page", {"items": SYSTEMS, "next_cursor": None})},
    list[System]: {"bare_array": example("Without API-Version (deprecated): every one", SYSTEMS)},
    AuthorizeRequest: {
        "login_name": example("After sshd checked the key", {"login_name": "ada", "source": "203.0.113.7"}),
        "with_code": example("Again, with the code the user typed", {
            "login_name": "ada", "code": APP_CODE, "source": "203.0.113.7"}),
        "password": example("The gateway checks the password", {
            "email": "ada.lovelace@example.com", "password": PASSWORD})},
    SignInSettings: {
        "oidc": example("OpenID Connect", {"protocol": "oidc", "redirect_uris": [f"{EXPENSES}/oauth2/callback"]}),
        "saml": example("SAML 2.0", {"protocol": "saml", "entity_id": f"{EXPENSES}/saml/metadata",
                                     "acs_urls": [f"{EXPENSES}/saml/acs"]})},
    SignIn: {"oidc": example("An application signing in with OpenID Connect", {
        "settings": {"protocol": "oidc", "redirect_uris": [f"{EXPENSES}/oauth2/callback"], "entity_id": None,
                     "acs_urls": []},
        "client_id": EXPENSES_APP, "issuer": ISSUER,
        "oidc_discovery_url": f"{ISSUER}/.well-known/openid-configuration",
        "saml_metadata_url": f"{ISSUER}/saml/{EXPENSES_APP}/metadata"})},
    Decision: {"code_required": example("Ask for a code", {"decision": "code_required", "reason": "mfa_set_up"}),
               "allow": example("Let in", {"decision": "allow", "reason": "code_verified"}),
               "deny": example("Refuse", {"decision": "deny", "reason": "invalid_code"})},
    # sign-in, and the portals' own calls
    sign_in.Credentials: {"credentials": example("Email and password", {
        "email": "ada.lovelace@example.com", "password": PASSWORD}),
        "to_an_application": example("Sent by an application to sign in (the `sign_in` of the page's address)", {
            "email": "ada.lovelace@example.com", "password": PASSWORD, "application_sign_in": APPLICATION_SIGN_IN})},
    sign_in.ApplicationSignInBody: {"sign_in": example("The `sign_in` of the page's address", {
        "application_sign_in": APPLICATION_SIGN_IN})},
    sign_in.ApplicationToSignInTo: {"expenses": example("The application", {"name": "Expenses", "mfa_enabled": True})},
    sign_in.ChallengeBody: {"challenge": example("The challenge of the step before", {"challenge": CHALLENGE})},
    sign_in.ChallengeCode: {"app_code": example("A code from the app", {"challenge": CHALLENGE, "code": APP_CODE}),
                       "recovery_code": example("A recovery code", {"challenge": CHALLENGE,
                                                                    "code": RECOVERY_CODES[0]})},
    sign_in.SessionBody: {"session": example("The session token", {"session": SESSION})},
    sign_in.StepUpBody: {"code": example("A code from the app", {"session": SESSION, "code": APP_CODE})},
    sign_in.SignInAnswer: {
        "mfa_required": example("mfa_required: ask for a code", {"outcome": "mfa_required", "challenge": CHALLENGE}),
        "enrollment_prompt": example("enrollment_prompt: set up now, or later", {
            "outcome": "enrollment_prompt", "challenge": CHALLENGE, "days_remaining": 5, "deadline": DEADLINE}),
        "setup_required": example("setup_required: set up before going on", {
            "outcome": "setup_required", "challenge": CHALLENGE}),
        "locked_out": example("locked_out: the deadline passed", {
            "outcome": "locked_out", "deadline": DEADLINE, "reason": sign_in.LOCKED_OUT_REASON}),
        "signed_in": example("signed_in, after a recovery code", {
            "outcome": "signed_in", "session": SESSION, "method": "recovery_code", "recovery_codes_left": 9}),
        "to_an_application": example("signed_in to an application: back to it", {
            "outcome": "signed_in", "method": "totp", "recovery_codes_left": 10,
            "redirect_to": f"{EXPENSES}/oauth2/callback?code=Wm9FeEFNUExFX2NvZGU&state=af0ifjsldkj"})},
    sign_in.SetupAnswer: {"setup": example("What the authenticator app needs (the QR code shortened here)", {
        "key_text": "JBSW Y3DP EHPK 3PXP",
        "otpauth_uri": "otpauth://totp/mfaplane:ada.lovelace%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=mfaplane",
        "qr_svg": '<svg xmlns="http://www.w3.org/2000/svg" width="205" height="205"><title>TOTP setup QR code'
                  '</title>...</svg>',
        "qr_png_base64": "iVBORw0KGgoAAAANSUhEUgAAAM0AAADNAQAAAAA..."})},
    sign_in.SetupComplete: {"signed_in": example("Set up and signed in, with the recovery codes", {
        "outcome": "signed_in", "session": SESSION, "recovery_codes": RECOVERY_CODES})},
    sign_in.SessionInfo: {"session": example("A session whose code was checked", {
        "principal_id": ADA, "kind": "user", "expires_at": SESSION_END, "mfa_verified_at": NOW})},
    portal_account.Account: {"enrolling": example("Enrolling, five days left", {
        "user_id": ADA, "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "session_expires_at": SESSION_END,
        "mfa": {"status": "enrolling", "deadline": DEADLINE, "days_remaining": 5, "recovery_codes_left": 0,
                "throttled_until": None, "locked": False}})},
    portal_account.SetupChallenge: {"challenge": example("A challenge to set up with", {"challenge": CHALLENGE})},
    portal_account.SessionAppCode: {"code": example("A code from the app", {"session": SESSION, "code": APP_CODE})},
    portal_account.NewRecoveryCodes: {"codes": example("Ten new codes, shown this once", {
        "recovery_codes": RECOVERY_CODES})},
    PasswordChange: {"with_code": example("With a code, as MFA is set up", {
        "session": SESSION, "current_password": PASSWORD, "new_password": "plum orchard under winter stars",
        "code": APP_CODE})},
    ResetRedemption: {"reset": example("The token of the mailed link", {
        "token": f"3b7e9c1d5a2f4e8b9c0d6a1f2e3b4c5d.{NOT_A_SECRET}", "new_password": PASSWORD})},
    # audit
    PrincipalStateAt: {"enrolling": example("Enrolling at that moment", {
        "principal_id": ADA, "kind": "user", "email": "ada.lovelace@example.com", "name": "Ada Lovelace",
        "status": "enrolling", "required": True, "set_up": False, "configured": False, "deadline": DEADLINE,
        "deleted": False, "as_of": NOW})},
    AuditRecord: {"required": example("One line: Ada's MFA required", {
        "seq": 1042, "story_at": NOW, "prev_hash": "5f0c2b9e" * 8, "hash": "a3d1e7c4" * 8,
        "cursor": audit_order.Position(start=1000, end=1042, seq=1042).cursor(),
        "envelope": {"event_id": EVENT_ID, "type": "MFARequired", "schema_version": 1,
                     "aggregate_type": "enrollment", "aggregate_id": ENROLLMENT, "aggregate_version": 1,
                     "occurred_at": NOW, "correlation_id": "1c5e9a37-8b2d-4f60-93a1-7e4c2d8b5f09",
                     "causation_id": None, "command_id": "d84b2f6e-1a9c-4e37-b5d2-0f6a3c8e7b41",
                     "actor": f"admin:{GRACE}", "key_id": "ed25519:6a0f3e9c1b7d4a8e2c5f9b3d7e1a4c6f",
                     "signature": "EXAMPLE-signature",
                     "proof": {"index": 0, "size": 1, "path": []},
                     "payload": {"principal_id": ADA, "scope": "user_portal", "principal_kind": "user",
                                 "enrollment_days": 7, "deadline": DEADLINE, "already_set_up": False}}})},
}

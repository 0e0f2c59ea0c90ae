"""The committed schemas are what the code generates, and the messages are strict and immutable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mfaplane_contracts import generate
from mfaplane_contracts.commands import RequireMFA
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_events import MFARequired
from mfaplane_contracts.registry import EVENT_TYPES, UPCASTERS, UnknownEventType, UnknownSchemaVersion, decode_payload

REQUIRED_EVENTS = {
    "UserCreated", "UserUpdated", "UserDeleted", "AdminCreated", "AdminDeleted", "SystemRegistered",
    "SystemMFAEnabled", "SystemMFADisabled", "MFARequired", "MFARequirementRemoved", "EnrollmentExtended", "MFAReset",
    "TOTPSecretIssued", "TOTPEnrolled", "TOTPVerified", "TOTPVerificationFailed", "EnrollmentPromptDismissed",
    "EnrollmentExpiring", "EnrollmentExpired",
}


def test_committed_schemas_match_the_code() -> None:
    for relative, content in generate.schema_files().items():
        path = generate.DEFAULT_DIR / relative
        assert path.exists(), f"{relative} is not committed: run `make schemas`"
        assert path.read_text() == generate.render(content), f"{relative} drifted: run `make schemas`"
    committed = {str(p.relative_to(generate.DEFAULT_DIR)) for p in generate.DEFAULT_DIR.rglob("*.json")}
    assert committed == set(generate.schema_files()), "stale schema files are committed"


def test_every_event_of_the_rules_has_a_typed_payload() -> None:
    assert REQUIRED_EVENTS <= set(EVENT_TYPES)


def _required_payload() -> dict:
    return {"principal_id": str(uuid.uuid4()), "scope": "user_portal", "principal_kind": "user",
            "enrollment_days": 7, "deadline": "2026-12-01T00:00:00Z"}


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        MFARequired.model_validate({**_required_payload(), "totp_secret": "JBSWY3DPEHPK3PXP"})


def test_messages_are_frozen() -> None:
    event = MFARequired.model_validate(_required_payload())
    with pytest.raises(ValidationError):
        event.enrollment_days = 9  # type: ignore[misc]


@pytest.mark.parametrize("days", [0, 366, -1])
def test_enrollment_days_outside_1_to_365_are_refused(days: int) -> None:
    with pytest.raises(ValidationError):
        RequireMFA(principal_id=uuid.uuid4(), actor="admin:a", enrollment_days=days)


def test_envelope_decodes_its_payload_and_refuses_unknown_types_and_versions() -> None:
    envelope = Envelope(
        event_id=uuid.uuid4(), type="MFARequired", schema_version=1, aggregate_type="enrollment",
        aggregate_id="user_portal:x", aggregate_version=1, occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(), actor="admin:a", payload=_required_payload(),
    )
    assert isinstance(envelope.body(), MFARequired)
    with pytest.raises(UnknownEventType):
        decode_payload("NoSuchEvent", 1, {})
    with pytest.raises(UnknownSchemaVersion):
        decode_payload("MFARequired", 2, _required_payload())


def test_old_schema_versions_are_upcast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v1 event stays readable after the payload moves to v2."""

    class MFARequiredV2(MFARequired):
        schema_version = 2

    monkeypatch.setitem(EVENT_TYPES, "MFARequired", MFARequiredV2)
    old = {k: v for k, v in _required_payload().items() if k != "principal_kind"}
    monkeypatch.setitem(UPCASTERS, ("MFARequired", 1), lambda p: {**p, "principal_kind": "user"})
    decoded = decode_payload("MFARequired", 1, old)
    assert isinstance(decoded, MFARequiredV2) and decoded.principal_kind == "user"

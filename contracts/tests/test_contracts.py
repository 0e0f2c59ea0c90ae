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
from mfaplane_contracts.registry import (
    EVENT_TYPES,
    UPCASTERS,
    NewerSchemaVersion,
    UnknownEventType,
    UnknownSchemaVersion,
    decode_payload,
)

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
    older = committed - set(generate.schema_files())
    assert older == {f"events/{name}.v{version}.json" for name, version in _older_versions()}, \
        "stale schema files are committed"


def test_every_published_event_schema_is_committed_as_it_was_first_published() -> None:
    recorded = generate.published(generate.DEFAULT_DIR)
    committed = {str(p.relative_to(generate.DEFAULT_DIR)) for p in (generate.DEFAULT_DIR / "events").glob("*.json")}
    assert set(recorded) == committed, "an event schema is missing, or was never recorded: run `make schemas`"
    changed = [name for name, digest in recorded.items()
               if generate.digest((generate.DEFAULT_DIR / name).read_text()) != digest]
    assert changed == [], "published event schemas were edited: raise the schema_version instead"


def _older_versions() -> set[tuple[str, int]]:
    return {(name, version) for name, model in EVENT_TYPES.items() for version in range(1, model.schema_version)}


def test_every_older_version_of_an_event_has_its_upcaster() -> None:
    assert {(name, version) for name, version in _older_versions() if (name, version) not in UPCASTERS} == set()


def test_a_published_event_schema_cannot_change_without_a_new_version(tmp_path, monkeypatch) -> None:
    generate.write(tmp_path)
    before = {p: p.read_text() for p in tmp_path.rglob("*.json")}

    class MFARequiredChanged(MFARequired):  # one more field, same schema_version
        reason: str = ""

    monkeypatch.setitem(EVENT_TYPES, "MFARequired", MFARequiredChanged)
    with pytest.raises(generate.PublishedSchemaChanged, match="events/MFARequired.v1.json"):
        generate.write(tmp_path)
    assert {p: p.read_text() for p in tmp_path.rglob("*.json")} == before

    (tmp_path / "events/MFARequired.v1.json").unlink()  # deleting the published file changes nothing
    with pytest.raises(generate.PublishedSchemaChanged, match="events/MFARequired.v1.json"):
        generate.write(tmp_path)

    (tmp_path / "events/MFARequired.v1.json").write_text(before[tmp_path / "events/MFARequired.v1.json"])
    monkeypatch.setattr(MFARequiredChanged, "schema_version", 2)
    generate.write(tmp_path)  # a new version is a new file; the published one stays as it was
    assert (tmp_path / "events/MFARequired.v1.json").read_text() == before[tmp_path / "events/MFARequired.v1.json"]
    assert "reason" in (tmp_path / "events/MFARequired.v2.json").read_text()


def test_every_event_of_the_rules_has_a_typed_payload() -> None:
    assert REQUIRED_EVENTS <= set(EVENT_TYPES)


def _required_payload() -> dict:
    return {"principal_id": str(uuid.uuid4()), "scope": "user_portal", "principal_kind": "user",
            "enrollment_days": 7, "deadline": "2026-12-01T00:00:00Z"}


def test_an_event_with_an_unknown_field_cannot_be_made() -> None:
    with pytest.raises(ValidationError):
        MFARequired(**_required_payload(), totp_secret="JBSWY3DPEHPK3PXP")


def test_an_unknown_field_of_a_known_version_is_read_past() -> None:
    """A producer may add an optional field before every consumer knows it."""
    payload = _required_payload()
    assert decode_payload("MFARequired", 1, {**payload, "added_later": "x"}) == MFARequired.model_validate(payload)


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
    with pytest.raises(NewerSchemaVersion):
        decode_payload("MFARequired", 2, _required_payload())


def test_an_envelope_field_added_by_a_newer_producer_is_read_and_kept() -> None:
    document = {"event_id": str(uuid.uuid4()), "type": "MFARequired", "schema_version": 1,
                "aggregate_type": "enrollment", "aggregate_id": "user_portal:x", "aggregate_version": 1,
                "occurred_at": "2026-12-01T00:00:00Z", "correlation_id": str(uuid.uuid4()), "actor": "admin:a",
                "payload": _required_payload(), "tenant": "added-later"}
    envelope = Envelope.model_validate(document)
    assert isinstance(envelope.body(), MFARequired)
    assert envelope.model_dump(mode="json")["tenant"] == "added-later"


@pytest.mark.parametrize("event_type", ["EnrollmentExpiring", "EnrollmentExpired"])
def test_a_v1_timer_event_is_read_as_v2_with_its_enrollment_version_unknown(event_type: str) -> None:
    v1 = {"principal_id": str(uuid.uuid4()), "scope": "user_portal", "deadline": "2026-12-01T00:00:00Z",
          "due_at": "2026-11-30T00:00:00Z"}
    decoded = decode_payload(event_type, 1, v1)
    assert type(decoded) is EVENT_TYPES[event_type] and decoded.schema_version == 2
    assert decoded.enrollment_version is None and decoded.deadline == datetime(2026, 12, 1, tzinfo=UTC)
    assert decode_payload(event_type, 2, {**v1, "enrollment_version": 3}).enrollment_version == 3
    with pytest.raises(ValidationError):  # v2 says it, if only that it is unknown
        decode_payload(event_type, 2, v1)


def test_a_missing_upcaster_is_no_newer_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(UPCASTERS, ("EnrollmentExpired", 1))
    with pytest.raises(UnknownSchemaVersion) as refused:
        decode_payload("EnrollmentExpired", 1, {})
    assert not isinstance(refused.value, NewerSchemaVersion)

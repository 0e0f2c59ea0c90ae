"""Each kind of refusal is answered with an HTTP status of its own, so the gateway, reading a service's
refusal back from its status (forwarding.py), raises the same kind again."""

from __future__ import annotations

import pytest

from mfaplane_chassis.problems import refusal_kind, rejected_body
from mfaplane_eventing.aggregate import Refusal, Rejected


@pytest.mark.parametrize("kind", list(Refusal))
def test_a_refusal_read_back_from_its_status_is_of_the_same_kind(kind: Refusal) -> None:
    answered = rejected_body(Rejected("some_refusal", "Refused.", kind))
    assert refusal_kind(answered["status"]) == kind


def test_a_command_refused_by_the_state_is_a_conflict() -> None:
    assert rejected_body(Rejected("already_set_up", "MFA is already set up."))["status"] == 409

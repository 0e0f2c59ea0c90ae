"""The six MFA statuses of a principal (rule 12), derived from its state and the clock."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class MFAStatus(StrEnum):
    ACTIVE = "active"  # set up and required
    ENROLLING = "enrolling"  # required, not set up, before the deadline
    EXPIRED = "expired"  # required, not set up, deadline passed: locked out
    CONFIGURED_NOT_REQUIRED = "configured_not_required"  # set up, not required
    REQUIRED_NO_PERIOD = "required_no_period"  # required, not set up, no period: set up at next login
    NONE = "none"


def mfa_status(required: bool, set_up: bool, deadline: datetime | None, now: datetime) -> MFAStatus:
    if set_up:
        return MFAStatus.ACTIVE if required else MFAStatus.CONFIGURED_NOT_REQUIRED
    if not required:
        return MFAStatus.NONE
    if deadline is None:
        return MFAStatus.REQUIRED_NO_PERIOD
    return MFAStatus.ENROLLING if now < deadline else MFAStatus.EXPIRED

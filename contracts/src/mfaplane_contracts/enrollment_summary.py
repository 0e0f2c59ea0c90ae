"""An enrollment as the services outside mfa see it: whether MFA is required, whether it is set up, and
the deadline to set it up by. One fold of mfa's events for all of them: the gateway's principals read
model (and so its lists, its bulk dry run and its audit history) and the notifier, which judges with it
whether a queued mail still holds. mfa's own aggregate (enrollment.py) keeps much more and decides; this
is only what its events say about those three facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mfaplane_contracts import mfa_events as mfa
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.mfa_status import MFAStatus, mfa_status

Value = Callable[[Any], Any]  # event body -> the field's new value


def _always(value: Any) -> Value:
    return lambda body: value


def _deadline(body: Any) -> Any:
    return body.deadline


# The summary's fields each event sets, and to what. An event type not here leaves the summary as it is.
SETS: dict[type[EventPayload], dict[str, Value]] = {
    mfa.MFARequired: {"required": _always(True), "deadline": _deadline},
    mfa.MFARequirementRemoved: {"required": _always(False), "deadline": _always(None)},
    mfa.EnrollmentExtended: {"deadline": _deadline},
    mfa.MFAReset: {"required": _always(True), "set_up": _always(False), "deadline": _deadline},
    mfa.TOTPEnrolled: {"set_up": _always(True)},
}


@dataclass(frozen=True)
class EnrollmentSummary:
    required: bool = False
    set_up: bool = False
    deadline: datetime | None = None

    def after(self, event: EventPayload) -> EnrollmentSummary:
        sets = SETS.get(type(event))
        return replace(self, **{name: value(event) for name, value in sets.items()}) if sets else self

    def status(self, now: datetime) -> MFAStatus:
        return mfa_status(self.required, self.set_up, self.deadline, now)

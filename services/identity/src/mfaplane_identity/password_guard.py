"""Throttles password guessing per email, known or not, separately from TOTP code failures.

An attempt takes its slot in the email's failure window before the password is evaluated
(failure_windows.py), so parallel guesses for one email are never evaluated past
`password_max_failures`. A success gives the slots back (the count starts again); a failure, or a
crash mid-check, keeps its slot, so a guess is never free.

Counting unknown emails too keeps the answers for known and unknown emails the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from mfaplane_chassis.service import Runtime
from mfaplane_identity.failure_windows import FailureWindow


class PasswordGuard:
    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        self._window = FailureWindow(runtime.pool, runtime.clock, "password_failures", ("kind", "email"),
                                     s.password_max_failures, timedelta(seconds=s.password_failure_window_seconds),
                                     ("too_many_attempts", "Too many failed sign-ins"))

    async def checked(self, kind: str, email: str, verify: Callable[[], Awaitable[bool]]) -> bool:
        """Whether the password is right, by `verify`, run only with a slot of the email's window (429
        `too_many_attempts` when there is none); a right one clears the email's count."""
        key = (kind, email.lower())
        await self._window.take(*key)
        if not await verify():
            return False
        await self._window.clear(*key)
        return True

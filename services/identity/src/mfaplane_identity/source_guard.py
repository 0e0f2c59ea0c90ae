"""Limits password spraying: failed passwords per client address, whatever the emails.

The per-email throttle (password_guard.py) stops many guesses at one account, but one password
tried against every account is one guess at each. So a sign-in also takes a slot in its source's
failure window (the client address the gateway saw; per /64 for IPv6) before the password is
evaluated (failure_windows.py): parallel attempts from one source are never evaluated past
SOURCE_MAX_PASSWORD_FAILURES, on any replica. A wrong password keeps its slot;
a success, or an attempt refused before its password was evaluated, gives its own slot back (only
its own: signing in to one's own account does not wipe a spray's count).

A refused source is told so before any email is looked at: the answer is the same for known and
unknown emails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from mfaplane_chassis.service import Runtime
from mfaplane_eventing.aggregate import Rejected
from mfaplane_identity.failure_windows import FailureWindow

WRONG_PASSWORD = "invalid_credentials"  # the code a wrong password (or email) is answered with


@contextlib.asynccontextmanager
async def attempt(runtime: Runtime, source: str | None) -> AsyncIterator[None]:
    """Around the evaluation of one password from `source` (None: not counted): its slot stays taken if
    the password was wrong."""
    if source is None:
        yield
        return
    s = runtime.settings
    window = FailureWindow(runtime.pool, runtime.clock, "source_failures", ("source",),
                           s.source_max_password_failures, timedelta(seconds=s.source_failure_window_seconds),
                           ("source_throttled", "Too many failed sign-ins from this network"))
    window_from = await window.take(source)
    try:
        yield
    except Rejected as refused:
        if refused.code != WRONG_PASSWORD:
            await window.give_back(window_from, source)
        raise
    await window.give_back(window_from, source)

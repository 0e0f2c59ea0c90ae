"""RegenerateRecoveryCodes, given events / when command: a code from the app buys a new set of recovery
codes and the old set stops working; the code is checked, replayed and throttled as at sign-in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from mfaplane_contracts.commands import RegenerateRecoveryCodes, VerifyTOTP
from mfaplane_contracts.mfa_events import (
    RecoveryCodesRegenerated,
    TOTPFactorLocked,
    TOTPThrottled,
    TOTPVerificationFailed,
    TOTPVerified,
)
from mfaplane_eventing.aggregate import Refusal
from mfaplane_mfa import recovery_codes, totp
from mfaplane_mfa.enrollment import recovery_codes_to_check, secret_id_to_open

DAY = timedelta(days=1)
STEP = timedelta(seconds=totp.STEP_SECONDS)


def used_one(mfa, index=3):
    return mfa.ev(TOTPVerified, method="recovery_code", time_step=None, recovery_codes_left=9,
                  recovery_code_index=index)


def failed(mfa, consecutive, total, at):
    return mfa.ev(TOTPVerificationFailed, consecutive_failures=consecutive, total_failures=total, failed_at=at)


def regenerated(mfa, at):
    return mfa.ev(RecoveryCodesRegenerated, secret_id=mfa.secret_id, time_step=totp.time_step(at),
                  recovery_codes_issued=recovery_codes.COUNT)


def wrong_code(mfa, at):
    return f"{(int(mfa.code(at)) + 1) % 1_000_000:06d}"


def test_a_code_from_the_app_makes_a_full_new_set_and_the_old_one_stops_working(mfa):
    now = mfa.t0 + DAY
    old = recovery_codes.issue(mfa.random_bytes)
    then = mfa.given(*mfa.set_up(), used_one(mfa)).when(
        mfa.cmd(RegenerateRecoveryCodes, code=mfa.code(now)), now=now, secret=mfa.secret
    ).then(regenerated(mfa, now))
    new = then.decision.recovery_codes
    assert len(new.codes) == recovery_codes.COUNT
    assert (then.state.recovery_codes_issued, then.state.used_recovery_codes) == (10, frozenset())
    # The service stores the new hashes in place of the old: only the new codes match them.
    assert [recovery_codes.match(code, new.hashes, then.state.used_recovery_codes) for code in new.codes] == list(
        range(10))
    assert all(recovery_codes.match(code, new.hashes, frozenset()) is None for code in old.codes)


def test_the_new_set_counts_in_the_next_sign_in_with_a_recovery_code(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), used_one(mfa), regenerated(mfa, now))
    new = recovery_codes.issue(mfa.random_bytes)
    given.when(mfa.cmd(VerifyTOTP, code=new.codes[3]), now=now, recovery_code_hashes=new.hashes).then(
        mfa.ev(TOTPVerified, method="recovery_code", time_step=None, recovery_codes_left=9, recovery_code_index=3))


def test_the_code_used_for_new_codes_is_used_up_like_a_sign_in(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), regenerated(mfa, now))
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now + timedelta(seconds=5), secret=mfa.secret).rejected(
        "code_already_used")


def test_the_code_just_used_to_sign_in_is_a_replay_not_a_failure(mfa):
    now = mfa.t0 + DAY
    signed_in = mfa.ev(TOTPVerified, method="totp", time_step=totp.time_step(now), recovery_codes_left=10)
    rejection = mfa.given(*mfa.set_up(), signed_in).when(
        mfa.cmd(RegenerateRecoveryCodes, code=mfa.code(now)), now=now, secret=mfa.secret
    ).rejected("code_already_used")
    assert rejection.kind == Refusal.UNAUTHENTICATED


def test_a_wrong_code_is_refused_and_counted_like_any_wrong_code(mfa):
    now = mfa.t0 + DAY
    rejection = mfa.given(*mfa.set_up()).when(
        mfa.cmd(RegenerateRecoveryCodes, code=wrong_code(mfa, now)), now=now, secret=mfa.secret
    ).rejected("invalid_code", failed(mfa, 1, 1, now))
    assert rejection.kind == Refusal.UNAUTHENTICATED


def test_the_fifth_wrong_code_in_a_row_pauses_the_factor(mfa):
    now = mfa.t0 + DAY
    mfa.given(*mfa.set_up(), failed(mfa, 4, 4, now)).when(
        mfa.cmd(RegenerateRecoveryCodes, code=wrong_code(mfa, now)), now=now, secret=mfa.secret
    ).rejected("invalid_code", failed(mfa, 5, 5, now),
               mfa.ev(TOTPThrottled, until=now + timedelta(minutes=15), consecutive_failures=5))


@pytest.mark.parametrize(
    ("trip", "code", "kind"),
    [
        (lambda mfa, now: mfa.ev(TOTPThrottled, until=now + STEP, consecutive_failures=5), "throttled",
         Refusal.THROTTLED),
        (lambda mfa, now: mfa.ev(TOTPFactorLocked, total_failures=100), "factor_locked", Refusal.LOCKED),
    ],
)
def test_a_paused_or_locked_factor_refuses_even_the_right_code_unheard(mfa, trip, code, kind):
    now = mfa.t0 + DAY
    rejection = mfa.given(*mfa.set_up(), trip(mfa, now)).when(
        mfa.cmd(RegenerateRecoveryCodes, code=mfa.code(now)), now=now, secret=mfa.secret
    ).rejected(code)
    assert rejection.kind == kind


def test_without_mfa_set_up_there_is_nothing_to_replace(mfa):
    mfa.given(*mfa.enrolling()).when(mfa.cmd(RegenerateRecoveryCodes, code="123456"), now=mfa.t0).rejected(
        "not_set_up")


@pytest.mark.parametrize("code", ["7KQM-2XHD-AB3C-9PQR", "7KQM2XHDAB3C9PQR", "12345", "1234567", "12345a"])
def test_only_a_six_digit_code_from_the_app_is_proof(mfa, code):
    with pytest.raises(ValidationError):
        mfa.cmd(RegenerateRecoveryCodes, code=code)


def test_it_needs_the_key_not_the_recovery_code_hashes(mfa):
    state = mfa.given(*mfa.set_up()).state
    command = mfa.cmd(RegenerateRecoveryCodes, code="123456")
    assert (secret_id_to_open(state, command), recovery_codes_to_check(state, command)) == (mfa.secret_id, None)


def test_neither_the_code_nor_the_new_recovery_codes_are_in_the_event_or_the_decisions_repr(mfa):
    now = mfa.t0 + DAY
    code = mfa.code(now)
    then = mfa.given(*mfa.set_up()).when(mfa.cmd(RegenerateRecoveryCodes, code=code), now=now, secret=mfa.secret)
    text = repr(then.decision) + "".join(event.model_dump_json() for event in then.decision.events)
    assert code not in text
    assert not any(new in text or new.replace("-", "") in text for new in then.decision.recovery_codes.codes)

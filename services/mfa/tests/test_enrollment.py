"""Every transition and every refusal of the enrollment aggregate, given events / when command."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from mfaplane_contracts.commands import (
    BeginTOTPSetup,
    ConfirmTOTPSetup,
    DismissEnrollmentPrompt,
    ExtendEnrollment,
    RemoveMFARequirement,
    RequireMFA,
    ResetMFA,
    VerifyTOTP,
)
from mfaplane_contracts.mfa_events import (
    EnrollmentExpired,
    EnrollmentExtended,
    EnrollmentPromptDismissed,
    MFARequired,
    MFARequirementRemoved,
    MFAReset,
    TOTPEnrolled,
    TOTPFactorLocked,
    TOTPSecretIssued,
    TOTPThrottled,
    TOTPVerificationFailed,
    TOTPVerified,
)
from mfaplane_eventing.aggregate import Refusal
from mfaplane_mfa import recovery_codes, totp
from mfaplane_mfa.enrollment import Enrollment, apply, decide, recovery_codes_to_check, secret_id_to_open, status

DAY = timedelta(days=1)
STEP = timedelta(seconds=totp.STEP_SECONDS)


# RequireMFA


def test_require_starts_an_enrollment_period(mfa):
    then = (
        mfa.given()
        .when(mfa.cmd(RequireMFA, enrollment_days=10), now=mfa.t0)
        .then(mfa.ev(MFARequired, principal_kind="user", enrollment_days=10, deadline=mfa.t0 + 10 * DAY))
    )
    assert status(then.state, mfa.t0) == "enrolling"


def test_require_defaults_to_seven_days(mfa):
    mfa.given().when(mfa.cmd(RequireMFA), now=mfa.t0).then(
        mfa.ev(MFARequired, principal_kind="user", enrollment_days=7, deadline=mfa.t0 + 7 * DAY)
    )


@pytest.mark.parametrize("days", [0, -1, 366, 1000])
def test_require_outside_one_to_365_days_is_invalid(mfa, days):
    with pytest.raises(ValidationError):
        mfa.cmd(RequireMFA, enrollment_days=days)


@pytest.mark.parametrize("days", [1, 365])
def test_require_accepts_the_bounds(mfa, days):
    mfa.given().when(mfa.cmd(RequireMFA, enrollment_days=days), now=mfa.t0).then(
        mfa.ev(MFARequired, principal_kind="user", enrollment_days=days, deadline=mfa.t0 + days * DAY)
    )


def test_require_for_an_admin_portal_enrollment_names_an_admin(mfa):
    mfa.scope = "admin_portal"
    mfa.given().when(mfa.cmd(RequireMFA, enrollment_days=3), now=mfa.t0).then(
        mfa.ev(MFARequired, principal_kind="admin", enrollment_days=3, deadline=mfa.t0 + 3 * DAY)
    )


def test_require_without_a_period(mfa):
    then = (
        mfa.given()
        .when(mfa.cmd(RequireMFA, enrollment_days=None), now=mfa.t0)
        .then(mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None))
    )
    assert status(then.state, mfa.t0 + 400 * DAY) == "required_no_period"


def test_require_for_a_principal_already_set_up_is_active_at_once(mfa):
    then = (
        mfa.given(*mfa.set_up(required=False))
        .when(mfa.cmd(RequireMFA, enrollment_days=7), now=mfa.t0)
        .then(mfa.ev(MFARequired, principal_kind="user", enrollment_days=7, deadline=None, already_set_up=True))
    )
    assert status(then.state, mfa.t0) == "active"
    assert status(then.state, mfa.t0 + 30 * DAY) == "active"


@pytest.mark.parametrize("later", [timedelta(0), 3 * DAY, 30 * DAY])
def test_require_while_required_is_a_no_op_reporting_the_current_deadline(mfa, later):
    then = mfa.given(*mfa.enrolling(days=7)).when(mfa.cmd(RequireMFA, enrollment_days=30), now=mfa.t0 + later).then()
    assert then.state.deadline == mfa.t0 + 7 * DAY


def test_require_while_required_without_period_is_a_no_op(mfa):
    given = mfa.given(mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None))
    assert given.when(mfa.cmd(RequireMFA, enrollment_days=5), now=mfa.t0).then().state.deadline is None


# RemoveMFARequirement


def test_remove_requirement_during_enrollment(mfa):
    then = (
        mfa.given(*mfa.enrolling()).when(mfa.cmd(RemoveMFARequirement), now=mfa.t0).then(mfa.ev(MFARequirementRemoved))
    )
    assert status(then.state, mfa.t0) == "none"
    assert then.state.deadline is None


def test_remove_requirement_after_expiry_lifts_the_lockout(mfa):
    then = (
        mfa.given(*mfa.enrolling())
        .when(mfa.cmd(RemoveMFARequirement), now=mfa.t0 + 8 * DAY)
        .then(mfa.ev(MFARequirementRemoved))
    )
    assert status(then.state, mfa.t0 + 8 * DAY) == "none"


def test_remove_requirement_keeps_the_totp_already_set_up(mfa):
    then = mfa.given(*mfa.set_up()).when(mfa.cmd(RemoveMFARequirement), now=mfa.t0).then(mfa.ev(MFARequirementRemoved))
    assert status(then.state, mfa.t0) == "configured_not_required"
    assert then.state.secret_id == mfa.secret_id


def test_remove_requirement_when_not_required_is_a_no_op(mfa):
    mfa.given().when(mfa.cmd(RemoveMFARequirement), now=mfa.t0).then()
    mfa.given(*mfa.set_up(required=False)).when(mfa.cmd(RemoveMFARequirement), now=mfa.t0).then()


# ExtendEnrollment


@pytest.mark.parametrize("elapsed", [DAY, 7 * DAY, 40 * DAY])
def test_extend_starts_a_new_period_from_now(mfa, elapsed):
    now = mfa.t0 + elapsed
    then = (
        mfa.given(*mfa.enrolling(days=7))
        .when(mfa.cmd(ExtendEnrollment, enrollment_days=3), now=now)
        .then(mfa.ev(EnrollmentExtended, enrollment_days=3, deadline=now + 3 * DAY))
    )
    assert status(then.state, now) == "enrolling"
    assert status(then.state, now + 3 * DAY) == "expired"


def test_extend_gives_a_principal_required_without_period_a_deadline(mfa):
    given = mfa.given(mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None))
    then = given.when(mfa.cmd(ExtendEnrollment, enrollment_days=2), now=mfa.t0).then(
        mfa.ev(EnrollmentExtended, enrollment_days=2, deadline=mfa.t0 + 2 * DAY)
    )
    assert status(then.state, mfa.t0) == "enrolling"


def test_extend_when_not_required_is_refused(mfa):
    mfa.given().when(mfa.cmd(ExtendEnrollment, enrollment_days=3), now=mfa.t0).rejected("not_required")
    removed = [*mfa.enrolling(), mfa.ev(MFARequirementRemoved)]
    mfa.given(*removed).when(mfa.cmd(ExtendEnrollment, enrollment_days=3), now=mfa.t0).rejected("not_required")


def test_extend_when_already_set_up_is_refused(mfa):
    rejection = (
        mfa.given(*mfa.set_up())
        .when(mfa.cmd(ExtendEnrollment, enrollment_days=3), now=mfa.t0)
        .rejected("already_set_up")
    )
    assert rejection.kind == Refusal.CONFLICT


# ResetMFA


def test_reset_shreds_the_key_and_starts_a_new_period(mfa):
    now = mfa.t0 + 100 * DAY
    then = (
        mfa.given(*mfa.set_up())
        .when(mfa.cmd(ResetMFA, enrollment_days=5), now=now)
        .then(mfa.ev(MFAReset, enrollment_days=5, deadline=now + 5 * DAY, shredded_secret_id=mfa.secret_id))
    )
    assert status(then.state, now) == "enrolling"
    assert then.state.secret_id is None and then.state.recovery_codes_issued == 0
    assert secret_id_to_open(then.state, mfa.cmd(VerifyTOTP, code="123456")) is None


def test_during_the_new_period_no_code_is_asked_or_accepted(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(
        *mfa.set_up(), mfa.ev(MFAReset, enrollment_days=5, deadline=now + 5 * DAY, shredded_secret_id=mfa.secret_id)
    )
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret).rejected("not_set_up")


def test_reset_shreds_an_unconfirmed_secret(mfa):
    pending = [*mfa.enrolling(), mfa.ev(TOTPSecretIssued, secret_id=mfa.secret_id)]
    mfa.given(*pending).when(mfa.cmd(ResetMFA, enrollment_days=7), now=mfa.t0).then(
        mfa.ev(MFAReset, enrollment_days=7, deadline=mfa.t0 + 7 * DAY, shredded_secret_id=mfa.secret_id)
    )


@pytest.mark.parametrize(
    "history",
    [
        lambda mfa: [],
        lambda mfa: mfa.enrolling(),
        lambda mfa: mfa.set_up(required=False),
        lambda mfa: [mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None)],
    ],
    ids=["none", "expired", "configured_not_required", "required_no_period"],
)
def test_reset_works_from_any_state_and_requires_mfa(mfa, history):
    now = mfa.t0 + 30 * DAY
    events = history(mfa)
    shredded = mfa.secret_id if any(isinstance(e, TOTPEnrolled) for e in events) else None
    then = (
        mfa.given(*events)
        .when(mfa.cmd(ResetMFA, enrollment_days=2), now=now)
        .then(mfa.ev(MFAReset, enrollment_days=2, deadline=now + 2 * DAY, shredded_secret_id=shredded))
    )
    assert status(then.state, now) == "enrolling"


def test_reset_clears_throttle_and_lock(mfa):
    locked = [
        *mfa.set_up(),
        mfa.ev(TOTPVerificationFailed, consecutive_failures=100, total_failures=100),
        mfa.ev(TOTPFactorLocked, total_failures=100),
    ]
    then = (
        mfa.given(*locked)
        .when(mfa.cmd(ResetMFA, enrollment_days=7), now=mfa.t0 + DAY)
        .then(mfa.ev(MFAReset, enrollment_days=7, deadline=mfa.t0 + 8 * DAY, shredded_secret_id=mfa.secret_id))
    )
    assert then.state == Enrollment(required=True, deadline=mfa.t0 + 8 * DAY, last_step=totp.time_step(mfa.t0))


# BeginTOTPSetup


@pytest.mark.parametrize(
    "history",
    [
        lambda mfa: mfa.enrolling(),
        lambda mfa: [mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None)],
        lambda mfa: [],
    ],
    ids=["enrolling", "required_no_period", "voluntary"],
)
def test_begin_setup_issues_a_fresh_secret(mfa, history):
    new_id = uuid.uuid4()
    then = (
        mfa.given(*history(mfa))
        .when(mfa.cmd(BeginTOTPSetup), now=mfa.t0, new_id=lambda: new_id)
        .then(mfa.ev(TOTPSecretIssued, secret_id=new_id))
    )
    assert len(then.decision.new_secret.key) == 20
    assert then.state.pending_secret_id == new_id
    assert secret_id_to_open(then.state, mfa.cmd(ConfirmTOTPSetup, code="123456")) == new_id


def test_begin_setup_uses_cryptographic_randomness_by_default(mfa):
    keys = {decide(Enrollment(), mfa.cmd(BeginTOTPSetup), now=mfa.t0).new_secret.key for _ in range(5)}
    assert len(keys) == 5 and all(len(key) == 20 for key in keys)


def test_begin_setup_again_replaces_the_unconfirmed_secret(mfa):
    first, second = uuid.uuid4(), uuid.uuid4()
    given = mfa.given(*mfa.enrolling(), mfa.ev(TOTPSecretIssued, secret_id=first))
    then = given.when(mfa.cmd(BeginTOTPSetup), now=mfa.t0, new_id=lambda: second).then(
        mfa.ev(TOTPSecretIssued, secret_id=second, replaced_secret_id=first)
    )
    assert then.state.pending_secret_id == second


def test_begin_setup_after_the_deadline_is_refused(mfa):
    rejection = (
        mfa.given(*mfa.enrolling()).when(mfa.cmd(BeginTOTPSetup), now=mfa.t0 + 7 * DAY).rejected("enrollment_expired")
    )
    assert rejection.kind == Refusal.FORBIDDEN


@pytest.mark.parametrize("required", [True, False])
def test_begin_setup_when_already_set_up_is_refused(mfa, required):
    mfa.given(*mfa.set_up(required=required)).when(mfa.cmd(BeginTOTPSetup), now=mfa.t0).rejected("already_set_up")


# ConfirmTOTPSetup


def pending(mfa, required=True):
    return [*(mfa.enrolling() if required else []), mfa.ev(TOTPSecretIssued, secret_id=mfa.secret_id)]


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_confirm_with_a_code_within_one_step_completes_setup(mfa, steps):
    now = mfa.t0 + DAY
    then = (
        mfa.given(*pending(mfa))
        .when(mfa.cmd(ConfirmTOTPSetup, code=mfa.code(now, steps)), now=now, secret=mfa.secret)
        .then(
            mfa.ev(
                TOTPEnrolled, secret_id=mfa.secret_id, time_step=totp.time_step(now) + steps, recovery_codes_issued=10
            )
        )
    )
    assert status(then.state, now) == "active"
    issued = then.decision.recovery_codes
    assert len(issued.codes) == len(issued.hashes) == 10
    assert [recovery_codes.match(code, issued.hashes, frozenset()) for code in issued.codes] == list(range(10))


def test_voluntary_setup_is_configured_but_not_required(mfa):
    then = (
        mfa.given(*pending(mfa, required=False))
        .when(mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0)), now=mfa.t0, secret=mfa.secret)
        .then(mfa.ev(TOTPEnrolled, secret_id=mfa.secret_id, time_step=totp.time_step(mfa.t0), recovery_codes_issued=10))
    )
    assert status(then.state, mfa.t0) == "configured_not_required"


@pytest.mark.parametrize("steps", [-2, 2])
def test_confirm_with_a_code_two_steps_away_is_refused_and_recorded(mfa, steps):
    mfa.given(*pending(mfa)).when(
        mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0, steps)), now=mfa.t0, secret=mfa.secret
    ).rejected("invalid_code", failed(mfa, 1, 1, mfa.t0))


def test_confirm_with_a_wrong_code_is_refused_and_recorded_like_a_verification(mfa):
    wrong = f"{(int(mfa.code(mfa.t0)) + 1) % 1_000_000:06d}"
    rejection = mfa.given(*pending(mfa), failed(mfa, 2, 7, mfa.t0)).when(
        mfa.cmd(ConfirmTOTPSetup, code=wrong), now=mfa.t0, secret=mfa.secret
    ).rejected("invalid_code", failed(mfa, 3, 8, mfa.t0))
    assert rejection.kind == Refusal.UNAUTHENTICATED


def test_confirm_with_the_code_of_another_key_is_refused_and_recorded(mfa):
    other = totp.TOTPSecret(bytes(20))
    mfa.given(*pending(mfa)).when(
        mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0, secret=other)), now=mfa.t0, secret=mfa.secret
    ).rejected("invalid_code", failed(mfa, 1, 1, mfa.t0))


def test_the_fifth_wrong_confirm_code_pauses_setup(mfa):
    wrong = f"{(int(mfa.code(mfa.t0)) + 1) % 1_000_000:06d}"
    mfa.given(*pending(mfa), failed(mfa, 4, 4, mfa.t0)).when(
        mfa.cmd(ConfirmTOTPSetup, code=wrong), now=mfa.t0, secret=mfa.secret
    ).rejected(
        "invalid_code",
        failed(mfa, 5, 5, mfa.t0),
        mfa.ev(TOTPThrottled, until=mfa.t0 + timedelta(minutes=15), consecutive_failures=5),
    )


@pytest.mark.parametrize(
    ("trip", "code", "kind"),
    [
        (lambda mfa: mfa.ev(TOTPThrottled, until=mfa.t0 + STEP, consecutive_failures=5), "throttled",
         Refusal.THROTTLED),
        (lambda mfa: mfa.ev(TOTPFactorLocked, total_failures=100), "factor_locked", Refusal.LOCKED),
    ],
)
def test_a_paused_or_locked_setup_refuses_even_the_right_code_unheard(mfa, trip, code, kind):
    rejection = mfa.given(*pending(mfa), trip(mfa)).when(
        mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0)), now=mfa.t0, secret=mfa.secret
    ).rejected(code)
    assert rejection.kind == kind


def test_confirming_setup_ends_a_run_of_failures(mfa):
    then = mfa.given(*pending(mfa), failed(mfa, 4, 4, mfa.t0)).when(
        mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0)), now=mfa.t0, secret=mfa.secret
    )
    assert (then.state.consecutive_failures, then.state.total_failures) == (0, 4)


def test_confirm_with_the_new_keys_code_of_a_step_already_accepted_is_a_replay(mfa):
    # Reset and set up again within one time step: that step was accepted with the old key, and a
    # step is accepted at most once per principal, so the user waits for the next code; no failure.
    now = mfa.t0 + DAY
    new_key = totp.TOTPSecret(bytes(range(21, 41)))
    given = mfa.given(*mfa.set_up(), verified(mfa, totp.time_step(now)),
                      mfa.ev(MFAReset, enrollment_days=7, deadline=now + 7 * DAY, shredded_secret_id=mfa.secret_id),
                      mfa.ev(TOTPSecretIssued, secret_id=uuid.UUID(int=99)))
    given.when(mfa.cmd(ConfirmTOTPSetup, code=mfa.code(now, secret=new_key)), now=now, secret=new_key).rejected(
        "code_already_used"
    )


def test_confirm_without_setup_in_progress_is_refused(mfa):
    mfa.given(*mfa.enrolling()).when(mfa.cmd(ConfirmTOTPSetup, code="123456"), now=mfa.t0).rejected(
        "no_setup_in_progress"
    )


def test_confirm_after_the_deadline_is_refused(mfa):
    now = mfa.t0 + 8 * DAY
    mfa.given(*pending(mfa)).when(mfa.cmd(ConfirmTOTPSetup, code=mfa.code(now)), now=now, secret=mfa.secret).rejected(
        "enrollment_expired"
    )


def test_confirm_when_already_set_up_is_refused(mfa):
    mfa.given(*mfa.set_up()).when(mfa.cmd(ConfirmTOTPSetup, code="123456"), now=mfa.t0).rejected("already_set_up")


def test_confirm_needs_the_plaintext_key(mfa):
    with pytest.raises(ValueError, match="plaintext"):
        mfa.given(*pending(mfa)).when(mfa.cmd(ConfirmTOTPSetup, code="123456"), now=mfa.t0)


# VerifyTOTP


def verified(mfa, step, left=10):
    return mfa.ev(TOTPVerified, method="totp", time_step=step, recovery_codes_left=left)


def failed(mfa, consecutive, total, at):
    return mfa.ev(TOTPVerificationFailed, consecutive_failures=consecutive, total_failures=total, failed_at=at)


def test_verify_accepts_the_current_code(mfa):
    now = mfa.t0 + DAY
    then = mfa.given(*mfa.set_up()).when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret)
    then.then(verified(mfa, totp.time_step(now)))
    assert then.state.last_step == totp.time_step(now)


@pytest.mark.parametrize("steps", [-1, 1])
def test_verify_tolerates_one_step_of_drift(mfa, steps):
    now = mfa.t0 + DAY
    mfa.given(*mfa.set_up()).when(mfa.cmd(VerifyTOTP, code=mfa.code(now, steps)), now=now, secret=mfa.secret).then(
        verified(mfa, totp.time_step(now) + steps)
    )


@pytest.mark.parametrize("steps", [-2, 2])
def test_verify_refuses_a_code_two_steps_away_and_records_the_failure(mfa, steps):
    now = mfa.t0 + DAY
    rejection = (
        mfa.given(*mfa.set_up())
        .when(mfa.cmd(VerifyTOTP, code=mfa.code(now, steps)), now=now, secret=mfa.secret)
        .rejected("invalid_code", failed(mfa, 1, 1, now))
    )
    assert rejection.kind == Refusal.UNAUTHENTICATED


@pytest.mark.parametrize("later", [timedelta(seconds=5), STEP, 2 * STEP - timedelta(seconds=11)])
def test_a_code_is_accepted_once_and_sent_again_is_a_replay_not_a_failure(mfa, later):
    now = mfa.t0 + DAY
    code = mfa.code(now)
    first = mfa.given(*mfa.set_up()).when(mfa.cmd(VerifyTOTP, code=code), now=now, secret=mfa.secret)
    again = mfa.given(*mfa.set_up(), *first.decision.events)
    rejection = again.when(mfa.cmd(VerifyTOTP, code=code), now=now + later, secret=mfa.secret).rejected(
        "code_already_used"
    )
    assert rejection.kind == Refusal.UNAUTHENTICATED


def test_the_code_used_to_confirm_setup_sent_again_is_a_replay(mfa):
    mfa.given(*mfa.set_up(at=mfa.t0)).when(
        mfa.cmd(VerifyTOTP, code=mfa.code(mfa.t0)), now=mfa.t0 + timedelta(seconds=10), secret=mfa.secret
    ).rejected("code_already_used")


def test_the_accepted_code_sent_again_once_out_of_the_window_is_a_failure(mfa):
    accepted_at, now = mfa.t0 + DAY, mfa.t0 + DAY + 2 * STEP
    given = mfa.given(*mfa.set_up(), verified(mfa, totp.time_step(accepted_at)))
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(accepted_at)), now=now, secret=mfa.secret).rejected(
        "invalid_code", failed(mfa, 1, 1, now)
    )


def test_an_older_code_never_accepted_is_a_failure_not_a_replay(mfa):
    # Only the step accepted last is a replay: the code of a step skipped over was never accepted,
    # and a guess that hits it learns nothing the throttle should not count.
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), verified(mfa, totp.time_step(now) + 1))
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret).rejected(
        "invalid_code", failed(mfa, 1, 1, now)
    )


def test_a_replay_while_paused_is_refused_unheard(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), verified(mfa, totp.time_step(now)),
                      mfa.ev(TOTPThrottled, until=now + STEP, consecutive_failures=5))
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret).rejected("throttled")


def test_the_next_code_is_accepted_after_the_current_one(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), verified(mfa, totp.time_step(now)))
    given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now + STEP)), now=now + STEP, secret=mfa.secret).then(
        verified(mfa, totp.time_step(now) + 1)
    )


def test_verify_when_set_up_but_not_required_is_allowed(mfa):
    now = mfa.t0 + DAY
    mfa.given(*mfa.set_up(required=False)).when(
        mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret
    ).then(verified(mfa, totp.time_step(now)))


@pytest.mark.parametrize("history", [lambda mfa: [], lambda mfa: mfa.enrolling(), lambda mfa: pending(mfa)])
def test_verify_without_setup_is_refused(mfa, history):
    mfa.given(*history(mfa)).when(mfa.cmd(VerifyTOTP, code="123456"), now=mfa.t0).rejected("not_set_up")


def test_a_success_resets_the_consecutive_failures_only(mfa):
    now = mfa.t0 + DAY
    given = mfa.given(*mfa.set_up(), failed(mfa, 3, 42, mfa.t0))
    then = given.when(mfa.cmd(VerifyTOTP, code=mfa.code(now)), now=now, secret=mfa.secret).then(
        verified(mfa, totp.time_step(now))
    )
    assert (then.state.consecutive_failures, then.state.total_failures) == (0, 42)


# Recovery codes at sign-in


def with_codes(mfa):
    issued = recovery_codes.issue(mfa.random_bytes)
    return issued, mfa.given(*mfa.set_up())


def test_a_recovery_code_signs_in_once(mfa):
    issued, given = with_codes(mfa)
    now = mfa.t0 + DAY
    first = given.when(mfa.cmd(VerifyTOTP, code=issued.codes[3]), now=now, recovery_code_hashes=issued.hashes)
    first.then(
        mfa.ev(TOTPVerified, method="recovery_code", time_step=None, recovery_codes_left=9, recovery_code_index=3)
    )
    assert first.state.used_recovery_codes == {3}
    again = mfa.given(*mfa.set_up(), *first.decision.events)
    again.when(mfa.cmd(VerifyTOTP, code=issued.codes[3]), now=now, recovery_code_hashes=issued.hashes).rejected(
        "invalid_code", failed(mfa, 1, 1, now)
    )
    again.when(mfa.cmd(VerifyTOTP, code=issued.codes[4]), now=now, recovery_code_hashes=issued.hashes).then(
        mfa.ev(TOTPVerified, method="recovery_code", time_step=None, recovery_codes_left=8, recovery_code_index=4)
    )


def test_a_verification_needs_the_key_for_a_totp_code_and_the_hashes_for_a_recovery_code(mfa):
    issued, given = with_codes(mfa)
    state = given.state
    totp_code, recovery_code = mfa.cmd(VerifyTOTP, code="123456"), mfa.cmd(VerifyTOTP, code=issued.codes[0])
    assert (secret_id_to_open(state, totp_code), recovery_codes_to_check(state, totp_code)) == (mfa.secret_id, None)
    assert (secret_id_to_open(state, recovery_code), recovery_codes_to_check(state, recovery_code)) == (
        None, mfa.secret_id)


def test_a_recovery_code_is_read_without_dashes_and_in_any_case(mfa):
    issued, given = with_codes(mfa)
    typed = issued.codes[0].replace("-", "").lower()
    given.when(mfa.cmd(VerifyTOTP, code=typed), now=mfa.t0, recovery_code_hashes=issued.hashes).then(
        mfa.ev(TOTPVerified, method="recovery_code", time_step=None, recovery_codes_left=9, recovery_code_index=0)
    )


def test_a_recovery_code_of_another_set_is_refused(mfa):
    issued, given = with_codes(mfa)
    other = recovery_codes.issue(mfa.random_bytes)
    given.when(mfa.cmd(VerifyTOTP, code=other.codes[0]), now=mfa.t0, recovery_code_hashes=issued.hashes).rejected(
        "invalid_code", failed(mfa, 1, 1, mfa.t0)
    )


def test_a_recovery_code_success_resets_the_consecutive_failures(mfa):
    issued = recovery_codes.issue(mfa.random_bytes)
    given = mfa.given(*mfa.set_up(), failed(mfa, 4, 4, mfa.t0))
    then = given.when(mfa.cmd(VerifyTOTP, code=issued.codes[0]), now=mfa.t0, recovery_code_hashes=issued.hashes)
    assert (then.state.consecutive_failures, then.state.total_failures) == (0, 4)


def test_a_recovery_code_does_not_move_the_totp_step(mfa):
    issued, given = with_codes(mfa)
    then = given.when(mfa.cmd(VerifyTOTP, code=issued.codes[0]), now=mfa.t0 + DAY, recovery_code_hashes=issued.hashes)
    assert then.state.last_step == totp.time_step(mfa.t0)


# DismissEnrollmentPrompt


@pytest.mark.parametrize(
    ("elapsed", "days"),
    [
        (timedelta(0), 7),
        (timedelta(hours=1), 7),
        (DAY, 6),
        (6 * DAY, 1),
        (7 * DAY - timedelta(seconds=1), 1),
    ],
)
def test_dismissing_the_prompt_records_the_days_remaining(mfa, elapsed, days):
    mfa.given(*mfa.enrolling(days=7)).when(mfa.cmd(DismissEnrollmentPrompt), now=mfa.t0 + elapsed).then(
        mfa.ev(EnrollmentPromptDismissed, days_remaining=days)
    )


def test_dismissing_leaves_the_state_unchanged(mfa):
    given = mfa.given(*mfa.enrolling())
    assert given.when(mfa.cmd(DismissEnrollmentPrompt), now=mfa.t0).state == given.state


@pytest.mark.parametrize(
    ("history", "code"),
    [
        (lambda mfa: mfa.enrolling(), "enrollment_expired"),
        (
            lambda mfa: [mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None)],
            "no_enrollment_period",
        ),
        (lambda mfa: mfa.set_up(), "already_set_up"),
        (lambda mfa: mfa.set_up(required=False), "already_set_up"),
        (lambda mfa: [], "not_required"),
    ],
)
def test_dismissing_is_refused_outside_an_enrollment_period(mfa, history, code):
    mfa.given(*history(mfa)).when(mfa.cmd(DismissEnrollmentPrompt), now=mfa.t0 + 7 * DAY).rejected(code)


# Status over the clock


def test_status_follows_the_clock_without_any_scheduler_event(mfa):
    state = mfa.given(*mfa.enrolling(days=7)).state
    deadline = mfa.t0 + 7 * DAY
    assert status(state, mfa.t0) == "enrolling"
    assert status(state, deadline - timedelta(microseconds=1)) == "enrolling"
    assert status(state, deadline) == "expired"
    assert status(state, deadline + 300 * DAY) == "expired"


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (lambda mfa: [], "none"),
        (lambda mfa: mfa.set_up(), "active"),
        (lambda mfa: mfa.set_up(required=False), "configured_not_required"),
        (lambda mfa: [*mfa.set_up(), mfa.ev(MFARequirementRemoved)], "configured_not_required"),
        (
            lambda mfa: [mfa.ev(MFARequired, principal_kind="user", enrollment_days=None, deadline=None)],
            "required_no_period",
        ),
        (lambda mfa: pending(mfa), "enrolling"),
    ],
)
def test_status_of_each_state(mfa, history, expected):
    state = mfa.given(*history(mfa)).state
    assert status(state, mfa.t0) == expected
    assert status(state, mfa.t0 + 1000 * DAY) == (expected if expected != "enrolling" else "expired")


# Plumbing


def test_timer_events_are_not_folded(mfa):
    timer = mfa.ev(EnrollmentExpired, deadline=mfa.t0, due_at=mfa.t0, enrollment_version=1)
    with pytest.raises(TypeError):
        apply(Enrollment(), timer)


def test_decide_needs_an_aware_clock_value(mfa):
    with pytest.raises(ValueError, match="timezone"):
        decide(Enrollment(), mfa.cmd(RequireMFA), now=datetime(2025, 1, 1))


def test_decisions_do_not_reveal_secrets_in_their_repr(mfa):
    then = mfa.given(*pending(mfa)).when(
        mfa.cmd(ConfirmTOTPSetup, code=mfa.code(mfa.t0)), now=mfa.t0, secret=mfa.secret
    )
    begun = mfa.given(*mfa.enrolling()).when(mfa.cmd(BeginTOTPSetup), now=mfa.t0)
    text = repr(then.decision) + repr(begun.decision)
    assert begun.decision.new_secret.base32 not in text
    assert begun.decision.new_secret.key.hex() not in text and repr(begun.decision.new_secret.key) not in text
    assert not any(code in text for code in then.decision.recovery_codes.codes)


def test_the_clock_value_may_be_in_any_time_zone(mfa):
    local = mfa.t0.astimezone(timezone(timedelta(hours=-8)))
    mfa.given(*mfa.set_up()).when(
        mfa.cmd(VerifyTOTP, code=mfa.code(mfa.t0 + STEP)), now=local + STEP, secret=mfa.secret
    ).then(verified(mfa, totp.time_step(mfa.t0) + 1))

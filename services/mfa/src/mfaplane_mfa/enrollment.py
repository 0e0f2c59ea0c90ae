"""The enrollment aggregate: one per principal and scope (`enrollment_id(scope, principal_id)`).

Pure: `decide` checks a command against the state and the passed-in clock value and says what
happens; `apply` folds one event in; `status` derives the MFA status from the state and the clock,
so an enrollment is `expired` as soon as its deadline passes, whether or not the scheduler's
EnrollmentExpired has arrived (those timer events belong to another aggregate and are not folded).

`decide` never raises for a domain rule; it returns a `Decision`:

- `events` to append (with the loaded version as the expected version), even when the command is
  refused: a wrong code, at sign-in or confirming setup, is refused *and* recorded
  (TOTPVerificationFailed, and TOTPThrottled or TOTPFactorLocked when it trips the policy), because
  those events are what the throttle counts. The code just accepted, sent again, is refused with
  none (throttle.py says why).
- `rejection`: when set, the command is refused; the service appends `events` first, then raises
  it. It is None exactly when the command succeeded (possibly as a no-op with no events).
- `new_secret` (BeginTOTPSetup): the plaintext key, to seal in the key vault under the
  TOTPSecretIssued's `secret_id` and to show once as setup material. Never logged, never in events.
- `recovery_codes` (ConfirmTOTPSetup, RegenerateRecoveryCodes): the codes to show once and their
  hashes to store, in order, under the event's `secret_id` (a new set replaces the old one).

DecideSystemAccess (an agent asking whether a login to a protected system may go on, rule 10) is
never refused: its answer is a SystemAccessDecided, whatever it says. A code it checks goes through
the same verification as a sign-in's (replay, throttle, lock), whose events come before the decision.
RecordApplicationSignIn only records, as an ApplicationSignInDecided, how the gateway's sign-in of the
principal to an SSO application ended: its steps (password, code, setup) were decided by their own commands.

The service keeps key material in step with the events it appends: TOTPSecretIssued stores the
new sealed key and deletes `replaced_secret_id`; MFAReset deletes `shredded_secret_id` and its
recovery code hashes (crypto-shredding).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from mfaplane_contracts.commands import (
    BeginTOTPSetup,
    Command,
    ConfirmTOTPSetup,
    DecideSystemAccess,
    DismissEnrollmentPrompt,
    EnrollmentCommand,
    ExtendEnrollment,
    RecordApplicationSignIn,
    RegenerateRecoveryCodes,
    RemoveMFARequirement,
    RequireMFA,
    ResetMFA,
    VerifyTOTP,
)
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.mfa_events import (
    PRINCIPAL_KINDS,
    ApplicationSignIn,
    ApplicationSignInDecided,
    EnrollmentExtended,
    EnrollmentPromptDismissed,
    MFARequired,
    MFARequirementRemoved,
    MFAReset,
    RecoveryCodesRegenerated,
    SystemAccessDecided,
    TOTPEnrolled,
    TOTPFactorLocked,
    TOTPSecretIssued,
    TOTPThrottled,
    TOTPVerificationFailed,
    TOTPVerified,
)
from mfaplane_contracts.mfa_status import MFAStatus, mfa_status
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_mfa import recovery_codes, totp
from mfaplane_mfa.recovery_codes import IssuedRecoveryCodes
from mfaplane_mfa.throttle import DEFAULT_POLICY, ThrottlePolicy, refusal
from mfaplane_mfa.totp import TOTPSecret

ONE_DAY = timedelta(days=1)
E = TypeVar("E", bound=EventPayload)
CodeCommand = ConfirmTOTPSetup | VerifyTOTP | DecideSystemAccess | RegenerateRecoveryCodes


@dataclass(frozen=True)
class Enrollment:
    required: bool = False
    deadline: datetime | None = None  # None while required: no enrollment period
    pending_secret_id: uuid.UUID | None = None  # issued, not yet confirmed with a first code
    secret_id: uuid.UUID | None = None  # set up: the confirmed key
    last_step: int | None = None  # last accepted TOTP time step; survives resets (replay)
    recovery_codes_issued: int = 0
    used_recovery_codes: frozenset[int] = frozenset()
    consecutive_failures: int = 0
    total_failures: int = 0
    last_failure_at: datetime | None = None
    paused_until: datetime | None = None
    locked: bool = False

    @property
    def set_up(self) -> bool:
        return self.secret_id is not None


@dataclass(frozen=True)
class Decision:
    events: tuple[EventPayload, ...] = ()
    rejection: Rejected | None = None
    new_secret: TOTPSecret | None = None
    recovery_codes: IssuedRecoveryCodes | None = None


def status(state: Enrollment, now: datetime) -> MFAStatus:
    return mfa_status(state.required, state.set_up, state.deadline, now)


def days_remaining(deadline: datetime, now: datetime) -> int:
    """Whole days left before the deadline, counting a started day as a day."""
    return -(-(deadline - now) // ONE_DAY)


def secret_id_to_open(state: Enrollment, command: Command) -> uuid.UUID | None:
    """Which sealed key `decide` needs in plaintext for this command, if any."""
    if isinstance(command, ConfirmTOTPSetup):
        return state.pending_secret_id
    code = _code_checked(command)
    if isinstance(command, RegenerateRecoveryCodes) or (code is not None and totp.is_code_shaped(code)):
        return state.secret_id
    return None


def recovery_codes_to_check(state: Enrollment, command: Command) -> uuid.UUID | None:
    """Under which key's id `decide` needs the recovery code hashes: a VerifyTOTP with a recovery code."""
    code = _code_checked(command)
    if code is not None and not totp.is_code_shaped(code):
        return state.secret_id
    return None


def _code_checked(command: Command) -> str | None:
    """A sign-in's code, or a system access decision's; None for any other command."""
    return command.code if isinstance(command, VerifyTOTP | DecideSystemAccess) else None


def decide(
    state: Enrollment,
    command: Command,
    *,
    now: datetime,
    secret: TOTPSecret | None = None,
    recovery_code_hashes: Sequence[str] = (),
    policy: ThrottlePolicy = DEFAULT_POLICY,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> Decision:
    """What `command` does to `state` at `now` (see the module docstring for the Decision).

    `secret` is the plaintext of the key named by `secret_id_to_open`; `new_id` and `random_bytes`
    are injectable so tests are deterministic.
    """
    if now.tzinfo is None:
        raise ValueError("decide needs a timezone-aware now")
    try:
        match command:
            case RequireMFA():
                return _require(state, command, now)
            case RemoveMFARequirement():
                return _remove_requirement(state, command)
            case ExtendEnrollment():
                return _extend(state, command, now)
            case ResetMFA():
                return _reset(state, command, now)
            case BeginTOTPSetup():
                return _begin_setup(state, command, now, new_id, random_bytes)
            case ConfirmTOTPSetup():
                return _confirm_setup(state, command, now, secret, random_bytes, policy)
            case VerifyTOTP():
                return _verify(state, command, now, secret, recovery_code_hashes, policy)
            case RegenerateRecoveryCodes():
                return _regenerate_recovery_codes(state, command, now, secret, random_bytes, policy)
            case DismissEnrollmentPrompt():
                return _dismiss_prompt(state, command, now)
            case DecideSystemAccess():
                return _decide_access(state, command, now, secret, recovery_code_hashes, policy)
            case RecordApplicationSignIn():
                fields = command.model_dump(include=set(ApplicationSignIn.model_fields))
                return Decision((_event(ApplicationSignInDecided, command, **fields),))
    except Rejected as rejection:
        return Decision(rejection=rejection)
    raise TypeError(f"not an enrollment command: {type(command).__name__}")


def _needed(secret: TOTPSecret | None) -> TOTPSecret:
    if secret is None:
        raise ValueError("this command needs the plaintext of the key named by secret_id_to_open")
    return secret


def _event(event_type: type[E], command: EnrollmentCommand, **fields: object) -> E:
    # every enrollment event has these two fields, which EventPayload, E's bound, does not
    return event_type(principal_id=command.principal_id, scope=command.scope, **fields)  # type: ignore[call-arg]


def _require(state: Enrollment, command: RequireMFA, now: datetime) -> Decision:
    if state.required:
        return Decision()
    days = None if state.set_up else command.enrollment_days  # None: no period
    return Decision(
        (
            _event(
                MFARequired,
                command,
                principal_kind=PRINCIPAL_KINDS[command.scope],
                enrollment_days=command.enrollment_days,
                deadline=None if days is None else now + timedelta(days=days),
                already_set_up=state.set_up,
            ),
        )
    )


def _remove_requirement(state: Enrollment, command: RemoveMFARequirement) -> Decision:
    # Removing a requirement that is not there is a no-op, like requiring twice: a bulk action
    # over a mixed selection succeeds, and there is nothing for the history to record.
    if not state.required:
        return Decision()
    return Decision((_event(MFARequirementRemoved, command),))


def _extend(state: Enrollment, command: ExtendEnrollment, now: datetime) -> Decision:
    if not state.required:
        raise Rejected("not_required", "MFA is not required, so there is no enrollment period to extend.")
    if state.set_up:
        raise Rejected("already_set_up", "MFA is already set up; reset MFA to start a new enrollment period.")
    deadline = now + timedelta(days=command.enrollment_days)
    return Decision((_event(EnrollmentExtended, command, enrollment_days=command.enrollment_days, deadline=deadline),))


def _reset(state: Enrollment, command: ResetMFA, now: datetime) -> Decision:
    return Decision(
        (
            _event(
                MFAReset,
                command,
                enrollment_days=command.enrollment_days,
                deadline=now + timedelta(days=command.enrollment_days),
                shredded_secret_id=state.secret_id or state.pending_secret_id,
            ),
        )
    )


def _setup_allowed(state: Enrollment, now: datetime) -> None:
    if state.set_up:
        raise Rejected("already_set_up", "MFA is already set up; an administrator must reset it first.")
    if status(state, now) == MFAStatus.EXPIRED:
        raise Rejected(
            "enrollment_expired",
            "The enrollment period has ended; an administrator must extend it, reset MFA or remove the requirement.",
            Refusal.FORBIDDEN,
        )


def _begin_setup(
    state: Enrollment,
    command: BeginTOTPSetup,
    now: datetime,
    new_id: Callable[[], uuid.UUID],
    random_bytes: Callable[[int], bytes],
) -> Decision:
    _setup_allowed(state, now)
    event = _event(TOTPSecretIssued, command, secret_id=new_id(), replaced_secret_id=state.pending_secret_id)
    return Decision((event,), new_secret=totp.new_secret(random_bytes))


def _confirm_setup(
    state: Enrollment,
    command: ConfirmTOTPSetup,
    now: datetime,
    secret: TOTPSecret | None,
    random_bytes: Callable[[int], bytes],
    policy: ThrottlePolicy,
) -> Decision:
    _setup_allowed(state, now)
    if state.pending_secret_id is None:
        raise Rejected("no_setup_in_progress", "Begin TOTP setup first.")
    step = _app_code_step(state, command, now, secret, policy)
    if isinstance(step, Decision):
        return step
    codes = recovery_codes.issue(random_bytes)
    event = _event(
        TOTPEnrolled,
        command,
        secret_id=state.pending_secret_id,
        time_step=step,
        recovery_codes_issued=len(codes.hashes),
    )
    return Decision((event,), recovery_codes=codes)


def _verify(
    state: Enrollment,
    command: VerifyTOTP | DecideSystemAccess,
    now: datetime,
    secret: TOTPSecret | None,
    hashes: Sequence[str],
    policy: ThrottlePolicy,
) -> Decision:
    if not state.set_up:
        raise Rejected("not_set_up", "MFA is not set up, so there is no code to verify.")
    _heard(state, now)
    code = command.code
    assert code is not None  # a system access decision without one is answered before (_decide_access)
    codes_left = state.recovery_codes_issued - len(state.used_recovery_codes)
    if totp.is_code_shaped(code):
        key = _needed(secret)
        step = totp.match_step(key, code, now, after_step=state.last_step)
        if step is None:
            return _wrong_totp_code(state, command, code, key, now, policy)
        return Decision((_event(TOTPVerified, command, method="totp", time_step=step, recovery_codes_left=codes_left),))
    index = recovery_codes.match(code, hashes, state.used_recovery_codes)
    if index is None:
        return _failed(state, command, now, policy)
    return Decision(
        (
            _event(
                TOTPVerified,
                command,
                method="recovery_code",
                time_step=None,
                recovery_codes_left=codes_left - 1,
                recovery_code_index=index,
            ),
        )
    )


def _app_code_step(state: Enrollment, command: ConfirmTOTPSetup | RegenerateRecoveryCodes, now: datetime,
                   secret: TOTPSecret | None, policy: ThrottlePolicy) -> int | Decision:
    """The time step the code from the app matches (heard only while not paused or locked), or the
    Decision that records a code matching none."""
    _heard(state, now)
    key = _needed(secret)
    step = totp.match_step(key, command.code, now, after_step=state.last_step)
    return _wrong_totp_code(state, command, command.code, key, now, policy) if step is None else step


def _regenerate_recovery_codes(state: Enrollment, command: RegenerateRecoveryCodes, now: datetime,
                               secret: TOTPSecret | None, random_bytes: Callable[[int], bytes],
                               policy: ThrottlePolicy) -> Decision:
    """A code from the app buys a new set of recovery codes; it is checked, replayed and throttled as at sign-in."""
    if not state.set_up:
        raise Rejected("not_set_up", "MFA is not set up, so there are no recovery codes to replace.")
    assert state.secret_id is not None
    step = _app_code_step(state, command, now, secret, policy)
    if isinstance(step, Decision):
        return step
    codes = recovery_codes.issue(random_bytes)
    event = _event(RecoveryCodesRegenerated, command, secret_id=state.secret_id, time_step=step,
                   recovery_codes_issued=len(codes.hashes))
    return Decision((event,), recovery_codes=codes)


def _decide_access(state: Enrollment, command: DecideSystemAccess, now: datetime, secret: TOTPSecret | None,
                   hashes: Sequence[str], policy: ThrottlePolicy) -> Decision:
    """Rule 10: a code is asked of a principal who has set MFA up, on a system with MFA enabled. One who
    has not set it up is let through, an expired enrollment included: rule 5 locks out of the user
    portal only."""
    if not command.mfa_enabled:
        return _access(command, "allow", "mfa_not_enabled_on_system")
    if not state.set_up:
        return _access(command, "allow", "mfa_not_set_up")
    try:
        if command.code is None:
            _heard(state, now)
            return _access(command, "code_required", "mfa_set_up")
        checked = _verify(state, command, now, secret, hashes, policy)
    except Rejected as refused:
        return _access(command, "deny", refused.code)
    if checked.rejection is not None:
        return _access(command, "deny", checked.rejection.code, checked.events)
    return _access(command, "allow", "code_verified", checked.events)


def _access(command: DecideSystemAccess, outcome: str, reason: str,
            before: tuple[EventPayload, ...] = ()) -> Decision:
    decided = _event(SystemAccessDecided, command, system_id=command.system_id, outcome=outcome, reason=reason,
                     login_name=command.login_name, source=command.source)
    return Decision((*before, decided))


def _heard(state: Enrollment, now: datetime) -> None:
    """Refuses a code attempt unheard while the factor is paused or locked."""
    if (refused := refusal(locked=state.locked, paused_until=state.paused_until, now=now)) is not None:
        raise refused


def _wrong_totp_code(
    state: Enrollment, command: CodeCommand, code: str, secret: TOTPSecret, now: datetime, policy: ThrottlePolicy
) -> Decision:
    """A code-shaped code that matched no step it could: the one just accepted, sent again, is refused
    and not counted (see throttle.py); any other is a failure."""
    if totp.is_replay(secret, code, now, last_step=state.last_step):
        raise Rejected("code_already_used", "This code was already used; wait for the next code.",
                       Refusal.UNAUTHENTICATED)
    return _failed(state, command, now, policy)


def _failed(state: Enrollment, command: CodeCommand, now: datetime, policy: ThrottlePolicy) -> Decision:
    return Decision(_failure_events(state, command, now, policy), _invalid_code())


def _invalid_code() -> Rejected:
    return Rejected("invalid_code", "The code is wrong, expired or already used.", Refusal.UNAUTHENTICATED)


def _failure_events(
    state: Enrollment, command: CodeCommand, now: datetime, policy: ThrottlePolicy
) -> tuple[EventPayload, ...]:
    counted = policy.still_counted(state.consecutive_failures, last_failure=state.last_failure_at,
                                   paused_until=state.paused_until, now=now)
    consecutive = counted + 1
    total = state.total_failures + 1
    failed = _event(
        TOTPVerificationFailed, command, consecutive_failures=consecutive, total_failures=total, failed_at=now
    )
    if policy.locks(total):
        return failed, _event(TOTPFactorLocked, command, total_failures=total)
    if (pause := policy.pause_after(consecutive)) is not None:
        return failed, _event(TOTPThrottled, command, until=now + pause, consecutive_failures=consecutive)
    return (failed,)


def _dismiss_prompt(state: Enrollment, command: DismissEnrollmentPrompt, now: datetime) -> Decision:
    match status(state, now):
        case MFAStatus.ENROLLING:
            assert state.deadline is not None
            days = days_remaining(state.deadline, now)
            return Decision((_event(EnrollmentPromptDismissed, command, days_remaining=days),))
        case MFAStatus.EXPIRED:
            raise Rejected(
                "enrollment_expired", "The enrollment period has ended; the prompt cannot be dismissed.",
                Refusal.FORBIDDEN
            )
        case MFAStatus.REQUIRED_NO_PERIOD:
            raise Rejected("no_enrollment_period", "MFA must be set up now: there is no enrollment period.")
        case MFAStatus.ACTIVE | MFAStatus.CONFIGURED_NOT_REQUIRED:
            raise Rejected("already_set_up", "MFA is already set up; there is no prompt to dismiss.")
        case _:
            raise Rejected("not_required", "MFA is not required, so there is no prompt to dismiss.")


def apply(state: Enrollment, event: EventPayload) -> Enrollment:
    match event:
        case MFARequired():
            return replace(state, required=True, deadline=event.deadline)
        case MFARequirementRemoved():
            return replace(state, required=False, deadline=None)
        case EnrollmentExtended():
            return replace(state, deadline=event.deadline)
        case MFAReset():
            # Everything but the last accepted step: a step is never accepted twice per principal.
            return Enrollment(required=True, deadline=event.deadline, last_step=state.last_step)
        case TOTPSecretIssued():
            return replace(state, pending_secret_id=event.secret_id)
        case TOTPEnrolled():
            return replace(
                state,
                pending_secret_id=None,
                secret_id=event.secret_id,
                last_step=event.time_step,
                consecutive_failures=0,
                recovery_codes_issued=event.recovery_codes_issued,
            )
        case TOTPVerified(recovery_code_index=None):
            return replace(state, consecutive_failures=0, last_step=event.time_step)
        case TOTPVerified(recovery_code_index=int(index)):
            used = state.used_recovery_codes | {index}
            return replace(state, consecutive_failures=0, used_recovery_codes=used)
        case RecoveryCodesRegenerated():
            return replace(state, last_step=event.time_step, consecutive_failures=0,
                           recovery_codes_issued=event.recovery_codes_issued, used_recovery_codes=frozenset())
        case TOTPVerificationFailed():
            return replace(state, consecutive_failures=event.consecutive_failures, total_failures=event.total_failures,
                           last_failure_at=event.failed_at)
        case TOTPThrottled():
            return replace(state, paused_until=event.until)
        case TOTPFactorLocked():
            return replace(state, locked=True)
        case EnrollmentPromptDismissed() | SystemAccessDecided() | ApplicationSignInDecided():
            return state
    raise TypeError(f"not an enrollment event: {type(event).__name__}")

"""Random command sequences and clock moves, run the way the service runs them.

The machine plays the service (key table, recovery code hashes, appending even refused
decisions' events) and the principal (reading codes off an authenticator, retrying old codes,
typing recovery codes). After every step the state must satisfy the invariants below, and folding
the recorded events from scratch, also as stored envelopes read back from JSON, must give exactly the
same state.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mfaplane_contracts.commands import (
    BeginTOTPSetup,
    Command,
    ConfirmTOTPSetup,
    DismissEnrollmentPrompt,
    ExtendEnrollment,
    RemoveMFARequirement,
    RequireMFA,
    ResetMFA,
    VerifyTOTP,
)
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.mfa_events import MFAReset, TOTPEnrolled, TOTPSecretIssued, TOTPVerified, enrollment_id
from mfaplane_eventing.aggregate import fold
from mfaplane_eventing.event_store import History
from mfaplane_eventing.snapshots import Snapshot
from mfaplane_mfa import totp
from mfaplane_mfa.enrollment import (
    Decision,
    Enrollment,
    apply,
    decide,
    recovery_codes_to_check,
    secret_id_to_open,
    status,
)
from mfaplane_mfa.enrollment_commands import replay
from mfaplane_mfa.throttle import ThrottlePolicy, refusal

POLICY = ThrottlePolicy(failures_per_pause=2, first_pause=timedelta(minutes=1), lock_after_failures=5)
PRINCIPAL = uuid.UUID(int=1)
DAYS = st.one_of(st.integers(1, 2), st.integers(1, 365))
CLOCK_MOVES = st.builds(int.__mul__, st.integers(0, 10), st.sampled_from([1, 30, 600, 3600, 86400]))  # seconds
TOTP_CHOICES = st.sampled_from(["current", "current", "previous", "next", "stale", "last_accepted", "wrong", "wrong"])
RECOVERY_CHOICES = st.sampled_from(["unused", "used", "unknown"])

EVENTS_OF = {
    RequireMFA: {"MFARequired"},
    RemoveMFARequirement: {"MFARequirementRemoved"},
    ExtendEnrollment: {"EnrollmentExtended"},
    ResetMFA: {"MFAReset"},
    BeginTOTPSetup: {"TOTPSecretIssued"},
    ConfirmTOTPSetup: {"TOTPEnrolled"},
    VerifyTOTP: {"TOTPVerified"},
    DismissEnrollmentPrompt: {"EnrollmentPromptDismissed"},
}
FAILURE_EVENTS = {"TOTPVerificationFailed", "TOTPThrottled", "TOTPFactorLocked"}


class EnrollmentMachine(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32), start=st.integers(1_000_000_000, 4_000_000_000))
    def start(self, seed: int, start: int) -> None:
        self.random = random.Random(seed)
        self.ids = (uuid.UUID(int=n) for n in itertools.count(100))
        self.now = datetime.fromtimestamp(start, UTC)
        self.state = Enrollment()
        self.events: list = []
        self.keys: dict[uuid.UUID, totp.TOTPSecret] = {}  # the service's sealed-key table
        self.hashes: dict[uuid.UUID, tuple[str, ...]] = {}
        self.written_down: dict[uuid.UUID, tuple[str, ...]] = {}  # codes the principal keeps
        self.accepted_steps: list[int] = []
        self.used: set[tuple[uuid.UUID, int]] = set()

    def run(self, command: Command) -> Decision:
        before = self.state
        # Only what the service loads for the command: the key, or the recovery code hashes.
        opened, checked = secret_id_to_open(before, command), recovery_codes_to_check(before, command)
        decision = decide(
            before,
            command,
            now=self.now,
            secret=self.keys.get(opened),
            recovery_code_hashes=self.hashes.get(checked, ()),
            policy=POLICY,
            new_id=lambda: next(self.ids),
            random_bytes=self.random.randbytes,
        )
        kinds = {type(event).__name__ for event in decision.events}
        if decision.rejection is not None:
            assert decision.new_secret is None and decision.recovery_codes is None
            if isinstance(command, (VerifyTOTP, ConfirmTOTPSetup)) and decision.rejection.code == "invalid_code":
                assert "TOTPVerificationFailed" in kinds and kinds <= FAILURE_EVENTS
            else:
                assert not kinds
        else:
            assert kinds <= EVENTS_OF[type(command)]
        for event in decision.events:
            self.append(event, decision)
        return decision

    def append(self, event, decision: Decision) -> None:
        """What the service does with each event: fold it, and keep key material in step."""
        self.events.append(event)
        self.state = apply(self.state, event)
        match event:
            case TOTPSecretIssued():
                self.keys.pop(event.replaced_secret_id, None)
                self.keys[event.secret_id] = decision.new_secret
            case TOTPEnrolled():
                self.hashes[event.secret_id] = decision.recovery_codes.hashes
                self.written_down[event.secret_id] = decision.recovery_codes.codes
                self.accept_step(event.time_step)
            case MFAReset():
                self.keys.pop(event.shredded_secret_id, None)
                self.hashes.pop(event.shredded_secret_id, None)
            case TOTPVerified(method="totp"):
                self.accept_step(event.time_step)
            case TOTPVerified():
                key = (self.state.secret_id, event.recovery_code_index)
                assert key not in self.used, "a recovery code was accepted twice"
                self.used.add(key)

    def accept_step(self, step: int) -> None:
        assert not self.accepted_steps or step > self.accepted_steps[-1], "a time step was accepted twice"
        self.accepted_steps.append(step)

    def cmd(self, command_type, **fields) -> Command:
        return command_type(actor="prop", principal_id=PRINCIPAL, **fields)

    def totp_code(self, secret_id: uuid.UUID | None, choice: str) -> tuple[str, int | None]:
        """A code as the principal would type it, and its time step when it is a real one."""
        secret = self.keys.get(secret_id)
        if secret is None or choice == "wrong":
            return f"{self.random.randrange(1_000_000):06d}", None
        current = totp.time_step(self.now)
        step = {
            "current": current,
            "previous": current - 1,
            "next": current + 1,
            "stale": current - 2,
            "last_accepted": self.accepted_steps[-1] if self.accepted_steps else current,
        }[choice]
        return totp.code_at(secret, step), step

    def expect_acceptance(self, decision: Decision, step: int | None, before: Enrollment) -> None:
        """Unless paused or locked: a real code of the window, newer than any accepted, is accepted; the
        code of the step accepted last is a replay, refused with no event; any other is refused."""
        if refusal(locked=before.locked, paused_until=before.paused_until, now=self.now) is not None:
            assert decision.rejection.code in {"throttled", "factor_locked"} and not decision.events
            return
        in_window = step is not None and abs(step - totp.time_step(self.now)) <= 1
        if in_window and (before.last_step is None or step > before.last_step):
            assert decision.rejection is None, decision.rejection.code
        elif in_window and step == before.last_step:
            assert decision.rejection.code == "code_already_used" and not decision.events
        elif step is not None:
            assert decision.rejection is not None

    @rule(seconds=CLOCK_MOVES)
    def clock_moves(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(days=st.none() | DAYS)
    def require(self, days) -> None:
        self.run(self.cmd(RequireMFA, enrollment_days=days))

    @rule()
    def remove_requirement(self) -> None:
        self.run(self.cmd(RemoveMFARequirement))

    @rule(days=DAYS)
    def extend(self, days: int) -> None:
        self.run(self.cmd(ExtendEnrollment, enrollment_days=days))

    @rule(days=DAYS)
    def reset(self, days: int) -> None:
        self.run(self.cmd(ResetMFA, enrollment_days=days))

    @rule()
    def begin_setup(self) -> None:
        self.run(self.cmd(BeginTOTPSetup))

    @rule(choice=TOTP_CHOICES)
    def confirm_setup(self, choice: str) -> None:
        before = self.state
        code, step = self.totp_code(before.pending_secret_id, choice)
        decision = self.run(self.cmd(ConfirmTOTPSetup, code=code))
        if before.pending_secret_id is not None and status(before, self.now) != "expired":
            self.expect_acceptance(decision, step, before)

    @rule(choice=TOTP_CHOICES)
    def set_up_in_one_go(self, choice: str) -> None:
        """Begin and confirm in a row: the common path, so the set-up states are well explored."""
        if self.run(self.cmd(BeginTOTPSetup)).rejection is None:
            self.confirm_setup(choice)

    @rule(choice=TOTP_CHOICES)
    def verify_totp(self, choice: str) -> None:
        before = self.state
        code, step = self.totp_code(before.secret_id, choice)
        decision = self.run(self.cmd(VerifyTOTP, code=code))
        if before.set_up:
            self.expect_acceptance(decision, step, before)

    @rule(choice=RECOVERY_CHOICES)
    def verify_recovery_code(self, choice: str) -> None:
        before = self.state
        secret_id = before.secret_id
        codes = list(enumerate(self.written_down.get(secret_id, ())))
        used = [code for i, code in codes if (secret_id, i) in self.used]
        unused = [code for i, code in codes if (secret_id, i) not in self.used]
        pool = {"used": used, "unused": unused}.get(choice) or ["2222-3333-4444-5555"]
        code = self.random.choice(pool)
        decision = self.run(self.cmd(VerifyTOTP, code=code))
        heard = refusal(locked=before.locked, paused_until=before.paused_until, now=self.now) is None
        if choice == "unused" and unused and heard:
            assert decision.rejection is None and decision.events[0].recovery_code_index is not None
        else:
            assert decision.rejection is not None

    @rule()
    def dismiss_prompt(self) -> None:
        self.run(self.cmd(DismissEnrollmentPrompt))

    @invariant()
    def state_is_valid(self) -> None:
        s = self.state
        assert not (s.pending_secret_id and s.secret_id), "a pending and a confirmed key at once"
        assert s.deadline is None or s.required, "a deadline without a requirement"
        assert status(s, self.now) in {
            "active",
            "enrolling",
            "expired",
            "configured_not_required",
            "required_no_period",
            "none",
        }
        assert s.consecutive_failures <= s.total_failures <= POLICY.lock_after_failures
        assert s.locked == (s.total_failures >= POLICY.lock_after_failures)
        assert s.used_recovery_codes <= set(range(s.recovery_codes_issued))
        if s.set_up:
            assert s.recovery_codes_issued == 10 and s.last_step is not None
        else:
            assert s.used_recovery_codes == frozenset()
        if not (s.set_up or s.pending_secret_id):  # only a code for a key can fail
            assert (s.consecutive_failures, s.total_failures, s.locked) == (0, 0, False)
        if s.paused_until is not None and self.now < s.paused_until:
            assert s.consecutive_failures and s.consecutive_failures % POLICY.failures_per_pause == 0
        if self.accepted_steps:
            assert s.last_step == self.accepted_steps[-1]
        # Crypto-shredding leaves exactly the current key (pending or confirmed) behind.
        assert set(self.keys) == {s.pending_secret_id, s.secret_id} - {None}
        assert set(self.hashes) <= {s.secret_id}

    @invariant()
    def history_rebuilds_the_state(self) -> None:
        assert fold(apply, Enrollment(), self.events) == self.state

    @invariant()
    def a_snapshot_keeps_the_state(self) -> None:
        assert replay.snapshots.load(Snapshot(len(self.events), replay.snapshots.dump(self.state))) == self.state

    def teardown(self) -> None:
        """Once per run (it is the slow check): the history as stored and read back replays too, whole
        and from a snapshot taken halfway."""
        stored = [
            Envelope.model_validate_json(self.envelope(i, e).model_dump_json()) for i, e in enumerate(self.events)
        ]
        assert replay(History(stored)) == self.state
        half = len(stored) // 2
        taken = Snapshot(half, replay.snapshots.dump(fold(apply, Enrollment(), self.events[:half])))
        assert replay(History(stored[half:], taken if half else None)) == self.state

    def envelope(self, index: int, event) -> Envelope:
        """The event as the store keeps it and Kafka carries it."""
        return Envelope(
            event_id=uuid.uuid4(),
            type=event.event_type,
            schema_version=event.schema_version,
            aggregate_type=event.aggregate_type,
            aggregate_id=enrollment_id(event.scope, event.principal_id),
            aggregate_version=index + 1,
            occurred_at=self.now,
            correlation_id=uuid.uuid4(),
            actor="prop",
            payload=event.model_dump(mode="json"),
        )


EnrollmentMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=50, deadline=None)
TestEnrollmentMachine = EnrollmentMachine.TestCase

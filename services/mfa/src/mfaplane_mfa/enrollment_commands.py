"""Runs enrollment commands: opens the key material `decide` needs, appends, keeps keys in step.

A refused code is still recorded (its failure events are what the throttle counts), so the events
are appended first and the refusal raised after. A retried command id returns its first result,
except a code's (a verification, a setup confirmation, a system access decision, new recovery codes):
its first run may have been refused, and replaying the request must never pass as a success (nor
show recovery codes a second time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from mfaplane_contracts.commands import (
    Command,
    ConfirmTOTPSetup,
    DecideSystemAccess,
    EnrollmentCommand,
    RegenerateRecoveryCodes,
    VerifyTOTP,
)
from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.mfa_events import TOTPSecretIssued, enrollment_id
from mfaplane_eventing.aggregate import Refusal, Rejected, Replayer
from mfaplane_eventing.clock import Clock
from mfaplane_eventing.command_handler import BatchItem, execute, execute_batch
from mfaplane_eventing.event_store import AppendResult, Cause, EventStore
from mfaplane_eventing.snapshots import Snapshots
from mfaplane_mfa import enrollment
from mfaplane_mfa.enrollment import Decision, Enrollment
from mfaplane_mfa.key_material import KeyMaterial
from mfaplane_mfa.throttle import ThrottlePolicy
from mfaplane_mfa.totp import TOTPSecret

# An enrollment gains an event at every sign-in: loads start from a snapshot (see snapshots.py).
CODE_COMMANDS = (VerifyTOTP, ConfirmTOTPSetup, DecideSystemAccess, RegenerateRecoveryCodes)
replay = Replayer(enrollment.apply, Enrollment(), Snapshots(Enrollment, version=1))


class EnrollmentCommands:
    def __init__(self, store: EventStore, pool: asyncpg.Pool, clock: Clock, keys: KeyMaterial,
                 policy: ThrottlePolicy) -> None:
        """`pool`: the service's database, where the key material is read outside any command's transaction."""
        self._store = store
        self._pool = pool
        self._clock = clock
        self._keys = keys
        self._policy = policy

    async def state(self, aggregate_id: str) -> Enrollment:
        return replay(await self._store.history(aggregate_id, replay.snapshot_key))

    async def __call__(self, command: EnrollmentCommand, cause: Cause) -> tuple[AppendResult, Decision | None]:
        run = _Run(command, self._decide, self._keys)
        return run.outcome(await execute(self._store, run.aggregate_id, replay, run.decide, cause, run.record,
                                         rows_needed=self._keys.rows_needed))

    async def batch(self, commands: Sequence[tuple[EnrollmentCommand, Cause]]) -> list[AppendResult | Exception]:
        """Runs many commands (each on its own enrollment) in few transactions: each one's receipt, or
        the refusal or conflict that stopped it, in order."""
        runs = [_Run(command, self._decide, self._keys) for command, _ in commands]
        items = [BatchItem(run.aggregate_id, run.decide, cause, run.record)
                 for run, (_, cause) in zip(runs, commands, strict=True)]
        outcomes = await execute_batch(self._store, replay, items)
        return [_result_or_refusal(run, outcome) for run, outcome in zip(runs, outcomes, strict=True)]

    async def _decide(self, state: Enrollment, command: Command) -> Decision:
        secret, hashes = None, []
        if (secret_id := enrollment.secret_id_to_open(state, command)) is not None:
            secret = await self._keys.open(self._pool, secret_id)
        if (secret_id := enrollment.recovery_codes_to_check(state, command)) is not None:
            hashes = await self._keys.recovery_code_hashes(self._pool, secret_id)
        return enrollment.decide(state, command, now=self._clock.now(), secret=secret, recovery_code_hashes=hashes,
                                 policy=self._policy)

    async def issued_secret(self, result: AppendResult) -> TOTPSecret:
        """The key a repeated BeginTOTPSetup issued the first time, if it is still the pending one."""
        issued = [body for e in result.events if isinstance(body := e.body(), TOTPSecretIssued)]
        secret = await self._keys.open(self._pool, issued[-1].secret_id) if issued else None
        if secret is None:
            raise Rejected("setup_superseded", "That setup was replaced or completed; begin setup again.")
        return secret


class _Run:
    """One command going through the command handler: its decisions (the last one counts) and its outcome."""

    def __init__(self, command: EnrollmentCommand, decide: Callable[[Enrollment, Command], Awaitable[Decision]],
                 keys: KeyMaterial) -> None:
        self.aggregate_id = enrollment_id(command.scope, command.principal_id)
        self._command = command
        self._decide = decide
        self._keys = keys
        self._decisions: list[Decision] = []

    async def decide(self, state: Enrollment) -> Sequence[EventPayload]:
        self._decisions.append(await self._decide(state, self._command))
        return self._decisions[-1].events

    async def record(self, conn: asyncpg.Connection, events: Sequence[EventPayload]) -> None:
        await self._keys.record(conn, self.aggregate_id, events, self._decisions[-1])

    def outcome(self, result: AppendResult) -> tuple[AppendResult, Decision | None]:
        if result.duplicate:
            if isinstance(self._command, CODE_COMMANDS):
                raise Rejected("replayed_request", "This code request was already used.", Refusal.UNAUTHENTICATED)
            return result, None
        if self._decisions[-1].rejection is not None:
            raise self._decisions[-1].rejection
        return result, self._decisions[-1]


def _result_or_refusal(run: _Run, outcome: AppendResult | Exception) -> AppendResult | Exception:
    if isinstance(outcome, Exception):
        return outcome
    try:
        return run.outcome(outcome)[0]
    except Rejected as refusal:
        return refusal

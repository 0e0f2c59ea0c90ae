"""Random command sequences and clock moves on one account id, run the way the service runs them
(each accepted decision's events appended and folded in).

The machine plays the admins and the holder of the mailed reset links, and keeps its own record of
who the id is and which links were mailed. After every step: an operation was accepted exactly when
the id is a live principal of the kind it names; a reset link set a password exactly when it was the
newest mailed, unexpired and not closed by a password change since, on its own kind's portal, and
never twice; the recorded events, also as stored and read back from JSON, rebuild the same state.

At least one admin always remaining is not this aggregate's to know (the identity service counts the
admins in the transaction that deletes one), so it is tested end to end, not here.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mfaplane_contracts.envelope import EventPayload
from mfaplane_contracts.registry import decode_payload
from mfaplane_eventing.aggregate import Rejected, fold
from mfaplane_identity import account
from mfaplane_identity.account import Account

ID = uuid.UUID(int=1)
KINDS = st.sampled_from(["user", "admin"])
CREATE = {"user": account.create_user, "admin": account.create_admin}
DELETE = {"user": account.delete_user, "admin": account.delete_admin}


class AccountMachine(RuleBasedStateMachine):
    @initialize(start=st.integers(1_000_000_000, 4_000_000_000), created=st.none() | KINDS)
    def start(self, start: int, created: str | None) -> None:
        self.now = datetime.fromtimestamp(start, UTC)
        self.state = Account()
        self.events: list[EventPayload] = []
        self.reset_ids = (uuid.UUID(int=n) for n in itertools.count(100))
        self.kind: str | None = None  # who the id is, once created
        self.deleted = False
        self.mailed: list[tuple[uuid.UUID, datetime]] = []  # the reset links, oldest first
        self.closed = False  # the newest link, by a password change since it was mailed
        self.redeemed: set[uuid.UUID] = set()
        if created:
            self.create(created)

    def run(self, refusal: str | None, decide: Callable[..., list[EventPayload]], *args: Any) -> bool:
        """Decides; the refusal expected, or None for an acceptance. Whether it was accepted."""
        try:
            events = decide(self.state, *args)
        except Rejected as refused:
            assert refused.code == refusal, f"refused with {refused.code}, expected {refusal}"
            return False
        assert refusal is None, f"accepted with {events}, expected {refusal}"
        self.events.extend(events)
        self.state = fold(account.apply, self.state, events)
        return True

    def found(self, kind: str) -> str | None:
        """The refusal an operation on a `kind` meets here: none when the id is a live one of that kind."""
        return None if (self.kind, self.deleted) == (kind, False) else f"{kind}_not_found"

    @rule(hours=st.integers(0, 30))
    def clock_moves(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(kind=KINDS)
    def create(self, kind: str) -> None:
        if self.run(None if self.kind is None else f"{kind}_exists", CREATE[kind], ID, "ada@example.com", "Ada"):
            self.kind = kind

    @rule(email=st.sampled_from([None, "ada@example.com", "ada@lovelace.example"]),
          name=st.sampled_from([None, "Ada", "Ada L."]))
    def update(self, email: str | None, name: str | None) -> None:
        before = self.state
        if self.run(self.found("user"), account.update_user, ID, email, name):
            assert (self.state.email, self.state.name) == (email or before.email, name or before.name)

    @rule(login_name=st.sampled_from([None, "ada", "alovelace"]))
    def set_login_name(self, login_name: str | None) -> None:
        if self.run(self.found("user"), account.set_login_name, ID, login_name):
            assert self.state.login_name == login_name

    @rule(kind=KINDS)
    def change_password(self, kind: str) -> None:
        if self.run(self.found(kind), account.change_password, kind, ID):
            self.closed = True

    @rule(kind=KINDS, hours=st.integers(1, 72))
    def request_reset(self, kind: str, hours: int) -> None:
        reset_id, expires_at = next(self.reset_ids), self.now + timedelta(hours=hours)
        if self.run(self.found(kind), account.request_password_reset, kind, ID, reset_id, expires_at):
            self.mailed.append((reset_id, expires_at))
            self.closed = False

    @rule(kind=KINDS, link=st.integers(0, 3))
    def redeem(self, kind: str, link: int) -> None:
        """The link `link` places back from the newest mailed (one never mailed past the oldest)."""
        mailed = link < len(self.mailed)
        reset_id, expires_at = self.mailed[-1 - link] if mailed else (uuid.uuid4(), self.now + timedelta(days=1))
        opens = self.found(kind) is None and mailed and link == 0 and not self.closed and self.now < expires_at
        if self.run(None if opens else "invalid_reset_token", account.redeem_password_reset, kind, ID, reset_id,
                    self.now):
            assert reset_id not in self.redeemed, "a reset link set a password twice"
            self.redeemed.add(reset_id)
            self.closed = True

    @rule(kind=KINDS, hours=st.integers(1, 72), wait=st.integers(0, 80), clicks=st.integers(1, 2))
    def follow_a_new_link(self, kind: str, hours: int, wait: int, clicks: int) -> None:
        """Mailed, then followed `wait` hours later, once or twice: the common path, so the reset states are
        well explored."""
        self.request_reset(kind, hours)
        self.now += timedelta(hours=wait)
        for _ in range(clicks):
            self.redeem(kind, 0)

    @rule(kind=KINDS)
    def delete(self, kind: str) -> None:
        if self.run(self.found(kind), DELETE[kind], ID):
            self.deleted = True

    @rule(kind=KINDS)
    def end_sessions(self, kind: str) -> None:
        self.run(self.found(kind), account.end_sessions, kind, ID)

    @invariant()
    def the_state_says_who_the_id_is(self) -> None:
        s = self.state
        assert (s.exists, s.deleted) == (self.kind is not None, self.deleted)
        assert s.kind == (self.kind or "user")
        assert s.login_name is None or s.kind == "user"

    @invariant()
    def history_rebuilds_the_state(self) -> None:
        assert fold(account.apply, Account(), self.events) == self.state

    def teardown(self) -> None:
        """Once per run: the history as stored (JSON) and read back replays too."""
        stored = [decode_payload(e.event_type, e.schema_version, json.loads(e.model_dump_json())) for e in self.events]
        assert fold(account.apply, Account(), stored) == self.state


AccountMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestAccountMachine = AccountMachine.TestCase

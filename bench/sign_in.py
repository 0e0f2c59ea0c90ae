"""Scenario 4, sign-in: the TOTP step (/v1/portal/verify) at 1, 16 and 64 clients, and the password step.

Before (not timed): U users are created, required in one bulk action, and each sets up TOTP
through the portal flow like an authenticator app would (sign-in, setup/begin, setup/confirm).

Password step (timed): `POST /v1/portal/sign-in` with the right password, answered
`mfa_required` with a challenge, at 1 and 16 clients. Raw limit: argon2-cffi's PasswordHasher
verifying the same password against a hash made with the same parameters as the users' (the
bench stack's ARGON2_* settings), on as many threads as there are clients.

TOTP step (timed): `POST /v1/portal/verify` with a challenge from the password step and a fresh
valid code: a code is accepted once per user and step, so each request takes the next user and
the user's next unused step within the tolerance window (previous, current, next). Before each
concurrency level the services' fake clock moves 90 s on, so every user has three fresh steps,
and each user signs in three times (not timed): a challenge opens one session only.
Raw limits: the same request shapes against a bare FastAPI endpoint under uvicorn on this host
(bench.bare_app), and pyotp's verification alone in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import pyotp
from argon2 import PasswordHasher

from bench import bulk
from bench.harness import Api, BenchStack, cpu_ms_per_operation, gather_limited, stack_cpu_seconds
from bench.runner import Exhausted, Measure, Row, closed_loop, fmt, latency_detail, log, percentile
from bench.users import PASSWORD, create_users, new_tag
from mfaplane_contracts.mfa_events import TOTPVerified, enrollment_id
from mfaplane_eventing.clock import FileOffsetClock
from mfaplane_identity.settings import IdentitySettings

STEP = 30
SEED_USERS_AT_ONCE = 200
TARGET_VERIFY_PER_SECOND = 1000
TARGET_VERIFY_P99_MS = 50.0
TARGET_PASSWORD_RATIO = 0.80
CHALLENGE_REFRESH_SECONDS = 200  # challenges live 300 s (CHALLENGE_TTL_SECONDS)
CHALLENGES_PER_LEVEL = 3  # one per fresh step
BARE_CHALLENGE = "c" * 240  # about a real challenge's length; the bare app does not read it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=2000, help="users with TOTP set up (default 2,000)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64], help="TOTP step (default 1 16 64)")
    parser.add_argument("--password-clients", type=int, nargs="+", default=[1, 16], help="password step (default 1 16)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per level (default 8)")
    parser.add_argument("--earlier-sign-ins", type=int, default=365,
                        help="then the TOTP step at 16 clients for users with this many sign-ins behind them "
                             "(default 365: one a day for a year; 0 skips it)")
    parser.add_argument("--default-argon2-users", type=int, default=64,
                        help="users for the password step under the identity service's default argon2 parameters "
                             "(default 64; 0 skips it)")


@dataclass
class Person:
    id: uuid.UUID
    email: str
    totp: pyotp.TOTP
    last_step: int
    challenges: list[tuple[str, float]] = field(default_factory=list)  # unused, each with when it was handed out


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    admin, portal = bench.api("admin"), bench.api("portal", connections=max(args.clients) + 8)
    try:
        people = await set_up(bench, admin, portal, args.users)
        await bench.quiesce()
        rows = await password_step(bench, admin, portal, people, args)
        rows += await totp_step(bench, portal, people, args)
    finally:
        await admin.close()
        await portal.close()
    return rows


async def set_up(bench: BenchStack, admin: Api, portal: Api, count: int) -> list[Person]:
    users = await create_users(admin, new_tag("signin"), count)
    await bulk.require_all(admin, users.tag, [str(i) for i in users.ids], 7)
    clock = FileOffsetClock(bench.clock_file)
    started = time.monotonic()

    async def enroll(user_id: uuid.UUID, email: str) -> Person:
        answer = await portal.call("POST", "/v1/portal/sign-in", json={"email": email, "password": PASSWORD})
        assert answer["outcome"] == "enrollment_prompt", answer
        material = await portal.call("POST", "/v1/portal/setup/begin", json={"challenge": answer["challenge"]})
        totp = pyotp.TOTP(material["key_text"].replace(" ", ""))
        step = int(clock.now().timestamp()) // STEP
        await portal.call("POST", "/v1/portal/setup/confirm",
                          json={"challenge": answer["challenge"], "code": totp.generate_otp(step)})
        return Person(user_id, email, totp, step)

    people = await gather_limited(16, (enroll(i, e) for i, e in zip(users.ids, users.emails, strict=True)))
    log(f"sign-in: {count} users set up TOTP in {time.monotonic() - started:.1f} s")
    return people


async def sign_in(portal: Api, person: Person, outcome: str = "mfa_required") -> None:
    answer = await portal.call("POST", "/v1/portal/sign-in", json={"email": person.email, "password": PASSWORD})
    if answer["outcome"] != outcome:
        raise RuntimeError(f"sign-in answered {answer['outcome']}")
    person.challenges.append((answer["challenge"], time.monotonic()))


# -- the password step ------------------------------------------------------------------------


ARGON2_SETTINGS = {"time_cost": "ARGON2_TIME_COST", "memory_cost": "ARGON2_MEMORY_COST_KIB",
                   "parallelism": "ARGON2_PARALLELISM"}
ARGON2_FIELDS = {"time_cost": "argon2_time_cost", "memory_cost": "argon2_memory_cost_kib",
                 "parallelism": "argon2_parallelism"}


def argon2_parameters(env: dict[str, str]) -> dict[str, int]:
    """The parameters the identity service hashes with under `env` (its settings, else its defaults)."""
    defaults = IdentitySettings.model_fields
    return {name: int(env.get(variable) or defaults[ARGON2_FIELDS[name]].default)
            for name, variable in ARGON2_SETTINGS.items()}


def described(parameters: dict[str, int]) -> str:
    return f"t={parameters['time_cost']} m={parameters['memory_cost'] // 1024} MiB p={parameters['parallelism']}"


async def password_step(bench: BenchStack, admin: Api, portal: Api, people: list[Person], args) -> list[Row]:
    """With the bench stack's (cheap) parameters, for the users set up before; then with the identity
    service's defaults, for users made under them (identity restarted with its defaults meanwhile)."""
    stack_env = {**os.environ, **bench.service_env}
    rows = await _password_levels(bench, portal, people, argon2_parameters(stack_env), "bench stack's", args)
    if args.default_argon2_users:
        defaults = {variable: str(IdentitySettings.model_fields[ARGON2_FIELDS[name]].default)
                    for name, variable in ARGON2_SETTINGS.items()}
        bench.stack.restart("identity", extra_env=defaults)
        try:
            users = await create_users(admin, new_tag("argon2"), args.default_argon2_users, concurrency=4)
            await bulk.require_all(admin, users.tag, [str(i) for i in users.ids], 7)
            await bench.quiesce()
            prompted = [Person(i, e, pyotp.TOTP(pyotp.random_base32()), 0)
                        for i, e in zip(users.ids, users.emails, strict=True)]
            rows += await _password_levels(bench, portal, prompted, argon2_parameters(defaults), "identity default",
                                           args, outcome="enrollment_prompt")
        finally:
            bench.stack.restart("identity", extra_env={v: stack_env[v] for v in ARGON2_SETTINGS.values()
                                                       if v in stack_env})
    return rows


async def _password_levels(bench: BenchStack, portal: Api, people: list[Person], parameters: dict[str, int],
                           which: str, args, outcome: str = "mfa_required") -> list[Row]:
    rows = []
    for clients in args.password_clients:
        result = await closed_loop(lambda i: sign_in(portal, people[i % len(people)], outcome), concurrency=clients,
                                   seconds=args.seconds)
        raw_rate = await asyncio.to_thread(argon2_rate, parameters, clients, args.seconds)
        log(f"sign-in: password step ({described(parameters)}), {clients} clients: {result.rate:.1f}/s "
            f"({latency_detail(result.latencies)}); raw argon2 {raw_rate:.1f}/s")
        row = Row("4 sign-in: password step", f"{clients_case(clients)}, {which} argon2 "
                  f"({described(parameters)})", result.measure("req/s"),
                  Measure(raw_rate, "verify/s",
                          label=f"argon2-cffi alone, same parameters, {clients} thread{'s' * (clients > 1)}"),
                  target=f">= {TARGET_PASSWORD_RATIO:.0%} of raw", notes={"system": result.notes(), **parameters})
        row.met = row.ratio is not None and row.ratio >= TARGET_PASSWORD_RATIO and not result.failed
        rows.append(row)
        await bench.quiesce()
    return rows


def argon2_rate(parameters: dict[str, int], threads: int, seconds: float) -> float:
    hasher = PasswordHasher(**parameters)
    digest = hasher.hash(PASSWORD)
    stop = time.perf_counter() + seconds

    def work() -> int:
        done = 0
        while time.perf_counter() < stop:
            hasher.verify(digest, PASSWORD)
            done += 1
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: work(), range(threads)))
    return total / (time.perf_counter() - started)


# -- the TOTP step ----------------------------------------------------------------------------


class FreshCodes:
    """Hands out (person, step) pairs no request has used: the next user, at its next unused step."""

    def __init__(self, people: list[Person], clock: FileOffsetClock) -> None:
        self.people, self.clock = people, clock
        self.next, self.in_flight = 0, set()

    def take(self) -> tuple[Person, int]:
        now = self.clock.now().timestamp()
        lowest = int(now + 1) // STEP - 1  # a step about to leave the window is not offered
        highest = int(now) // STEP + 1
        for _ in range(len(self.people)):
            person = self.people[self.next]
            self.next = (self.next + 1) % len(self.people)
            step = max(person.last_step + 1, lowest)
            if person.id not in self.in_flight and step <= highest:
                self.in_flight.add(person.id)
                return person, step
        raise Exhausted


class TotpLevels:
    """Measures the TOTP step at one concurrency at a time, each with three fresh steps for every user."""

    def __init__(self, bench: BenchStack, portal: Api, bare: Api, people: list[Person]) -> None:
        self.bench, self.portal, self.bare, self.people = bench, portal, bare, people
        self.clock = FileOffsetClock(bench.clock_file)
        self.codes = FreshCodes(people, self.clock)

    async def fresh_steps(self) -> None:
        self.bench.advance_clock(timedelta(seconds=3 * STEP))
        await self.top_up()
        self.codes = FreshCodes(self.people, self.clock)

    async def top_up(self) -> None:
        """CHALLENGES_PER_LEVEL unused challenges for every user, none close to expiring."""
        for person in self.people:
            person.challenges = [(c, at) for c, at in person.challenges
                                 if time.monotonic() - at < CHALLENGE_REFRESH_SECONDS][-CHALLENGES_PER_LEVEL:]
        wanted = [p for p in self.people for _ in range(CHALLENGES_PER_LEVEL - len(p.challenges))]
        await gather_limited(16, (sign_in(self.portal, p) for p in wanted))
        await self.bench.quiesce()

    async def verify(self, _: int = 0) -> None:
        person, step = self.codes.take()
        try:
            body = {"challenge": person.challenges.pop()[0], "code": person.totp.generate_otp(step)}
            answer = await self.portal.call("POST", "/v1/portal/verify", json=body)
            if answer["outcome"] != "signed_in":
                raise RuntimeError(f"verify answered {answer['outcome']}")
            person.last_step = step
        finally:
            self.codes.in_flight.discard(person.id)

    async def measure(self, clients: int, case: str, seconds: float, otp_rate: float) -> Row:
        async def bare_verify(i: int) -> None:
            await self.bare.call("POST", "/v1/portal/verify",
                                 json={"challenge": BARE_CHALLENGE, "code": "123456"})

        cpu_before = stack_cpu_seconds()
        result = await closed_loop(self.verify, concurrency=clients, seconds=seconds)
        await self.bench.quiesce()  # the verifications' events are consumed too: they are part of the cost
        cpu_ms = cpu_ms_per_operation(cpu_before, stack_cpu_seconds(), result.completed)
        await closed_loop(bare_verify, concurrency=clients, seconds=0.5)
        raw = await closed_loop(bare_verify, concurrency=clients, seconds=seconds)
        log(f"sign-in: TOTP step, {case}: {result.rate:.0f}/s ({latency_detail(result.latencies)}), "
            f"{result.failed} failed; bare FastAPI {raw.rate:.0f}/s ({latency_detail(raw.latencies)}); "
            f"CPU per verification {sum(cpu_ms.values()):.2f} ms: {cpu_ms}")
        row = Row("4 sign-in: TOTP step", case, result.measure("req/s"),
                  raw.measure("req/s", f"bare FastAPI endpoint, same client (pyotp alone: {fmt(otp_rate)}/s)"),
                  notes={"system": result.notes(), "raw": raw.notes(), "pyotp_per_second": otp_rate,
                         "cpu_ms_per_verification": cpu_ms})
        if clients == 16:
            p99 = percentile(result.latencies, 99) * 1000
            row.target = f">= {TARGET_VERIFY_PER_SECOND:,}/s, p99 <= {TARGET_VERIFY_P99_MS:.0f} ms"
            row.met = result.rate >= TARGET_VERIFY_PER_SECOND and p99 <= TARGET_VERIFY_P99_MS and not result.failed
        return row


def clients_case(clients: int) -> str:
    return f"{clients} client{'s' * (clients > 1)}"


async def totp_step(bench: BenchStack, portal: Api, people: list[Person], args) -> list[Row]:
    bare_url, _ = bench.bare_app()
    bare = Api(bare_url, None, connections=max(args.clients) + 8)
    levels = TotpLevels(bench, portal, bare, people)
    otp_rate = pyotp_rate()
    rows = []
    try:
        for clients in args.clients:
            await levels.fresh_steps()
            rows.append(await levels.measure(clients, clients_case(clients), args.seconds, otp_rate))
        if args.earlier_sign_ins:
            await seed_earlier_sign_ins(bench, people, args.earlier_sign_ins)
            await levels.fresh_steps()
            started = time.monotonic()
            await gather_limited(16, (levels.verify() for _ in people))  # as in production: snapshots taken
            log(f"sign-in: each user signed in once more in {time.monotonic() - started:.1f} s")
            await levels.top_up()
            case = f"16 clients, users with {args.earlier_sign_ins:,} earlier sign-ins"
            rows.append(await levels.measure(16, case, args.seconds, otp_rate))
    finally:
        await bare.close()
    return rows


async def seed_earlier_sign_ins(bench: BenchStack, people: list[Person], count: int) -> None:
    """Gives each user `count` earlier sign-ins: TOTPVerified events written straight into the mfa
    service's event store (not published), at time steps up to the user's last one, so the user's
    next codes stay valid. Not timed: it stands for the months of sign-ins a user has behind them."""
    started = time.monotonic()
    template = TOTPVerified(principal_id=uuid.UUID(int=0), scope="user_portal", method="totp", time_step=0,
                            recovery_codes_left=10).model_dump(mode="json")
    conn = await asyncpg.connect(bench.database_url, server_settings={"search_path": "mfa"})
    try:
        for first in range(0, len(people), SEED_USERS_AT_ONCE):
            batch = people[first:first + SEED_USERS_AT_ONCE]
            await conn.execute(
                "INSERT INTO events (event_id, aggregate_type, aggregate_id, aggregate_version, type, schema_version, "
                "occurred_at, correlation_id, actor, topic, payload) "
                "SELECT gen_random_uuid(), $4, p.aggregate_id, v.version + g, $5, $6, now(), gen_random_uuid(), "
                "'user:' || p.principal_id, $7, "
                "$8::jsonb || jsonb_build_object('principal_id', p.principal_id, "
                "                                'time_step', p.last_step - $9 + g) "
                "FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(aggregate_id, principal_id, last_step) "
                "CROSS JOIN LATERAL (SELECT max(aggregate_version) AS version FROM events "
                "                    WHERE aggregate_id = p.aggregate_id) AS v "
                "CROSS JOIN generate_series(1, $9) AS g",
                [enrollment_id("user_portal", p.id) for p in batch], [str(p.id) for p in batch],
                [p.last_step for p in batch], TOTPVerified.aggregate_type, TOTPVerified.event_type,
                TOTPVerified.schema_version, TOTPVerified.topic, json.dumps(template), count)
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()
    log(f"sign-in: {count:,} earlier sign-ins written for each of {len(people):,} users "
        f"in {time.monotonic() - started:.1f} s")


def pyotp_rate(seconds: float = 2.0) -> float:
    totp = pyotp.TOTP(pyotp.random_base32(32))
    now = time.time()
    code = totp.at(now)
    done, stop = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        for _ in range(100):
            totp.verify(code, for_time=now, valid_window=1)
        done += 100
    return done / (time.perf_counter() - started)

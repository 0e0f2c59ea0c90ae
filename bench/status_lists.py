"""Scenario 5, status lists: pages of the principals read model at 100,000 and 1,000,000 users.

Before (not timed): users are loaded by COPY straight into `principals_v1` of a scratch schema
migrated like the gateway's (so it has exactly the gateway's indexes), with a realistic mix of
statuses (35% active, 35% none, 20% enrolling, 5% expired, 3% configured_not_required,
2% required_no_period), 1% admins and 0.5% deleted rows, then ANALYZEd.
Timed: `mfaplane_gateway.read_models.principals_query.page()`, what GET /v1/users runs (sort by email, 50 per
page), through a pool like the gateway's (its statement cache, so generic plans too): the first
page and a deep page (a cursor 90% of the way through the matches) for each status filter, for
a text search matching 1% of users (a surname), and for two matching one user (part of an email,
and a whole email, whose domain every user shares). A row shows the worse of the two pages.

Raw limit: a 50-row page read by primary-key range, the floor for any page of 50 rows.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.harness import GATEWAY_MIGRATIONS, BenchStack
from bench.runner import Measure, Row, log, percentile
from mfaplane_contracts.mfa_status import MFAStatus
from mfaplane_gateway.api.paging import encode_cursor
from mfaplane_gateway.read_models import principals_query
from mfaplane_gateway.read_models.principals_query import PrincipalFilter, listing

SCHEMA = "bench_lists"
TABLE = "principals_v1"
PAGE = 50
TARGET_P99_MS = 20.0
MIX = {"active": 0.35, "none": 0.35, "enrolling": 0.20, "expired": 0.05, "configured_not_required": 0.03,
       "required_no_period": 0.02}
FIRST = ["ada", "alan", "grace", "edsger", "barbara", "donald", "john", "margaret", "ken", "dennis", "linus", "guido",
         "bjarne", "niklaus", "frances", "radia", "leslie", "tony", "shafi", "silvio", "whitfield", "martin", "ivan",
         "jean", "sophie", "karen", "hedy", "annie", "mary", "katherine"]
SURNAMES = [f"{a}{b}" for a in ("lind", "berg", "holm", "strand", "dahl", "sund", "kvist", "ek", "wall", "nord")
            for b in ("qvist", "gren", "stam", "hagen", "mark", "vik", "by", "land", "sted", "rud")]  # 100 surnames
COMMON_SURNAME = SURNAMES[37]
COPY_BATCH = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="users in the read model, growing (default 100000 1000000)")
    parser.add_argument("--repeats", type=int, default=200, help="times each query runs (default 200)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="per query at most (default 8)")


def principal(i: int, now: datetime, rng: random.Random) -> tuple:
    status = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    first, last = rng.choice(FIRST), rng.choice(SURNAMES)
    required = status in ("active", "enrolling", "expired", "required_no_period")
    configured = status in ("active", "configured_not_required")
    deadline = {"enrolling": now + timedelta(days=rng.uniform(0.1, 30)),
                "expired": now - timedelta(days=rng.uniform(0.1, 30))}.get(status)
    return (uuid.UUID(int=rng.getrandbits(128), version=4), "admin" if rng.random() < 0.01 else "user",
            f"{first}.{last}.{i}@example.org", f"{first.title()} {last.title()}", rng.random() < 0.005,
            required, configured, deadline, 7 if deadline else None, rng.randrange(3) if status == "enrolling" else 0,
            now - timedelta(hours=rng.uniform(1, 500)) if configured else None, now)


COLUMNS = ("principal_id", "kind", "email", "name", "deleted", "required", "configured", "deadline", "enrollment_days",
           "dismissals", "last_verified_at", "updated_at")


async def grow(conn: asyncpg.Connection, start: int, stop: int, now: datetime) -> None:
    rng = random.Random(start)
    for low in range(start, stop, COPY_BATCH):
        records = [principal(i, now, rng) for i in range(low, min(low + COPY_BATCH, stop))]
        await conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
    await conn.execute(f"VACUUM ANALYZE {TABLE}")


def cases(one_email: str) -> list[tuple[str, PrincipalFilter]]:
    found = [(f"status={s.value}", PrincipalFilter(statuses=(s,))) for s in MFAStatus]
    part = one_email.split("@")[0][-9:]
    return [("all users", PrincipalFilter()), *found,
            (f"q={COMMON_SURNAME} (1% match)", PrincipalFilter(search=COMMON_SURNAME)),
            (f"q={part} (part of one email)", PrincipalFilter(search=part)),
            ("q=<one whole email>", PrincipalFilter(search=one_email))]


async def deep_cursor(pool: asyncpg.Pool, now: datetime, flt: PrincipalFilter) -> str | None:
    """A cursor 90% of the way through the filter's matches (as if someone had paged that far)."""
    params: list = [now]
    where = f"$1::timestamptz IS NOT NULL AND {flt.where(params)}"  # $1 is used even without a status filter
    total = await pool.fetchval(f"SELECT count(*) FROM {TABLE} WHERE {where}", *params)
    if total <= 2 * PAGE:
        return None
    row = await pool.fetchrow(f"SELECT lower(email) AS v, principal_id FROM {TABLE} WHERE {where} "
                              f"ORDER BY lower(email), principal_id OFFSET {int(total * 0.9)} LIMIT 1", *params)
    return encode_cursor(listing(flt.kind, "email"), row["v"], row["principal_id"])


async def timed(call, repeats: int, max_seconds: float) -> list[float]:
    for _ in range(3):
        await call()  # warm: connection, statement cache, buffers
    latencies, stop = [], time.perf_counter() + max_seconds
    for _ in range(repeats):
        began = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - began)
        if time.perf_counter() > stop and len(latencies) >= 20:
            break
    return latencies


async def run(bench: BenchStack, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    now = datetime.now(UTC)
    async with bench.scratch_schema(SCHEMA, [GATEWAY_MIGRATIONS]) as schema:
        conn = await asyncpg.connect(bench.database_url, server_settings={"search_path": schema})
        pool = await bench.pool(schema, size=2)
        try:
            size = 0
            for target in sorted(args.sizes):
                started = time.monotonic()
                await grow(conn, size, target, now)
                size = target
                log(f"lists: {size:,} users loaded in {time.monotonic() - started:.1f} s")
                rows += await measure(pool, size, now, args)
        finally:
            await pool.close()
            await conn.close()
    return rows


async def measure(pool: asyncpg.Pool, size: int, now: datetime, args: argparse.Namespace) -> list[Row]:
    """One row per case: the worse p99 of its first page and its deep page (both in the row's detail)."""
    last = await pool.fetchval(f"SELECT principal_id FROM {TABLE} ORDER BY principal_id DESC LIMIT 1")
    floor = await timed(lambda: pool.fetch(f"SELECT {principals_query.COLUMNS} FROM {TABLE} WHERE principal_id < $2 "
                                           f"ORDER BY principal_id DESC LIMIT {PAGE + 1}", now, last),
                        args.repeats, args.max_seconds)
    raw = Measure(percentile(floor, 99) * 1000, "ms", "lower", "50-row primary-key range read, p99")
    one_email = await pool.fetchval(f"SELECT email FROM {TABLE} WHERE NOT deleted AND kind = 'user' "
                                    f"ORDER BY principal_id LIMIT 1")
    rows = []
    for name, flt in cases(one_email):
        pages: dict[str, list[float]] = {}
        for depth, cursor in (("first", None), ("deep", await deep_cursor(pool, now, flt))):
            if depth == "deep" and cursor is None:
                continue  # fewer than two pages of matches
            page = functools.partial(principals_query.page, pool, TABLE, now, flt, "email", PAGE, cursor)
            pages[depth] = await timed(page, args.repeats, args.max_seconds)
        p99 = {depth: percentile(latencies, 99) * 1000 for depth, latencies in pages.items()}
        detail = ", ".join(f"{depth} page {value:.1f}" for depth, value in p99.items())
        log(f"lists {size:,}: {name}: p99 {detail} ms")
        worst = max(p99.values())
        rows.append(Row(
            "5 status lists", f"{size:,} users, {name}", Measure(worst, "ms", "lower", detail=f"p99: {detail} ms"), raw,
            target=f"p99 <= {TARGET_P99_MS:.0f} ms", met=worst <= TARGET_P99_MS,
            notes={depth: {"samples": len(latencies), "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": p99[depth]}
                   for depth, latencies in pages.items()},
        ))
    return rows

"""Filters, keyset pages and status counts of the principals read model, on a seeded table."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import mfaplane_gateway
from mfaplane_contracts.mfa_status import MFAStatus, mfa_status
from mfaplane_eventing import db
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_gateway.api.paging import decode_cursor, encode_cursor
from mfaplane_gateway.read_models.principals_query import PrincipalFilter, listing, page, set_up_asked, status_counts

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIGRATIONS = Path(mfaplane_gateway.__file__).parent / "migrations"
NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth"]


def _row(i: int, rng: random.Random) -> dict:
    deadline = rng.choice([None, NOW - timedelta(days=rng.randint(1, 9)), NOW + timedelta(days=rng.randint(1, 9))])
    return {
        "principal_id": uuid.UUID(int=rng.getrandbits(128)), "email": f"u{i:03d}_{rng.choice('abc')}@example.com",
        "name": f"{rng.choice(NAMES)} {i}", "required": rng.random() < 0.6, "set_up": rng.random() < 0.3,
        "deadline": deadline, "deleted": rng.random() < 0.05,
    }


@pytest.fixture(scope="module")
async def seeded(infra):
    schema = f"gateway_query_{uuid.uuid4().hex[:8]}"
    await db.migrate(infra.database_url, schema, [db.EVENTING_MIGRATIONS, MIGRATIONS])
    pool = await db.create_pool(infra.database_url, schema)
    rng = random.Random(7)
    rows = [_row(i, rng) for i in range(300)]
    await pool.executemany(
        "INSERT INTO principals_v1 (principal_id, kind, email, name, required, configured, deadline, deleted, "
        "updated_at) VALUES ($1, 'user', $2, $3, $4, $5, $6, $7, now())",
        [(r["principal_id"], r["email"], r["name"], r["required"], r["set_up"], r["deadline"], r["deleted"])
         for r in rows],
    )
    yield pool, [r for r in rows if not r["deleted"]]
    await pool.close()


def _expected(rows: list[dict], flt: PrincipalFilter) -> set[uuid.UUID]:
    def keep(r: dict) -> bool:
        status = mfa_status(r["required"], r["set_up"], r["deadline"], NOW)
        return ((not flt.statuses or status in flt.statuses)
                and (flt.required is None or r["required"] == flt.required)
                and (flt.set_up is None or r["set_up"] == flt.set_up)
                and (not flt.search or flt.search.lower() in (r["email"] + " " + r["name"]).lower()))
    return {r["principal_id"] for r in rows if keep(r)}


async def _all_pages(pool, flt: PrincipalFilter, sort: str, limit: int) -> list:
    seen, cursor = [], None
    while True:
        rows, cursor = await page(pool, "principals_v1", NOW, flt, sort, limit, cursor)
        seen += rows
        if cursor is None:
            return seen


FILTERS = [
    PrincipalFilter(statuses=statuses, required=required, set_up=set_up, search=search)
    for statuses, required, set_up, search in itertools.product(
        [(), (MFAStatus.ENROLLING,), (MFAStatus.EXPIRED, MFAStatus.REQUIRED_NO_PERIOD), (MFAStatus.ACTIVE,),
         (MFAStatus.NONE, MFAStatus.CONFIGURED_NOT_REQUIRED)],
        [None, True, False], [None, True, False],
        # searches with an '@' (a whole email, or part of one) look the part before it up first
        [None, "ada", "_b@", "%", "1_B@EXAMPLE.C", "@example.com", "nobody@example.com"],
    )
]


async def test_every_filter_combination_matches_the_rule(seeded) -> None:
    pool, rows = seeded
    set_up = {r["principal_id"]: r["set_up"] for r in rows}
    for flt in FILTERS:
        found = await _all_pages(pool, flt, "email", 500)
        assert {r["principal_id"] for r in found} == _expected(rows, flt), flt
        assert all(r["set_up"] == set_up[r["principal_id"]] for r in found)
        counts = await status_counts(pool, "principals_v1", NOW, flt)
        assert sum(counts.values()) == len(found)
        assert all(counts[r["status"]] >= 1 for r in found)


def test_the_set_up_filter_is_also_asked_by_its_deprecated_name_and_both_names_must_agree() -> None:
    asked = [(None, None), (True, None), (None, False), (True, True), (False, False)]
    assert [set_up_asked(set_up, mfa_active) for set_up, mfa_active in asked] == [None, True, False, True, False]
    with pytest.raises(Rejected) as refused:
        set_up_asked(True, False)
    assert (refused.value.code, refused.value.kind) == ("conflicting_filters", Refusal.UNPROCESSABLE)


async def test_a_whole_email_finds_its_user_in_any_case(seeded) -> None:
    pool, rows = seeded
    for row in rows[:5]:
        for text in (row["email"], row["email"].upper()):
            found, _ = await page(pool, "principals_v1", NOW, PrincipalFilter(search=text), "email", 50, None)
            assert [r["principal_id"] for r in found] == [row["principal_id"]]


@pytest.mark.parametrize("sort", ["email", "name", "deadline"])
async def test_pages_are_sorted_and_cover_every_row_once(seeded, sort: str) -> None:
    pool, rows = seeded
    found = await _all_pages(pool, PrincipalFilter(), sort, 17)
    ids = [r["principal_id"] for r in found]
    assert len(ids) == len(set(ids)) == len(rows)
    # 'infinity' (no deadline, sorted last) comes back from asyncpg as a naive datetime.max
    keys = [k.replace(tzinfo=UTC) if isinstance(k, datetime) and k.tzinfo is None else k
            for k in (r["sort_value"] for r in found)]
    assert keys == sorted(keys)


async def test_paging_under_concurrent_writes_never_skips_or_repeats(seeded) -> None:
    pool, rows = seeded
    original = {r["principal_id"] for r in rows}

    async def writer() -> None:
        for i in range(60):
            await pool.execute(
                "INSERT INTO principals_v1 (principal_id, kind, email, name, updated_at) "
                "VALUES ($1, 'user', $2, 'New', now())", uuid.uuid4(), f"zz{i}{uuid.uuid4().hex[:4]}@example.com",
            )
            await asyncio.sleep(0)

    seen, _ = await asyncio.gather(_all_pages(pool, PrincipalFilter(), "email", 7), writer())
    seen_ids = [r["principal_id"] for r in seen]
    assert len(seen_ids) == len(set(seen_ids)), "no row twice"
    assert original <= set(seen_ids), "no row that existed throughout is skipped"


async def test_a_forged_cursor_is_refused(seeded) -> None:
    pool, _ = seeded
    with pytest.raises(Rejected) as refused:
        await page(pool, "principals_v1", NOW, PrincipalFilter(), "email", 10, "not-a-cursor")
    assert refused.value.code == "invalid_cursor"


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


ID = str(uuid.uuid4())
NOT_CURSORS = {
    "not base64": "%%%", "one character too many": "abcde", "not JSON": _cursor(None)[:-2] + "!!",
    "not UTF-8": base64.urlsafe_b64encode(b"\xff\xfe").decode(), "a number": _cursor(1), "null": _cursor(None),
    "an object": _cursor({"user/email": "a", "id": ID}), "too short": _cursor(["user/email", "a"]),
    "too long": _cursor(["user/email", "a", ID, 1]), "the old format": _cursor(["a@example.com", ID]),
    "a number as the value": _cursor(["user/email", 1, ID]), "null as the value": _cursor(["user/email", None, ID]),
    "a list as the value": _cursor(["user/email", ["a"], ID]), "NUL in the value": _cursor(["user/email", "a\x00", ID]),
    "a lone surrogate": _cursor(["user/email", "\ud800", ID]), "not an id": _cursor(["user/email", "a", "me"]),
    "another order's": _cursor(["user/deadline", "2026-01-01T00:00:00+00:00", ID]),
    "the admins' list's": _cursor(["admin/email", "a", ID]),
}


@pytest.mark.parametrize("cursor", NOT_CURSORS.values(), ids=NOT_CURSORS.keys())
def test_anything_but_a_cursor_of_this_list_is_refused_before_a_query(cursor: str) -> None:
    with pytest.raises(Rejected) as refused:
        decode_cursor(cursor, listing("user", "email"), "text")
    assert (refused.value.code, refused.value.kind) == ("invalid_cursor", Refusal.INVALID)


def test_a_date_cursor_needs_a_moment_with_its_time_zone() -> None:
    for value in ("tomorrow", "a@example.com", "2026-13-01T00:00:00", "2026-12-02", "2026-12-02T10:00:00"):
        with pytest.raises(Rejected):
            decode_cursor(_cursor(["user/deadline", value, ID]), listing("user", "deadline"), "timestamptz")


def test_a_cursor_reads_back_what_it_was_made_of() -> None:
    moment, principal = datetime(9999, 12, 31, 23, 59, 59, 999999), uuid.uuid4()  # 'infinity', as asyncpg gives it
    assert decode_cursor(encode_cursor(listing("admin", "deadline"), moment, principal),
                         listing("admin", "deadline"), "timestamptz") == (moment, principal)
    assert decode_cursor(encode_cursor(listing("user", "name"), "zoë", principal),
                         listing("user", "name"), "text") == ("zoë", principal)

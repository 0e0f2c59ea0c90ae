"""Users made through the public API before a timed phase (never timed themselves).

Each run tags its users' emails with a fresh tag (`bench-<hex>-`), so `q=<tag>` selects exactly
them in the gateway's lists, however many runs the database has seen.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

from bench.harness import Api, gather_limited
from bench.runner import log, wait_until

PASSWORD = "correct horse battery staple"
CREATE_CONCURRENCY = 32


def new_tag(scenario: str) -> str:
    return f"bench-{scenario}-{secrets.token_hex(4)}"


@dataclass
class Users:
    tag: str
    ids: list[uuid.UUID]
    emails: list[str]
    seconds: float  # how long creating them took (for the record; not a figure)


async def create_users(admin: Api, tag: str, count: int, concurrency: int = CREATE_CONCURRENCY) -> Users:
    """Creates `count` users through the gateway and waits until its read model lists them all."""
    emails = [f"{tag}-{i:06d}@bench.example.com" for i in range(count)]
    started = time.monotonic()

    async def one(i: int) -> uuid.UUID:
        body = {"email": emails[i], "name": f"Bench User {i}", "password": PASSWORD}
        return uuid.UUID((await admin.call("POST", "/v1/users", json=body))["id"])

    ids = await gather_limited(concurrency, (one(i) for i in range(count)))
    await wait_until(lambda: counts_reach(admin, tag, "none", count), 600, f"{count} users in the read model", 0.5)
    seconds = time.monotonic() - started
    log(f"created {count} users in {seconds:.1f} s ({count / seconds:.0f}/s, concurrency {concurrency})")
    return Users(tag, ids, emails, seconds)


async def status_counts(admin: Api, tag: str) -> dict[str, int]:
    return await admin.call("GET", "/v1/users/status-counts", params={"q": tag})


async def counts_reach(admin: Api, tag: str, status: str, count: int) -> bool:
    return (await status_counts(admin, tag)).get(status, 0) >= count

"""An admin's request travels through all five services, over real processes and servers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import asyncpg

from fault_tools import MailWatch, eventually


async def test_require_mfa_reaches_every_service(stack, admin, clock) -> None:
    mail = MailWatch(stack.infra.maildir)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    created = (await admin.post("/v1/users", json={"email": email, "name": "Ada Lovelace",
                                                     "password": "correct horse battery"})).json()
    user_id = created["aggregate_id"]
    before = clock.now()
    required = await admin.post(f"/v1/users/{user_id}/mfa/require", json={"enrollment_days": 7})
    assert required.status_code == 200, required.text

    detail = (await admin.get(f"/v1/users/{user_id}",
                                params={"consistent_with": [created["consistency_token"],
                                                    required.json()["consistency_token"]]})).json()
    assert detail["status"] == "enrolling"
    deadline = datetime.fromisoformat(detail["deadline"])
    assert before + timedelta(days=7) <= deadline <= clock.now() + timedelta(days=7)
    listed = (await admin.get("/v1/users", params={"status": "enrolling", "q": email})).json()["items"]
    assert [u["id"] for u in listed] == [user_id]

    timers = await _scheduler_timers(stack, f"user_portal:{user_id}")
    assert timers == {("expiry", deadline), ("reminder:86400", deadline - timedelta(days=1))}

    (first, *_) = await eventually(lambda: mail.received(email), 60, f"a mail to {email}")
    assert first["Subject"] == "Action needed: set up multi-factor authentication"
    text = first.get_body(("plain",)).get_content()
    assert "Ada Lovelace" in text and "7 days" in text and "/portal" in text


async def _scheduler_timers(stack, enrollment: str) -> set[tuple[str, datetime]]:
    conn = await asyncpg.connect(stack.infra.database_url, server_settings={"search_path": "scheduler"})
    try:
        async with asyncio.timeout(30):
            while not (rows := await conn.fetch(
                "SELECT timer, due_at FROM deadline_timers WHERE enrollment_id = $1", enrollment
            )):
                await asyncio.sleep(0.1)
        return {(row["timer"], row["due_at"]) for row in rows}
    finally:
        await conn.close()

"""A command sent again with the same Idempotency-Key (a client retrying after a timeout or a 503)."""

from __future__ import annotations

import uuid


async def test_a_create_sent_twice_makes_one_user_and_names_it_both_times(admin) -> None:
    email = f"twice-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "name": "Ada", "password": "correct horse battery"}  # no id: one is generated each time
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = await admin.post("/v1/users", json=body, headers=headers)
    again = await admin.post("/v1/users", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["duplicate"] and again.json()["aggregate_id"] == first.json()["aggregate_id"]
    shown = await admin.get(f"/v1/users/{again.json()['aggregate_id']}",
                            params={"consistent_with": again.json()["consistency_token"]})
    assert shown.status_code == 200 and shown.json()["email"] == email

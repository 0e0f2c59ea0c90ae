"""Steps a portal and an admin take through the public API, shared by the end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pyotp

PASSWORD = "correct horse battery"
# Every secret the tests were shown (TOTP keys, recovery codes); the final scan looks for them.
SHOWN_SECRETS: list[str] = [PASSWORD]


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else None


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["type"].endswith(code), body
    return body


async def new_user(admin: httpx.AsyncClient, **require: Any) -> tuple[str, str]:
    """Creates a user (and requires MFA when `require` gives enrollment_days); returns id and email."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    user_id = ok(await admin.post("/v1/users", json={"email": email, "name": "Test User",
                                                     "password": PASSWORD}))["aggregate_id"]
    if require:
        ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json=require))
    return user_id, email


async def sign_in(portal: httpx.AsyncClient, email: str, password: str = PASSWORD,
                  prefix: str = "/v1/portal") -> dict:
    return ok(await portal.post(f"{prefix}/sign-in", json={"email": email, "password": password}))


def code_now(key_text: str, clock) -> str:
    return pyotp.TOTP(key_text.replace(" ", "")).at(clock.now())


async def begin_setup(portal: httpx.AsyncClient, challenge: str, prefix: str = "/v1/portal") -> str:
    """Begins setup; returns the key as shown for typing."""
    material = ok(await portal.post(f"{prefix}/setup/begin", json={"challenge": challenge}))
    SHOWN_SECRETS.append(material["key_text"].replace(" ", ""))
    return material["key_text"]


async def confirm_setup(portal: httpx.AsyncClient, challenge: str, code: str,
                        prefix: str = "/v1/portal") -> httpx.Response:
    """Sends a code to confirm setup; the answer as it came (recovery codes shown are remembered)."""
    response = await portal.post(f"{prefix}/setup/confirm", json={"challenge": challenge, "code": code})
    if response.status_code == 200:
        codes = response.json()["recovery_codes"]
        SHOWN_SECRETS.extend(code.replace("-", "") for code in codes)
        SHOWN_SECRETS.extend(codes)
    return response


async def set_up(portal: httpx.AsyncClient, challenge: str, clock, prefix: str = "/v1/portal") -> tuple[str, dict]:
    """Begins and confirms setup like an authenticator app would; returns the key and the answer."""
    key = await begin_setup(portal, challenge, prefix)
    return key, ok(await confirm_setup(portal, challenge, code_now(key, clock), prefix))

"""Steps a portal and an admin take through the public API, shared by the end-to-end tests."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pyotp

PASSWORD = "correct horse battery"
STEP = timedelta(seconds=30)  # a TOTP step
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
    if status in (429, 503):  # says when to retry where HTTP clients look, and the same as the body
        assert response.headers["Retry-After"] == str(body.get("retry_after", response.headers["Retry-After"]))
    return body


async def new_user(admin: httpx.AsyncClient, **require: Any) -> tuple[str, str]:
    """Creates a user (and requires MFA when `require` gives enrollment_days); returns id and email."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    user_id = ok(await admin.post("/v1/users", json={"email": email, "name": "Test User",
                                                     "password": PASSWORD}))["id"]
    if require:
        ok(await admin.post(f"/v1/users/{user_id}/mfa/require", json=require))
    return user_id, email


async def new_system(admin: httpx.AsyncClient, mfa: bool = True, kind: str = "linux") -> str:
    """Registers a system (with MFA enabled unless `mfa` is False); returns its id."""
    system_id = ok(await admin.post("/v1/systems", json={"name": f"host-{uuid.uuid4().hex[:6]}", "kind": kind}))["id"]
    if mfa:
        ok(await admin.put(f"/v1/systems/{system_id}/mfa", json={"enabled": True}))
    return system_id


async def user_named(admin: httpx.AsyncClient, login_name: str, **require: Any) -> tuple[str, str]:
    """A user (see new_user) whose login name on systems is `login_name`; returns id and email."""
    user_id, email = await new_user(admin, **require)
    ok(await admin.patch(f"/v1/users/{user_id}", json={"login_name": login_name}))
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



ADMIN_PORTAL = "/v1/admin-portal"


def bearer(gateway_as, token: str) -> httpx.AsyncClient:
    """A gateway client calling with `token` (an admin session, say) instead of a role's API key."""
    client = gateway_as(None)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


async def new_admin(console: httpx.AsyncClient, name: str = "Root") -> tuple[str, str, str]:
    """A new admin, made from a stepped-up admin console (`console` fixture): id, email and the consistency
    token of its creation."""
    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    created = ok(await console.post("/v1/admins", json={"email": email, "name": name, "password": PASSWORD}))
    return created["id"], email, created["consistency_token"]


async def live_admins(admin: httpx.AsyncClient) -> list[str]:
    """The ids of every admin not deleted."""
    found, cursor = [], None
    while True:
        page = ok(await admin.get("/v1/admins", params={"limit": 500, **({"cursor": cursor} if cursor else {})}))
        found += [a["id"] for a in page["items"]]
        if not (cursor := page["next_cursor"]):
            return found


async def console_session(portal: httpx.AsyncClient, email: str, clock) -> tuple[str, str]:
    """Signs an admin without MFA in to the admin console as every admin must: MFA set up first, so the
    session's code is fresh (stepped up). Returns the admin's TOTP key and the session token."""
    first = await sign_in(portal, email, prefix=ADMIN_PORTAL)
    assert first["outcome"] == "setup_required", first
    key, answer = await set_up(portal, first["challenge"], clock, prefix=ADMIN_PORTAL)
    return key, answer["session"]


class RootAdmin:
    """The admin an operator bootstraps (identity's `create-admin`), who signs in to the admin console with a
    fresh code whenever a test needs a stepped-up session (making admins, minting API keys). Made again if a
    test deleted it."""

    def __init__(self, stack) -> None:
        self._stack = stack
        self._email: str | None = None
        self._key: str | None = None
        self._used_step: int | None = None

    async def session(self, portal: httpx.AsyncClient, clock) -> str:
        if self._email is not None:
            if self._step(clock) == self._used_step:
                clock.advance(STEP)  # each sign-in needs a code not used before
            step_one = await portal.post(f"{ADMIN_PORTAL}/sign-in", json={"email": self._email, "password": PASSWORD})
            if step_one.status_code == 200:
                answer = ok(await portal.post(f"{ADMIN_PORTAL}/verify", json={
                    "challenge": step_one.json()["challenge"], "code": code_now(self._key, clock)}))
                self._used_step = self._step(clock)
                return answer["session"]
        self._email = f"root-{uuid.uuid4().hex[:10]}@example.com"
        self._stack.create_admin(self._email, "Root", PASSWORD)
        self._key, session = await console_session(portal, self._email, clock)
        self._used_step = self._step(clock)
        return session

    @staticmethod
    def _step(clock) -> int:
        return int(clock.now().timestamp() // STEP.total_seconds())

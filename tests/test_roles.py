"""Every role against every API endpoint (those in the OpenAPI document): allowed roles get through,
others get 403, no key gets 401."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.routing import APIRoute

from mfaplane_gateway.__main__ import ROUTERS
from mfaplane_gateway.edge.auth import ROLES, Roles, SteppedUp


def _endpoints() -> tuple[list[tuple[str, str, tuple[str, ...]]], set[tuple[str, str]]]:
    """Every endpoint with its roles, and those that also need a stepped-up admin session."""
    found, stepped_up = [], set()
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if not route.include_in_schema:
                continue  # not part of the API (the reference portals' static files): no roles
            checks = [d.call for d in route.dependant.dependencies if isinstance(d.call, Roles)]
            assert len(checks) == 1, f"{route.path} must declare exactly one set of roles"
            for method in route.methods:
                found.append((method, route.path, checks[0].roles))
                if isinstance(checks[0], SteppedUp):
                    stepped_up.add((method, route.path))
    return found, stepped_up


ENDPOINTS, STEPPED_UP = _endpoints()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
async def test_role_matrix(gateway_as, method: str, path: str, allowed: tuple[str, ...]) -> None:
    url = _concrete(path)
    body = None if method in ("GET", "DELETE") else {}
    anonymous = gateway_as(None)
    response = await anonymous.request(method, url, json=body)
    assert response.status_code == 401, f"no key: {response.text}"
    forged = await anonymous.request(method, url, json=body, headers={"Authorization": "Bearer mfp_forged_key"})
    assert forged.status_code == 401
    for role in ROLES:
        response = await gateway_as(role).request(method, url, json=body)
        if role in allowed:
            if (method, path) in STEPPED_UP:  # the role passes; an API key is then no stepped-up admin session
                assert response.json().get("code") == "step_up_required", f"{role}: {response.text}"
            else:
                assert response.status_code not in (401, 403), f"{role} refused: {response.text}"
        else:
            assert response.status_code == 403, f"{role} let through: {response.status_code} {response.text}"
            assert response.json()["code"] == "forbidden"

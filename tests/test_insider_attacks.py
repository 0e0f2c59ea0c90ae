"""An attacker already inside the cluster, against the running system: each attack refused, nothing changed.

The attacker here holds a client certificate the broker accepts (the worst case short of a stolen
service key) and can open connections to every service's ports. Forged events are refused by every
consumer that would act on them (they are dead-lettered with the reason and counted); calls to
identity and mfa without the gateway's signed token are refused; the metrics port takes no command.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from fault_tools import MailWatch, counter_total, eventually, schema
from invariants import CONSUMERS, HANDLED
from mfaplane_chassis.problems import ServiceUnavailable
from mfaplane_chassis.service_auth import CallSigner
from mfaplane_contracts import identity_api
from mfaplane_contracts.envelope import Envelope
from mfaplane_contracts.topics import IDENTITY_EVENTS, MFA_EVENTS
from mfaplane_devstack.certificates import ensure_pki
from mfaplane_eventing import event_signing
from mfaplane_eventing.aggregate import Refusal, Rejected
from mfaplane_eventing.service_keys import ServiceKey
from mfaplane_gateway.edge.forwarding import Forwarder
from portal_flows import PASSWORD, new_user, ok, problem, set_up, sign_in
from trust_tools import SignedAs, direct, publish, service_key


def forged(event_type: str, aggregate_id: str, payload: dict, key: ServiceKey | None, marker: str) -> bytes:
    """An event as an insider makes it: unsigned (key None), or signed with a key that is not the topic owner's."""
    envelope = Envelope(event_id=uuid.uuid4(), type=event_type, schema_version=1, aggregate_type="user",
                        aggregate_id=aggregate_id, aggregate_version=1000, occurred_at=datetime.now(UTC),
                        correlation_id=uuid.uuid4(), actor=f"admin:{marker}", payload=payload)
    value = envelope.model_dump_json().encode()
    return value if key is None else event_signing.sign_batch([value], key)[0]


def groups_acting_on(event_type: str, topic: str) -> list[str]:
    return [group for group, topics in CONSUMERS.items()
            if topic in topics and (HANDLED[group] is None or event_type in HANDLED[group])]


async def refused_by(stack, group: str, marker: str) -> str:
    """The reason `group` gave for dead-lettering the forged message carrying `marker`, once it has."""
    async with schema(stack, group) as conn:
        return await eventually(lambda: conn.fetchval(
            "SELECT error FROM dead_letters WHERE position($1::bytea IN value) > 0", marker.encode()),
            60, f"{group} dead-letters the forged event {marker}")


async def attack(stack, topic: str, event_type: str, aggregate_id: str, payload: dict,
                 key: ServiceKey | None) -> dict[str, str]:
    """Publishes one forged event; each group that would act on it dead-letters it: group -> reason."""
    marker = f"forger-{uuid.uuid4().hex[:12]}"
    await publish(stack, topic, aggregate_id, forged(event_type, aggregate_id, payload, key, marker))
    groups = groups_acting_on(event_type, topic)
    assert groups, f"somebody acts on {event_type}"
    return {group: (await refused_by(stack, group, marker)).split(")")[0].removeprefix("untrusted (")
            for group in groups}


@pytest.fixture
async def protected_user(admin, portal, clock) -> tuple[str, str]:
    """A user whose MFA is required and set up: the one the attacker wants to sign in as with a password."""
    user_id, email = await new_user(admin, enrollment_days=7)
    await set_up(portal, (await sign_in(portal, email))["challenge"], clock)

    async def active() -> bool:
        user = await admin.get(f"/v1/users/{user_id}")
        return user.status_code == 200 and user.json()["status"] == "active"

    await eventually(active, 60, "the gateway shows the user's MFA active")
    return user_id, email


async def test_a_forged_user_deleted_leaves_mfa_required_and_the_key_intact(stack, admin, portal,
                                                                            protected_user) -> None:
    user_id, email = protected_user
    rejected_before = await counter_total(stack.metrics_url("mfa"), "mfaplane_events_rejected_total")
    unsigned = await attack(stack, IDENTITY_EVENTS.name, "UserDeleted", user_id, {"user_id": user_id}, None)
    # A stolen key of a service that does not own the identity topic is no better.
    notifiers = await attack(stack, IDENTITY_EVENTS.name, "UserDeleted", user_id, {"user_id": user_id},
                             service_key(stack, "notifier"))

    assert set(unsigned.values()) == {"unsigned"} and "mfa" in unsigned
    assert set(notifiers.values()) == {"not_topic_owner"}
    assert await counter_total(stack.metrics_url("mfa"), "mfaplane_events_rejected_total") == rejected_before + 2
    user = ok(await admin.get(f"/v1/users/{user_id}"))
    assert (user["status"], user["required"]) == ("active", True)
    answer = await sign_in(portal, email, PASSWORD)
    assert answer["outcome"] == "mfa_required" and answer["session"] is None, "the password alone is not enough"


async def test_a_forged_requirement_removal_changes_no_read_model_and_no_audit_record(stack, admin,
                                                                                      protected_user) -> None:
    user_id, _ = protected_user
    payload = {"principal_id": user_id, "scope": "user_portal"}
    before = ok(await admin.get(f"/v1/users/{user_id}"))
    # The audit log has its consumer group: it follows the lists by a moment.
    audited_before = await eventually(lambda: audit_records(admin, user_id), 20, "the user's setup audited",
                                      done=lambda records: "TOTPEnrolled" in {r["envelope"]["type"] for r in records})
    # identity's own key, on the mfa topic: a real service key, but not the owner's.
    reasons = await attack(stack, MFA_EVENTS.name, "MFARequirementRemoved", f"user_portal:{user_id}", payload,
                           service_key(stack, "identity"))

    assert set(reasons.values()) == {"not_topic_owner"} and "gateway" in reasons
    assert ok(await admin.get(f"/v1/users/{user_id}")) == before
    assert await audit_records(admin, user_id) == audited_before
    verified = subprocess.run([sys.executable, "-m", "mfaplane_gateway", "verify-audit"], capture_output=True,
                              text=True, timeout=120, env=stack.service_env("gateway"))
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr


async def audit_records(admin: httpx.AsyncClient, user_id: str) -> list[dict]:
    response = await admin.get("/v1/audit/events", params={"principal_id": user_id})
    assert response.status_code == 200, response.text
    # A cursor names the span of the log its read served, which grows between two reads.
    return [{k: v for k, v in json.loads(line).items() if k != "cursor"} for line in response.text.splitlines()]


async def test_a_ghost_user_is_never_listed_nor_mailed(stack, admin) -> None:
    ghost, address = str(uuid.uuid4()), f"ghost-{uuid.uuid4().hex[:8]}@outside.example"
    mail = MailWatch(stack.infra.maildir)
    outsider = ServiceKey.generate()  # a key no service holds
    created = await attack(stack, IDENTITY_EVENTS.name, "UserCreated", ghost,
                           {"user_id": ghost, "email": address, "name": "Ghost"}, outsider)
    required = await attack(stack, MFA_EVENTS.name, "MFARequired", f"user_portal:{ghost}",
                            {"principal_id": ghost, "scope": "user_portal", "principal_kind": "user",
                             "enrollment_days": 1, "deadline": datetime.now(UTC).isoformat()}, None)

    assert set(created.values()) == {"unknown_key"} and set(required.values()) == {"unsigned"}
    assert {"gateway", "notifier"} <= created.keys() & required.keys()
    problem(await admin.get(f"/v1/users/{ghost}"), 404, "user_not_found")
    assert ok(await admin.get("/v1/users", params={"q": address}))["items"] == []
    async with schema(stack, "notifier") as conn:
        assert not await conn.fetchval("SELECT count(*) FROM notifications WHERE principal_id = $1::uuid", ghost)
    assert mail.subjects([address])[address] == {}


def identity_and_mfa_commands(user_id: str) -> list[tuple[str, str, str, dict | None]]:
    """What the first release let any caller do: mint admin keys and take over any account; and what the SSH
    agent's routes would let one do: get a decision, spend codes, take a login name; and what SSO's would:
    send an application's sign-ins elsewhere, forge a sign-in on a user's history."""
    enrollment = f"/enrollments/user_portal/{user_id}"
    return [("identity", "POST", "/api-keys", {"role": "admin", "name": "backdoor"}),
            ("identity", "PUT", f"/principals/user/{user_id}/password", {"password": "attacker-chosen-pw"}),
            ("identity", "POST", f"/principals/user/{user_id}/password-reset", None),
            ("mfa", "POST", f"{enrollment}/reset", {"enrollment_days": 7}),
            ("mfa", "POST", f"{enrollment}/remove-requirement", {}),
            ("mfa", "POST", f"{enrollment}/begin-setup", {"account_name": "attacker"}),
            # an SSH host's decision or a code guess without the agent's key; a login name taken over
            ("mfa", "POST", f"{enrollment}/access", {"system_id": str(uuid.uuid4()), "mfa_enabled": False}),
            ("mfa", "POST", f"{enrollment}/regenerate-recovery-codes", {"code": "123456"}),
            ("identity", "PATCH", f"/users/{user_id}", {"login_name": "root"}),
            ("identity", "POST", "/api-keys", {"role": "system_agent", "name": "backdoor",
                                               "system_id": str(uuid.uuid4())}),
            # an application's sign-in sent to the attacker's site; a sign-in to it written into a history
            ("identity", "PUT", f"/systems/{uuid.uuid4()}/sign-in", {"protocol": "oidc",
                                                                     "redirect_uris": ["https://evil.example/cb"]}),
            ("mfa", "POST", f"{enrollment}/application-sign-in", {
                "system_id": str(uuid.uuid4()), "protocol": "oidc", "outcome": "signed_in", "reason": "code_verified",
                "mfa_used": True})]


async def written(stack, user_id: str) -> dict[str, int]:
    counts = {}
    for service in ("identity", "mfa"):
        async with schema(stack, service) as conn:
            counts[service] = await conn.fetchval("SELECT count(*) FROM events")
    async with schema(stack, "identity") as conn:
        counts["api_keys"] = await conn.fetchval("SELECT count(*) FROM api_keys")
    return counts


@pytest.mark.parametrize("credential", ["none", "x-actor", "notifier's key", "outsider's key", "token for mfa"])
async def test_calls_to_identity_and_mfa_without_the_gateways_proof_are_refused(stack, admin, protected_user,
                                                                                credential) -> None:
    user_id, _ = protected_user
    before = await written(stack, user_id)
    for service, method, path, body in identity_and_mfa_commands(user_id):
        auth = {"none": None, "x-actor": None,
                "notifier's key": SignedAs(stack, service, caller="notifier"),
                "outsider's key": SignedAs(stack, service, key=ServiceKey.generate()),
                "token for mfa": SignedAs(stack, "mfa" if service == "identity" else "identity")}[credential]
        headers = {"X-Actor": f"admin:{uuid.uuid4()}"} if credential == "x-actor" else {}
        async with direct(stack, service, auth=auth) as client:
            refused = await client.request(method, path, json=body, headers=headers)
        problem(refused, 401, "caller_not_authenticated")
    assert await written(stack, user_id) == before
    assert ok(await admin.get(f"/v1/users/{user_id}"))["status"] == "active"


async def test_the_actor_recorded_is_the_one_the_gateway_signed_never_a_header(stack, admin) -> None:
    user_id, _ = await new_user(admin)
    signed = SignedAs(stack, "mfa", actor="admin:signed-by-the-gateway")
    async with direct(stack, "mfa", auth=signed) as mfa:
        receipt = ok(await mfa.post(f"/enrollments/user_portal/{user_id}/require", json={"enrollment_days": 7},
                                    headers={"X-Actor": "admin:forged-in-a-header"}))
    async with schema(stack, "mfa") as conn:
        actor = await conn.fetchval("SELECT actor FROM events WHERE event_id = $1::uuid", receipt["event_ids"][0])
    assert actor == "admin:signed-by-the-gateway"


async def test_the_metrics_port_serves_metrics_and_takes_no_command(stack, admin) -> None:
    user_id, _ = await new_user(admin, enrollment_days=7)
    command = f"/enrollments/user_portal/{user_id}/remove-requirement"
    async with httpx.AsyncClient(base_url=stack.metrics_url("mfa"), auth=SignedAs(stack, "mfa"), timeout=30) as port:
        assert (await port.post(command, json={})).status_code in (404, 405)
        assert (await port.post("/metrics", json={})).status_code == 405
        assert "mfaplane_events_consumed_total" in (await port.get("/metrics")).text
    async with direct(stack, "mfa") as api:
        assert (await api.get("/metrics")).status_code == 404, "the API port serves no metrics"
        enrollment = ok(await api.get(f"/enrollments/user_portal/{user_id}", auth=SignedAs(stack, "mfa")))
    assert (enrollment["status"], enrollment["required"]) == ("enrolling", True)


async def test_an_impostor_answering_as_identity_is_not_believed(stack, tmp_path) -> None:
    """Something that takes identity's address (a pod with its labels, a spoofed name) with a certificate
    of any other CA gets no request from the gateway: the handshake fails first."""
    other = ensure_pki(tmp_path / "other-ca", (), apis={"identity": ()})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(other.api_cert("identity"), other.api_key("identity"))
    requests = []

    async def answer_anything(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.read(65536))
        body = json.dumps({"principal_id": str(uuid.uuid4()), "kind": "user"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    impostor = await asyncio.start_server(answer_anything, "127.0.0.1", 0, ssl=context)
    signer = CallSigner("gateway", service_key(stack, "gateway"))
    port = impostor.sockets[0].getsockname()[1]
    fooled, real = (Forwarder({"identity": url}, signer, str(stack.https_ca))
                    for url in (f"https://127.0.0.1:{port}", stack.url("identity")))
    try:
        with pytest.raises(ServiceUnavailable):
            await fooled.call(identity_api.AUTHENTICATE, "portal:test",
                              identity_api.SignInCheck(kind="user", email="victim@example.com",
                                                       password="anything at all"))
        with pytest.raises(Rejected) as answered:  # the real identity, for contrast: it answers
            await real.call(identity_api.PRINCIPAL_EXISTS, "portal:test", kind="user", principal_id=uuid.uuid4())
    finally:
        await fooled.close()
        await real.close()
        impostor.close()
    assert requests == [], "no request, and so no password, reached the impostor"
    assert answered.value.kind == Refusal.NOT_FOUND


async def test_identity_speaks_no_plaintext(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("identity").replace("https://", "http://"), timeout=10) as plain:
        with pytest.raises(httpx.TransportError):
            await plain.get("/readyz")

"""Linux SSH login protected for real (rule 10): Debian's sshd on a loopback port with the agent installed
by its own install command (tests/ssh_host.py), logins through paramiko's keyboard-interactive client, and
the agent asking the real gateway of the test stack (plain HTTP, allowed to a loopback address only).

The first factor is a public key, or the host's own password (pam_unix) before the code. What the gateway
being down does is tested without a gateway, in agents/pam/tests/test_real_sshd.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from portal_flows import STEP, code_now, new_system, set_up, sign_in, user_named
from ssh_host import SshHost, require_ssh_host
from test_system_agents import history_of

CODE_PROMPT = "Verification code: "


@pytest.fixture(autouse=True)
def _needs_sshd() -> None:
    require_ssh_host()


@pytest.fixture
def ssh_host(stack) -> Iterator:
    """`ssh_host(system_id, **options)`: an SshHost for that system, with an agent key bound to it."""
    hosts = []

    def start(system_id: str, key_system: str | None = None, **options) -> SshHost:
        key = stack.create_api_key("system_agent", f"ssh host {system_id}", key_system or system_id)
        hosts.append(SshHost(gateway_url=stack.url("gateway"), system_id=system_id, api_key=key, **options).__enter__())
        return hosts[-1]

    yield start
    for host in reversed(hosts):
        host.__exit__(None, None, None)


async def enrolled(admin, portal, clock, login_name: str) -> tuple[str, str]:
    """A user with MFA set up, a step ago; (id, TOTP key)."""
    user_id, email = await user_named(admin, login_name, enrollment_days=7)
    key, _ = await set_up(portal, (await sign_in(portal, email))["challenge"], clock)
    clock.advance(STEP)
    return user_id, key


async def test_an_enrolled_user_is_asked_for_a_code_and_the_right_one_opens_a_shell(stack, admin, portal, clock,
                                                                                     ssh_host) -> None:
    host = ssh_host(await new_system(admin))
    ada = host.add_user()
    user_id, key = await enrolled(admin, portal, clock, ada.name)
    code = code_now(key, clock)
    seen = host.login(ada, codes=[code])
    assert (seen.prompts, seen.succeeded, seen.output) == ([CODE_PROMPT], True, ada.name)
    replayed = host.login(ada, codes=[code])
    assert (replayed.prompts, replayed.succeeded) == ([CODE_PROMPT], False), "the same code twice"
    wrong = host.login(ada, codes=["000000" if code != "000000" else "111111"])
    assert (wrong.prompts, wrong.succeeded) == ([CODE_PROMPT], False)
    decided = [(e["outcome"], e["reason"], e["login_name"], e["source"])
               for e in await history_of(stack, user_id) if e["type"] == "SystemAccessDecided"]
    assert decided == [("code_required", "mfa_set_up", ada.name, "127.0.0.1"),
                       ("allow", "code_verified", ada.name, "127.0.0.1"),
                       ("code_required", "mfa_set_up", ada.name, "127.0.0.1"),
                       ("deny", "code_already_used", ada.name, "127.0.0.1"),
                       ("code_required", "mfa_set_up", ada.name, "127.0.0.1"),
                       ("deny", "invalid_code", ada.name, "127.0.0.1")]
    assert all(code not in line for line in host.syslog_lines), "no code in the host's logs"


async def test_repeated_wrong_codes_pause_the_user_even_for_the_right_code(admin, portal, clock, ssh_host) -> None:
    host = ssh_host(await new_system(admin))
    ada = host.add_user()
    _, key = await enrolled(admin, portal, clock, ada.name)
    wrong = "000000" if code_now(key, clock) != "000000" else "111111"
    for _ in range(5):
        assert not host.login(ada, codes=[wrong]).succeeded
    clock.advance(STEP)
    paused = host.login(ada, codes=[code_now(key, clock)])
    assert (paused.prompts, paused.succeeded) == ([], False), "paused: not even asked"
    assert 'reason=throttled' in host.wait_for_log(ada.name)[-1]


async def test_who_has_not_set_up_mfa_and_any_user_of_an_mfa_free_system_get_no_prompt(admin, portal, clock,
                                                                                        ssh_host) -> None:
    host = ssh_host(await new_system(admin))
    enrolling, expired = host.add_user(), host.add_user()
    await user_named(admin, enrolling.name, enrollment_days=7)
    await user_named(admin, expired.name, enrollment_days=1)
    clock.advance(timedelta(days=2))  # rule 5 locks `expired` out of the user portal, not out of SSH (rule 10)
    for user in (enrolling, expired):
        seen = host.login(user)
        assert (seen.prompts, seen.succeeded, seen.output) == ([], True, user.name)
    mfa_off = ssh_host(await new_system(admin, mfa=False))
    carol = mfa_off.add_user()
    await enrolled(admin, portal, clock, carol.name)
    seen = mfa_off.login(carol)
    assert (seen.prompts, seen.succeeded) == ([], True)


async def test_a_local_account_the_product_does_not_know_is_refused(admin, ssh_host) -> None:
    host = ssh_host(await new_system(admin))
    stranger = host.add_user()
    seen = host.login(stranger)
    assert (seen.succeeded, seen.prompts) == (False, [])
    assert "reason=unknown_login_name" in host.wait_for_log(stranger.name)[-1]


async def test_after_the_hosts_own_password_the_code_is_asked(admin, portal, clock, ssh_host) -> None:
    host = ssh_host(await new_system(admin), first_factor="password")
    ada = host.add_user()
    await enrolled(admin, portal, clock, ada.name)
    wrong_password = host.login(ada, password="not the password")
    assert (wrong_password.succeeded, CODE_PROMPT in wrong_password.prompts) == (False, False)
    key = (await enrolled(admin, portal, clock, (other := host.add_user()).name))[1]
    seen = host.login(other, codes=[code_now(key, clock)])
    assert (seen.prompts[-1], seen.succeeded, seen.output) == (CODE_PROMPT, True, other.name)
    assert "password" in seen.prompts[0].lower()


async def test_an_agent_key_of_another_system_opens_nothing(stack, admin, portal, clock, ssh_host) -> None:
    """The attack: a host configured with a key stolen from another host (here: bound to `elsewhere`)."""
    target, elsewhere = await new_system(admin, mfa=False), await new_system(admin)
    host = ssh_host(target, key_system=elsewhere)
    ada = host.add_user()
    user_id, _ = await user_named(admin, ada.name)
    seen = host.login(ada)
    assert (seen.prompts, seen.succeeded) == ([], False)
    assert "reason=agent_key_of_another_system" in host.wait_for_log(ada.name)[-1]
    assert [e for e in await history_of(stack, user_id) if e["type"] == "SystemAccessDecided"] == []

"""The agent inside Debian's real sshd (tests/ssh_host.py), logging in with paramiko.

Most tests need no gateway: they point the agent at a closed loopback port. The ones that need answers
use the stand-in gateway of conftest.py, to check the PAM conversation (what the user is asked, what
reaches the gateway); the agent against the real gateway is tested in tests/test_ssh_login.py.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest

from mfaplane_agent import counters
from ssh_host import SshHost, require_ssh_host

SYSTEM_ID = "0b5a7f6e-4c1d-4f8e-9a3b-2d6c8e1f0a47"
API_KEY = f"mfp_{secrets.token_urlsafe(24)}"
CODE_PROMPT = "Verification code: "
UNREACHABLE = counters.UNREACHABLE


@pytest.fixture(autouse=True)
def _needs_sshd() -> None:
    require_ssh_host()


@pytest.fixture
def ssh_host() -> Iterator:
    """`ssh_host(**options)` starts an SshHost with the agent installed; all stop at teardown."""
    hosts = []

    def start(gateway_url: str | None = None, **options) -> SshHost:
        host = SshHost(gateway_url=gateway_url or closed_port(), system_id=SYSTEM_ID, api_key=API_KEY, **options)
        hosts.append(host.__enter__())
        return host

    yield start
    for host in reversed(hosts):
        host.__exit__(None, None, None)


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def decisions(outcome: str, reason: str) -> str:
    return f'{counters.DECISIONS}{{outcome="{outcome}",reason="{reason}"}}'


def assert_no_secret_logged(host: SshHost, *secrets_: str) -> None:
    for line in host.syslog_lines:
        for secret in (API_KEY, *secrets_):
            assert secret not in line


def test_gateway_down_refuses_the_login_by_default_and_says_so(ssh_host) -> None:
    host = ssh_host()
    alice = host.add_user()
    seen = host.login(alice)
    assert (seen.succeeded, seen.prompts, seen.output) == (False, [], "")
    [line] = host.wait_for_log(f'user="{alice.name}"')
    assert line.startswith("<84>mfaplane-agent[")  # facility authpriv (10), severity warning (4)
    assert 'source="127.0.0.1" outcome=deny reason=unreachable_connection_refused' in line
    assert host.counters() == {decisions("deny", "unreachable_connection_refused"): 1, UNREACHABLE: 1}
    assert_no_secret_logged(host)


def test_gateway_down_with_the_allow_policy_gives_a_shell_and_counts_it(ssh_host) -> None:
    host = ssh_host(when_unreachable="allow")
    alice = host.add_user()
    seen = host.login(alice)
    assert (seen.succeeded, seen.prompts, seen.output) == (True, [], alice.name)
    assert "outcome=allow reason=unreachable_connection_refused" in host.wait_for_log(alice.name)[0]
    assert host.counters() == {decisions("allow", "unreachable_connection_refused"): 1, UNREACHABLE: 1}


def test_an_excluded_user_gets_a_shell_while_the_gateway_is_down_and_others_do_not(ssh_host) -> None:
    breakglass = f"mfa{secrets.token_hex(5)}"
    host = ssh_host(exclude_users=breakglass)
    rescuer, alice = host.add_user(breakglass), host.add_user()
    assert host.login(rescuer).output == breakglass
    assert not host.login(alice).succeeded
    assert "outcome=allow reason=excluded_user" in host.wait_for_log(breakglass)[0]
    assert host.counters()[decisions("allow", "excluded_user")] == 1


def test_in_publickey_mode_a_login_without_a_public_key_is_refused_whatever_sshd_lets_through(ssh_host) -> None:
    """The attack: sshd's own configuration (a drop-in sorted first, a Match block) lets keyboard-interactive
    alone through, where the agent is the whole PAM stack: a user not asked for a code (excluded, not enrolled,
    gateway down under `allow`) would get a shell with no factor at all."""
    breakglass = f"mfa{secrets.token_hex(5)}"
    host = ssh_host(when_unreachable="allow", exclude_users=breakglass,
                    site_sshd_settings="AuthenticationMethods publickey,keyboard-interactive keyboard-interactive\n")
    alice, rescuer = host.add_user(), host.add_user(breakglass)
    for user in (alice, rescuer):
        assert not host.login(user, password="not needed", offer_key=False).succeeded
    assert "outcome=deny reason=no_public_key" in host.wait_for_log(alice.name)[0]
    assert host.login(alice, offer_key=True).output == alice.name, "with the key first, the policy applies"


def test_a_config_file_others_can_read_refuses_every_login(ssh_host) -> None:
    host = ssh_host(when_unreachable="allow")
    alice = host.add_user()
    host.config_path.chmod(0o644)
    assert not host.login(alice).succeeded
    [line] = host.wait_for_log(alice.name)
    assert "outcome=deny reason=agent_error" in line and "chmod 600" in line
    assert_no_secret_logged(host)


def test_a_code_is_asked_through_keyboard_interactive_and_reaches_the_gateway_once(ssh_host, fake_gateway) -> None:
    gateway = fake_gateway(["code_required", "code_accepted", "code_required", "deny"])
    host = ssh_host(gateway.url)
    alice = host.add_user()
    seen = host.login(alice, codes=["246810"])
    assert (seen.succeeded, seen.prompts, seen.output) == (True, [CODE_PROMPT], alice.name)
    assert not host.login(alice, codes=["135791"]).succeeded
    assert [request["body"].get("code") for request in gateway.requests] == [None, "246810", None, "135791"]
    assert {request["body"]["login_name"] for request in gateway.requests} == {alice.name}
    host.wait_for_log("reason=code_rejected")
    assert_no_secret_logged(host, "246810", "135791")


def test_after_a_unix_password_the_code_is_asked_and_a_wrong_password_never_reaches_the_gateway(
        ssh_host, fake_gateway) -> None:
    gateway = fake_gateway(["code_required", "code_accepted"])
    host = ssh_host(gateway.url, first_factor="password")
    alice = host.add_user()
    assert not host.login(alice, password="not-her-password", codes=["246810"]).succeeded
    assert gateway.requests == []
    seen = host.login(alice, codes=["246810"])
    assert (seen.succeeded, seen.output) == (True, alice.name)
    assert seen.prompts[-1] == CODE_PROMPT and "password" in seen.prompts[0].lower()
    assert_no_secret_logged(host, "246810", alice.password)


def test_installing_twice_then_removing_leaves_the_host_as_it_was(ssh_host) -> None:
    host = ssh_host()
    host.install()
    installed = host.pam_file.read_text()
    assert installed.count("# BEGIN mfaplane-agent") == installed.count("pam_python.so") == 1
    assert "\n@include common-auth" not in installed
    host.run_agent("remove")
    assert host.pam_file.read_bytes() == host.pristine_pam
    assert not host.drop_in.exists() and not host.config_path.exists() and not (host.dir / "lib").exists()

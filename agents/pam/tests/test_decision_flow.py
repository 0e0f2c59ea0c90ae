"""The agent's client and decision flow against a stand-in gateway (conftest.py), not the real one:
what is sent, and how each kind of answer, or no answer, becomes allow or deny."""

from __future__ import annotations

import socket
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mfaplane_agent import config as agent_config
from mfaplane_agent import counters
from mfaplane_agent.decision import Verdict, decide, unix_groups
from mfaplane_agent.hostlog import HostLog

SYSTEM_ID = "0b5a7f6e-4c1d-4f8e-9a3b-2d6c8e1f0a47"
KEY = "mfp_a-secret-agent-key-0123456789"


def configured(url: str, **settings: str) -> agent_config.AgentConfig:
    return agent_config.from_values({"gateway_url": url, "system_id": SYSTEM_ID, "api_key": KEY, **settings})


def decide_for(config: agent_config.AgentConfig, code: str | None = "123456", **options) -> tuple[Verdict, list]:
    asked = []

    def ask_code() -> str | None:
        asked.append(True)
        return code

    return decide(config, "alice", "192.0.2.7", ask_code, **options), asked


def test_a_code_is_asked_once_and_sent_once_with_the_contract_headers(fake_gateway) -> None:
    gateway = fake_gateway(["code_required", "code_accepted"])
    verdict, asked = decide_for(configured(gateway.url))
    assert verdict == Verdict("allow", "code_accepted") and asked == [True]
    first, second = gateway.requests
    assert first["path"] == second["path"] == f"/v1/systems/{SYSTEM_ID}/authorize"
    assert first["body"] == {"login_name": "alice", "source": "192.0.2.7"}
    assert second["body"] == {"login_name": "alice", "source": "192.0.2.7", "code": "123456"}
    assert first["headers"]["Authorization"] == f"Bearer {KEY}"
    assert first["headers"]["API-Version"] == "2026-12-07"
    assert first["headers"]["Content-Type"] == "application/json"


def test_allow_and_deny_without_a_code_ask_nothing(fake_gateway) -> None:
    gateway = fake_gateway(["allow", "deny"])
    assert decide_for(configured(gateway.url)) == (Verdict("allow", "mfa_not_required"), [])
    assert decide_for(configured(gateway.url)) == (Verdict("deny", "code_rejected"), [])


def test_a_wrong_code_is_denied_and_an_empty_answer_is_never_sent(fake_gateway) -> None:
    gateway = fake_gateway(["code_required", "deny", "code_required"])
    assert decide_for(configured(gateway.url))[0] == Verdict("deny", "code_rejected")
    assert decide_for(configured(gateway.url), code="  ")[0] == Verdict("deny", "no_code_entered")
    assert len(gateway.requests) == 3


@pytest.mark.parametrize("status, reason", [(401, "key_rejected"), (403, "key_of_another_system"),
                                            (404, "system_not_found"), (422, "request_refused"),
                                            (429, "throttled")])
def test_a_refusal_by_the_gateway_denies_even_when_unreachable_would_allow(fake_gateway, status, reason) -> None:
    problem = {"type": "about:blank", "status": status}
    gateway = fake_gateway([(status, problem, {"Retry-After": "30"} if status == 429 else {})])
    assert decide_for(configured(gateway.url, when_unreachable="allow"))[0] == Verdict("deny", reason)


def test_a_refusal_is_logged_with_the_problems_own_code(fake_gateway) -> None:
    problem = {"type": "https://mfaplane.dev/problems/agent_key_of_another_system", "status": 403,
               "code": "agent_key_of_another_system"}
    gateway = fake_gateway([(403, problem)])
    assert decide_for(configured(gateway.url))[0] == Verdict("deny", "agent_key_of_another_system")


def test_an_answer_outside_the_contract_denies(fake_gateway) -> None:
    gateway = fake_gateway([(200, {"decision": "maybe", "reason": "x"}), (200, {"decision": "allow"}),
                            (200, {"decision": "deny", "reason": "Spaces and\nnewlines"}),
                            "code_required", "code_required"])
    config = configured(gateway.url, when_unreachable="allow")
    assert decide_for(config)[0] == Verdict("deny", "bad_gateway_answer")
    assert decide_for(config)[0] == Verdict("deny", "bad_gateway_answer")
    assert decide_for(config)[0] == Verdict("deny", "unlisted_reason")
    assert decide_for(config)[0] == Verdict("deny", "code_required_again")


def test_a_certificate_that_does_not_verify_denies_even_when_unreachable_would_allow(fake_gateway) -> None:
    gateway = fake_gateway(["allow"], tls=True)
    verdict = decide_for(configured(gateway.url, when_unreachable="allow"))[0]
    assert verdict == Verdict("deny", "tls_certificate_rejected")
    assert gateway.requests == []


def test_the_configured_ca_file_verifies_the_gateway(fake_gateway, gateway_certificate) -> None:
    gateway = fake_gateway(["allow"], tls=True)
    config = configured(gateway.url, ca_file=str(gateway_certificate[0]))
    assert decide_for(config)[0] == Verdict("allow", "mfa_not_required")


def test_a_gateway_in_trouble_gets_the_failure_policy_on_either_call(fake_gateway) -> None:
    gateway = fake_gateway([(503, {"status": 503}), (503, {"status": 503}), "code_required", (502, {})])
    unreachable = Verdict("deny", "unreachable_gateway_status_503", unreachable=True)
    assert decide_for(configured(gateway.url))[0] == unreachable
    assert decide_for(configured(gateway.url, when_unreachable="allow"))[0] == Verdict(
        "allow", "unreachable_gateway_status_503", unreachable=True)
    assert decide_for(configured(gateway.url))[0] == Verdict("deny", "unreachable_gateway_status_502", True)


def test_a_closed_port_and_a_silent_gateway_are_unreachable() -> None:
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections into its backlog and never answers
        closed.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert decide_for(configured(closed_url))[0] == Verdict("deny", "unreachable_connection_refused", True)
        assert decide_for(configured(silent_url, timeout="0.3", when_unreachable="allow"))[0] == Verdict(
            "allow", "unreachable_timeout", True)


def test_excluded_users_and_groups_are_let_in_without_asking_the_gateway(fake_gateway) -> None:
    gateway = fake_gateway([])
    config = configured(gateway.url, exclude_users="root,alice", exclude_groups="breakglass")
    assert decide_for(config)[0] == Verdict("allow", "excluded_user")
    config = configured(gateway.url, exclude_groups="breakglass")
    groups = {"alice": frozenset({"users", "breakglass"})}
    assert decide_for(config, groups_of=groups.__getitem__)[0] == Verdict("allow", "excluded_group")
    assert gateway.requests == []


def test_group_exclusions_see_the_primary_group_and_unknown_users_have_none() -> None:
    assert "root" in unix_groups("root")
    assert unix_groups("no-such-user-here") == frozenset()


def _record_many(state_dir: str) -> None:
    for _ in range(25):
        counters.record(state_dir, "deny", "unreachable_timeout", unreachable=True)


def test_counters_from_concurrent_sshd_processes_add_up(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_record_many, [str(tmp_path)] * 8))
    counters.record(str(tmp_path), "allow", "excluded_user", unreachable=False)
    assert counters.read(tmp_path / counters.FILE_NAME) == {
        'mfaplane_agent_decisions_total{outcome="deny",reason="unreachable_timeout"}': 200,
        'mfaplane_agent_decisions_total{outcome="allow",reason="excluded_user"}': 1,
        "mfaplane_agent_gateway_unreachable_total": 200,
    }
    assert "# TYPE mfaplane_agent_decisions_total counter" in (tmp_path / counters.FILE_NAME).read_text()


def test_a_missing_or_vanished_syslog_socket_does_not_break_a_login(tmp_path: Path, capsys) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "log.sock"))
    vanishing = HostLog(str(tmp_path / "log.sock"))
    receiver.close()
    (tmp_path / "log.sock").unlink()
    for log in (HostLog(str(tmp_path / "absent.sock")), vanishing):
        log.decision("alice", None, Verdict("deny", "no_code_entered"))
        log.close()
    assert capsys.readouterr() == ("", "")

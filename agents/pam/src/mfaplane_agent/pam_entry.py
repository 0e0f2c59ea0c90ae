"""The file pam_python.so loads: `auth required pam_python.so <lib dir>/mfaplane_agent/pam_entry.py config=<path>`.

pam_python runs it as root inside sshd, in the host's own Python, so it finds its package next to itself
rather than on the interpreter's path. Module arguments: `config=` (the agent's config file),
`first_factor=` (`publickey`: a login sshd did not check a public key for is denied) and
`syslog_socket=` (where to log, default /dev/log; an argument, not a config key, so that a refused
config file is logged too).
"""

from __future__ import annotations

import os
import sys

_LIB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _LIB_DIR not in sys.path:
    sys.path.insert(0, _LIB_DIR)

from mfaplane_agent import config as agent_config  # noqa: E402
from mfaplane_agent import counters  # noqa: E402
from mfaplane_agent.decision import Verdict, decide  # noqa: E402
from mfaplane_agent.hostlog import DEFAULT_SOCKET, HostLog  # noqa: E402

CODE_PROMPT = "Verification code: "


def pam_sm_authenticate(pamh, flags, argv):
    options = dict(argument.partition("=")[::2] for argument in argv[1:])
    log = HostLog(options.get("syslog_socket") or DEFAULT_SOCKET)
    try:
        return _authenticate(pamh, options.get("config") or agent_config.DEFAULT_PATH, options.get("first_factor"), log)
    finally:
        log.close()


def pam_sm_setcred(pamh, flags, argv):
    return pamh.PAM_SUCCESS


def _authenticate(pamh, config_path: str, first_factor: str | None, log: HostLog) -> int:
    try:
        login_name = pamh.get_user(None)
    except pamh.exception:
        return pamh.PAM_AUTH_ERR
    try:
        config = agent_config.load(config_path)
        if first_factor == "publickey" and not _public_key_passed(pamh):
            # the agent is then the whole PAM stack: whatever let this login skip the key (a Match block,
            # an earlier drop-in), a user the gateway does not ask would get in with no factor at all
            verdict = Verdict("deny", "no_public_key")
        else:
            verdict = decide(config, login_name, pamh.rhost or None, lambda: _ask_code(pamh))
    except agent_config.ConfigError as error:
        log.refused(login_name, str(error))
        return pamh.PAM_AUTH_ERR
    except Exception as error:  # the login must end in a decision, and the log must say why
        log.refused(login_name, f"unexpected {type(error).__name__}")
        return pamh.PAM_AUTH_ERR
    log.decision(login_name, pamh.rhost or None, verdict)
    _count(config.state_dir, verdict, log)
    return pamh.PAM_SUCCESS if verdict.outcome == "allow" else pamh.PAM_AUTH_ERR


def _public_key_passed(pamh) -> bool:
    """sshd lists the methods a login has passed, one per line, in the PAM environment's SSH_AUTH_INFO_0."""
    passed = pamh.env.get("SSH_AUTH_INFO_0") or ""
    return any(method.startswith("publickey ") for method in passed.splitlines())


def _ask_code(pamh) -> str | None:
    try:
        return pamh.conversation(pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, CODE_PROMPT)).resp
    except pamh.exception:
        return None


def _count(state_dir: str, verdict: Verdict, log: HostLog) -> None:
    try:
        counters.record(state_dir, verdict.outcome, verdict.reason, verdict.unreachable)
    except OSError as error:
        log.problem(f"counters not written to {state_dir}: {error.strerror}")

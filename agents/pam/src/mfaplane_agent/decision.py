"""What the agent decides for one login: exclusions first, then the gateway, then the failure policy.

Kept apart from PAM so that a macOS login agent, or a test, runs the same rules with another way of
asking the user for a code.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Callable
from dataclasses import dataclass

from mfaplane_agent.config import AgentConfig
from mfaplane_agent.gateway import Decision, GatewayClient, GatewayUnreachable

# The gateway's reason lands in syslog and in a metric label: keep it short and of a known alphabet.
_REASON = re.compile(r"^[a-z0-9_]{1,48}$")


def unix_groups(login_name: str) -> frozenset[str]:
    """The user's primary and supplementary groups, as NSS sees them (local files, LDAP, sssd)."""
    try:
        user = pwd.getpwnam(login_name)
    except KeyError:
        return frozenset()
    names = set()
    for gid in os.getgrouplist(login_name, user.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "allow" or "deny"
    reason: str
    unreachable: bool = False


def decide(config: AgentConfig, login_name: str, source: str | None, ask_code: Callable[[], str | None],
           groups_of: Callable[[str], frozenset[str]] = unix_groups) -> Verdict:
    """`ask_code` prompts the user once and returns what they typed (None if they could not answer)."""
    if login_name in config.exclude_users:
        return Verdict("allow", "excluded_user")
    if config.exclude_groups and groups_of(login_name) & config.exclude_groups:
        return Verdict("allow", "excluded_group")
    client = GatewayClient(config)
    try:
        first = client.authorize(login_name, source)
        if first.decision != "code_required":
            return _verdict(first)
        code = (ask_code() or "").strip()
        if not code:
            return Verdict("deny", "no_code_entered")
        second = client.authorize(login_name, source, code)
    except GatewayUnreachable as unreachable:
        return Verdict(config.when_unreachable, f"unreachable_{unreachable.reason}", unreachable=True)
    if second.decision == "code_required":
        return Verdict("deny", "code_required_again")
    return _verdict(second)


def _verdict(decision: Decision) -> Verdict:
    reason = decision.reason if _REASON.match(decision.reason) else "unlisted_reason"
    return Verdict("allow" if decision.decision == "allow" else "deny", reason)

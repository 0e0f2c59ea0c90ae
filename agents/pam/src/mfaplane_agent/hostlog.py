"""The host's own record of the agent: one syslog line per decision, to LOG_AUTHPRIV like sshd's.

Names are quoted as JSON strings, so a login name cannot forge a line or a field. The code a user
typed, the agent's key and the configuration's contents are never written.
"""

from __future__ import annotations

import json
import logging
import os
from logging.handlers import SysLogHandler

from mfaplane_agent.decision import Verdict

IDENT = "mfaplane-agent"
DEFAULT_SOCKET = "/dev/log"


class _QuietSysLogHandler(SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        """A syslog daemon that is down must not break, or even slow, a login."""


class HostLog:
    def __init__(self, socket_path: str = DEFAULT_SOCKET) -> None:
        self._logger = logging.Logger(IDENT)
        try:
            handler = _QuietSysLogHandler(address=socket_path, facility=SysLogHandler.LOG_AUTHPRIV)
        except OSError:  # no syslog daemon: the lines are dropped, the login goes on
            self._logger.addHandler(logging.NullHandler())
            return
        handler.ident = f"{IDENT}[{os.getpid()}]: "
        self._logger.addHandler(handler)

    def decision(self, login_name: str, source: str | None, verdict: Verdict) -> None:
        level = logging.INFO if verdict.outcome == "allow" else logging.WARNING
        self._logger.log(level, "decision user=%s source=%s outcome=%s reason=%s", _quoted(login_name),
                         _quoted(source) if source else "-", verdict.outcome, verdict.reason)

    def refused(self, login_name: str, why: str) -> None:
        """The agent could not decide (e.g. its config file is unsafe): the login is denied."""
        self._logger.error("decision user=%s source=- outcome=deny reason=agent_error detail=%s",
                           _quoted(login_name), _quoted(why))

    def problem(self, what: str) -> None:
        """Something that did not change the decision but needs the operator (e.g. counters not written)."""
        self._logger.warning("problem detail=%s", _quoted(what))

    def close(self) -> None:
        for handler in self._logger.handlers:
            handler.close()


def _quoted(value: str) -> str:
    return json.dumps(value)

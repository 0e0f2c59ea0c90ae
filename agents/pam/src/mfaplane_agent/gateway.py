"""The gateway's decision endpoint, `POST /v1/systems/{system_id}/authorize`, seen from the host.

Only a gateway that cannot be reached at all (connection refused or reset, timeout, a 5xx answer) is
"unreachable", where the host's failure policy applies. Anything that answers but is not our gateway
speaking the contract (a certificate that does not verify, a 4xx, a malformed answer) is a denial:
someone able to present such answers must not be able to open the host by doing so.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from mfaplane_agent.config import AgentConfig

API_VERSION = "2026-12-07"
USER_AGENT = "mfaplane-agent/0.1.0"
DECISIONS = ("allow", "code_required", "deny")
MAX_ANSWER_BYTES = 64 * 1024
_REFUSALS = {401: "key_rejected", 403: "key_of_another_system", 404: "system_not_found", 429: "throttled"}


@dataclass(frozen=True)
class Decision:
    decision: str
    reason: str


class GatewayUnreachable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayClient:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._url = urlsplit(config.gateway_url)

    def authorize(self, login_name: str, source: str | None, code: str | None = None) -> Decision:
        """The gateway's decision; raises GatewayUnreachable when there is none to be had."""
        body: dict[str, str | None] = {"login_name": login_name, "source": source}
        if code is not None:
            body["code"] = code
        try:
            status, answer = self._post(json.dumps(body).encode())
        except ssl.SSLCertVerificationError:
            return Decision("deny", "tls_certificate_rejected")
        except ssl.SSLError:
            return Decision("deny", "tls_failure")
        except TimeoutError:
            raise GatewayUnreachable("timeout") from None
        except ConnectionRefusedError:
            raise GatewayUnreachable("connection_refused") from None
        except (OSError, http.client.HTTPException):
            raise GatewayUnreachable("connection_failed") from None
        return _decision(status, answer)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.request("POST", f"{self._url.path}/v1/systems/{self._config.system_id}/authorize", body, {
                "Authorization": f"Bearer {self._config.api_key}",
                "API-Version": API_VERSION,
                "Content-Type": "application/json",
                "Accept": "application/json, application/problem+json",
                "User-Agent": USER_AGENT,
            })
            response = connection.getresponse()
            return response.status, response.read(MAX_ANSWER_BYTES)
        finally:
            connection.close()

    def _connection(self) -> http.client.HTTPConnection:
        host, port, timeout = self._url.hostname or "", self._url.port, self._config.timeout
        if self._url.scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        context = ssl.create_default_context(cafile=self._config.ca_file)
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)


def _decision(status: int, answer: bytes) -> Decision:
    if status >= 500:
        raise GatewayUnreachable(f"gateway_status_{status}")
    body = _json(answer)
    if 400 <= status < 500:  # the problem's own code where it has one (agent_key_of_another_system, ...)
        code = body.get("code") if isinstance(body, dict) else None
        return Decision("deny", code if isinstance(code, str) else _REFUSALS.get(status, "request_refused"))
    if (status != 200 or not isinstance(body, dict) or body.get("decision") not in DECISIONS
            or not isinstance(body.get("reason"), str)):
        return Decision("deny", "bad_gateway_answer")
    return Decision(body["decision"], body["reason"])


def _json(answer: bytes) -> object:
    try:
        return json.loads(answer)
    except ValueError:
        return None

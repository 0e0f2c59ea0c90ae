"""A stand-in for the gateway's decision endpoint, answering the contract from a script.

It exercises the agent's client and PAM flow alone (what is sent, how each answer is treated); the
agent against the real gateway is tested end to end in tests/test_ssh_login.py.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# answers a script may name instead of spelling out (status, body[, headers])
NAMED_ANSWERS = {
    "allow": (200, {"decision": "allow", "reason": "mfa_not_required"}),
    "deny": (200, {"decision": "deny", "reason": "code_rejected"}),
    "code_required": (200, {"decision": "code_required", "reason": "mfa_set_up"}),
    "code_accepted": (200, {"decision": "allow", "reason": "code_accepted"}),
}


@dataclass
class FakeGateway:
    """Answers each POST with the next scripted answer (a name from NAMED_ANSWERS, or (status, body[,
    headers])); records what it received."""
    answers: list[tuple]
    requests: list[dict] = field(default_factory=list)
    url: str = ""


def _handler(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            gateway.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            scripted = gateway.answers.pop(0)
            status, answer, *extra = NAMED_ANSWERS[scripted] if isinstance(scripted, str) else scripted
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status == 200 else "application/problem+json")
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def gateway_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (certificate, key)."""
    folder = tmp_path_factory.mktemp("gateway-tls")
    certificate, key = folder / "gateway.pem", folder / "gateway.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True, timeout=30)
    folder.chmod(0o755)
    certificate.chmod(0o644)
    return certificate, key


@pytest.fixture
def fake_gateway(gateway_certificate: tuple[Path, Path]) -> Iterator:
    """`fake_gateway(answers, tls=False)` starts a stand-in gateway on a loopback port."""
    servers = []

    def start(answers: list, tls: bool = False) -> FakeGateway:
        gateway = FakeGateway(list(answers))
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gateway))
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*gateway_certificate)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        gateway.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append((server, gateway))
        return gateway

    yield start
    for server, _ in servers:
        server.shutdown()
        server.server_close()

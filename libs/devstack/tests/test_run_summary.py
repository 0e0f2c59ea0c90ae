"""What `make run` prints and keeps: the console login made once per data folder, lines to paste into a
shell, and the gateway on the same port as in the last run (so links in mail already caught still work)."""

from __future__ import annotations

import socket
import stat
import subprocess
from pathlib import Path

from mfaplane_devstack.__main__ import console_login, last_gateway_port, render
from mfaplane_devstack.supervisor import free_port


class FakeStack:
    """Records the admins made, as the identity CLI would make them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.admins: list[tuple[str, str]] = []

    def create_admin(self, email: str, name: str, password: str) -> str:
        self.admins.append((email, password))
        return "an-id"


def test_the_console_login_is_made_once_per_data_folder_and_kept_from_other_users(tmp_path: Path) -> None:
    stack = FakeStack(tmp_path)
    first = console_login(stack)
    again = console_login(FakeStack(tmp_path))
    assert again == first and stack.admins == [(first["admin_email"], first["admin_password"])]
    assert stat.S_IMODE((tmp_path / "admin-login.json").stat().st_mode) == 0o600
    (tmp_path / "other").mkdir()
    assert console_login(FakeStack(tmp_path / "other")) != first  # a fresh data folder, a fresh admin


def test_the_printed_exports_set_gw_and_key_in_a_shell() -> None:
    summary = {"gateway": "http://127.0.0.1:8123", "admin_console": "http://127.0.0.1:8123/admin",
               "admin_api_key": "mfp_abc-DEF_123", "admin_email": "admin-1@example.com", "admin_password": "pw-1"}
    printed = render(summary)
    [export] = [line.strip() for line in printed.splitlines() if line.strip().startswith("export ")]
    shell = subprocess.run(["bash", "-c", f'{export}; echo "$GW $KEY"'], capture_output=True, text=True, check=True)
    assert shell.stdout.split() == ["http://127.0.0.1:8123", "mfp_abc-DEF_123"]
    assert "sign in at http://127.0.0.1:8123/admin/ as admin-1@example.com with the password pw-1" in printed


def test_the_gateway_port_of_the_last_run_is_taken_again_while_free(tmp_path: Path) -> None:
    assert last_gateway_port(tmp_path) is None
    port = free_port()
    (tmp_path / "gateway-port").write_text(f"{port}\n")
    assert last_gateway_port(tmp_path) == port
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        assert last_gateway_port(tmp_path) is None  # taken meanwhile: a free port instead

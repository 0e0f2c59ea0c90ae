"""The notifier's SMTP session against the devstack catcher run as a relay that requires TLS and a
login: STARTTLS and implicit TLS deliver; a certificate from another CA, a relay without STARTTLS
and a wrong password are refused before any message is sent, as failures the mail loop retries."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mfaplane_devstack import Supervisor, ensure_pki, read_mail, start_smtp_catcher
from mfaplane_notifier.smtp import RelayRefused, SmtpServer, TemporaryFailure

USER, PASSWORD = "relay-user", "a relay password"


class Relay:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = ensure_pki(root / "pki", (), apis={"smtp": ()})
        self.password_file = root / "password"
        self.password_file.write_text(PASSWORD)
        self.supervisor = Supervisor(root / "logs")
        self.started = 0

    def start(self, *, tls: bool = True, implicit: bool = False) -> tuple[int, Path]:
        """A catcher of its own; its port and maildir."""
        self.started += 1
        maildir = self.root / f"mail-{self.started}"
        security = ["--user", USER, "--password-file", str(self.password_file)]
        if tls:
            security += ["--tls-cert", str(self.pki.api_cert("smtp")), "--tls-key", str(self.pki.api_key("smtp"))]
        if implicit:
            security.append("--implicit-tls")
        return start_smtp_catcher(self.supervisor, maildir, name=f"smtp-{self.started}", security=security), maildir


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    made = Relay(tmp_path)
    yield made
    made.supervisor.stop_all()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "mfa@example.com", "ada@example.com", "over TLS"
    mail.set_content("hello")
    return mail


async def sent(server: SmtpServer) -> None:
    session = server.session()
    try:
        await session.send(message())
    finally:
        await session.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit TLS"])
async def test_tls_and_a_login_deliver(relay: Relay, implicit: bool) -> None:
    port, maildir = relay.start(implicit=implicit)
    url = f"smtps://127.0.0.1:{port}" if implicit else f"smtp://127.0.0.1:{port}?starttls=true"
    await sent(SmtpServer.from_url(url, USER, PASSWORD, 5, str(relay.pki.ca)))
    assert [mail["Subject"] for mail in read_mail(maildir)] == ["over TLS"]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit TLS"])
async def test_a_certificate_from_another_ca_is_refused_and_nothing_is_sent(relay: Relay, implicit: bool) -> None:
    port, maildir = relay.start(implicit=implicit)
    url = f"smtps://127.0.0.1:{port}" if implicit else f"smtp://127.0.0.1:{port}?starttls=true"
    other_ca = ensure_pki(relay.root / "other-pki", (), apis={"smtp": ()}).ca
    for ca_file in (str(other_ca), None):  # a wrong CA, and the system's CAs, which do not know the relay's
        with pytest.raises(RelayRefused, match="certificate not trusted: .*certificate"):
            await sent(SmtpServer.from_url(url, USER, PASSWORD, 5, ca_file))
    assert read_mail(maildir) == []


async def test_a_relay_without_starttls_gets_neither_the_login_nor_the_message(relay: Relay) -> None:
    port, maildir = relay.start(tls=False)
    with pytest.raises(TemporaryFailure):
        await sent(SmtpServer.from_url(f"smtp://127.0.0.1:{port}?starttls=true", USER, PASSWORD, 5, str(relay.pki.ca)))
    assert read_mail(maildir) == []
    with pytest.raises(ValueError, match="needs TLS"):
        SmtpServer.from_url(f"smtp://127.0.0.1:{port}", USER, PASSWORD, 5)


async def test_a_refused_login_is_retried_later_not_given_up(relay: Relay) -> None:
    port, maildir = relay.start()
    with pytest.raises(RelayRefused, match="login refused"):
        await sent(SmtpServer.from_url(f"smtp://127.0.0.1:{port}?starttls=true", USER, "wrong", 5, str(relay.pki.ca)))
    assert read_mail(maildir) == []


@pytest.mark.parametrize("value", ["TRUE", "1", "yes", ""])
def test_a_starttls_value_that_is_neither_true_nor_false_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="starttls is true or false"):
        SmtpServer.from_url(f"smtp://relay:587?starttls={value}", None, None, 5)

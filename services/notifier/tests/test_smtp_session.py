"""The notifier's SMTP session against a real SMTP server (aiosmtpd): one connection for many
messages, a new one once the server has dropped it, and failures sorted for the mail loop."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol

from mfaplane_devstack import free_port
from mfaplane_notifier.smtp import PermanentFailure, SmtpServer, SmtpSession

REFUSED = "gone@example.com"


class Inbox:
    """Accepts every message except to REFUSED, and notes which connection (client port) brought it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, tuple]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address == REFUSED:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPProtocol, session, envelope) -> str:
        self.received.append((envelope.rcpt_tos[0], session.peer))
        return "250 Message accepted"


class Server:
    def __init__(self) -> None:
        self.inbox, self.port = Inbox(), free_port()
        self.start()

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def restart(self) -> None:
        self.controller.stop()  # closes the open connections
        self.start()

    def session(self) -> SmtpSession:
        return SmtpServer.from_url(f"smtp://127.0.0.1:{self.port}", None, None, timeout=5).session()


@pytest.fixture
def smtp() -> Iterator[Server]:
    server = Server()
    yield server
    server.controller.stop()


def message(to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "mfa@example.com", to, "test"
    mail.set_content("hello")
    return mail


async def test_messages_share_one_connection_until_the_server_drops_it(smtp) -> None:
    inbox, session = smtp.inbox, smtp.session()
    try:
        for n in range(3):
            await session.send(message(f"user{n}@example.com"))
        smtp.restart()
        await session.send(message("after@example.com"))
    finally:
        await session.close()
    assert [to for to, _ in inbox.received] == ["user0@example.com", "user1@example.com", "user2@example.com",
                                                "after@example.com"]
    connections = [peer for _, peer in inbox.received]
    assert len(set(connections[:3])) == 1 and connections[3] != connections[0]


async def test_a_refused_recipient_fails_for_good_and_the_connection_carries_on(smtp) -> None:
    inbox, session = smtp.inbox, smtp.session()
    try:
        await session.send(message("first@example.com"))
        with pytest.raises(PermanentFailure, match="550"):
            await session.send(message(REFUSED))
        await session.send(message("next@example.com"))
    finally:
        await session.close()
    assert [to for to, _ in inbox.received] == ["first@example.com", "next@example.com"]
    assert inbox.received[0][1] == inbox.received[1][1]

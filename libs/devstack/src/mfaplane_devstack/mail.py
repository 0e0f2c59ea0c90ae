"""Reading the mail the SMTP catcher (`smtp_catcher.py`) stored, and controlling the catcher.

Each stored message carries the headers `X-Envelope-From`, `X-Envelope-To` (comma-separated
envelope recipients) and `X-Catcher-Received` (ISO time of receipt), added on receipt.

Fault mode: while the file `<maildir>/smtp-fault` exists, the catcher refuses every message at
DATA with the SMTP reply written in it (default: a 451 temporary failure, so senders must retry
later; write a 5xx reply for a permanent failure). It is read per message: no restart needed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import re
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from .supervisor import ChildSpec, Supervisor, free_port, tcp_open

FAULT_FILE = "smtp-fault"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure (injected by the mfaplane SMTP catcher)"
ENVELOPE_FROM = "X-Envelope-From"
ENVELOPE_TO = "X-Envelope-To"
RECEIVED_AT = "X-Catcher-Received"
_SMTP_REPLY = re.compile(r"^[2345]\d\d[ -]")


def start_smtp_catcher(
    supervisor: Supervisor, maildir: Path, *, port: int | None = None, name: str = "smtp", timeout: float = 30.0
) -> int:
    """Start the catcher as a supervised process on 127.0.0.1; return its port once it accepts connections."""
    port = port or free_port()
    argv = [sys.executable, "-m", "mfaplane_devstack.smtp_catcher", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--maildir", str(maildir)]
    supervisor.start(ChildSpec(name=name, argv=argv, ready=tcp_open("127.0.0.1", port), ready_timeout=timeout))
    return port


# -- fault mode ---------------------------------------------------------------------------


def set_fault(maildir: Path, reply: str = TEMPORARY_FAILURE) -> None:
    """Refuse every message from now on with `reply`, an SMTP reply line such as "451 4.3.0 ..."."""
    if not _SMTP_REPLY.match(reply):
        raise ValueError(f"not an SMTP reply: {reply!r}")
    Path(maildir).mkdir(parents=True, exist_ok=True)
    (Path(maildir) / FAULT_FILE).write_text(reply)


def clear_fault(maildir: Path) -> None:
    (Path(maildir) / FAULT_FILE).unlink(missing_ok=True)


def current_fault(maildir: Path) -> str | None:
    try:
        return (Path(maildir) / FAULT_FILE).read_text().strip() or TEMPORARY_FAILURE
    except FileNotFoundError:
        return None


# -- reading ------------------------------------------------------------------------------


def read_mail(maildir: Path) -> list[EmailMessage]:
    """Every stored message, oldest first."""
    if not (Path(maildir) / "new").is_dir():
        return []
    box = mailbox.Maildir(maildir, create=False)
    messages = []
    for key in box.keys():
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):  # moved or deleted by a mail client meanwhile
            continue
        messages.append(email.message_from_bytes(raw, policy=email.policy.default))
    return sorted(messages, key=lambda message: str(message.get(RECEIVED_AT, "")))


def envelope_recipients(message: EmailMessage) -> list[str]:
    return [address.strip() for address in str(message.get(ENVELOPE_TO, "")).split(",") if address.strip()]


async def wait_for_mail(
    maildir: Path, predicate: Callable[[EmailMessage], bool] = lambda _: True, timeout: float = 10.0
) -> EmailMessage:
    """The first stored message that satisfies `predicate`, waiting up to `timeout` seconds for it."""
    deadline = time.monotonic() + timeout
    while True:
        messages = read_mail(maildir)
        for message in messages:
            if predicate(message):
                return message
        if time.monotonic() > deadline:
            seen = [(envelope_recipients(m), m["Subject"]) for m in messages]
            raise TimeoutError(f"no matching mail in {maildir} after {timeout}s; stored: {seen}")
        await asyncio.sleep(0.05)

"""Reading the mail the SMTP catcher (`smtp_catcher.py`) stored, and controlling the catcher.

Each stored message carries the headers `X-Envelope-From`, `X-Envelope-To` (comma-separated
envelope recipients) and `X-Catcher-Received` (ISO time of receipt), added on receipt.

Fault mode: while the file `<maildir>/smtp-fault` exists, the catcher refuses every message at
DATA with the SMTP reply written in it (default: a 451 temporary failure, so senders must retry
later; write a 5xx reply for a permanent failure). It is read per message: no restart needed.

Refused recipients: `refuse_recipient(maildir, address, reply)` makes the catcher answer RCPT TO
for that one address with `reply` (default a permanent 550 "no such mailbox"; a 4xx reply refuses
it for now), while mail to everyone else is stored. `clear_refusals` ends it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import re
import sys
import time
from collections.abc import Callable, Container, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from .supervisor import ChildSpec, Supervisor, free_port, tcp_open

FAULT_FILE = "smtp-fault"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure (injected by the mfaplane SMTP catcher)"
REFUSED_FILE = "smtp-refused-recipients"
NO_SUCH_MAILBOX = "550 5.1.1 No such mailbox (injected by the mfaplane SMTP catcher)"
ENVELOPE_FROM = "X-Envelope-From"
ENVELOPE_TO = "X-Envelope-To"
RECEIVED_AT = "X-Catcher-Received"
_SMTP_REPLY = re.compile(r"^[2345]\d\d[ -]")


def start_smtp_catcher(
    supervisor: Supervisor, maildir: Path, *, port: int | None = None, name: str = "smtp", timeout: float = 30.0,
    security: Sequence[str] = (),
) -> int:
    """Start the catcher as a supervised process on 127.0.0.1; return its port once it accepts connections.
    `security`: its TLS and login options (smtp_catcher's --tls-cert, --tls-key, --user, --password-file ...)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "mfaplane_devstack.smtp_catcher", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--maildir", str(maildir), *security]
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


def refuse_recipient(maildir: Path, address: str, reply: str = NO_SUCH_MAILBOX) -> None:
    """Answer RCPT TO for `address` (case-insensitive) with `reply` from now on; others are accepted."""
    if not _SMTP_REPLY.match(reply):
        raise ValueError(f"not an SMTP reply: {reply!r}")
    if not address or any(c.isspace() for c in address):
        raise ValueError(f"not an address: {address!r}")
    Path(maildir).mkdir(parents=True, exist_ok=True)
    with open(Path(maildir) / REFUSED_FILE, "a") as refusals:
        refusals.write(f"{address.lower()} {reply}\n")


def clear_refusals(maildir: Path) -> None:
    (Path(maildir) / REFUSED_FILE).unlink(missing_ok=True)


def current_refusal(maildir: Path, address: str) -> str | None:
    """The reply RCPT TO `address` gets now, when it is refused (the latest refusal of it wins)."""
    try:
        lines = (Path(maildir) / REFUSED_FILE).read_text().splitlines()
    except FileNotFoundError:
        return None
    wanted, found = address.strip().strip("<>").lower(), None
    for line in lines:
        refused, _, reply = line.partition(" ")
        if refused == wanted and reply:
            found = reply
    return found


# -- reading ------------------------------------------------------------------------------


def read_mail(maildir: Path | str) -> list[EmailMessage]:
    """Every stored message, oldest first: from the catcher's Maildir, or from a Mailpit API URL."""
    return sorted(read_new(maildir).values(), key=lambda message: str(message.get(RECEIVED_AT, "")))


def read_new(maildir: Path | str, known: Container[str] = ()) -> dict[str, EmailMessage]:
    """The stored messages whose ids (see `stored_ids`) are not in `known`, by id."""
    if _is_mailpit(maildir):
        return _read_mailpit(str(maildir), known)
    box = _maildir(maildir)
    if box is None:
        return {}
    messages = {}
    for key in box.keys():
        if key in known:
            continue
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):  # moved or deleted by a mail client meanwhile
            continue
        messages[key] = email.message_from_bytes(raw, policy=email.policy.default)
    return messages


def stored_ids(maildir: Path | str) -> set[str]:
    """The ids of the stored messages (Maildir keys or Mailpit IDs), without reading them."""
    if _is_mailpit(maildir):
        return {summary["ID"] for summary in _mailpit_summaries(str(maildir))}
    box = _maildir(maildir)
    return set(box.keys()) if box is not None else set()


def _is_mailpit(maildir: Path | str) -> bool:
    return str(maildir).startswith(("http://", "https://"))


def _maildir(maildir: Path | str) -> mailbox.Maildir | None:
    return mailbox.Maildir(maildir, create=False) if (Path(maildir) / "new").is_dir() else None


def _mailpit_summaries(api: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=api.rstrip("/"), timeout=10) as mailpit:
        summaries: list[dict[str, Any]] = mailpit.get("/api/v1/messages", params={"limit": 100000}).json()["messages"]
    return summaries


def _read_mailpit(api: str, known: Container[str]) -> dict[str, EmailMessage]:
    """Mail caught by Mailpit (make test-containers), with the same envelope headers as the catcher's."""
    messages = {}
    with httpx.Client(base_url=api.rstrip("/"), timeout=10) as mailpit:
        for summary in _mailpit_summaries(api):
            if summary["ID"] in known:
                continue
            message = email.message_from_bytes(mailpit.get(f"/api/v1/message/{summary['ID']}/raw").content,
                                               policy=email.policy.default)
            message[ENVELOPE_TO] = ", ".join(r["Address"] for r in summary["To"] + (summary.get("Bcc") or []))
            message[RECEIVED_AT] = summary["Created"]
            messages[summary["ID"]] = message
    return messages


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

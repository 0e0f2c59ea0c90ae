"""An SMTP server that stores every message it receives in a Maildir, for people and tests.

    python -m mfaplane_devstack.smtp_catcher --host 127.0.0.1 --port 2525 --maildir .data/mail

Read the mail with `mfaplane_devstack.mail.read_mail` (or any Maildir-aware mail client);
that module also documents the added headers, the fault mode (`<maildir>/smtp-fault`) and
refused recipients (`<maildir>/smtp-refused-recipients`).
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
from datetime import datetime, timezone
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from .mail import ENVELOPE_FROM, ENVELOPE_TO, RECEIVED_AT, current_fault, current_refusal


class MaildirHandler:
    """aiosmtpd handler: stores each message in the Maildir unless fault mode is on."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = Path(maildir)
        self.mailbox = mailbox.Maildir(self.maildir, create=True)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = current_refusal(self.maildir, address)
        if refusal:
            print(f"refused recipient {address}: {refusal}", flush=True)
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = current_fault(self.maildir)
        if fault:
            print(f"refused mail to {envelope.rcpt_tos}: {fault}", flush=True)
            return fault
        self.mailbox.add(_stamped(envelope))
        print(f"stored mail from {envelope.mail_from} to {envelope.rcpt_tos}", flush=True)
        return "250 2.0.0 Message stored"


def _stamped(envelope: Envelope) -> bytes:
    received = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    trace = (
        f"{ENVELOPE_FROM}: {envelope.mail_from}\n"
        f"{ENVELOPE_TO}: {', '.join(envelope.rcpt_tos)}\n"
        f"{RECEIVED_AT}: {received}\n"
    ).encode()
    content = envelope.original_content or envelope.content
    return trace + content.replace(b"\r\n", b"\n")


async def serve(host: str, port: int, maildir: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(maildir)
    server = await loop.create_server(lambda: SMTP(handler, hostname="mfaplane-smtp-catcher"), host, port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"SMTP catcher on {host}:{port}, storing mail in {maildir}", flush=True)
    await stopping.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mfaplane_devstack.smtp_catcher")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()

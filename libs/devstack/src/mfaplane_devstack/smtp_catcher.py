"""An SMTP server that stores every message it receives in a Maildir, for people and tests.

    python -m mfaplane_devstack.smtp_catcher --host 127.0.0.1 --port 2525 --maildir .data/mail \
        [--tls-cert cert.pem --tls-key key.pem [--implicit-tls]] [--user name --password-file file]

Like a corporate relay it can require TLS (STARTTLS before anything else, or TLS from the first byte
with --implicit-tls) and a login (AUTH PLAIN or LOGIN, only once TLS is up) as --user with the
password in --password-file.

Read the mail with `mfaplane_devstack.mail.read_mail` (or any Maildir-aware mail client);
that module also documents the added headers, the fault mode (`<maildir>/smtp-fault`) and
refused recipients (`<maildir>/smtp-refused-recipients`).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import mailbox
import signal
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

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
    received = datetime.now(UTC).isoformat(timespec="microseconds")
    trace = (
        f"{ENVELOPE_FROM}: {envelope.mail_from}\n"
        f"{ENVELOPE_TO}: {', '.join(envelope.rcpt_tos)}\n"
        f"{RECEIVED_AT}: {received}\n"
    ).encode()
    content = envelope.original_content or envelope.content
    assert isinstance(content, bytes)  # decode_data is off: aiosmtpd keeps the message's bytes
    return trace + content.replace(b"\r\n", b"\n")


class Credentials:
    """aiosmtpd authenticator: the one user and its password."""

    def __init__(self, user: str, password_file: Path) -> None:
        self._user, self._password = user.encode(), password_file.read_text().strip().encode()

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: object) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and hmac.compare_digest(auth_data.login, self._user)
              and hmac.compare_digest(auth_data.password, self._password))
        return AuthResult(success=ok, handled=False)


def _tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(host: str, port: int, maildir: Path, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
                credentials: Credentials | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(maildir)
    # With implicit TLS the whole connection is encrypted, which aiosmtpd's auth_require_tls (made for
    # STARTTLS) does not see: it would never offer AUTH.
    options: dict[str, Any] = {}
    if credentials:
        options |= {"auth_required": True, "auth_require_tls": not implicit_tls, "authenticator": credentials}
    if tls and not implicit_tls:
        options |= {"tls_context": tls, "require_starttls": True}

    def protocol() -> SMTP:
        return SMTP(handler, hostname="mfaplane-smtp-catcher", **options)

    server = await loop.create_server(protocol, host, port, ssl=tls if implicit_tls else None)
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
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465 style)")
    parser.add_argument("--user", help="AUTH is then required, as this user")
    parser.add_argument("--password-file", type=Path, help="the user's password")
    args = parser.parse_args(argv)
    credentials = Credentials(args.user, args.password_file) if args.user else None
    asyncio.run(serve(args.host, args.port, args.maildir, _tls(args.tls_cert, args.tls_key), args.implicit_tls,
                      credentials))


if __name__ == "__main__":
    main()

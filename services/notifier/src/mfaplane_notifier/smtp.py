"""Sends emails with aiosmtplib over a reused connection and says whether a failure is worth retrying."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import aiosmtplib


class TemporaryFailure(Exception):
    """The server is down or answered 4xx: try again later."""


class RelayRefused(TemporaryFailure):
    """The relay cannot be used at all: its certificate fails verification, or it refuses our login.
    No fault of the message, and no other relay to try: the mail waits (MAIL_WAIT_MAX_SECONDS) instead
    of spending its attempts, and goes out once the relay or the settings are put right."""


class PermanentFailure(Exception):
    """The server refused this message or address for good (5xx)."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None = field(repr=False)
    timeout: float
    ca_file: str | None = None  # the CA the server's certificate must come from; None: the system's CAs

    @classmethod
    def from_url(cls, url: str, username: str | None, password: str | None, timeout: float,
                 ca_file: str | None = None) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port or smtps://host:port")
        query = parse_qs(parts.query, keep_blank_values=True)
        implicit = parts.scheme == "smtps"
        starttls = {"true": True, "false": False}.get(query.get("starttls", ["false"])[0])
        if starttls is None:  # "TRUE" or "1" read as "not true" would send in clear what was meant encrypted
            raise ValueError("SMTP_URL's starttls is true or false")
        if username and not (implicit or starttls):
            raise ValueError("SMTP_USERNAME needs TLS: smtps:// or ?starttls=true, never a login in clear text")
        return cls(parts.hostname, parts.port or (465 if implicit else 25), implicit, starttls, username, password,
                   timeout, ca_file)

    def session(self) -> SmtpSession:
        return SmtpSession(self)


def _untrusted_certificate(error: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed, raised as is or wrapped by aiosmtplib."""
    while error is not None and not isinstance(error, ssl.SSLCertVerificationError):
        error = error.__cause__ or error.__context__
    return error


@functools.cache
def _local_hostname() -> str:
    # aiosmtplib would look it up (a DNS query) on every connection
    return socket.getfqdn()


class SmtpSession:
    """One connection to the server, opened on the first send and reused by the next ones.

    A failure that is not the server's answer to this message (timeout, dropped connection) closes
    it; the next send connects again. A kept connection the server has closed meanwhile (it restarted,
    or timed idle clients out) is only found out by using it: that send is made once more on a new one.
    """

    def __init__(self, server: SmtpServer) -> None:
        self._server = server
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, message: EmailMessage) -> None:
        kept = self._client is not None and self._client.is_connected
        try:
            try:
                await (await self._connected()).send_message(message)
            except aiosmtplib.SMTPServerDisconnected:
                if not kept:
                    raise
                await self.close()
                await (await self._connected()).send_message(message)
        except aiosmtplib.SMTPAuthenticationError as error:
            await self.close()
            raise RelayRefused(f"login refused: {error.code}") from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            raise (PermanentFailure if all(c >= 500 for c in codes) else TemporaryFailure)(str(codes)) from None
        except aiosmtplib.SMTPResponseException as error:
            if error.code == 421:  # the server is closing this connection
                await self.close()
            failure = PermanentFailure if error.code >= 500 else TemporaryFailure
            raise failure(f"{error.code} {error.message}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            await self.close()
            if untrusted := _untrusted_certificate(error):
                raise RelayRefused(f"certificate not trusted: {untrusted.verify_message}") from None
            raise TemporaryFailure(type(error).__name__) from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        server = self._server
        client = aiosmtplib.SMTP(
            hostname=server.host, port=server.port, use_tls=server.implicit_tls, start_tls=server.starttls,
            username=server.username, password=server.password, timeout=server.timeout,
            cert_bundle=server.ca_file, local_hostname=await asyncio.to_thread(_local_hostname),
        )
        try:
            await client.connect()  # greeting, EHLO, STARTTLS and login
        except BaseException:
            client.close()  # never reuse a half-set-up connection (not upgraded, not logged in)
            raise
        self._client = client
        return client

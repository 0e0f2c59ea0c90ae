"""Sends one email with aiosmtplib and says whether a failure is worth retrying."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import aiosmtplib


class TemporaryFailure(Exception):
    """The server is down or answered 4xx: try again later."""


class PermanentFailure(Exception):
    """The server refused this message or address for good (5xx)."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None
    timeout: float

    @classmethod
    def from_url(cls, url: str, username: str | None, password: str | None, timeout: float) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port or smtps://host:port")
        query = parse_qs(parts.query)
        implicit = parts.scheme == "smtps"
        return cls(parts.hostname, parts.port or (465 if implicit else 25), implicit,
                   query.get("starttls", ["false"])[0] == "true", username, password, timeout)

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message, hostname=self.host, port=self.port, use_tls=self.implicit_tls, start_tls=self.starttls,
                username=self.username, password=self.password, timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            raise (PermanentFailure if all(c >= 500 for c in codes) else TemporaryFailure)(str(codes)) from None
        except aiosmtplib.SMTPResponseException as error:
            failure = PermanentFailure if error.code >= 500 else TemporaryFailure
            raise failure(f"{error.code} {error.message}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TemporaryFailure(type(error).__name__) from None

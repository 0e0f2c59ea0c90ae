"""Renders a notification into an email with a plain-text and an HTML part (Jinja2, autoescaped)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html.j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
)


class _HeaderClasses(HeaderRegistry):
    """The standard registry, but each header's class is made once: the standard one builds a new
    class with type() for every header it parses or folds, the notifier's largest single cost in
    an expiry storm (a tenth of its CPU)."""

    @functools.cache  # noqa: B019 - one registry per process, kept for its life
    def __getitem__(self, name: str) -> type:
        return super().__getitem__(name.lower())


POLICY = policy.default.clone(header_factory=_HeaderClasses())

SUBJECTS = {
    "required": "Action needed: set up multi-factor authentication",
    "reminder": "Reminder: your MFA enrollment period ends soon",
    "expired": "Your MFA enrollment period has expired",
    "extended": "Your MFA enrollment period has changed",
    "reset": "Your MFA has been reset",
    "setup_complete": "MFA setup complete",
    "codes_paused": "Wrong MFA codes: code entry is paused",
    "factor_locked": "Wrong MFA codes: your MFA is locked",
    "recovery_code_used": "A recovery code was used to sign in",
    "password_reset": "Reset your password",
}
TEMPLATE_OF_KIND = {"extended": "period_changed", "reset": "period_changed"}


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    is_admin: bool


def readable(moment: datetime) -> str:
    return moment.strftime("%A %-d %B %Y, %H:%M UTC")


def render(kind: str, recipient: Recipient, deadline: datetime | None, now: datetime, mail_from: str,
           portal_url: str, *, paused_until: datetime | None = None,
           recovery_codes_left: int | None = None, reset_link: str | None = None) -> EmailMessage:
    subject = SUBJECTS[kind] + (" (admin portal)" if recipient.is_admin else "")
    remaining = (deadline - now).total_seconds() if deadline else 0
    context = {
        "subject": subject,
        "name": recipient.name,
        "deadline": readable(deadline) if deadline else None,
        "days_remaining": max(math.ceil(remaining / 86400), 0),
        "hours_remaining": max(math.ceil(remaining / 3600), 1),
        "reset": kind == "reset",
        "portal_url": portal_url,
        "portal_name": "Admin Portal" if recipient.is_admin else "User Portal",
        "paused_until": readable(paused_until) if paused_until else None,
        "recovery_codes_left": recovery_codes_left,
        "reset_link": reset_link,
    }
    template = TEMPLATE_OF_KIND.get(kind, kind)
    message = EmailMessage(policy=POLICY)
    message["From"] = mail_from
    message["To"] = recipient.email
    message["Subject"] = subject
    message.set_content(_templates.get_template(f"{template}.txt.j2").render(context))
    message.add_alternative(_templates.get_template(f"{template}.html.j2").render(context), subtype="html")
    return message

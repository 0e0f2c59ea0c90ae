"""The SMTP catcher refusing single recipients, as a real server refuses a mailbox that does not exist."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from mfaplane_devstack import (
    Supervisor,
    clear_refusals,
    envelope_recipients,
    read_mail,
    refuse_recipient,
    start_smtp_catcher,
)

MESSAGE = "From: mfa@example.org\r\nSubject: MFA is now required\r\n\r\nSet up by 2026-12-01.\r\n"


def send(port: int, recipients: list[str]) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        return smtp.sendmail("mfa@example.org", recipients, MESSAGE)


def test_a_refused_recipient_gets_the_reply_and_the_others_their_mail(supervisor: Supervisor, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    port = start_smtp_catcher(supervisor, maildir)
    refuse_recipient(maildir, "Gone@Example.org")
    refuse_recipient(maildir, "busy@example.org", "450 4.2.1 Mailbox busy")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(port, ["gone@example.org"])
    assert refused.value.recipients["gone@example.org"][0] == 550
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(port, ["busy@example.org"])
    assert refused.value.recipients["busy@example.org"] == (450, b"4.2.1 Mailbox busy")
    assert send(port, ["ada@example.org", "gone@example.org"]) == {
        "gone@example.org": (550, b"5.1.1 No such mailbox (injected by the mfaplane SMTP catcher)")
    }
    assert [envelope_recipients(m) for m in read_mail(maildir)] == [["ada@example.org"]]

    clear_refusals(maildir)
    send(port, ["gone@example.org"])
    assert [envelope_recipients(m) for m in read_mail(maildir)][-1] == ["gone@example.org"]


def test_refuse_recipient_rejects_a_non_smtp_reply(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        refuse_recipient(tmp_path, "ada@example.org", "go away")

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from mfaplane_devstack import (
    Supervisor,
    clear_fault,
    envelope_recipients,
    read_mail,
    set_fault,
    start_smtp_catcher,
    wait_for_mail,
)

MESSAGE = ("From: mfa@example.org\r\nTo: ada@example.org\r\nSubject: MFA is now required\r\n\r\n"
           "Set up by 2026-12-01.\r\n")


def send(port: int, recipients: list[str], message: str = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.sendmail("mfa@example.org", recipients, message)


async def test_a_sent_mail_is_stored_with_its_envelope(supervisor: Supervisor, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    port = start_smtp_catcher(supervisor, maildir)

    send(port, ["ada@example.org", "audit@example.org"])

    mail = await wait_for_mail(maildir, lambda m: "ada@example.org" in envelope_recipients(m), timeout=5)
    assert mail["Subject"] == "MFA is now required"
    assert envelope_recipients(mail) == ["ada@example.org", "audit@example.org"]
    assert mail.get_content().strip() == "Set up by 2026-12-01."
    assert [m["Subject"] for m in read_mail(maildir)] == ["MFA is now required"]


async def test_fault_mode_answers_a_temporary_failure_and_stores_nothing(supervisor: Supervisor,
                                                                         tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    port = start_smtp_catcher(supervisor, maildir)

    set_fault(maildir)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(port, ["ada@example.org"])
    assert refused.value.smtp_code == 451
    assert read_mail(maildir) == []

    clear_fault(maildir)
    send(port, ["ada@example.org"])
    assert len(read_mail(maildir)) == 1


def test_the_catcher_can_be_taken_down_and_brought_back(supervisor: Supervisor, tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    port = start_smtp_catcher(supervisor, maildir)

    supervisor.stop("smtp")
    with pytest.raises(OSError):
        send(port, ["ada@example.org"])

    supervisor.restart("smtp")
    send(port, ["ada@example.org"])
    assert len(read_mail(maildir)) == 1


def test_set_fault_rejects_a_non_smtp_reply(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        set_fault(tmp_path, "try later")

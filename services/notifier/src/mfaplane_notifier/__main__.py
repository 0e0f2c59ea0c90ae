from pathlib import Path

from mfaplane_chassis.service import Runtime, ServiceSpec, main
from mfaplane_contracts.topics import IDENTITY_EVENTS, MFA_EVENTS, SCHEDULER_EVENTS
from mfaplane_notifier import mail_queue
from mfaplane_notifier.mail_loop import MailLoop
from mfaplane_notifier.settings import NotifierSettings
from mfaplane_notifier.smtp import SmtpServer


def mail_loop(runtime: Runtime) -> MailLoop:
    s = runtime.settings
    return MailLoop(runtime, SmtpServer.from_url(s.smtp_url, s.smtp_username, s.smtp_password, s.smtp_timeout_seconds,
                                                 s.smtp_ca_file))


SPEC = ServiceSpec(
    name="notifier",
    settings_type=NotifierSettings,
    migrations=Path(__file__).parent / "migrations",
    consumes=(IDENTITY_EVENTS, MFA_EVENTS, SCHEDULER_EVENTS),
    batch_handler=lambda runtime: mail_queue.handle_batch,
    handles=mail_queue.HANDLES,
    background=lambda runtime: mail_loop(runtime).tasks(),
)

if __name__ == "__main__":
    main(SPEC)

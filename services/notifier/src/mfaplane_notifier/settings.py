from pydantic import Field

from mfaplane_eventing.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    database_schema: str = "notifier"
    smtp_url: str = Field(description="smtp://host:port, smtps:// for implicit TLS; ?starttls=true to upgrade")
    # A login, only over TLS (smtps:// or ?starttls=true); the password from a Secret (SMTP_PASSWORD_FILE).
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    # The CA that issued the relay's certificate (PEM); unset: the system's CAs. The certificate is
    # always verified, host name included: a relay that fails the check gets no mail, which waits.
    smtp_ca_file: str | None = None
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "MFA <mfa@localhost>"
    user_portal_url: str = "http://127.0.0.1:8000/portal"
    admin_portal_url: str = "http://127.0.0.1:8000/admin"
    # Signs the tokens of the password reset links mailed (the identity service's PASSWORD_RESET_KEY).
    password_reset_key: str = Field(min_length=32, repr=False)
    mail_max_attempts: int = 8
    mail_retry_base_seconds: float = 2.0
    mail_retry_max_seconds: float = 600.0
    # How long a mail may wait for its recipient or deadline to be known here (another topic behind)
    mail_wait_max_seconds: float = 86400.0
    # Concurrent SMTP sessions; also the most mails a crash can make the notifier send twice (one each).
    mail_senders: int = 8
    mail_batch: int = 20  # notifications a sender claims at once
    mail_tick_seconds: float = 0.5

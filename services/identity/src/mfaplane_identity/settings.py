from pydantic import Field

from mfaplane_eventing.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    database_schema: str = "identity"
    # argon2id cost; the defaults are argon2-cffi's RFC 9106 "low memory" profile.
    argon2_time_cost: int = 3
    argon2_memory_cost_kib: int = 65536
    argon2_parallelism: int = 4
    # Hashes computed at once, each holding argon2_memory_cost_kib: about the pod's CPU limit (passwords.py).
    argon2_threads: int = Field(default=2, ge=1)
    # Sign-ins waiting for a hashing thread; one more is refused at once (429, Retry-After) instead of
    # waiting past the gateway's timeout. At about 10 hashes a second per pod (defaults, 2 threads), 20
    # waiting is a 2 s wait.
    argon2_queue: int = Field(default=20, ge=0)
    # Password guessing: after this many failures for one email within the window, refuse until it ends.
    password_max_failures: int = 10
    password_failure_window_seconds: int = 15 * 60
    # Password spraying: after this many failed passwords from one client address (per /64 for IPv6),
    # whatever the emails, refuse that address's sign-ins until the window ends (source_guard.py).
    source_max_password_failures: int = Field(default=30, ge=1)
    source_failure_window_seconds: int = 15 * 60
    # Signs the tokens of mailed password reset links (reset_tokens.py); the notifier holds the same key.
    # At least 32 random characters, from a Secret.
    password_reset_key: str = Field(min_length=32, repr=False)
    # How long a mailed password reset link works.
    password_reset_ttl_seconds: int = Field(default=24 * 3600, ge=300)

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
    # Password guessing: after this many failures for one email within the window, refuse until it ends.
    password_max_failures: int = 10
    password_failure_window_seconds: int = 15 * 60

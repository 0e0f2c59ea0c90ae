import json
from datetime import timedelta

from pydantic import Field, field_validator

from mfaplane_eventing.settings import ServiceSettings
from mfaplane_mfa.key_vault import KeyVault
from mfaplane_mfa.throttle import ThrottlePolicy


class MFASettings(ServiceSettings):
    database_schema: str = "mfa"
    # {"key id": "base64 of 32 random bytes", ...}; new keys are sealed with the active one.
    mfa_encryption_keys: str = Field(repr=False)
    mfa_active_key_id: str
    totp_issuer: str = "mfaplane"
    throttle_failures_per_pause: int = 5
    throttle_first_pause_seconds: int = 15 * 60
    throttle_lock_after_failures: int = 100
    throttle_failure_memory_seconds: int = 24 * 3600  # a run of failures this long ago, then quiet, is forgotten

    @field_validator("mfa_encryption_keys")
    @classmethod
    def _keys_are_a_json_object(cls, value: str) -> str:
        try:
            keys = json.loads(value)
        except ValueError:
            raise ValueError('must be a JSON object {"key id": "base64 key"}') from None
        if not isinstance(keys, dict) or not keys:
            raise ValueError('must be a non-empty JSON object {"key id": "base64 key"}')
        return value

    def key_vault(self) -> KeyVault:
        return KeyVault.from_base64(json.loads(self.mfa_encryption_keys), self.mfa_active_key_id)

    def throttle_policy(self) -> ThrottlePolicy:
        return ThrottlePolicy(self.throttle_failures_per_pause, timedelta(seconds=self.throttle_first_pause_seconds),
                              self.throttle_lock_after_failures,
                              timedelta(seconds=self.throttle_failure_memory_seconds))

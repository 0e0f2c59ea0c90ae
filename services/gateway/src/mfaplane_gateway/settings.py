from mfaplane_eventing.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    database_schema: str = "gateway"
    identity_url: str
    mfa_url: str
    read_your_writes_timeout_seconds: float = 5.0
    max_request_bytes: int = 65536

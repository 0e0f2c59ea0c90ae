"""Settings from the environment. A bad or missing variable stops start-up with its name."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service reads. Services subclass it to add their own variables."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str
    database_schema: str
    kafka_bootstrap_servers: str
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Longer than the idle timeout of whatever keeps connections to the service open (ingress-nginx:
    # 60 s; aiohttp, as the gateway forwards: 15 s), so that the client side closes an idle connection
    # first. A server that closes first can do it just as a request is sent on it, which then fails.
    http_keep_alive_seconds: int = 75
    log_level: str = "INFO"
    relay_batch_size: int = 500
    consumer_max_retries: int = 5
    max_request_bytes: int = 64 * 1024
    mfaplane_fake_clock_file: str | None = None


T = TypeVar("T", bound=BaseSettings)


def load(settings_type: type[T]) -> T:
    try:
        return settings_type()
    except ValidationError as error:
        for problem in error.errors():
            variable = "_".join(str(part) for part in problem["loc"]).upper()
            print(f"configuration error: {variable}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None

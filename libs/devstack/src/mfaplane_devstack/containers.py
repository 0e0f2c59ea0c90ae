"""`make test-containers`: the same suite against production-grade servers in Docker containers.

Apache Kafka (KRaft), PostgreSQL and Mailpit run in testcontainers; the suite gets their
addresses through the same variables that point any run at external servers. Without a
reachable Docker engine it says so and exits non-zero: nothing is skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys

KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
POSTGRES_IMAGE = "postgres:18.6-trixie"  # the versions docker-compose.yml runs
MAILPIT_IMAGE = "axllent/mailpit:v1.34.0"
NO_ENGINE_EXIT = 3


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the docker client could not be run ({error})"
    if done.returncode != 0:
        return (done.stderr.strip() or done.stdout.strip()).splitlines()[-1]
    return None


def run(pytest_args: list[str]) -> int:
    problem = docker_engine_problem()
    if problem:
        print(f"make test-containers needs a Docker engine, and none is reachable: {problem}", file=sys.stderr)
        return NO_ENGINE_EXIT
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mailpit import MailpitContainer
    from testcontainers.community.postgres import PostgresContainer

    with (PostgresContainer(POSTGRES_IMAGE, driver=None) as postgres,
          KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
          MailpitContainer(MAILPIT_IMAGE) as mailpit):
        env = {
            **os.environ,
            # The containers' listeners are plaintext, and clients default to TLS: ask for it by name.
            "DATABASE_URL": postgres.get_connection_url(driver=None) + "?sslmode=disable",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "SMTP_URL": f"smtp://{mailpit.get_container_host_ip()}:{mailpit.get_exposed_smtp_port()}",
            "MAILPIT_API_URL": mailpit.get_base_api_url(),
        }
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], env=env)

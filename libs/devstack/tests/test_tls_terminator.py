"""The TLS terminator on its own: a real process between a TLS client and a plaintext server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from mfaplane_devstack import ChildSpec, Pki, Supervisor, free_port, tcp_open


@dataclass
class Upstream:
    """A plaintext server that answers each connection with the SHA-256 of what it read, or, told so, hangs up."""

    port: int = 0
    hang_up: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.hang_up:
                return
            digest = hashlib.sha256()
            while data := await reader.read(1 << 16):
                if data.endswith(b"\n.\n"):
                    digest.update(data[:-3])
                    break
                digest.update(data)
            writer.write(digest.hexdigest().encode() * 100_000)  # 6.4 MB back
            await writer.drain()
            await reader.read()  # until the client side closes
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream


def start_terminator(supervisor: Supervisor, pki: Pki, upstream_port: int) -> int:
    port = free_port()
    argv = [sys.executable, "-m", "mfaplane_devstack.tls_terminator", "--listen", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{upstream_port}", "--cert", str(pki.server_cert), "--key", str(pki.server_key),
            "--ca", str(pki.ca)]
    supervisor.start(ChildSpec("kafka-tls", argv, ready=tcp_open("127.0.0.1", port)))
    return port


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert("tests"), pki.client_key("tests"))
    return context


async def test_bytes_pass_both_ways_intact(supervisor: Supervisor, pki: Pki, upstream: Upstream) -> None:
    port = start_terminator(supervisor, pki, upstream.port)
    sent = bytes(range(256)) * 40_000  # 10 MB out, 6.4 MB back: many reads, flow control on both sides

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(pki))
    writer.write(sent + b"\n.\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.readexactly(64 * 100_000), timeout=60)
    writer.close()
    await writer.wait_closed()

    assert answer == hashlib.sha256(sent).hexdigest().encode() * 100_000
    await asyncio.wait_for(upstream.closed.wait(), timeout=10)  # the client's close reached the upstream


async def test_the_upstream_hanging_up_closes_the_client(supervisor: Supervisor, pki: Pki, upstream: Upstream) -> None:
    upstream.hang_up = True
    port = start_terminator(supervisor, pki, upstream.port)

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(pki))
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    writer.close()


async def test_an_unreachable_upstream_closes_the_client_and_says_so(supervisor: Supervisor, pki: Pki) -> None:
    port = start_terminator(supervisor, pki, free_port())

    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(pki))
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    writer.close()
    assert "unreachable" in supervisor.log_path("kafka-tls").read_text()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_only_tls_1_2_and_later_is_spoken(supervisor: Supervisor, pki: Pki, upstream: Upstream) -> None:
    port = start_terminator(supervisor, pki, upstream.port)
    old = client_context(pki)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")

    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=old), timeout=10)
    log = supervisor.log_path("kafka-tls")
    for _ in range(200):  # the terminator's side of it, not our client's own refusal
        if "refused TLS handshake" in log.read_text():
            break
        await asyncio.sleep(0.05)
    assert "UNSUPPORTED_PROTOCOL" in log.read_text()

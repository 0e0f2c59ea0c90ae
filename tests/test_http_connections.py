"""Connections a proxy keeps open to a service (ingress-nginx reuses idle ones for up to 60 s)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

IDLE_SECONDS = 6.0  # longer than uvicorn's default keep-alive (5 s), which closed such connections


async def test_a_connection_idle_longer_than_a_clients_keep_alive_is_still_served(stack) -> None:
    address = urlsplit(stack.url("gateway"))
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        assert await _get(reader, writer, "/healthz") == b"HTTP/1.1 200 OK"
        await asyncio.sleep(IDLE_SECONDS)
        assert await _get(reader, writer, "/healthz") == b"HTTP/1.1 200 OK"
    finally:
        writer.close()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    """One request on the open connection; its status line (empty if the server had closed it)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return head.split(b"\r\n")[0]

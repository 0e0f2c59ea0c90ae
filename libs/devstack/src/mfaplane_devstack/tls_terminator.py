"""A mutual-TLS terminator in front of the embedded broker: TLS 1.2+ with a client certificate
outside, plaintext to the broker on loopback inside.

    python -m mfaplane_devstack.tls_terminator --listen 127.0.0.1:9093 --upstream 127.0.0.1:9092 \\
        --cert broker.crt --key broker.key --ca ca.crt

Why a terminator: the embedded broker, Tansu 0.6.0, cannot secure itself usefully. Its `--cert` and
`--key` options cannot be given together (so it has no TLS listener with a certificate), and it has
no SASL on its memory storage. Why this one, in Python asyncio, and not stunnel or HAProxy: it
installs with the project (`uv sync`), so a fresh machine needs no system package, and it is small
enough to read in one sitting.

Each accepted connection completes a TLS handshake that requires a client certificate signed by
`--ca` (`ssl.CERT_REQUIRED`); a refused handshake is logged on one line (the peer's address and the
reason, never key material) and the connection closed. Then the terminator connects to the upstream
and copies bytes both ways, in large reads, waiting for each write to drain, so a slow side holds
back the other instead of filling memory. When either side closes or fails, both are closed.

The limit: the upstream port is plaintext and reachable by any local process on loopback. That is
acceptable for a developer's machine and the test suite only; production Kafka does TLS (and
authentication) itself, with no plaintext listener.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys

CHUNK = 256 * 1024  # bytes per read: a Kafka fetch response is often hundreds of KiB
HANDSHAKE_TIMEOUT = 10.0  # seconds; a peer that never finishes its handshake does not hold a connection
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0

log = logging.getLogger("mfaplane.tls_terminator")


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS 1.2 or later, this certificate, and a client certificate issued by `ca` required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    return context


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class Terminator:
    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self.context = context
        self.upstream = upstream
        self._connections: set[asyncio.Task[None]] = set()

    async def accept(self, listener: socket.socket) -> None:
        """Serve each connection accepted on `listener` in its own task, until cancelled; then close them all."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                connection, _address = await loop.sock_accept(listener)
                task = asyncio.create_task(self.handle(connection))
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)
        finally:
            for task in self._connections:
                task.cancel()  # each pipe closes its side as it ends
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def handle(self, connection: socket.socket) -> None:
        peer = _peer(connection)
        # The TLS layer goes onto the socket as accepted: asyncio.start_server(ssl=...) would handle the
        # handshake as well, but drops its failures silently; and StreamWriter.start_tls on a plaintext
        # stream races with bytes (the ClientHello) the plaintext reader may already have consumed.
        try:
            reader, writer = await _tls_streams(connection, self.context)
        except ssl.SSLError as error:  # no certificate, one from another CA, no common protocol, ...
            log.warning("refused TLS handshake from %s: %s", peer, _reason(error))
            connection.close()
            return
        except (TimeoutError, OSError) as error:  # e.g. a port probe, or a client that distrusts us
            log.info("connection from %s ended during the TLS handshake: %s", peer, _reason(error))
            connection.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream, limit=CHUNK), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as error:
            log.warning("upstream %s:%d unreachable for %s: %s", *self.upstream, peer, _reason(error))
            await _close(writer)
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _tls_streams(connection: socket.socket, context: ssl.SSLContext) -> tuple[asyncio.StreamReader,
                                                                                    asyncio.StreamWriter]:
    """Complete the server side of a TLS handshake on an accepted socket; raise its failure."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, connection, ssl=context,
                                                      ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _pipe(source: asyncio.StreamReader, destination: asyncio.StreamWriter) -> None:
    """Copy until end of stream or an error, then close `destination` (which ends the other pipe too)."""
    try:
        while data := await source.read(CHUNK):
            destination.write(data)
            await destination.drain()
    except (OSError, ssl.SSLError):
        pass  # the peer went away: closing is all there is left to do
    finally:
        await _close(destination)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()  # on the TLS side: a close_notify first, bounded by CLOSE_TIMEOUT
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)


def _peer(connection: socket.socket) -> str:
    try:
        host, port = connection.getpeername()[:2]
    except OSError:  # gone already
        return "a client"
    return f"{host}:{port}"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or error.__class__.__name__
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return str(error) or error.__class__.__name__


async def serve(listen: tuple[str, int], upstream: tuple[str, int], context: ssl.SSLContext) -> None:
    """Serve until SIGTERM or SIGINT."""
    terminator = Terminator(context, upstream)
    with socket.create_server(listen, backlog=256) as listener:
        listener.setblocking(False)
        accepting = asyncio.create_task(terminator.accept(listener))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("listening on %s:%d (mutual TLS), forwarding to %s:%d", *listen, *upstream)
        await stop.wait()
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mfaplane_devstack.tls_terminator",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=host_port, required=True, help="HOST:PORT for TLS clients")
    parser.add_argument("--upstream", type=host_port, required=True, help="HOST:PORT of the plaintext server")
    parser.add_argument("--cert", required=True, help="this server's certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--ca", required=True, help="the CA that issues client certificates (PEM)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    context = server_context(args.cert, args.key, args.ca)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.listen, args.upstream, context))
    else:
        uvloop.run(serve(args.listen, args.upstream, context))
    return 0


if __name__ == "__main__":
    sys.exit(main())

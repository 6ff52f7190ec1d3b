"""An in-memory edge: a `ClientConnection` driven byte by byte, with no socket and no gateway
(as uvicorn's protocol tests drive theirs with a mock transport, and mitmproxy's `Playbook`).

- `FakeTransport`: what asyncio's transport would be; it records what was written, pausing and
  resuming of reading, the half-close and the close, and, like asyncio, tells the protocol the
  connection is lost on the next turn of the loop after `close()`.
- `Edge`: a real `Listener` (its limits, hooks and groups) with a handler of the test's; its
  `connect()` makes a connection and its transport, `send()` feeds bytes to it as one read.
- `replies()`: what the client got, parsed strictly by h11 (`wire.responses`).

A protocol case here runs in milliseconds and sees every write; the socket suites
(test_conformance_*.py, test_slow_clients.py, test_fuzz.py) keep the cases that need the whole
gateway, a kernel's buffers or an upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.edge.connection import ClientConnection
from gateway.edge.errors import GatewayError
from gateway.edge.listener import Listener
from gateway.edge.message import Incoming
from gateway.edge.reply import Reply
from gateway.edge.reqlog import RequestLog
from tests.edge.wire import Parsed, responses

Handler = Callable[[Incoming, Reply], Awaitable[None]]


class FakeTransport:
    """An asyncio transport in memory."""

    def __init__(self, protocol: ClientConnection, peer: tuple[str, int]) -> None:
        self.protocol = protocol
        self.peer = peer
        self.written = bytearray()
        self.writes = 0  # write() calls: one per reply flush
        self.reading = True
        self.pauses = 0  # pause_reading() calls that paused
        self.eof = False  # our FIN (write_eof): a lingering close began
        self.closed = False
        self.aborted = False

    # -- what the protocol calls

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        assert not self.eof, "a write after write_eof"
        self.written += data
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closed

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()


class Conn:
    """One client connection to an `Edge`."""

    def __init__(self, protocol: ClientConnection, transport: FakeTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def send(self, data: bytes) -> None:
        """One read's worth of bytes from the client (dropped, as the kernel would keep them,
        while reading is paused: a test resumes reading first)."""
        assert self.transport.reading, "the connection is not reading"
        assert not self.transport.closed
        self.protocol.data_received(data)

    def send_pieces(self, data: bytes, size: int) -> int:
        """`data` in reads of `size` bytes, until the connection stops reading or answers and
        half-closes (a lingering close); returns how many bytes were sent."""
        sent = 0
        transport = self.transport
        while sent < len(data) and transport.reading and not (transport.eof or transport.closed):
            self.protocol.data_received(data[sent : sent + size])
            sent += size
        return sent

    @property
    def raw(self) -> bytes:
        return bytes(self.transport.written)

    def replies(self, *methods: str) -> list[Parsed]:
        """The replies to requests with `methods`, in order, parsed strictly; the bytes must end
        exactly after them (the connection closed or half-closed after the last one, or kept
        open)."""
        done = self.transport.closed or self.transport.eof
        return responses(self.raw, list(methods), closed=done)


async def settle(turns: int = 10) -> None:
    """Let the loop run handler tasks and `call_soon` callbacks (no timers: no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def echo(request: Incoming, reply: Reply) -> None:
    """A handler that answers what it was asked: method, target, headers and body."""
    body = json.dumps(
        {
            "method": request.method.decode(),
            "target": request.target.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers],
            "body": request.body.decode("latin-1"),
        }
    ).encode()
    reply.start(200, b"Content-Type: application/json\r\n", len(body))
    reply.write(body)
    reply.end()


class Edge:
    """A `Listener` with the test's handler and hooks, and its connections, in memory."""

    def __init__(self, handle: Handler = echo, **settings: Any) -> None:
        self.refusals: list[RequestLog] = []
        settings.setdefault("max_body_bytes", 1024 * 1024)
        settings.setdefault("body_timeout_s", 60.0)
        settings.setdefault("keepalive_timeout_s", 60.0)
        settings.setdefault("refused", self.refusals.append)
        self.listener = Listener(handle, **settings)
        self.listener.loop = asyncio.get_running_loop()
        self.conns: list[Conn] = []

    def connect(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> Conn:
        protocol = ClientConnection(self.listener)
        transport = FakeTransport(protocol, peer)
        protocol.connection_made(transport)  # type: ignore[arg-type]  # duck-typed, as uvloop's
        conn = Conn(protocol, transport)
        self.conns.append(conn)
        return conn

    async def close(self) -> None:
        """Close every connection (its timers and tasks go with it)."""
        for conn in self.conns:
            conn.transport.close()
        await settle()


def authorize_key(key: bytes) -> Callable[[Incoming], GatewayError | None]:
    """A head-time check: the request must carry `Authorization: Bearer <key>`."""

    def authorize(request: Incoming) -> GatewayError | None:
        if request.header(b"authorization") == b"Bearer " + key:
            return None
        return GatewayError(401, "missing_api_key", "no valid key")

    return authorize

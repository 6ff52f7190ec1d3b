"""The reply to one request, written to the client connection: framing (asked of
`framing.reply_framing`), buffering, and the error envelope."""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.edge.errors import Envelope, GatewayError
from gateway.edge.framing import Framing, reply_framing
from gateway.edge.headers import field
from gateway.edge.message import status_line


class Pausable(Protocol):
    """An upstream connection whose reading can be paused (`upstream.UpstreamConnection`)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...


class Wire(Protocol):
    """The client connection a `Reply` writes to (`connection.ClientConnection`)."""

    lost: bool  # the client hung up
    http11: bool

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def send(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def follow(self, upstream: Pausable | None) -> None: ...


class Reply:
    """Buffered until `flush()`, so a head and the bytes that came with it leave in one write,
    and the body pieces of one upstream read leave as one chunk (SSE events are delimited by
    blank lines, not by HTTP chunks).

    Ending: `end()` completes it; `error()` is a complete error response (before `start`);
    `cut()` drops the connection mid-body, so the client sees a truncated reply, never a
    complete-looking one."""

    __slots__ = (
        "_body", "_conn", "_out", "_pending", "envelope", "finished", "follow", "framing",
        "keep_alive", "started", "to_head",
    )  # fmt: skip

    def __init__(
        self, conn: Wire, *, keep_alive: bool, to_head: bool, envelope: Envelope = Envelope.OPENAI
    ) -> None:
        self._conn = conn
        self.envelope = envelope  # the error shape of the API the client called
        # follow(upstream): pause reading `upstream` while this client's socket buffer is full
        self.follow = conn.follow
        self.started = False
        self.finished = False
        self.framing = Framing.NONE
        self.to_head = to_head  # a reply to HEAD: never a body
        self.keep_alive = keep_alive
        self._out: list[bytes] = []  # framed bytes
        self._body: list[bytes] = []  # body pieces not yet framed
        self._pending = 0  # their size

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._conn.loop

    @property
    def pending(self) -> int:
        """How many body bytes are waiting for `flush()`."""
        return self._pending

    @property
    def gone(self) -> bool:
        """The client hung up."""
        return self._conn.lost

    def start(self, status: int, header_lines: bytes, length: int | None) -> None:
        """Status line and headers. `header_lines`: rendered `Name: value\\r\\n` lines without
        framing; `length`: the body's length, None when it streams."""
        framing, lines = reply_framing(
            to_head=self.to_head, status=status, length=length, http11=self._conn.http11
        )
        if framing is Framing.CLOSE:
            self.keep_alive = False
        if not self.keep_alive:
            lines += b"Connection: close\r\n"
        self.framing = framing
        self.started = True
        self._out.append(status_line(status) + header_lines + lines + b"\r\n")

    def write(self, data: bytes) -> None:
        if data and self.framing is not Framing.NONE:
            self._body.append(data)
            self._pending += len(data)

    def end(self) -> None:
        self._frame()
        if self.framing is Framing.CHUNKED:
            self._out.append(b"0\r\n\r\n")
        self.finished = True
        self.flush()

    def _frame(self) -> None:
        body = self._body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            self._pending = 0
            chunked = self.framing is Framing.CHUNKED
            self._out.append(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)

    def flush(self) -> None:
        self._frame()
        out = self._out
        if out:
            self._conn.send(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def cut(self) -> None:
        self.flush()
        self.finished = True
        self.keep_alive = False
        self._conn.close()

    def error(self, err: GatewayError, lines: bytes = b"") -> None:
        """A complete error response in the route's envelope (only before `start`)."""
        body = err.json_bytes(self.envelope)
        lines = b"Content-Type: application/json\r\n" + lines
        for name, value in err.response_headers().items():
            lines += field(name, value)
        self.start(err.status, lines, len(body))
        self.write(body)
        self.end()

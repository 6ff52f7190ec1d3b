"""The HTTP/1.1 messages the front handles: a parsed request, and the reply being written to the
client connection (framing, buffering, the error envelope)."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Protocol

from gateway.errors import GatewayError
from gateway.upstream import Connection


class Wire(Protocol):
    """The client connection a `Reply` writes to (`front.FrontConnection`)."""

    lost: bool  # the client hung up
    http11: bool
    upstream: Connection | None  # paused while the client's socket buffer is full

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def send(self, data: bytes) -> None: ...
    def close(self) -> None: ...


_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}  # fmt: skip


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


class Incoming:
    """One parsed request: raw bytes as they arrived, names as sent (compare lower-cased)."""

    __slots__ = ("body", "headers", "http11", "keep_alive", "method", "path", "url")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        http11: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.path = url.partition(b"?")[0].decode("latin-1")
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http11 = http11

    def header(self, lower_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lower_name:
                return value
        return None


class Reply:
    """The response to one request, written to the connection; buffered until `flush()` so a
    head and the bytes that came with it leave in one write, and the body pieces of one upstream
    read leave as one chunk (SSE events are delimited by blank lines, not by HTTP chunks)."""

    __slots__ = (
        "_body", "_conn", "_out", "chunked", "finished", "head_only", "keep_alive", "started",
    )  # fmt: skip

    def __init__(self, conn: Wire, keep_alive: bool, head_only: bool) -> None:
        self._conn = conn
        self.started = False
        self.finished = False
        self.chunked = False
        self.head_only = head_only
        self.keep_alive = keep_alive
        self._out: list[bytes] = []  # framed bytes
        self._body: list[bytes] = []  # body pieces not yet framed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._conn.loop

    @property
    def gone(self) -> bool:
        """The client hung up."""
        return self._conn.lost

    def start(self, status: int, header_lines: bytes, length: int | None) -> None:
        """Status line and headers. `header_lines`: rendered `Name: value\\r\\n` lines without
        framing; `length` None streams the body (chunked, or to the close for HTTP/1.0)."""
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif self._conn.http11:
            framing = b"Transfer-Encoding: chunked\r\n"
            self.chunked = True
        else:
            framing = b""
            self.keep_alive = False
        if not self.keep_alive:
            framing += b"Connection: close\r\n"
        self.started = True
        self._out.append(status_line(status) + header_lines + framing + b"\r\n")

    def write(self, data: bytes) -> None:
        if not self.head_only and data:
            self._body.append(data)

    def end(self) -> None:
        self._frame()
        if self.chunked and not self.head_only:
            self._out.append(b"0\r\n\r\n")
        self.finished = True
        self.flush()

    def _frame(self) -> None:
        body = self._body
        if body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            self._out.append(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    def flush(self) -> None:
        self._frame()
        out = self._out
        if out:
            self._conn.send(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def cut(self) -> None:
        """End the connection mid-body: the client sees a truncated response, never a
        complete-looking one."""
        self.flush()
        self.finished = True
        self.keep_alive = False
        self._conn.close()

    def error(self, err: GatewayError, extra: bytes = b"") -> None:
        """A complete error response in the OpenAI envelope (only before `start`)."""
        body = err.json_bytes()
        lines = b"Content-Type: application/json\r\n" + extra
        for name, value in err.response_headers().items():
            lines += f"{name}: {value}\r\n".encode("latin-1")
        self.start(err.status, lines, len(body))
        self.write(body)
        self.end()

    def follow(self, upstream: Connection | None) -> None:
        """Pause reading `upstream` while this client's socket buffer is full."""
        self._conn.upstream = upstream

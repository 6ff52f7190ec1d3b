"""Reply framing: the exact bytes a client receives for each kind of reply."""

from __future__ import annotations

import asyncio

import orjson

from gateway.errors import GatewayError
from gateway.message import Reply
from gateway.upstream import Connection


class Recorder:
    """A client connection that keeps what was sent to it."""

    def __init__(self, http11: bool = True) -> None:
        self.lost = False
        self.http11 = http11
        self.upstream: Connection | None = None
        self.sent: list[bytes] = []
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_event_loop()

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def test_pieces_of_one_flush_leave_as_one_chunk_in_one_write() -> None:
    wire = Recorder()
    reply = Reply(wire, keep_alive=True, head_only=False)
    reply.start(200, b"Content-Type: text/event-stream\r\n", None)
    for token in (b"data: a\n\n", b"data: b\n\n"):
        reply.write(token)
    reply.flush()
    reply.write(b"data: [DONE]\n\n")
    reply.end()
    assert wire.sent == [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n12\r\ndata: a\n\ndata: b\n\n\r\n",
        b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
    ]
    assert reply.finished and not wire.closed


def test_head_request_gets_headers_and_no_body() -> None:
    wire = Recorder()
    reply = Reply(wire, keep_alive=False, head_only=True)
    reply.start(200, b"", 5)
    reply.write(b"hello")
    reply.end()
    assert wire.sent == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"]


def test_error_is_the_openai_envelope_with_its_headers() -> None:
    wire = Recorder(http11=False)
    reply = Reply(wire, keep_alive=True, head_only=False)
    reply.error(GatewayError(429, "provider_busy", "busy", headers={"Retry-After": "3"}))
    head, _, body = b"".join(wire.sent).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"Retry-After: 3\r\n" in head
    assert orjson.loads(body) == {
        "error": {
            "message": "busy",
            "type": "rate_limit_error",
            "param": None,
            "code": "provider_busy",
        }
    }

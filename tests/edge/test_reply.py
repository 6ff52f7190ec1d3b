"""Reply framing: the exact bytes a client receives for each kind of reply."""

from __future__ import annotations

import orjson
import pytest

from gateway.edge.errors import GatewayError
from gateway.edge.framing import Framing
from gateway.edge.message import status_line
from gateway.edge.reply import Reply
from tests.edge.helpers import RecordingWire


def test_pieces_of_one_flush_leave_as_one_chunk_in_one_write() -> None:
    wire = RecordingWire()
    reply = Reply(wire, keep_alive=True, to_head=False)
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
    wire = RecordingWire()
    reply = Reply(wire, keep_alive=False, to_head=True)
    reply.start(200, b"", 5)
    reply.write(b"hello")
    reply.end()
    assert wire.sent == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"]


def test_error_is_the_openai_envelope_with_its_headers() -> None:
    wire = RecordingWire(http11=False)
    reply = Reply(wire, keep_alive=True, to_head=False)
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


@pytest.mark.parametrize("status", [204, 304, 101, 103])
def test_no_body_statuses_get_no_framing_and_no_terminator(status: int) -> None:
    """A 204/304 that came with a Content-Length or streamed: a keep-alive client must not read
    a chunk terminator or a length as part of the next response."""
    for length in (None, 5):
        wire = RecordingWire()
        reply = Reply(wire, keep_alive=True, to_head=False)
        reply.start(status, b"ETag: x\r\n", length)
        reply.write(b"hello")
        reply.end()
        raw = b"".join(wire.sent)
        assert raw == status_line(status) + b"ETag: x\r\n\r\n"
        assert reply.framing is Framing.NONE and not reply.framing.appendable


def test_http10_streams_to_the_close() -> None:
    wire = RecordingWire(http11=False)
    reply = Reply(wire, keep_alive=True, to_head=False)
    reply.start(200, b"", None)
    reply.write(b"data: a\n\n")
    reply.end()
    assert b"".join(wire.sent) == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: a\n\n"
    assert not reply.keep_alive and reply.framing.appendable


def test_a_length_framed_reply_cannot_take_more_bytes() -> None:
    wire = RecordingWire()
    reply = Reply(wire, keep_alive=True, to_head=False)
    reply.start(200, b"", 5)
    assert reply.framing is Framing.LENGTH and not reply.framing.appendable


def test_error_headers_are_checked_before_they_are_written() -> None:
    reply = Reply(RecordingWire(), keep_alive=True, to_head=False)
    with pytest.raises(ValueError, match="control character"):
        reply.error(GatewayError(429, "busy", "busy", headers={"Retry-After": "3\r\nX-Evil: 1"}))

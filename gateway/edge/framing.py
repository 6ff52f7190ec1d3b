"""How a reply to the client is framed: decided here, once, from the request method, the status
and what the upstream said about its body (RFC 9112 §6.3; like uvicorn's httptools protocol and
mitmproxy's `expected_http_body_size`). Every other place asks this module.

- 1xx, 204 and 304 replies, and every reply to HEAD, have no body: no chunk terminator is ever
  written, and 1xx/204/304 carry neither Content-Length nor Transfer-Encoding.
- A body of known length goes out with Content-Length (HEAD gets the length of what GET would
  send, and no body).
- A body of unknown length is chunked for HTTP/1.1 clients, and delimited by closing the
  connection for HTTP/1.0 ones.
"""

from __future__ import annotations

from enum import Enum


class Framing(Enum):
    NONE = "none"  # no body follows the head
    LENGTH = "length"  # Content-Length bytes follow
    CHUNKED = "chunked"  # chunks, then 0\r\n\r\n
    CLOSE = "close"  # the body ends when the connection does (HTTP/1.0)

    @property
    def appendable(self) -> bool:
        """Bytes may still be added after what was announced (a final SSE error event)."""
        return self is Framing.CHUNKED or self is Framing.CLOSE


def body_allowed(status: int) -> bool:
    return status >= 200 and status != 204 and status != 304


def reply_framing(
    *, to_head: bool, status: int, length: int | None, http11: bool
) -> tuple[Framing, bytes]:
    """The framing of a reply and the header lines that announce it.

    `to_head`: the request was HEAD; `length`: the body's length when known (the upstream's
    Content-Length), None when it streams."""
    if not body_allowed(status):
        return Framing.NONE, b""
    if to_head:
        return Framing.NONE, (b"Content-Length: %d\r\n" % length if length is not None else b"")
    if length is not None:
        return Framing.LENGTH, b"Content-Length: %d\r\n" % length
    if http11:
        return Framing.CHUNKED, b"Transfer-Encoding: chunked\r\n"
    return Framing.CLOSE, b""

"""A parsed request as the front hands it to a handler, and the request-target forms it accepts
(RFC 9112 §3.2: origin-form, and absolute-form, which a server must accept)."""

from __future__ import annotations

from http import HTTPStatus

_STATUS_LINES = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}  # fmt: skip
# A request ended by the gateway's operator before its reply began (nginx logs a request its
# client ended as 499); a 4xx that no OpenAI or Anthropic SDK retries.
_STATUS_LINES[499] = b"HTTP/1.1 499 Request Cancelled\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def origin_form(target: bytes) -> bytes | None:
    """The path and query of a request target: itself in origin-form (`/v1/x?q`), the part after
    the authority in absolute-form (`http://gw:9502/v1/x?q`); None for any other form."""
    if target[:1] == b"/":
        return target
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    for i, byte in enumerate(rest):
        if byte in b"/?":
            return rest[i:] if byte == 0x2F else b"/" + rest[i:]
    return b"/"


class Incoming:
    """One parsed request: raw bytes as they arrived, names as sent (compare lower-cased).
    `target` is the origin-form of the request target, `path` its path."""

    __slots__ = ("body", "headers", "http11", "keep_alive", "method", "path", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        http11: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.path = target.partition(b"?")[0].decode("latin-1")
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http11 = http11

    def header(self, lower_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lower_name:
                return value
        return None

"""Header lines that cross the edge: which ones belong to one hop, and rendering the rest.

A header line the edge writes is one of:
- a peer's, from its parsed message (llhttp has refused CR, LF and NUL in names and values),
  rendered by `header_lines()`;
- one of the edge's own constants (framing, `Connection: close`, `Content-Type`, `SSE_LINES`);
- a request id, `reqlog.request_id()`: the client's only when it is a short token, else new;
- rendered by `field()`, which checks the name and value first (the headers a `GatewayError`
  carries, such as `Retry-After`);
- handed in already rendered by the application (`Reply.start`'s `header_lines`, an
  `Exchange`'s `added_lines`): checking what it puts there is the application's part.
"""

from __future__ import annotations

import re

# Headers that belong to one hop (RFC 9110 §7.6.1), or that the edge frames itself.
HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
        b"content-length", b"expect",
    }
)  # fmt: skip
_NOT_HOP_TOKENS = frozenset({b"close", b"keep-alive"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")


def header_lines(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> bytes:
    """`Name: value\\r\\n` for each header not in `drop`, nor named in a `Connection` header
    (those belong to this hop too). `drop` must include b"connection"."""
    lines: list[bytes] = []
    named: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower in drop:
            if lower == b"connection":
                named.append(value)
            continue
        lines.append(name + b": " + value + b"\r\n")
    if named:
        tokens = {t.strip().lower() for v in named for t in v.split(b",")} - _NOT_HOP_TOKENS
        if tokens:  # rare: drop what the Connection header names, too
            return b"".join(
                name + b": " + value + b"\r\n"
                for name, value in headers
                if name.lower() not in drop and name.lower() not in tokens
            )
    return b"".join(lines)


def field(name: str, value: str) -> bytes:
    """One header line of the edge's own (a provider key, a request id): refused with
    ValueError rather than written when the name is not a token or the value could split
    the message (CR, LF, NUL, other controls, surrounding whitespace)."""
    raw_name = name.encode("latin-1")
    raw_value = value.encode("latin-1")
    if not _TOKEN.fullmatch(raw_name):
        raise ValueError(f"not a header name: {name!r}")
    if _BAD_VALUE.search(raw_value):
        raise ValueError(f"header {name} has a control character or surrounding whitespace")
    return raw_name + b": " + raw_value + b"\r\n"


# What crosses the proxy. Upstream-bound: the client's credentials and request id stay here (the
# route's own key and the gateway's request id are added), and so does Accept-Encoding: the
# gateway asks for an uncompressed reply (it reads a reply's token usage as it passes).
# Client-bound: the upstream's cookies, request id and any header the gateway itself sets; for
# SSE the gateway's streaming headers.
PROVIDER_HEADER = b"X-Gateway-Provider"
SSE_LINES = (
    b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
)
DROP_REQUEST = HOP | {
    b"host", b"authorization", b"x-api-key", b"cookie", b"x-request-id", b"accept-encoding",
}  # fmt: skip
IDENTITY = b"Accept-Encoding: identity\r\n"
DROP_RESPONSE = HOP | {
    b"date", b"server", b"set-cookie", b"x-request-id", b"x-gateway-provider", b"x-gateway-pool",
}  # fmt: skip
DROP_RESPONSE_SSE = DROP_RESPONSE | {b"content-type", b"cache-control", b"x-accel-buffering"}

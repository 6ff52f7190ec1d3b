"""A request head's rules (RFC 9112), applied once the headers are in: one valid Host for
HTTP/1.1, an origin-form or absolute-form target, what an upgrade request or a chunked HTTP/1.0
request means for the connection, and the framing facts the front needs. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.edge.errors import GatewayError
from gateway.edge.message import Incoming, origin_form

_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]+")  # RFC 3986 host[:port]


@dataclass(slots=True)
class Head:
    request: Incoming  # the body is filled in when it has arrived
    length: int  # Content-Length (0 when absent)
    expect_continue: bool
    close_after: bool  # the connection closes after this request


def read_head(
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    http11: bool,
    keep_alive: bool,
    upgrade: bool,
) -> Head:
    """The head as the front serves it, or a GatewayError (400) saying which rule it broke.
    `keep_alive` and `upgrade`: what llhttp concluded from the head."""
    length = 0  # llhttp has checked the value: digits only, one value
    expect = chunked = False
    hosts: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"host":
            hosts.append(value)
        elif lower == b"transfer-encoding":
            chunked = True
        elif lower == b"expect":
            expect = value.lower() == b"100-continue"
    if len(hosts) > 1 or (http11 and not hosts) or (hosts and not _HOST.fullmatch(hosts[0])):
        raise GatewayError(400, "invalid_http", "a request needs exactly one valid Host")
    target = origin_form(url)
    if target is None:
        raise GatewayError(400, "invalid_http", "the request target must be a path")
    close_after = False
    if upgrade:
        if length or chunked:  # llhttp would not read the body: refused
            raise GatewayError(400, "invalid_request", "protocol upgrades are not supported")
        close_after = True  # served as plain HTTP; what follows is not ours to parse
    if chunked and not http11:
        close_after = True  # RFC 9112 §6.1: HTTP/1.0 framing is faulty; close after
    request = Incoming(method, target, headers, b"", keep_alive and not close_after, http11)
    return Head(request, length, expect, close_after)

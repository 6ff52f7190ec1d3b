"""The request head's rules, as a table: what each head means for the request and connection."""

from __future__ import annotations

import pytest

from gateway.edge.errors import GatewayError
from gateway.edge.head import read_head

H = b"Host"


@pytest.mark.parametrize(
    ("url", "headers", "http11", "upgrade", "target", "last", "length"),
    [
        (b"/v1/x?q", [(H, b"gw"), (b"Content-Length", b"5")], True, False, b"/v1/x?q", False, 5),
        (b"http://gw:9502/v1/x", [(H, b"other")], True, False, b"/v1/x", False, 0),
        (b"HTTPS://gw?x=1", [(H, b"gw")], True, False, b"/?x=1", False, 0),
        (b"/x", [], False, False, b"/x", False, 0),  # HTTP/1.0 needs no Host
        (b"/x", [(H, b"gw"), (b"Transfer-Encoding", b"chunked")], False, False, b"/x", True, 0),
        (b"/x", [(H, b"gw"), (b"Upgrade", b"h2c")], True, True, b"/x", True, 0),
    ],
)  # fmt: skip
def test_heads_that_are_served(
    url: bytes, headers: list[tuple[bytes, bytes]], http11: bool, upgrade: bool, target: bytes,
    last: bool, length: int,
) -> None:  # fmt: skip
    head = read_head(b"POST", url, headers, http11=http11, keep_alive=True, upgrade=upgrade)
    assert head.request.target == target
    assert head.close_after is last and head.request.keep_alive is not last
    assert head.length == length


@pytest.mark.parametrize(
    ("url", "headers", "http11", "upgrade"),
    [
        (b"/x", [], True, False),  # HTTP/1.1 without Host
        (b"/x", [(H, b"a"), (H, b"b")], True, False),
        (b"/x", [(H, b"a"), (H, b"b")], False, False),
        (b"/x", [(H, b"a b")], True, False),
        (b"gw:9502", [(H, b"gw")], True, False),  # authority-form
        (b"*", [(H, b"gw")], True, False),
        (b"/x", [(H, b"gw"), (b"Content-Length", b"3")], True, True),  # upgrade with a body
    ],
)  # fmt: skip
def test_heads_that_are_refused(
    url: bytes, headers: list[tuple[bytes, bytes]], http11: bool, upgrade: bool
) -> None:
    with pytest.raises(GatewayError) as info:
        read_head(b"POST", url, headers, http11=http11, keep_alive=True, upgrade=upgrade)
    assert info.value.status == 400

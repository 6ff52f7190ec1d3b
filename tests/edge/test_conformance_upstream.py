"""Conformance, upstream side: what a hostile or careless upstream's bytes can do to clients.

Each case has an upstream on raw sockets answer with the bytes under test; every reply a client
gets is parsed strictly (h11), every request the gateway writes upstream too. After each hostile
reply, two clients on the pooled connection(s) must each get their own reply, never each other's
bytes (the upstream echoes each request's id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from tests.conftest import Gateway, GatewayFactory, registry_for
from tests.edge.wire import (
    Client,
    Incomplete,
    RawFactory,
    Respond,
    Seen,
    Step,
    chat,
    echo,
    json_reply,
    ok,
    post,
    responses,
)


def first_then_ok(first: Callable[[Seen], Sequence[Step]]) -> Respond:
    """The first inference request gets `first(seen)`, every later one a plain echo."""

    def respond(seen: Seen) -> Sequence[Step]:
        return first(seen) if (seen.conn, seen.index) == (0, 0) else ok(seen)

    return respond


async def ask(gw: Gateway, marker: str, *, extra: bytes = b"") -> bytes:
    """One request on its own client connection (Connection: close); all the bytes it got."""
    client = await Client.open(gw.port)
    try:
        await client.send(chat(marker, extra=extra + b"Connection: close\r\n"))
        return await client.read_all()
    finally:
        await client.close()


async def two_clients_get_their_own(gw: Gateway) -> None:
    """Two clients at once, then one more: each reply names the request it answers."""
    for markers in (("two-1", "two-2"), ("three",)):
        raws = await asyncio.gather(*(ask(gw, m) for m in markers))
        for marker, raw in zip(markers, raws, strict=True):
            (reply,) = responses(raw, ["POST"])
            assert reply.status == 200, raw
            assert reply.json()["rid"] == marker  # type: ignore[index]
            assert reply.headers["x-request-id"] == marker


async def test_a_second_response_glued_to_the_reply_never_reaches_another_client(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Defect 1: the pool released the connection twice and two clients shared it."""
    glued = json_reply(b'{"rid": "glued", "evil": true}')
    up = await raw_upstream(first_then_ok(lambda seen: [json_reply(echo(seen)) + glued]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (first,) = responses(await ask(gw, "first"), ["POST"])
    assert first.json()["rid"] == "first"  # type: ignore[index]
    await two_clients_get_their_own(gw)
    later = [s for s in up.inference() if s.header("x-request-id") != "first"]
    assert all(s.conn != 0 for s in later)  # the connection that said too much was closed


async def test_the_head_of_an_unasked_response_never_reaches_the_next_client(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Defect 2: a reply followed by the head of a second response (no body yet)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    up = await raw_upstream(first_then_ok(lambda seen: [json_reply(echo(seen)) + head]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    responses(await ask(gw, "first"), ["POST"])
    await two_clients_get_their_own(gw)


async def test_bytes_an_idle_pooled_connection_receives_close_it(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    up = await raw_upstream(
        first_then_ok(lambda seen: [json_reply(echo(seen)), 0.05, json_reply(b'{"rid": "late"}')])
    )
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    responses(await ask(gw, "first"), ["POST"])
    await asyncio.sleep(0.2)  # the late bytes arrive while the connection is idle in the pool
    await two_clients_get_their_own(gw)
    assert all(s.conn != 0 for s in up.inference()[1:])


async def test_garbage_after_the_reply_is_not_a_reply(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    up = await raw_upstream(first_then_ok(lambda seen: [json_reply(echo(seen)) + b"\x00junk\r\n"]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (first,) = responses(await ask(gw, "first"), ["POST"])
    assert first.status == 200
    await two_clients_get_their_own(gw)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n",
    ],
    ids=["204-with-length", "204-chunked", "304", "304-with-length"],
)
async def test_no_body_replies_leave_the_client_connection_in_step(
    raw_upstream: RawFactory, gateway: GatewayFactory, reply: bytes
) -> None:
    """Defect 3: a 204/304 got a chunked body (the terminator read as the next response) or
    kept the upstream's Content-Length."""
    up = await raw_upstream(first_then_ok(lambda seen: [reply]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    client = await Client.open(gw.port)
    try:
        await client.send(chat("first") + chat("second", extra=b"Connection: close\r\n"))
        raw = await client.read_all()
    finally:
        await client.close()
    first, second = responses(raw, ["POST", "POST"])
    assert first.status == int(reply[9:12])
    assert first.body == b""
    assert "content-length" not in first.headers and "transfer-encoding" not in first.headers
    assert second.json()["rid"] == "second"  # type: ignore[index]
    await two_clients_get_their_own(gw)


async def test_an_sse_reply_with_a_length_is_cut_not_extended(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Defect 6: an SSE error event written past a Content-Length on a kept-alive connection."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\n"
    up = await raw_upstream(first_then_ok(lambda seen: [head + b"data: {}\n\n", 3.0]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}), idle_timeout_s=0.3)
    client = await Client.open(gw.port)
    try:
        await client.send(chat("first", extra=b"Content-Type: x\r\n"))
        raw = await client.read_all()
    finally:
        await client.close()
    assert raw.endswith(b"\r\n\r\ndata: {}\n\n")  # 12 of the 1000 bytes, then the close
    with pytest.raises(Incomplete):
        responses(raw, ["POST"])
    await two_clients_get_their_own(gw)


async def test_a_trailer_or_the_upstreams_own_provider_header_is_not_forwarded(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    def chunked(seen: Seen) -> Sequence[Step]:
        body = echo(seen)
        return [
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"X-Gateway-Provider: evil\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n"
            b"%x\r\n%b\r\n0\r\nSet-Cookie: s=1\r\nX-Gateway-Provider: evil\r\n\r\n"
            % (len(body), body)
        ]

    up = await raw_upstream(chunked)
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (reply,) = responses(await ask(gw, "first"), ["POST"])
    assert reply.json()["rid"] == "first"  # type: ignore[index]
    names = [n.lower() for n, _ in reply.raw_headers]
    assert names.count(b"x-gateway-provider") == 1 and reply.headers["x-gateway-provider"] == "a"
    assert b"set-cookie" not in names and b"x-hop" not in names


async def test_an_endless_response_head_is_a_502_not_a_buffer(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    piece: list[Step] = [b"a" * 65536, 0.001]
    endless: list[Step] = [b"HTTP/1.1 200 OK\r\nX-Big: ", *piece * 64]  # 4 MiB, never a CRLF
    up = await raw_upstream(first_then_ok(lambda seen: endless))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (reply,) = responses(await ask(gw, "first"), ["POST"])
    assert reply.status == 502
    assert reply.json()["error"]["code"] == "upstream_error"  # type: ignore[index]
    await two_clients_get_their_own(gw)


async def test_a_reused_connection_the_upstream_closed_is_retried_once_on_a_new_one(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """llama-server closes idle keep-alive connections: a request written on one as it closes
    got a 502. The second request on the first connection meets a close with no reply."""

    def close_second(seen: Seen) -> Sequence[Step]:
        return [None] if (seen.conn, seen.index) == (0, 1) else ok(seen)

    up = await raw_upstream(close_second)
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    for marker in ("one", "two", "three"):
        (reply,) = responses(await ask(gw, marker), ["POST"])
        assert reply.status == 200 and reply.json()["rid"] == marker  # type: ignore[index]
    assert [(s.conn, s.header("x-request-id")) for s in up.inference()] == [
        (0, "one"),
        (0, "two"),  # closed without a reply...
        (1, "two"),  # ...so sent again, once, on a new connection
        (1, "three"),
    ]


async def test_a_new_connection_that_closes_is_a_502_not_a_retry_loop(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    up = await raw_upstream(lambda seen: [None])
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (reply,) = responses(await ask(gw, "one"), ["POST"])
    assert reply.status == 502
    assert len(up.inference()) == 1


async def test_a_body_delimited_by_the_close_is_rechunked_whole(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    up = await raw_upstream(lambda seen: [b"HTTP/1.1 200 OK\r\n\r\n" + echo(seen), None])
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    client = await Client.open(gw.port)
    try:
        await client.send(chat("one"))
        reply = await client.read_reply()
        assert reply.headers["transfer-encoding"] == "chunked"
        assert reply.json()["rid"] == "one"  # type: ignore[index]
        await client.send(chat("two"))  # the client's connection stays usable
        assert (await client.read_reply()).json()["rid"] == "two"  # type: ignore[index]
    finally:
        await client.close()


async def test_an_upstream_that_switches_protocols_is_a_502(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"
    up = await raw_upstream(first_then_ok(lambda seen: [switch]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    (reply,) = responses(await ask(gw, "first"), ["POST"])
    assert reply.status == 502
    await two_clients_get_their_own(gw)


async def test_an_endless_upstream_trailer_is_cut_off_not_buffered(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    piece: list[Step] = [b"a" * 65536, 0.001]
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: "
    up = await raw_upstream(first_then_ok(lambda seen: [chunked, *piece * 64]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    raw = await ask(gw, "first")
    with pytest.raises(Incomplete):  # the reply had started: the client sees it cut, promptly
        responses(raw, ["POST"])
    await two_clients_get_their_own(gw)


async def test_a_reused_connection_closed_long_after_the_request_is_not_resent(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """A close that comes late means the upstream may have worked on the request: a 502, not a
    second run of it."""

    def slow_close(seen: Seen) -> Sequence[Step]:
        return [0.8, None] if (seen.conn, seen.index) == (0, 1) else ok(seen)

    up = await raw_upstream(slow_close)
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    responses(await ask(gw, "one"), ["POST"])
    (reply,) = responses(await ask(gw, "two"), ["POST"])
    assert reply.status == 502
    assert [s.header("x-request-id") for s in up.inference()] == ["one", "two"]


def _usage_stream(rid: str, asked: bool) -> bytes:
    """An OpenAI-style stream naming request `rid`; with the usage flag's additions if asked."""
    null = b',"usage":null' if asked else b""
    out = b'data: {"choices":[{"delta":{"content":"%b"}}]%b}\n\n' % (rid.encode(), null)
    if asked:
        out += b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n'
    return out + b"data: [DONE]\n\n"


async def test_a_rewritten_stream_is_framed_strictly_and_stays_its_clients(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """A cloud stream the gateway asked usage of (it takes the usage back out): the upstream
    answers with a Content-Length, in pieces, with an unasked response glued on; two clients at
    once on the pooled connections each get their own stream, re-framed, h11-strict, exactly the
    bytes they would have got without the flag."""

    def respond(seen: Seen) -> Sequence[Step]:
        if seen.method != "POST":
            return ok(seen)
        rid = seen.header("x-request-id") or "-"
        asked = b'"include_usage":true' in seen.body
        body = _usage_stream(rid, asked)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n"
        glued = json_reply(b'{"rid": "glued"}') if rid == "first" else b""
        return [head % len(body) + body[:9], 0.002, body[9:40], body[40:] + glued]

    up = await raw_upstream(respond)
    gw = await gateway(registry_for(
        {"id": "a", "kind": "openai", "baseUrl": up.url, "streamUsage": True}
    ))  # fmt: skip

    async def stream(marker: str) -> bytes:
        client = await Client.open(gw.port)
        try:
            body = b'{"model":"a/m","stream":true}'
            extra = b"X-Request-Id: %b\r\nAccept-Encoding: gzip\r\nConnection: close\r\n"
            await client.send(post(body, extra=extra % marker.encode()))
            return await client.read_all()
        finally:
            await client.close()

    for markers in (("first",), ("two-1", "two-2"), ("three",)):
        raws = await asyncio.gather(*(stream(m) for m in markers))
        for marker, raw in zip(markers, raws, strict=True):
            (reply,) = responses(raw, ["POST"])
            assert reply.status == 200 and "content-length" not in reply.headers
            assert reply.body == _usage_stream(marker, asked=False)
    for seen in up.inference():
        assert b'"stream_options":{"include_usage":true}' in seen.body
        assert seen.header("accept-encoding") == "identity"


async def test_a_silent_upstream_gets_a_504_from_the_sweep_and_its_connection_is_not_reused(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """The first-byte limit is kept by `streams.Streams`' one sweep (no timer per request): a
    504 in the envelope, h11-strict, before the upstream would have answered; the silent
    connection is never lent again, so the clients after it each get their own reply."""
    up = await raw_upstream(first_then_ok(lambda seen: [5.0]))
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}), first_byte_timeout_s=0.3)
    (reply,) = responses(await ask(gw, "first"), ["POST"])  # (the upstream would answer at 5 s)
    assert reply.status == 504
    assert reply.json()["error"]["code"] == "upstream_timeout"  # type: ignore[index]
    await two_clients_get_their_own(gw)

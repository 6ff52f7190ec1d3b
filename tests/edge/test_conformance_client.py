"""Conformance, client side: RFC 9112 framing and limits on raw sockets, every reply parsed
strictly (h11), every request the gateway writes upstream parsed strictly too. The cases that
need no socket nor upstream (limits, trailers, keys on the head, upgrades, Host and target rules,
pipelining, flow control) run in memory in test_protocol.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import Gateway, GatewayFactory, registry_for
from tests.edge.wire import (
    Client,
    RawFactory,
    RawUpstream,
    Seen,
    Step,
    chat,
    echo,
    json_reply,
    post,
    responses,
)


@pytest.fixture
async def gw_up(raw_upstream: RawFactory, gateway: GatewayFactory) -> tuple[Gateway, RawUpstream]:
    up = await raw_upstream(lambda seen: [json_reply(echo(seen))])
    return await gateway(registry_for({"id": "a", "baseUrl": up.url})), up


async def talk(gw: Gateway, data: bytes) -> bytes:
    client = await Client.open(gw.port)
    try:
        await client.send(data)
        return await client.read_all()
    finally:
        await client.close()


def chunked_post(chunks: list[bytes], trailers: bytes, *, head: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        + head + b"\r\n" + body + b"0\r\n" + trailers + b"\r\n"
    )  # fmt: skip


async def test_request_trailers_are_dropped_not_merged(
    gw_up: tuple[Gateway, RawUpstream],
) -> None:
    """Defect 4: trailer fields were merged into the headers and forwarded."""
    gw, up = gw_up
    trailers = b"X-Evil: 1\r\nX-Request-Id: t\r\n"
    close = b"Connection: close\r\n"
    raw = await talk(gw, chunked_post([b'{"model":', b'"a/m"}'], trailers, head=close))
    (reply,) = responses(raw, ["POST"])
    assert reply.status == 200
    (seen,) = up.inference()
    assert seen.header("x-evil") is None
    assert seen.header("x-request-id") != "t"
    assert seen.body == b'{"model":"m"}'


async def test_a_refused_client_still_sending_its_body_reads_the_error(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Lingering close: the 401 must not be lost to a reset while the client's body is unread."""
    up = await raw_upstream(lambda seen: [json_reply(echo(seen))])
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}), api_keys=("k-1",))
    client = await Client.open(gw.port)
    try:
        await client.send(post(b'{"model":"a/m","pad":"' + b"x" * 2_000_000 + b'"}'))
        raw = await client.read_all()
    finally:
        await client.close()
    (reply,) = responses(raw, ["POST"])
    assert reply.status == 401


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/chat/completions HTTP/1.0\r\n",  # HTTP/1.0 needs no Host
        b"POST http://gw:9502/v1/chat/completions HTTP/1.1\r\nHost: other\r\n",
        b"POST HTTP://GW/v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\n",
    ],
    ids=["http10-no-host", "absolute-form", "absolute-form-upper"],
)
async def test_absolute_form_goes_upstream_in_origin_form(
    gw_up: tuple[Gateway, RawUpstream], head: bytes
) -> None:
    """(The rules on Host and request targets that refuse a request are in test_protocol.py.)"""
    gw, up = gw_up
    body = b'{"model":"a/m"}'
    raw = await talk(
        gw, head + b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    )
    (reply,) = responses(raw, ["POST"])
    assert reply.status == 200
    (seen,) = up.inference()
    assert seen.target == "/v1/chat/completions"  # origin-form upstream


async def test_headers_named_by_connection_stay_on_this_hop(
    gw_up: tuple[Gateway, RawUpstream],
) -> None:
    gw, up = gw_up
    extra = b"Connection: close, X-Hop\r\nX-Hop: 1\r\nProxy-Connection: keep-alive\r\nX-Kept: 2\r\n"
    (reply,) = responses(await talk(gw, post(b'{"model":"a/m"}', extra=extra)), ["POST"])
    assert reply.status == 200
    (seen,) = up.inference()
    names = {n for n, _ in seen.headers}
    assert "x-hop" not in names and "proxy-connection" not in names and "x-kept" in names


async def test_only_the_model_changes_on_the_way_upstream(
    gw_up: tuple[Gateway, RawUpstream],
) -> None:
    gw, up = gw_up
    body = b'{"seed": 123456789012345678901234567890, "model" : "a/m", "t": 1.00000000000000000001}'
    (reply,) = responses(await talk(gw, post(body, extra=b"Connection: close\r\n")), ["POST"])
    assert reply.status == 200
    assert up.inference()[0].body == body.replace(b'"a/m"', b'"m"')
    dup = b'{"model": "m", "model": "a/m"}'
    (reply,) = responses(await talk(gw, post(dup, extra=b"Connection: close\r\n")), ["POST"])
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "duplicate_model"  # type: ignore[index]
    assert len(up.inference()) == 1


async def test_a_client_that_never_reads_does_not_grow_the_gateways_buffers(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    """Backpressure per connection: pipelined requests wait while the client is not reading.
    Each reply arrives whole in one upstream read, so pausing the upstream of the exchange in
    flight is not enough: the next request must not start."""
    big = json.dumps({"pad": "x" * (32 * 1024)}).encode()  # one upstream read each

    def large(seen: Seen) -> list[Step]:
        return [json_reply(big)]

    up = await raw_upstream(large)
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    client = await Client.open(gw.port)
    count = 400
    try:
        client.writer.transport.pause_reading()  # type: ignore[attr-defined]  # read nothing
        sending = asyncio.ensure_future(client.send(b"".join(chat(f"p{i}") for i in range(count))))
        await asyncio.sleep(1.0)
        buffered = max(
            c.transport.get_write_buffer_size()
            for c in gw.running.front.connections
            if c.transport is not None
        )  # what the gateway holds for the client, beyond what the kernel's buffers took
        assert buffered <= 1024 * 1024, f"{buffered} bytes buffered for a client reading nothing"
        assert len(up.inference()) < count  # (before the fix: 9 MB buffered, all 400 served)
        client.writer.transport.resume_reading()  # type: ignore[attr-defined]
        for i in range(count):  # and once it reads, every reply arrives, in order
            reply = await client.read_reply(within=30)
            assert reply.headers["x-request-id"] == f"p{i}" and len(reply.body) == len(big)
        await sending
    finally:
        await client.close()


async def test_at_the_connection_cap_idle_connections_make_room(
    raw_upstream: RawFactory, gateway: GatewayFactory
) -> None:
    async def slow(seen: Seen) -> list[Step]:
        return [0.5, json_reply(echo(seen))]

    up = await raw_upstream(slow)
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}), max_connections=4)
    idle = [await Client.open(gw.port) for _ in range(4)]
    try:
        for c in idle:
            await c.send(chat("first"))
        for c in idle:  # answered: four keep-alive connections, idle between requests
            assert (await c.read_reply()).status == 200
        raw = await talk(gw, chat("real", extra=b"Connection: close\r\n"))
        (reply,) = responses(raw, ["POST"])
        assert reply.status == 200  # an idle connection was closed to let it in
        busy = [await Client.open(gw.port) for _ in range(4)]
        for c in busy:
            await c.send(chat("busy"))  # four requests in flight: nothing idle to close
        await asyncio.sleep(0.1)
        (full,) = responses(await talk(gw, chat("one-more")), ["POST"])
        assert full.status == 503
        assert full.json()["error"]["code"] == "too_many_connections"  # type: ignore[index]
        assert full.headers["retry-after"] == "1"
        for c in busy:
            assert (await c.read_reply()).status == 200
            await c.close()
    finally:
        for c in idle:
            await c.close()


async def test_a_client_that_stops_reading_is_let_go(
    raw_upstream: RawFactory, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nginx's send_timeout: a socket buffer that stays full for SEND_TIMEOUT_S ends it."""
    from gateway.edge import connection

    monkeypatch.setattr(connection, "SEND_TIMEOUT_S", 0.3)
    big = json.dumps({"pad": "x" * (16 * 1024 * 1024)}).encode()
    up = await raw_upstream(lambda seen: [json_reply(big)])
    gw = await gateway(registry_for({"id": "a", "baseUrl": up.url}))
    client = await Client.open(gw.port)
    try:
        client.writer.transport.pause_reading()  # type: ignore[attr-defined]  # read nothing
        await client.send(chat("stuck"))
        for _ in range(100):  # the gateway drops the connection (bounded wait, no sleep-as-sync)
            await asyncio.sleep(0.05)
            if not gw.running.front.connections:
                break
        assert not gw.running.front.connections
    finally:
        await client.close()

"""HTTP/1.1 edge cases end to end, on raw sockets through the whole gateway — what a client sees
byte for byte. (The client connection's own rules, in memory: test_protocol.py.)"""

from __future__ import annotations

import asyncio
import re

import orjson

from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for
from tests.edge.helpers import sse_payloads

CHAT_BODY = b'{"model":"a/m"}'


def chat(extra: bytes = b"", body: bytes = CHAT_BODY) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def exchange(gw: Gateway, data: bytes, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(data)
        await writer.drain()
        if until_close:
            return await asyncio.wait_for(reader.read(), 10)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def envelope(raw: bytes) -> dict[str, object]:
    body = raw.partition(b"\r\n\r\n")[2]
    error: dict[str, object] = orjson.loads(body)["error"]
    return error


async def test_pipelined_requests_are_answered_in_order(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    closing = chat(b"Connection: close\r\n")
    raw = await exchange(gw, chat() + health + chat(body=b"{}") + closing)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"200", b"200", b"400", b"200"]
    assert raw.index(b"served_by") < raw.index(b'"status":"ok"') < raw.index(b"missing_model")
    assert len(a.inference()) == 2


async def test_http10_client_gets_a_stream_ended_by_close(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", chunks=3)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    body = b'{"model":"a/m","stream":true}'
    raw = await exchange(
        gw,
        b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
    )
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head  # HTTP/1.0 has no chunked framing
    assert (
        head.lower().count(b"content-type:") == 1
    )  # the gateway's SSE headers replace the upstream's
    assert b"Cache-Control: no-cache\r\n" in head
    assert b"Connection: close" in head
    assert [e["served_by"] for e in sse_payloads(rest)] == ["a", "a", "a"]
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_head_on_the_control_plane_has_headers_only(gateway: GatewayFactory) -> None:
    gw = await gateway(registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}))
    raw = await exchange(gw, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: " in head
    assert rest == b""


async def test_inference_route_with_get_is_405(gateway: GatewayFactory) -> None:
    gw = await gateway(registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}))
    resp = await gw.get("/v1/chat/completions")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_idle_connection_is_closed_after_the_keepalive_timeout(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), keepalive_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(chat())
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200 ")
    rest = await asyncio.wait_for(reader.read(), 5)  # ...then the idle connection is closed
    assert rest.endswith(b"}")  # after the complete reply
    writer.close()


async def test_any_head_the_front_accepts_the_control_plane_accepts(
    gateway: GatewayFactory,
) -> None:
    gw = await gateway(registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}))
    big = b"Cookie: " + b"c" * 20_000 + b"\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    raw = await exchange(
        gw, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + big + b"\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 ")  # not aiohttp's plain-text 400
    raw = await exchange(gw, chat(b"".join(b"X-H%d: v\r\n" % i for i in range(300))))
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert envelope(raw)["code"] == "headers_too_large"

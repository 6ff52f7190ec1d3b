"""Fault injection: dead, stalling, broken and huge upstreams; clients that hang up."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.control.state import STATE
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.edge.helpers import sse_payloads
from tests.fakes import GarbageUpstream

CHAT = "/v1/chat/completions"


async def test_stall_mid_stream_ends_with_timeout_event(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", chunks=5, stall_after=2)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}), idle_timeout_s=0.3, sse_keepalive_s=0
    )
    resp = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    events = sse_payloads(await asyncio.wait_for(resp.read(), 10))
    assert [e.get("served_by") for e in events[:2]] == ["a", "a"]
    assert events[-1]["error"]["code"] == "upstream_timeout"
    await asyncio.wait_for(a.cancelled.wait(), 5)  # and the stalled upstream request was dropped


async def test_garbage_mid_stream_ends_with_error_event(gateway: GatewayFactory) -> None:
    junk = await GarbageUpstream().start()
    try:
        # the idle timeout is far: the broken chunk framing itself must end the stream
        gw = await gateway(registry_for({"id": "junk", "baseUrl": junk.url}), idle_timeout_s=30)
        resp = await gw.post(CHAT, json={"model": "junk/m", "stream": True})
        assert resp.status == 200
        raw = await asyncio.wait_for(resp.read(), 10)
        events = sse_payloads(raw)
        assert events[0] == {"choices": [{"delta": {"content": "ok"}}]}
        assert events[-1]["error"] == {
            "message": "provider 'junk' sent a broken response",
            "type": "api_error",
            "param": None,
            "code": "upstream_error",
        }
        assert b"NOT A CHUNK" not in raw
    finally:
        await junk.stop()


async def test_10_mb_reply_passes_through_intact(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", json_size=10 * 1024 * 1024)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(CHAT, json={"model": "a/m"})
    body = await resp.read()
    assert resp.status == 200
    assert len(body) > 10 * 1024 * 1024
    assert orjson.loads(body)["padding"] == "x" * (10 * 1024 * 1024)


async def _hang_up_after_first_event(gw: Any, payload: dict[str, Any]) -> None:
    url = gw.make_url(CHAT)
    async with aiohttp.ClientSession() as client:
        resp = await client.post(url, json=payload)
        if payload.get("stream"):
            await resp.content.readuntil(b"\n\n")
        resp.close()  # the client hangs up mid-answer


async def test_client_hang_up_cancels_a_slow_stream(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", chunks=100, chunk_delay=0.2)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    await _hang_up_after_first_event(gw, {"model": "a/m", "stream": True})
    await asyncio.wait_for(a.cancelled.wait(), 5)  # llama.cpp would stop generating here


async def test_client_hang_up_cancels_a_slow_non_streamed_request(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", first_byte_delay=30)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    async with aiohttp.ClientSession() as client:
        task = asyncio.ensure_future(client.post(gw.make_url(CHAT), json={"model": "a/m"}))
        await asyncio.wait_for(a.arrived.wait(), 5)  # the request reached the upstream
        task.cancel()  # the client gives up before any byte came back
    await asyncio.wait_for(a.cancelled.wait(), 5)


async def test_200_clients_hang_up_and_nothing_is_left(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", chunks=1000, chunk_delay=0.05)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    baseline = len(asyncio.all_tasks())
    await asyncio.gather(
        *(_hang_up_after_first_event(gw, {"model": "a/m", "stream": True}) for _ in range(200))
    )
    await asyncio.wait_for(a.idle.wait(), 20)  # every upstream request was cancelled
    assert len(a.inference()) == 200
    pool = gw.app[STATE].connections

    async def settled() -> None:
        while len(asyncio.all_tasks()) > baseline:  # noqa: ASYNC110 (no event for "tasks ended")
            await asyncio.sleep(0.02)

    await asyncio.wait_for(settled(), 10)  # no handler or helper task left behind
    # no upstream connection left open or pooled half-read: each was closed with its request
    assert pool.busy == 0
    assert pool.idle_count() == 0


async def test_keepalive_comments_while_the_model_loads(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", first_byte_delay=0.5, chunks=2)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), sse_keepalive_s=0.1)
    resp = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    raw = await resp.read()
    assert raw.startswith(b": keep-alive\n\n")
    assert raw.count(b": keep-alive\n\n") >= 3
    assert [e["served_by"] for e in sse_payloads(raw)] == ["a", "a"]
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_keepalive_then_upstream_error_becomes_an_sse_error(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", first_byte_delay=0.35, status=503)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), sse_keepalive_s=0.1)
    resp = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    events = sse_payloads(await resp.read())
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "HTTP 503" in events[-1]["error"]["message"]
    assert "a refused" in events[-1]["error"]["message"]


async def test_no_keepalive_for_non_streamed_requests(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", first_byte_delay=0.35, status=503)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), sse_keepalive_s=0.1)
    resp = await gw.post(CHAT, json={"model": "a/m"})
    assert resp.status == 503  # the real status, not a committed 200

"""Hostile input: each case gets its status, and no upstream sees anything it should not."""

from __future__ import annotations

import asyncio
import io

import pytest

from tests.conftest import GatewayFactory, UpstreamFactory, registry_for

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("model", "status", "reaches_upstream"),
    [
        ("a/../../admin", 200, True),  # a wire id: it travels in the JSON body only
        ("a/..%2F..%2Fprops", 200, True),
        ("../a/m", 400, False),  # unknown provider '..'
        ("%2E%2E/m", 400, False),
        ("a/m\r\nX-Injected: yes", 400, False),
        ("a/m\nHost: evil", 400, False),
        ("a/m\x00", 400, False),
        ("a/" + "x" * 10_000, 400, False),
        ("a/m\u202e", 400, False),  # a bidi control character
    ],
)
async def test_hostile_model_ids(
    upstream: UpstreamFactory,
    gateway: GatewayFactory,
    model: str,
    status: int,
    reaches_upstream: bool,
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(CHAT, json={"model": model})
    assert resp.status == status
    seen = a.inference()
    assert bool(seen) is reaches_upstream
    for request in seen:  # the URL and headers never carry the model id
        assert request.raw_path == CHAT
        assert all(model.split("/", 1)[1] not in v for v in request.headers.values())
        assert request.json()["model"] == model.split("/", 1)[1]
    if status == 400:
        assert (await resp.json())["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),  # nesting: refused by the parser
        (
            b'{"model": "a/m", "x": ' + b'{"y": ' * 2000 + b"1" + b"}" * 2000 + b"}",
            400,
            "invalid_json",
        ),
        (b'{"model": "a/m", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "request_too_large"),
        (b"\xff\xfe{}", 400, "invalid_json"),
    ],
)
async def test_hostile_bodies_refused_cheaply(
    upstream: UpstreamFactory, gateway: GatewayFactory, body: bytes, status: int, code: str
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), max_body_bytes=1024 * 1024)
    resp = await gw.post(CHAT, data=io.BytesIO(body), headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code
    assert a.inference() == []
    # and the gateway still serves everyone else
    assert (await gw.post(CHAT, json={"model": "a/m"})).status == 200


async def test_slow_body_is_cut_off(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), body_timeout_s=0.3)
    assert gw.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()  # ...and then nothing more: a slow-loris body
    head = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in head
    assert a.inference() == []

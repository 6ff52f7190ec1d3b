"""One JSON line per request, with the fields an operator needs, and never a key."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import orjson
import pytest

from gateway.core import logging as gwlogging
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for


@pytest.fixture
def log_lines() -> Iterator[io.BytesIO]:
    buf = io.BytesIO()
    gwlogging.configure("json", stream=buf, cache=False)
    yield buf
    gwlogging.reset()


def _requests(buf: io.BytesIO) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "request"]


async def test_one_line_per_request_with_routing_fields(
    upstream: UpstreamFactory, gateway: GatewayFactory, log_lines: io.BytesIO
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url, "apiKey": "sk-never-logged"}),
        env={"DEEPSEEK_API_KEY": "sk-cloud-never-logged"},
    )
    resp = await gw.post(
        "/v1/chat/completions",
        json={"model": "a/qwen3", "stream": True},
        headers={"Authorization": "Bearer client-secret"},
    )
    body = await resp.read()
    await gw.post("/v1/chat/completions", json={"model": "zz/qwen3"})
    (ok, bad) = _requests(log_lines)
    assert ok["request_id"] == resp.headers["X-Request-Id"]
    assert (ok["model"], ok["provider"], ok["wire_model"], ok["status"]) == (
        "a/qwen3",
        "a",
        "qwen3",
        200,
    )
    assert ok["bytes"] == len(body)
    assert isinstance(ok["ttfb_ms"], float) and isinstance(ok["duration_ms"], float)
    assert ok["disconnected"] is False
    assert (bad["status"], bad["error"], bad["provider"]) == (400, "model_not_found", None)
    text = log_lines.getvalue()
    for secret in (b"sk-never-logged", b"sk-cloud-never-logged", b"client-secret"):
        assert secret not in text


async def test_a_request_the_front_refuses_is_logged_too(
    gateway: GatewayFactory, log_lines: io.BytesIO
) -> None:
    gw = await gateway(registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    (line,) = _requests(log_lines)
    assert (line["status"], line["error"]) == (400, "invalid_http")
    assert f"X-Request-Id: {line['request_id']}".encode() in raw

"""The Anthropic Messages API on the same base URL: routed like the OpenAI routes, Anthropic's
error envelope, the right key header toward each upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for
from tests.edge.wire import Client, responses

MESSAGES = "/v1/messages"
BODY: dict[str, Any] = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC = {"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"}


def anthropic_error(body: bytes) -> dict[str, Any]:
    """The Anthropic envelope, exactly: {"type": "error", "error": {"type", "message"}}."""
    data = orjson.loads(body)
    assert set(data) == {"type", "error"} and data["type"] == "error", data
    assert set(data["error"]) == {"type", "message"}, data
    error: dict[str, Any] = data["error"]
    return error


async def test_each_composite_id_lands_on_its_machine_streaming_or_not(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    for pid, fake in (("a", a), ("b", b)):
        resp = await gw.post(MESSAGES, json={**BODY, "model": f"{pid}/qwen3"}, headers=ANTHROPIC)
        assert resp.status == 200
        assert resp.headers["X-Gateway-Provider"] == pid
        message = await resp.json()
        assert message["served_by"] == fake.name and message["usage"]["output_tokens"] == 3
        resp = await gw.post(
            MESSAGES, json={**BODY, "model": f"{pid}/qwen3", "stream": True}, headers=ANTHROPIC
        )
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
        assert raw.startswith(b"event: message_start\ndata: ")
        assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        assert raw.count(b"content_block_delta") == 2 * fake.chunks
        seen = fake.inference(MESSAGES)
        assert [s.json()["model"] for s in seen] == ["qwen3", "qwen3"]  # the bare wire id
        assert all(s.headers["anthropic-version"] == "2023-06-01" for s in seen)
        assert all(s.headers["anthropic-beta"] == "tools-2024-04-04" for s in seen)
    assert a.inference() == [] and b.inference() == []  # no chat completions were made


async def test_count_tokens_is_routed_too(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    resp = await gw.post(MESSAGES + "/count_tokens", json={**BODY, "model": "b/qwen3"})
    assert resp.status == 200
    assert (await resp.json()) == {"input_tokens": 7, "served_by": "machine-b"}
    assert len(b.inference(MESSAGES + "/count_tokens")) == 1
    assert a.requests == [r for r in a.requests if r.method == "GET"]


async def test_deepseek_serves_it_under_anthropic_with_its_own_key(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    cloud, box = await upstream("deepseek-cloud"), await upstream("embedding-box")
    gw = await gateway(
        registry_for(
            {"id": "embedding", "baseUrl": box.url},
            {"id": "deepseek", "baseUrl": cloud.url, "kind": "deepseek", "apiKey": "sk-cloud"},
        )
    )
    headers = {**ANTHROPIC, "x-api-key": "sk-client", "Authorization": "Bearer sk-client"}
    resp = await gw.post(MESSAGES, json={**BODY, "model": "deepseek/deepseek-chat"},
                         headers=headers)  # fmt: skip
    assert resp.status == 200 and (await resp.json())["served_by"] == "deepseek-cloud"
    (seen,) = cloud.inference("/anthropic/v1/messages")
    assert seen.headers.getall("x-api-key") == ["sk-cloud"]
    assert seen.headers.getall("Authorization") == ["Bearer sk-cloud"]  # never the client's
    assert seen.json()["model"] == "deepseek-chat"
    resp = await gw.post(MESSAGES, json={**BODY, "model": "embedding/deepseek-r1"},
                         headers=headers)  # fmt: skip
    assert (await resp.json())["served_by"] == "embedding-box"  # the name's shape means nothing
    (local,) = box.inference(MESSAGES)
    assert local.headers["x-api-key"] == "sk-client"  # a local machine: the client's own key
    assert len(cloud.inference("/anthropic/v1/messages")) == 1


async def test_a_provider_without_the_api_gets_a_400_naming_it_unless_configured(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    cloud = await upstream("generic-cloud")
    gw = await gateway(
        registry_for(
            {"id": "oai", "baseUrl": cloud.url, "kind": "openai"},
            {"id": "oai2", "baseUrl": cloud.url, "kind": "openai",
             "anthropicBaseUrl": cloud.url + "/compat"},
        )
    )  # fmt: skip
    resp = await gw.post(MESSAGES, json={**BODY, "model": "oai/gpt"})
    assert resp.status == 400
    error = anthropic_error(await resp.read())
    assert error["type"] == "invalid_request_error"
    assert "provider 'oai' has no Anthropic Messages API" in error["message"]
    assert "anthropicBaseUrl" in error["message"]
    resp = await gw.post(MESSAGES, json={**BODY, "model": "oai2/gpt"})
    assert resp.status == 200
    assert len(cloud.inference("/compat/v1/messages")) == 1


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{nope", 400, "invalid_request_error"),
        (b'{"messages": []}', 400, "invalid_request_error"),
        (b'{"model": "nope/x"}', 400, "invalid_request_error"),
        (b'{"model": "a/x", "model": "b/x"}', 400, "invalid_request_error"),
    ],
)
async def test_bad_requests_get_anthropics_envelope(
    upstream: UpstreamFactory, gateway: GatewayFactory, body: bytes, status: int, kind: str
) -> None:
    a = await upstream("a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": a.url}))
    resp = await gw.post(MESSAGES, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert anthropic_error(await resp.read())["type"] == kind
    chat = await gw.post("/v1/chat/completions", data=body)  # the OpenAI routes keep theirs
    assert set((await chat.json())["error"]) == {"message", "type", "param", "code"}


async def test_keys_timeouts_and_full_lanes_in_anthropics_envelope(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    slow = await upstream("slow", first_byte_delay=5)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": slow.url, "maxConcurrent": 1, "maxQueue": 0}),
        api_keys=("k-1",), first_byte_timeout_s=0.3,
    )  # fmt: skip
    resp = await gw.post(MESSAGES, json={**BODY, "model": "a/m"})
    assert resp.status == 401
    assert anthropic_error(await resp.read())["type"] == "authentication_error"
    key = {"x-api-key": "k-1"}  # what Anthropic clients send
    first = asyncio.ensure_future(gw.post(MESSAGES, json={**BODY, "model": "a/m"}, headers=key))
    await slow.arrived.wait()
    busy = await gw.post(MESSAGES, json={**BODY, "model": "a/m"}, headers=key)
    assert busy.status == 429 and "Retry-After" in busy.headers
    assert anthropic_error(await busy.read())["type"] == "rate_limit_error"
    timed_out = await first
    assert timed_out.status == 504
    assert anthropic_error(await timed_out.read())["type"] == "timeout_error"
    assert "x-api-key" not in slow.inference(MESSAGES)[0].headers  # the gateway's key stays


async def test_a_stream_that_fails_midway_ends_with_an_error_event(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", stall_after=3)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), idle_timeout_s=0.3)
    resp = await gw.post(MESSAGES, json={**BODY, "model": "a/m", "stream": True})
    assert resp.status == 200
    raw = await resp.read()
    head, _, last = raw.rstrip(b"\n").rpartition(b"\n\n")
    assert b"event: content_block_delta" in head
    event, _, data = last.partition(b"\n")
    assert event == b"event: error"
    assert anthropic_error(data.removeprefix(b"data: "))["type"] == "timeout_error"


async def test_refusals_by_the_front_use_the_routes_envelope(gateway: GatewayFactory) -> None:
    gw: Gateway = await gateway(
        registry_for({"id": "a", "baseUrl": "http://127.0.0.1:9"}), max_body_bytes=100
    )
    client = await Client.open(gw.port)
    try:
        await client.send(
            b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
        )
        (reply,) = responses(await client.read_all(), ["POST"])
    finally:
        await client.close()
    assert reply.status == 413
    assert anthropic_error(reply.body)["type"] == "request_too_large"

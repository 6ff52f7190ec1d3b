"""The forwarding path, end to end through a real gateway server and real fake upstreams."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cli.launcher import free_port
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.edge.helpers import RecordingWire, sse_payloads
from tests.fakes import FakeUpstream

CHAT = "/v1/chat/completions"


async def test_two_providers_each_stream_from_their_own_machine(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    for pid, fake in (("a", a), ("b", b)):
        resp = await gw.post(CHAT, json={"model": f"{pid}/m", "stream": True, "messages": []})
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Gateway-Provider"] == pid
        raw = await resp.read()
        assert raw.endswith(b"data: [DONE]\n\n")
        assert {p["served_by"] for p in sse_payloads(raw)} == {fake.name}
    assert len(a.inference()) == len(b.inference()) == 1


async def test_same_wire_name_on_two_machines_never_confused(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    order = ["a", "b", "b", "a", "b"]
    for pid in order:
        resp = await gw.post(CHAT, json={"model": f"{pid}/qwen3.6-35b-a3b", "messages": []})
        body = await resp.json()
        assert body["served_by"] == f"machine-{pid}"
    assert len(a.inference()) == 2 and len(b.inference()) == 3
    # the bare wire id goes upstream
    assert {r.json()["model"] for r in a.inference() + b.inference()} == {"qwen3.6-35b-a3b"}


async def test_bare_id_goes_to_default_provider_with_body_unchanged(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}, default="b")
    )
    raw = b'{"model": "qwen3.6-35b-a3b",  "messages": [], "temperature": 0.10000000000000001}'
    resp = await gw.post(CHAT, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    assert resp.headers["X-Gateway-Provider"] == "b"
    assert b.inference()[0].body == raw  # byte for byte: nothing to rewrite
    assert a.inference() == []


async def test_everything_but_model_passes_through(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    body = {
        "model": "a/org/model-q4",
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "hmm",
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x":1}'},
                    }
                ],
            }
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "auto",
        "x_unknown_field": {"nested": [1, 2.5, "ü", None, True]},
        "stream_options": {"include_usage": True},
    }
    resp = await gw.post(CHAT, json=body)
    assert resp.status == 200
    seen = a.inference()[0].json()
    assert seen == {**body, "model": "org/model-q4"}


@pytest.mark.parametrize(
    "path", ["/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/responses"]
)
async def test_other_model_addressed_routes(
    upstream: UpstreamFactory, gateway: GatewayFactory, path: str
) -> None:
    a, b = await upstream("machine-a"), await upstream("machine-b")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    resp = await gw.post(path, json={"model": "b/e5", "input": "x"})
    assert resp.status == 200
    assert resp.headers["X-Gateway-Provider"] == "b"
    assert [r.path for r in b.requests if r.method == "POST"] == [path]
    assert b.inference(path)[0].json()["model"] == "e5"
    assert [r for r in a.requests if r.method == "POST"] == []


async def test_deepseek_collision(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    cloud, emb = await upstream("cloud", models=["deepseek-chat"]), await upstream("embedding")
    gw = await gateway(
        registry_for({"id": "embedding", "baseUrl": emb.url}),
        env={"DEEPSEEK_API_KEY": "sk-gateway-key", "DEEPSEEK_BASE_URL": cloud.url},
    )
    headers = {"Authorization": "Bearer client-token"}
    resp = await gw.post(
        CHAT, json={"model": "deepseek/deepseek-chat", "messages": []}, headers=headers
    )
    assert (await resp.json())["served_by"] == "cloud"
    resp = await gw.post(
        CHAT, json={"model": "embedding/deepseek-r1-qwen3-8b", "messages": []}, headers=headers
    )
    assert (await resp.json())["served_by"] == "embedding"
    (to_cloud,) = cloud.inference()
    (to_local,) = emb.inference()
    assert to_cloud.json()["model"] == "deepseek-chat"
    assert to_cloud.headers["Authorization"] == "Bearer sk-gateway-key"
    assert to_local.json()["model"] == "deepseek-r1-qwen3-8b"
    assert to_local.headers["Authorization"] == "Bearer client-token"  # local: the client's own
    assert "sk-gateway-key" not in str(to_local.headers)


async def test_sidecar_only_for_its_provider(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    base, sidecar, other = (
        await upstream("base"),
        await upstream("sidecar"),
        await upstream("other"),
    )
    gw = await gateway(
        registry_for(
            {"id": "sam", "baseUrl": base.url, "sidecarUrl": sidecar.url},
            {"id": "emb", "baseUrl": other.url},
        )
    )
    assert (await (await gw.post(CHAT, json={"model": "sam/m"})).json())["served_by"] == "sidecar"
    assert (await (await gw.post(CHAT, json={"model": "emb/m"})).json())["served_by"] == "other"
    assert (await (await gw.post(CHAT, json={"model": "m"})).json())["served_by"] == "sidecar"
    assert base.inference() == []  # inference never goes to the base when a sidecar exists
    assert len(sidecar.inference()) == 2 and len(other.inference()) == 1
    # the catalog asks the base, not the sidecar
    assert any(r.path == "/v1/models" for r in base.requests)
    assert not any(r.path == "/v1/models" for r in sidecar.requests)


async def test_upstream_error_status_and_body_pass_through(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", status=503)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(CHAT, json={"model": "a/m"})
    assert resp.status == 503
    assert (await resp.json())["error"]["message"] == "machine-a refused"
    assert resp.headers["X-Gateway-Provider"] == "a"


async def test_request_id_on_every_response(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    stream = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    await stream.read()
    for resp in (
        stream,
        await gw.post(CHAT, json={"model": "a/m"}),
        await gw.post(CHAT, data=b"{"),
        await gw.get("/v1/models"),
        await gw.get("/health"),
        await gw.get("/nowhere"),
    ):
        assert len(resp.headers["X-Request-Id"]) == 32
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers={"X-Request-Id": "trace-123"})
    assert resp.headers["X-Request-Id"] == "trace-123"
    assert a.inference()[-1].headers["X-Request-Id"] == "trace-123"  # correlates with the upstream


async def test_streams_chunks_as_they_arrive(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", chunks=3, chunk_delay=0.3)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    # the first event reaches the client while the upstream is still generating
    assert b"machine-a-0" in first
    assert len(a.inference()) == 1 and not resp.content.at_eof()
    rest = await resp.read()
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_midstream_failure_ends_with_an_sse_error_event(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", midstream_reset=True)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    resp = await gw.post(CHAT, json={"model": "a/m", "stream": True})
    assert resp.status == 200
    events = sse_payloads(await resp.read())
    assert events[0]["served_by"] == "machine-a"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert set(events[-1]["error"]) == {"message", "type", "param", "code"}


async def test_client_authorization_forwarding(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), api_keys=("gw-key",))
    resp = await gw.post(CHAT, json={"model": "a/m"}, headers={"Authorization": "Bearer gw-key"})
    assert resp.status == 200
    assert "Authorization" not in a.inference()[0].headers  # the gateway's key is not the machine's


async def test_gateway_keys(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), api_keys=("k1", "k2"))
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Bearer k2"}, 200),
        ({"x-api-key": "k1"}, 200),
    ):
        resp = await gw.post(CHAT, json={"model": "a/m"}, headers=headers)
        assert resp.status == status
        if status == 401:
            assert (await resp.json())["error"]["type"] == "authentication_error"
    assert (await gw.get("/v1/models")).status == 401
    assert (await gw.get("/health")).status == 200
    assert len(a.inference()) == 2


async def test_unreachable_upstream_is_502_naming_provider_not_key(gateway: GatewayFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    gw = await gateway(registry_for({"id": "dead", "baseUrl": url, "apiKey": "sk-hidden"}))
    resp = await gw.post(CHAT, json={"model": "dead/m", "stream": True})
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_unreachable"
    assert "'dead'" in body["error"]["message"]
    assert "sk-hidden" not in await resp.text()


async def test_upstream_timeout_is_504(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    slow: FakeUpstream = await upstream("slow", first_byte_delay=5)
    gw = await gateway(registry_for({"id": "slow", "baseUrl": slow.url}), first_byte_timeout_s=0.3)
    resp = await gw.post(CHAT, json={"model": "slow/m"})
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"
    await asyncio.wait_for(slow.cancelled.wait(), 5)  # and the upstream request was dropped


async def test_a_burst_of_tokens_leaves_in_few_writes_first_and_last_at_once() -> None:
    """An upstream that writes each token as fast as it can: the first token goes out with the
    head at once, the burst joins one write within COALESCE_S, the end goes out at once."""
    from gateway.edge.coalesce import COALESCE_S
    from gateway.edge.relay import Exchange, Timing
    from gateway.edge.reply import Reply
    from gateway.edge.streams import Streams

    wire = RecordingWire()
    reply = Reply(wire, keep_alive=True, to_head=False)
    ex = Exchange(reply=reply, log=None, timing=Timing(10, 10, 0), provider_id="a",
                  added_lines=b"", stream=True, streams=Streams())  # fmt: skip
    ex.on_head(200, [(b"Content-Type", b"text/event-stream")], None)
    ex.flush()
    assert wire.sent == []  # a head alone waits (a moment) for the first token
    ex.on_data(b"data: 1\n\n")
    ex.flush()
    assert len(wire.sent) == 1 and wire.sent[0].endswith(b"data: 1\n\n\r\n")  # at once
    for n in range(2, 50):
        ex.on_data(b"data: %d\n\n" % n)
        ex.flush()
    assert len(wire.sent) == 1  # the burst is held...
    await asyncio.sleep(COALESCE_S * 3)
    assert len(wire.sent) == 2 and wire.sent[1].count(b"data: ") == 48  # ...and leaves as one
    ex.on_data(b"data: [DONE]\n\n")
    ex.on_end()
    assert len(wire.sent) == 3 and wire.sent[2].endswith(b"0\r\n\r\n")  # the end: at once


async def test_a_head_alone_is_not_held_longer_than_the_window() -> None:
    from gateway.edge.coalesce import COALESCE_S
    from gateway.edge.relay import Exchange, Timing
    from gateway.edge.reply import Reply
    from gateway.edge.streams import Streams

    wire = RecordingWire()
    reply = Reply(wire, keep_alive=True, to_head=False)
    ex = Exchange(reply=reply, log=None, timing=Timing(10, 10, 0), provider_id="a",
                  added_lines=b"", stream=True, streams=Streams())  # fmt: skip
    ex.on_head(200, [(b"Content-Type", b"text/event-stream")], None)
    ex.flush()
    await asyncio.sleep(COALESCE_S * 3)
    assert len(wire.sent) == 1 and wire.sent[0].startswith(b"HTTP/1.1 200 OK\r\n")
    ex.cancel()

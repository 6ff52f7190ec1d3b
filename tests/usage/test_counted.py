"""Token usage through the whole gateway: every successful reply counted per machine, model and
kind from its last bytes, streamed or not, asked for or not; the client's bytes untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.control.state import STATE
from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for
from tests.promtext import tokens

CHAT = "/v1/chat/completions"


async def test_every_reply_is_counted_streamed_or_not(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], timings=(14, 116, 8))
    b = await upstream("b", models=["m"], timings=(100, 0, 5))
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    await catalog_of(gw).wait_ready()  # (a model is named once the catalog lists it)
    for body in (
        {"model": "a/m"},  # JSON: usage + timings
        {"model": "a/m", "stream": True},  # stream: llama-server's timings only
        {"model": "a/m", "stream": True, "stream_options": {"include_usage": True}},
        {"model": "b/m", "stream": True},
    ):
        resp = await gw.post(CHAT, json=body)
        assert resp.status == 200
        await resp.read()
    counted = tokens((await (await gw.get("/metrics")).read()).decode())
    assert counted == {
        ("a", "m", "prompt"): 3 * 130, ("a", "m", "completion"): 3 * 8,
        ("a", "m", "cached"): 3 * 116,
        ("b", "m", "prompt"): 100, ("b", "m", "completion"): 5, ("b", "m", "cached"): 0,
    }  # fmt: skip
    metrics = (await (await gw.get("/metrics")).read()).decode()
    assert 'gateway_prompt_cache_ratio{provider="a"} 0.892' in metrics  # 116 / 130
    assert 'gateway_prompt_cache_ratio{provider="b"} 0.0' in metrics


async def test_the_clients_bytes_are_what_the_machine_sent(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], timings=(14, 116, 8))
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession() as direct:
        resp = await direct.post(a.url + CHAT, json=body)
        straight = await resp.read()
    resp = await gw.post(CHAT, json=body)
    assert await asyncio.wait_for(resp.read(), 10) == straight  # usage read, nothing changed


async def test_a_model_the_machine_does_not_list_is_counted_without_its_name(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """A plain llama-server answers any model name: labels only name listed models."""
    a = await upstream("a", models=["m"], timings=(1, 0, 2))
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    await catalog_of(gw).wait_ready()
    for i in range(3):
        await (await gw.post(CHAT, json={"model": f"a/made-up-{i}"})).read()
    counted = tokens((await (await gw.get("/metrics")).read()).decode())
    assert counted == {("a", "", "prompt"): 3, ("a", "", "completion"): 6, ("a", "", "cached"): 0}


async def test_failed_replies_count_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["m"], timings=(1, 0, 2), status=500)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    await (await gw.post(CHAT, json={"model": "a/m"})).read()
    assert tokens((await (await gw.get("/metrics")).read()).decode()) == {}


async def test_usage_api_sums_per_key_label_and_never_shows_a_key(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    a = await upstream("a", models=["m"], timings=(10, 0, 4))
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}), api_keys=("alice:sk-alice-1", "sk-bare-2")
    )
    await catalog_of(gw).wait_ready()
    for key, times in (("sk-alice-1", 2), ("sk-bare-2", 1)):
        for _ in range(times):
            resp = await gw.post(
                CHAT, json={"model": "a/m"}, headers={"Authorization": f"Bearer {key}"}
            )
            assert resp.status == 200
            await resp.read()
    auth = {"Authorization": "Bearer sk-alice-1"}
    body = await (await gw.get("/api/usage?group_by=key,provider,model", headers=auth)).json()
    assert [(r["key"], r["provider"], r["model"], r["requests"], r["promptTokens"],
             r["completionTokens"]) for r in body["rows"]] == [
        ("alice", "a", "m", 2, 20, 8), ("key2", "a", "m", 1, 10, 4)
    ]  # fmt: skip
    assert "sk-" not in str(body)
    await gw.app[STATE].usage.flush()
    assert (
        b"sk-" not in (tmp_path / "data" / "usage.sqlite3").read_bytes()
    )  # labels only, in the file
    for bad in ("group_by=secret", "since=yesterday", "group_by=key,key", "since=1h&until=2h"):
        resp = await gw.get(f"/api/usage?{bad}", headers=auth)
        error = (await resp.json())["error"]
        assert resp.status == 400 and error["code"] == "invalid_parameter", bad
    assert (await gw.get("/api/usage")).status == 401  # the usage API needs a key like /api/*

"""GET /api/models: the provider-grouped catalog, joined with favorites."""

from __future__ import annotations

from typing import Any

from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for


async def test_providers_grouped_local_then_cloud_with_status(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    cloud = await upstream("cloud", models=["deepseek-chat"])
    a = await upstream("a", models=["qwen3"], n_ctx=4096)
    b = await upstream("b", models=["qwen3"], n_ctx=8192)
    gw = await gateway(
        registry_for(
            {
                "id": "oa",
                "label": "OpenAI-ish",
                "baseUrl": cloud.url,
                "kind": "openai",
                "apiKey": "sk-secret",
            },
            {"id": "a", "label": "Box A", "baseUrl": a.url},
            {"id": "b", "baseUrl": b.url},
            {"id": "gone", "baseUrl": "http://127.0.0.1:9"},
        )
    )
    resp = await gw.get("/api/models")
    assert "sk-secret" not in await resp.text()
    body = await resp.json()
    assert body["defaultProvider"] == "oa"
    assert "favorites" not in body
    rows = [(p["id"], p["group"], p["kind"], p["status"]) for p in body["providers"]]
    assert rows == [
        ("a", "local", "llama-swap", "online"),
        ("b", "local", "llama-swap", "online"),
        ("gone", "local", "llama-swap", "offline"),
        ("oa", "cloud", "openai", "online"),
    ]
    a_row = body["providers"][0]
    assert a_row["label"] == "Box A"
    assert a_row["lastSeen"].endswith("+00:00")
    assert a_row["lastError"] is None
    assert a_row["models"] == [
        {
            "id": "a/qwen3",
            "provider": "a",
            "wire": "qwen3",
            "contextWindow": 4096,
            "capabilities": None,
            "state": "loaded",  # a plain llama-server (no /running): its model always loaded
        }
    ]
    assert [p["mode"] for p in body["providers"]] == ["llama-server", "llama-server", None, None]
    assert "state" not in body["providers"][3]["models"][0]  # a cloud model has none
    assert body["providers"][1]["models"][0]["id"] == "b/qwen3"  # same wire name: a distinct entry
    assert body["providers"][2]["lastError"].startswith("provider 'gone' is unreachable")


async def _favorites(gw: Any) -> list[str]:
    body = await (await gw.get("/api/models?favorites=1")).json()
    assert next(iter(body)) == "favorites"  # the favorites section comes first
    ids = [m["id"] for m in body["favorites"]]
    in_groups = {m["id"] for p in body["providers"] for m in p["models"]}
    assert set(ids) <= in_groups  # each favorite is still in its provider group
    return ids


async def test_favorites_of_a_machine_that_stopped_answering_are_hidden_at_once(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """The smoke matrix: star models on two providers, refresh, unplug one, refresh."""
    a = await upstream("a", models=["qwen3"])
    b = await upstream("b", models=["qwen3"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    await gw.patch("/api/settings", json={"favorite_models": ["a/qwen3", "b/qwen3"]})
    assert await _favorites(gw) == ["a/qwen3", "b/qwen3"]
    b.down = True
    await catalog_of(gw).refresh()
    body = await (await gw.get("/api/models?favorites=1")).json()
    assert body["providers"][1]["status"] == "stale"  # still listed, within the offline window
    assert [m["id"] for m in body["providers"][1]["models"]] == ["b/qwen3"]
    assert [m["id"] for m in body["favorites"]] == ["a/qwen3"]  # but not offered as a favorite
    stored = (await (await gw.get("/api/settings")).json())["favorite_models"]
    assert stored == ["a/qwen3", "b/qwen3"]  # hidden, not deleted
    b.down = False
    await catalog_of(gw).refresh()
    assert await _favorites(gw) == ["a/qwen3", "b/qwen3"]


async def test_favorites_hidden_while_offline_and_never_deleted(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["qwen3", "gemma"])
    b = await upstream("b", models=["qwen3"])
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}),
        offline_after_s=0.000001,  # one failed refresh and a provider is offline
    )
    favorites = ["b/qwen3", "a/gone-model", "a/gemma", "qwen3"]
    await gw.patch("/api/settings", json={"favorite_models": favorites})
    assert await _favorites(gw) == ["b/qwen3", "a/gemma", "a/qwen3"]  # a/gone-model: not served

    catalog = catalog_of(gw)
    b.down = True
    await catalog.refresh()
    assert await _favorites(gw) == ["a/gemma", "a/qwen3"]
    body = await (await gw.get("/api/models")).json()
    assert body["providers"][1]["status"] == "offline"
    stored = (await (await gw.get("/api/settings")).json())["favorite_models"]
    assert stored == ["b/qwen3", "a/gone-model", "a/gemma", "a/qwen3"]  # kept

    b.down = False
    a.models = ["qwen3", "gemma", "gone-model"]
    await catalog.refresh()
    assert await _favorites(gw) == ["b/qwen3", "a/gone-model", "a/gemma", "a/qwen3"]


async def test_each_machine_shows_its_slots_queue_and_generation_rate(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream(
        "a", models=["m"], props_n_ctx={"m": 4096}, total_slots=4, timings=(10, 0, 120)
    )
    b = await upstream("b", models=["m"])
    gw = await gateway(
        registry_for(
            {"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url, "maxConcurrent": 2}
        )
    )
    payload = {"model": "a/m", "messages": [{"role": "user", "content": "hi"}]}
    async with gw.post("/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200
    async with gw.get("/api/models") as resp:
        machines = {p["id"]: p for p in (await resp.json())["providers"]}
    assert machines["a"]["slots"] == {"busy": 0, "total": 4}  # llama-server's total_slots
    assert machines["b"]["slots"] == {"busy": 0, "total": 2}  # else its maxConcurrent
    assert machines["a"]["queued"] == 0
    assert machines["a"]["tokensPerSecond"] == 2.0  # 120 generated tokens over the last minute
    assert (
        machines["a"]["tokensPerMinute"][-1] == 120 and len(machines["a"]["tokensPerMinute"]) == 60
    )
    assert machines["b"]["tokensPerSecond"] == 0.0

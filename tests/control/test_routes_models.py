from __future__ import annotations

from gateway.cli.launcher import free_port
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for


async def test_lists_composite_ids_from_every_provider(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", models=["qwen3", "org/model-q4"])
    b = await upstream("machine-b", models=["qwen3"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    body = await (await gw.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [(m["id"], m["owned_by"], m["object"]) for m in body["data"]] == [
        ("a/qwen3", "a", "model"),
        ("a/org/model-q4", "a", "model"),
        ("b/qwen3", "b", "model"),
        ("any/qwen3", "auto-pool", "model"),  # two machines list qwen3: a pool of them
    ]


async def test_dead_provider_does_not_fail_the_list(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", models=["qwen3"])
    broken = await upstream("broken", down=True)
    gw = await gateway(
        registry_for(
            {"id": "dead", "baseUrl": f"http://127.0.0.1:{free_port()}"},
            {"id": "broken", "baseUrl": broken.url},
            {"id": "a", "baseUrl": a.url},
        )
    )
    resp = await gw.get("/v1/models")
    assert resp.status == 200
    assert [m["id"] for m in (await resp.json())["data"]] == ["a/qwen3"]
    health = await (await gw.get("/health")).json()
    assert {k: v["status"] for k, v in health["providers"].items()} == {
        "dead": "offline",
        "broken": "offline",
        "a": "online",
    }


async def test_models_served_from_catalog_not_per_request(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a")
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    for _ in range(5):
        assert (await gw.get("/v1/models")).status == 200
    assert len([r for r in a.requests if r.path == "/v1/models"]) == 1

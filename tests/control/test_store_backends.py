"""The gateway on each store — the SQLite default and PostgreSQL — through its routes: settings
and favorites, usage history, learned facts, /health naming the store."""

from __future__ import annotations

from typing import Any

from gateway.control.state import STATE
from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for


async def test_settings_usage_and_health_on_each_store(
    upstream: UpstreamFactory, gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    a = await upstream("a", models=["m"], timings=(10, 0, 4))
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), **store)
    await catalog_of(gw).wait_ready()
    resp = await gw.patch("/api/settings", json={"favorite_models": ["a/m"], "theme": "dark"})
    assert resp.status == 200, await resp.text()
    assert (await (await gw.get("/api/settings")).json())["favorite_models"] == ["a/m"]
    resp = await gw.post("/v1/chat/completions", json={"model": "a/m"})
    assert resp.status == 200
    await resp.read()
    await gw.app[STATE].usage.flush()  # written to the store now
    rows = (await (await gw.get("/api/usage?group_by=provider")).json())["rows"]
    assert [(r["provider"], r["requests"], r["promptTokens"]) for r in rows] == [("a", 1, 10)]
    health = await (await gw.get("/health")).json()
    assert health["database"]["kind"] == ("postgresql" if store else "sqlite")
    assert health["database"]["reachable"] is True

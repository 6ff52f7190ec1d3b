"""Registry reload without restart: valid, invalid, and in-flight requests unaffected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.control.state import STATE
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.edge.helpers import sse_payloads


def _reloader(gw: Any) -> Any:
    assert gw.app is not None
    return gw.app[STATE].reloader


async def test_file_change_adds_a_machine(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    a, b = await upstream("a"), await upstream("b", models=["gemma"])
    path = tmp_path / "reg.json"
    path.write_text(json.dumps(registry_for({"id": "a", "baseUrl": a.url})))
    gw = await gateway(json.loads(path.read_text()), providers_path=path, reload_poll_s=0.05)
    assert (await gw.post("/v1/chat/completions", json={"model": "b/gemma"})).status == 400
    # adding a machine is: edit the file, nothing else
    path.write_text(
        json.dumps(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    )

    async def has_b() -> None:
        while "b/gemma" not in [  # noqa: ASYNC110 (polls the API, as a client would)
            m["id"] for m in (await (await gw.get("/v1/models")).json())["data"]
        ]:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(has_b(), 10)
    resp = await gw.post("/v1/chat/completions", json={"model": "b/gemma"})
    assert (await resp.json())["served_by"] == "b"


async def test_invalid_file_keeps_last_good_registry(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    a = await upstream("a")
    path = tmp_path / "reg.json"
    path.write_text(json.dumps(registry_for({"id": "a", "baseUrl": a.url})))
    gw = await gateway(json.loads(path.read_text()), providers_path=path, reload_poll_s=0)
    path.write_text(json.dumps({"providers": [{"id": "a", "baseUrl": "nope"}]}))
    assert _reloader(gw).reload() is False  # what SIGHUP runs
    health = await (await gw.get("/health")).json()
    assert (
        health["registryError"]
        == f"{path}: providers[0].baseUrl: must be an absolute http:// or https:// URL with a host"
    )
    assert (await gw.post("/v1/chat/completions", json={"model": "a/m"})).status == 200
    path.write_text(
        json.dumps(registry_for({"id": "a", "baseUrl": a.url}, {"id": "c", "baseUrl": a.url}))
    )
    assert _reloader(gw).reload() is True
    assert (await (await gw.get("/health")).json())["registryError"] is None


async def test_in_flight_stream_finishes_on_its_old_route(
    upstream: UpstreamFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    old, new = await upstream("old", chunks=5, chunk_delay=0.1), await upstream("new")
    path = tmp_path / "reg.json"
    path.write_text(json.dumps(registry_for({"id": "box", "baseUrl": old.url})))
    gw = await gateway(json.loads(path.read_text()), providers_path=path, reload_poll_s=0)
    resp = await gw.post("/v1/chat/completions", json={"model": "box/m", "stream": True})
    await resp.content.readuntil(b"\n\n")
    path.write_text(json.dumps(registry_for({"id": "box", "baseUrl": new.url})))  # box moved
    assert _reloader(gw).reload() is True
    rest = await resp.read()
    assert {e["served_by"] for e in sse_payloads(rest)} == {"old"}
    assert rest.endswith(b"data: [DONE]\n\n")
    again = await gw.post("/v1/chat/completions", json={"model": "box/m"})
    assert (await again.json())["served_by"] == "new"

"""Model state and control against fake machines: a llama-server in router mode (detected, not
configured), llama-swap, a plain llama-server, a cloud. `/api/models` states, `POST
/api/models/load|unload`, and every refusal: a 4xx (or 503) in the OpenAI envelope, with nothing
asked of any machine."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, catalog_of, registry_for
from tests.fakes import FakeUpstream

CHANGES = ("/models/load", "/models/unload", "/api/models/unload/", "/upstream/")


def changes(*fakes: FakeUpstream) -> list[str]:
    """Every request that could load or unload something, on any of `fakes`."""
    return [
        r.raw_path for f in fakes for r in f.requests
        if r.path.startswith(CHANGES) and not r.path.endswith("/props")  # (llama-swap's, loaded)
    ]  # fmt: skip


async def fleet_rows(gw: Gateway) -> dict[str, dict[str, Any]]:
    body = await (await gw.get("/api/models")).json()
    return {m["id"]: {**m, "mode": p["mode"]} for p in body["providers"] for m in p["models"]}


async def post(gw: Gateway, action: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with gw.post(f"/api/models/{action}", data=data, **kwargs) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("kind", ["llama-swap", "llama-server", None])
async def test_a_router_is_detected_and_read_without_loading_anything(
    upstream: UpstreamFactory, gateway: GatewayFactory, kind: str | None
) -> None:
    r = await upstream(
        "r", router={"smol-a": "unloaded", "smol-b": "loaded", "vis": "loading"},
        router_modalities={"vis": ["text", "image"]}, total_slots=4,
        props_extra={"chat_template_caps": {"supports_tools": True}},
    )  # fmt: skip
    spec = {"id": "r", "baseUrl": r.url, **({"kind": kind} if kind else {})}
    gw = await gateway(registry_for(spec))
    rows = await fleet_rows(gw)
    assert {cid: (m["state"], m["contextWindow"], m["mode"]) for cid, m in rows.items()} == {
        "r/smol-a": ("unloaded", 2048, "router"),
        "r/smol-b": ("loaded", 2048, "router"),
        "r/vis": ("loading", 2048, "router"),
    }
    assert rows["r/vis"]["capabilities"] == {"vision": True, "audio": False}
    # the loaded model's /props (asked so it cannot load: autoload=false) adds what it says
    assert rows["r/smol-b"]["capabilities"] == {"vision": False, "audio": False, "tools": True}
    assert r.probed() == ["/props", "/props?model=smol-b&autoload=false"]
    assert r.router == {"smol-a": "unloaded", "smol-b": "loaded", "vis": "loading"}
    assert changes(r) == []
    assert catalog_of(gw).residency.slots("r/smol-b") == 4


async def test_llama_swap_and_plain_servers_have_states_too(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    swap = await upstream("swap", models=["a", "b"], running=["a"])
    plain = await upstream("plain", models=["m"])
    cloud = await upstream("cloud", models=["chat"])
    gw = await gateway(registry_for(
        {"id": "swap", "baseUrl": swap.url}, {"id": "plain", "baseUrl": plain.url},
        {"id": "cloud", "baseUrl": cloud.url, "kind": "openai"},
    ))  # fmt: skip
    rows = await fleet_rows(gw)
    assert {cid: (m.get("state"), m["mode"]) for cid, m in rows.items()} == {
        "swap/a": ("loaded", "llama-swap"),
        "swap/b": ("unloaded", "llama-swap"),
        "plain/m": ("loaded", "llama-server"),
        "cloud/chat": (None, None),  # a cloud model has no state
    }


async def test_load_and_unload_on_a_router(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r = await upstream(
        "r", router={"smol-a": "loaded", "smol-b": "unloaded"}, router_load_s=0.3,
        router_max=1, total_slots=2,
    )  # fmt: skip
    gw = await gateway(registry_for({"id": "r", "baseUrl": r.url}))
    status, body = await post(gw, "load", {"model": "r/smol-b"})
    assert (status, body) == (200, {"id": "r/smol-b", "provider": "r", "state": "loaded"})
    assert r.router == {"smol-a": "unloaded", "smol-b": "loaded"}  # --models-max 1
    rows = await fleet_rows(gw)
    assert (rows["r/smol-a"]["state"], rows["r/smol-b"]["state"]) == ("unloaded", "loaded")
    assert catalog_of(gw).residency.slots("r/smol-b") == 2  # its /props, now it is loaded
    # loading what is loaded changes nothing (the router's 400 "already running" is fine)
    assert await post(gw, "load", {"model": "r/smol-b"}) == (200, body)
    assert r.router == {"smol-a": "unloaded", "smol-b": "loaded"}
    status, body = await post(gw, "unload", {"model": "r/smol-b"})
    assert (status, body["state"]) == (200, "unloaded")
    assert r.router == {"smol-a": "unloaded", "smol-b": "unloaded"}
    assert (await post(gw, "unload", {"model": "r/smol-b"}))[1]["state"] == "unloaded"
    loads = [r.json() for r in r.requests if r.path in ("/models/load", "/models/unload")]
    assert loads == [{"model": "smol-b"}] * 4


async def test_a_load_still_going_after_the_wait_is_a_202_loading(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r = await upstream("r", router={"big": "unloaded"}, router_load_s=30)
    gw = await gateway(registry_for({"id": "r", "baseUrl": r.url}), first_byte_timeout_s=0.6)
    status, body = await post(gw, "load", {"model": "r/big"})
    assert (status, body["state"]) == (202, "loading")
    assert (await fleet_rows(gw))["r/big"]["state"] == "loading"


async def test_a_failed_load_on_a_router_is_a_502_naming_it(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r = await upstream("r", router={"bad": "unloaded"}, router_failing={"bad"})
    gw = await gateway(registry_for({"id": "r", "baseUrl": r.url}))
    status, body = await post(gw, "load", {"model": "r/bad"})
    assert (status, body["error"]["code"]) == (502, "upstream_error")
    assert "'r'" in body["error"]["message"] and "exit code 1" in body["error"]["message"]
    assert (await fleet_rows(gw))["r/bad"]["state"] == "unloaded"
    r.router_status = 500
    status, body = await post(gw, "load", {"model": "r/bad"})
    assert status == 502 and "HTTP 500" in body["error"]["message"]


async def test_load_and_unload_on_llama_swap(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    swap = await upstream("swap", models=["a", "org/b"], running=["a"], props_n_ctx={"org/b": 8192})
    gw = await gateway(registry_for({"id": "swap", "baseUrl": swap.url}))
    status, body = await post(gw, "load", {"model": "swap/org/b"})
    assert (status, body["state"]) == (200, "loaded")
    assert swap.running == ["org/b"]
    assert "/upstream/org%2Fb/health" in changes(swap)
    rows = await fleet_rows(gw)
    assert (rows["swap/a"]["state"], rows["swap/org/b"]["state"]) == ("unloaded", "loaded")
    assert rows["swap/org/b"]["contextWindow"] == 8192  # learned now it is loaded
    status, body = await post(gw, "unload", {"model": "swap/org/b"})
    assert (status, body["state"]) == (200, "unloaded")
    assert swap.running == [] and changes(swap)[-1] == "/api/models/unload/org%2Fb"
    swap.swap_unload = False  # a llama-swap before v162 has no per-model unload
    swap.running = ["a"]
    await catalog_of(gw).refresh()
    status, body = await post(gw, "unload", {"model": "swap/a"})
    assert (status, body["error"]["code"]) == (502, "upstream_error")
    assert "v162" in body["error"]["message"] and swap.running == ["a"]


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b"{not json", 400, "invalid_json", "not valid JSON"),
        (b"[]", 400, "invalid_body", "JSON object"),
        ({}, 400, "missing_model", "composite id"),
        ({"model": 7}, 400, "missing_model", "composite id"),
        ({"model": "bad\nid"}, 400, "invalid_model", "composite id"),
        ({"model": "nobody/m"}, 404, "model_not_found", "providers: r, swap, plain, cloud, gone"),
        ({"model": "smol-a"}, 404, "model_not_found", "provider/model"),
        ({"model": "r/typo"}, 404, "model_not_found", "provider 'r' does not list model 'typo'"),
        ({"model": "any/m"}, 400, "cannot_{action}", "is a pool"),
        ({"model": "pool/p"}, 400, "cannot_{action}", "is a pool"),
        ({"model": "cloud/chat"}, 400, "cannot_{action}", "provider 'cloud' is a cloud API"),
        ({"model": "plain/m"}, 400, "cannot_{action}", "provider 'plain' is a plain llama-server"),
        ({"model": "gone/m"}, 503, "provider_unavailable", "provider 'gone' is not answering"),
    ],
)
@pytest.mark.parametrize("action", ["load", "unload"])
async def test_bad_requests_are_refused_and_change_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory, action: str, body: Any, status: int,
    code: str, says: str,
) -> None:  # fmt: skip
    r = await upstream("r", router={"smol-a": "loaded", "m": "unloaded"})
    swap = await upstream("swap", models=["m"], running=["m"])
    plain = await upstream("plain", models=["m"])
    cloud = await upstream("cloud", models=["chat"])
    gone = await upstream("gone", models=["m"])
    registry = registry_for(
        {"id": "r", "baseUrl": r.url}, {"id": "swap", "baseUrl": swap.url},
        {"id": "plain", "baseUrl": plain.url}, {"id": "cloud", "baseUrl": cloud.url,
        "kind": "openai"}, {"id": "gone", "baseUrl": gone.url},
    )  # fmt: skip
    registry["pools"] = {"p": {"members": ["r/m", "swap/m"]}}
    gw = await gateway(registry)
    await catalog_of(gw).refresh()  # gone answered once: its models are known
    gone.down = True
    await catalog_of(gw).refresh()
    before = await fleet_rows(gw)
    got, answer = await post(gw, action, body)
    error = answer["error"]
    assert (got, error["code"]) == (status, code.format(action=action)), error
    assert says in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert changes(r, swap, plain, cloud, gone) == []
    assert await fleet_rows(gw) == before


async def test_the_routes_take_the_gateways_keys(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r = await upstream("r", router={"m": "unloaded"})
    gw = await gateway(registry_for({"id": "r", "baseUrl": r.url}), api_keys=("k-1",))
    assert (await post(gw, "load", {"model": "r/m"}))[0] == 401
    assert (await post(gw, "load", {"model": "r/m"}, headers={"Authorization": "Bearer no"}))[
        0
    ] == 401
    assert changes(r) == []
    status, body = await post(gw, "load", {"model": "r/m"}, headers={"Authorization": "Bearer k-1"})
    assert (status, body["state"]) == (200, "loaded")
    async with gw.get("/api/models/load", headers={"Authorization": "Bearer k-1"}) as resp:
        assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def _served_by(gw: Gateway, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with gw.post("/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        provider: str = resp.headers["X-Gateway-Provider"]
        return provider


async def test_pools_prefer_the_router_that_has_the_model_loaded(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r1 = await upstream("r1", router={"m": "unloaded", "other": "loaded"})
    r2 = await upstream("r2", router={"m": "loaded"})
    gw = await gateway(
        registry_for({"id": "r1", "baseUrl": r1.url}, {"id": "r2", "baseUrl": r2.url})
    )
    assert await _served_by(gw, "any/m") == "r2"  # loaded there; r1 would have to load it
    assert r1.inference() == [] and r2.loaded_on_arrival == [True]
    assert (await post(gw, "load", {"model": "r1/m"}))[0] == 200
    assert (await post(gw, "unload", {"model": "r2/m"}))[0] == 200
    assert r1.router == {"m": "loaded", "other": "unloaded"}
    pool = (await (await gw.get("/api/models")).json())["pools"][0]
    assert [(m["id"], m["loaded"]) for m in pool["members"]] == [("r1/m", True), ("r2/m", False)]
    assert await _served_by(gw, "any/m") == "r1"
    assert r1.loaded_on_arrival == [True]

"""Context windows: cheapest source first, never loading a model, keyed by composite id."""

from __future__ import annotations

from typing import Any

from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for


async def _windows(gw: Any) -> dict[str, int | None]:
    body = await (await gw.get("/api/models")).json()
    return {m["id"]: m["contextWindow"] for p in body["providers"] for m in p["models"]}


async def test_model_list_metadata_wins_and_only_loaded_models_are_asked(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    box = await upstream(
        "box",
        models=["a", "b"],
        context_length={"a": 32768, "b": 8192},
        running=["a"],
        props_n_ctx={"a": 1, "b": 1},
    )
    gw = await gateway(registry_for({"id": "box", "baseUrl": box.url}))
    assert await _windows(gw) == {"box/a": 32768, "box/b": 8192}  # /props's 1 does not win
    assert box.probed() == ["/upstream/a/props"]  # its slots, for pools; b is not loaded


async def test_llama_swap_probes_only_loaded_models(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    swap = await upstream(
        "swap",
        models=["loaded", "cold-1", "cold-2", "org/model"],
        running=["loaded", "org/model"],
        props_n_ctx={"loaded": 65536, "cold-1": 4096, "cold-2": 4096, "org/model": 16384},
    )
    gw = await gateway(registry_for({"id": "swap", "baseUrl": swap.url}))
    assert await _windows(gw) == {
        "swap/loaded": 65536,
        "swap/cold-1": None,
        "swap/cold-2": None,
        "swap/org/model": 16384,
    }
    # only the loaded models were asked, the slash percent-encoded; no unloaded model was touched
    assert sorted(swap.probed()) == ["/upstream/loaded/props", "/upstream/org%2Fmodel/props"]


async def test_window_learned_once_is_kept_after_unload(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    swap = await upstream("swap", models=["m"], running=["m"], props_n_ctx={"m": 32768})
    gw = await gateway(registry_for({"id": "swap", "baseUrl": swap.url}))
    assert await _windows(gw) == {"swap/m": 32768}
    swap.running = []
    await catalog_of(gw).refresh()
    assert await _windows(gw) == {"swap/m": 32768}
    assert swap.probed() == ["/upstream/m/props"]  # and it was not asked again


async def test_plain_llama_server_props(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    server = await upstream("server", models=["only"], running=None, props_n_ctx={"only": 4096})
    gw = await gateway(registry_for({"id": "srv", "baseUrl": server.url}))
    assert await _windows(gw) == {"srv/only": 4096}
    assert server.probed() == ["/props"]


async def test_same_wire_name_keeps_separate_windows(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", models=["qwen3"], n_ctx=4096)
    b = await upstream("b", models=["qwen3"], n_ctx=131072)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    assert await _windows(gw) == {"a/qwen3": 4096, "b/qwen3": 131072}


async def test_deepseek_table_only_for_the_deepseek_provider(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    cloud = await upstream("cloud", models=["deepseek-chat", "deepseek-reasoner"])
    emb = await upstream("embedding", models=["deepseek-chat", "deepseek-r1-qwen3-8b"], running=[])
    gw = await gateway(
        registry_for({"id": "embedding", "baseUrl": emb.url}),
        env={"DEEPSEEK_API_KEY": "k", "DEEPSEEK_BASE_URL": cloud.url},
    )
    assert await _windows(gw) == {
        "embedding/deepseek-chat": None,
        "embedding/deepseek-r1-qwen3-8b": None,
        "deepseek/deepseek-chat": 131072,
        "deepseek/deepseek-reasoner": 131072,
    }
    assert cloud.probed() == [] and emb.probed() == []


async def test_capabilities_from_props_reach_the_model_lists(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    """A vision model whose template renders tools: said by /props, shown where agents look."""
    box = await upstream("box", models=["vl"], props_n_ctx={"vl": 8192}, props_extra={
        "modalities": {"vision": True, "audio": False},
        "chat_template_caps": {"supports_tools": True},
        "chat_template": "{% if enable_thinking %}<think>{% endif %}",
    })  # fmt: skip
    gw = await gateway(registry_for({"id": "box", "baseUrl": box.url}))
    body = await (await gw.get("/api/models")).json()
    caps = {"vision": True, "audio": False, "tools": True, "reasoning": True}
    assert body["providers"][0]["models"][0]["capabilities"] == caps
    listed = (await (await gw.get("/v1/models")).json())["data"][0]
    assert (listed["context_length"], listed["capabilities"]) == (8192, caps)

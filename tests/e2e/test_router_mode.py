"""Real llama-servers in router mode (`--models-dir`, two model names, `--models-max 1`) and a
plain one, with a real gateway in front: the routers are registered the way a new user would
(`kind: llama-swap`, or `llama-server`) and detected. States and windows come without the
gateway loading anything (the router's own `GET /models` says so); loads and unloads go through
the API, the page and the CLI; pools prefer the router that has the model loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.cli.launcher import LlamaServer, start_router, start_server
from tests.control.test_page import CHROMIUM, FLAGS, HAVE_CHROMIUM
from tests.e2e.conftest import ALIAS, _require_real_parts
from tests.gwproc import run_cli, running_gateway

pytestmark = pytest.mark.e2e
MODELS = ("smol-a", "smol-b")


@dataclass
class RouterFleet:
    r1: LlamaServer  # registered as kind "llama-swap": what a new user tries first
    r2: LlamaServer  # registered as kind "llama-server"
    plain: LlamaServer  # a plain llama-server (-m), alias ALIAS
    base: str  # the gateway
    workdir: Path


@pytest.fixture(scope="module")
def router_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterFleet]:
    _require_real_parts()
    work = tmp_path_factory.mktemp("router-mode")
    logs = work / "logs"
    logs.mkdir()
    started: list[LlamaServer] = []
    try:
        for name in ("r1", "r2"):
            started.append(start_router(name, MODELS, work / f"models-{name}", log_dir=logs))
        started.append(start_server("plain", ALIAS, log_dir=logs))
        r1, r2, plain = started
        registry = {
            "providers": [
                {"id": "r1", "baseUrl": r1.url, "kind": "llama-swap"},
                {"id": "r2", "baseUrl": r2.url, "kind": "llama-server"},
                {"id": "plain", "baseUrl": plain.url},
            ]
        }
        path = work / "llama-providers.json"
        path.write_text(json.dumps(registry))
        env = {
            "LLAMA_PROVIDERS_PATH": str(path), "GATEWAY_DATA_DIR": str(work / "data"),
            "GATEWAY_REFRESH_S": "1",  # refreshes often: one that loaded something would show
        }  # fmt: skip
        with running_gateway(["serve"], env, cwd=work) as gw:
            yield RouterFleet(r1, r2, plain, gw.base, work)
    finally:
        for server in started:
            server.stop(grace=15)


def router_states(server: LlamaServer) -> dict[str, str]:
    """What the router itself says: model -> status.value."""
    with urllib.request.urlopen(server.url + "/models", timeout=10) as resp:
        return {m["id"]: m["status"]["value"] for m in json.loads(resp.read())["data"]}


async def fleet(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(base + "/api/models") as resp:
        assert resp.status == 200
        return dict(await resp.json())


def rows(body: dict[str, Any]) -> dict[str, tuple[str | None, int | None, str | None]]:
    """composite id -> (state, contextWindow, the provider's mode)."""
    return {
        m["id"]: (m.get("state"), m["contextWindow"], p["mode"])
        for p in body["providers"]
        for m in p["models"]
    }


async def change(
    session: aiohttp.ClientSession, base: str, action: str, body: Any
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(f"{base}/api/models/{action}", data=data) as resp:
        return resp.status, await resp.json()


async def served_by(session: aiohttp.ClientSession, base: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    async with session.post(base + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
        provider: str = resp.headers["X-Gateway-Provider"]
        return provider


async def test_states_and_windows_without_the_gateway_loading_anything(
    router_fleet: RouterFleet,
) -> None:
    base = router_fleet.base
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        seen: set[str] = set()
        for _ in range(600):  # three refreshes of the routers (bounded: 60 s)
            body = await fleet(session, base)
            seen.add(body["providers"][0]["lastSeen"])
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(seen) >= 3, "the gateway did not refresh the fleet three times in 60 s"
    assert rows(body) == {
        "r1/smol-a": ("unloaded", 2048, "router"),  # its window from the router's list
        "r1/smol-b": ("unloaded", 2048, "router"),
        "r2/smol-a": ("unloaded", 2048, "router"),
        "r2/smol-b": ("unloaded", 2048, "router"),
        f"plain/{ALIAS}": ("loaded", 4096, "llama-server"),
    }
    caps = {m["id"]: m["capabilities"] for p in body["providers"] for m in p["models"]}
    assert caps["r1/smol-a"] == {"vision": False, "audio": False}
    # nothing was loaded by the gateway's refreshes: the routers themselves say so
    for server in (router_fleet.r1, router_fleet.r2):
        assert router_states(server) == {"smol-a": "unloaded", "smol-b": "unloaded"}


async def test_load_and_unload_through_the_api(router_fleet: RouterFleet) -> None:
    base, r1 = router_fleet.base, router_fleet.r1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        status, body = await change(session, base, "load", {"model": "r1/smol-a"})
        assert (status, body) == (200, {"id": "r1/smol-a", "provider": "r1", "state": "loaded"})
        assert router_states(r1) == {"smol-a": "loaded", "smol-b": "unloaded"}
        status, body = await change(session, base, "load", {"model": "r1/smol-b"})
        assert (status, body["state"]) == (200, "loaded")
        assert router_states(r1) == {"smol-a": "unloaded", "smol-b": "loaded"}  # --models-max 1
        got = rows(await fleet(session, base))
        assert (got["r1/smol-a"][0], got["r1/smol-b"][0]) == ("unloaded", "loaded")
        # bad requests: a clear 4xx, and nothing changes on any machine
        refused = [
            (b"{nope", 400, "invalid_json"),
            ({"model": "r1/nope"}, 404, "model_not_found"),
            ({"model": "nobody/smol-a"}, 404, "model_not_found"),
            ({"model": f"plain/{ALIAS}"}, 400, "cannot_load"),
            ({"model": "any/smol-a"}, 400, "cannot_load"),
        ]
        for request, want, code in refused:
            status, body = await change(session, base, "load", request)
            assert (status, body["error"]["code"]) == (want, code), body
        status, body = await change(session, base, "unload", {"model": f"plain/{ALIAS}"})
        assert status == 400 and "plain llama-server" in body["error"]["message"]
        assert router_states(r1) == {"smol-a": "unloaded", "smol-b": "loaded"}
        status, body = await change(session, base, "unload", {"model": "r1/smol-b"})
        assert (status, body["state"]) == (200, "unloaded")
        assert router_states(r1) == {"smol-a": "unloaded", "smol-b": "unloaded"}


async def test_the_cli_loads_and_unloads_through_the_gateway(router_fleet: RouterFleet) -> None:
    env = {"GATEWAY_URL": router_fleet.base, "GATEWAY_API_KEYS": ""}
    cwd = router_fleet.workdir
    code, out = await run_cli("load", "r2/smol-b", env=env, cwd=cwd)
    assert (code, out.strip()) == (0, "r2/smol-b: loaded")
    assert router_states(router_fleet.r2)["smol-b"] == "loaded"
    code, out = await run_cli("unload", "r2/smol-b", env=env, cwd=cwd)
    assert (code, out.strip()) == (0, "r2/smol-b: unloaded")
    assert router_states(router_fleet.r2)["smol-b"] == "unloaded"


async def test_pools_prefer_the_router_that_has_the_model_loaded(
    router_fleet: RouterFleet,
) -> None:
    base, r1, r2 = router_fleet.base, router_fleet.r1, router_fleet.r2
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        assert (await change(session, base, "load", {"model": "r1/smol-b"}))[0] == 200
        assert (await change(session, base, "load", {"model": "r2/smol-a"}))[0] == 200
        # r1 comes first in the registry, but has smol-a unloaded: r2 answers
        assert await served_by(session, base, "any/smol-a") == "r2"
        assert router_states(r1) == {"smol-a": "unloaded", "smol-b": "loaded"}  # untouched
        # the other way round
        assert (await change(session, base, "load", {"model": "r1/smol-a"}))[0] == 200
        assert (await change(session, base, "unload", {"model": "r2/smol-a"}))[0] == 200
        pool = next(p for p in (await fleet(session, base))["pools"] if p["id"] == "any/smol-a")
        assert [(m["id"], m["loaded"]) for m in pool["members"]] == [
            ("r1/smol-a", True),
            ("r2/smol-a", False),
        ]
        assert await served_by(session, base, "any/smol-a") == "r1"
        assert router_states(r2) == {"smol-a": "unloaded", "smol-b": "unloaded"}
        # a model no machine has ever listed: 404, not a 503 an SDK would retry
        body = {"model": "any/never-listed", "messages": [{"role": "user", "content": "Hi"}]}
        async with session.post(base + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 404 and "Retry-After" not in resp.headers
            assert (await resp.json())["error"]["code"] == "model_not_found"
        for model in ("r1/smol-a", "r1/smol-b"):
            await change(session, base, "unload", {"model": model})
        assert router_states(r1) == {"smol-a": "unloaded", "smol-b": "unloaded"}


async def test_the_page_loads_and_unloads(router_fleet: RouterFleet) -> None:
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            raise AssertionError("chromium is missing: ./dev installs it with apt")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    r2 = router_fleet.r2
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(router_fleet.base + "/?refresh=600")
            group = page.locator('[data-group="r2"]')
            await group.locator('[data-load="r2/smol-a"][data-action="load"]').click()
            unload = group.locator('[data-load="r2/smol-a"][data-action="unload"]')
            await unload.wait_for(timeout=120_000)
            assert await group.locator('[data-state="r2/smol-a"]').inner_text() == "loaded"
            assert router_states(r2)["smol-a"] == "loaded"
            await unload.click()
            await group.locator('[data-load="r2/smol-a"][data-action="load"]').wait_for(
                timeout=120_000
            )
            assert router_states(r2)["smol-a"] == "unloaded"
            plain = page.locator('[data-group="plain"]')
            assert await plain.locator("[data-load]").count() == 0  # a plain server: no button
        finally:
            await browser.close()

"""The live catalog: providers that go down and come back, driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.fleet.catalog import Catalog, parse_model_list
from gateway.fleet.registry import RegistryBox, parse_registry
from tests.conftest import UpstreamFactory, registry_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_stale_then_offline_then_online(
    upstream: UpstreamFactory, session: aiohttp.ClientSession
) -> None:
    box = await upstream("box", models=["m1", "m2"])
    clock = Clock()
    reg = parse_registry(registry_for({"id": "box", "baseUrl": box.url}), "t", {})
    catalog = Catalog(
        session, RegistryBox(reg), refresh_s=300, timeout_s=2, offline_after_s=60, clock=clock
    )
    await catalog.refresh()
    (state,) = catalog.states()
    assert catalog.status(state) == "online"
    assert state.last_seen == clock.now
    seen_at = clock.now

    box.down = True
    clock.now += 10
    await catalog.refresh()
    assert catalog.status(state) == "stale"
    assert [m.id for m in catalog.models()] == ["box/m1", "box/m2"]  # last-known models kept
    assert state.last_seen == seen_at
    assert state.last_error == "HTTP 503 from /v1/models"

    clock.now += 61
    await catalog.refresh()
    assert catalog.status(state) == "offline"
    assert catalog.models() == []
    assert [m.id for m in state.models] == ["box/m1", "box/m2"]  # still remembered

    box.down = False
    box.models = ["m1", "m3"]
    clock.now += 5
    await catalog.refresh()
    assert catalog.status(state) == "online"
    assert state.last_error is None
    assert [m.id for m in catalog.models()] == ["box/m1", "box/m3"]


async def test_provider_down_at_startup_appears_when_it_answers(
    upstream: UpstreamFactory, session: aiohttp.ClientSession
) -> None:
    box = await upstream("box", down=True)
    reg = parse_registry(registry_for({"id": "box", "baseUrl": box.url}), "t", {})
    catalog = Catalog(session, RegistryBox(reg), refresh_s=300, timeout_s=2, offline_after_s=60)
    await catalog.refresh()
    assert catalog.status(catalog.states()[0]) == "offline"
    box.down = False
    await catalog.refresh()
    assert catalog.status(catalog.states()[0]) == "online"
    assert [m.id for m in catalog.models()] == ["box/qwen3.6-35b-a3b"]


@pytest.mark.parametrize(
    ("data", "ids"),
    [
        (
            {"data": [{"id": "a"}, {"id": "a"}, {"id": 3}, "x", {"id": "bad\nid"}, {"id": "b"}]},
            ["p/a", "p/b"],
        ),
        ({"object": "list", "data": []}, []),
    ],
)
def test_parse_model_list_skips_junk(data: object, ids: list[str]) -> None:
    assert [m.id for m in parse_model_list("p", data)] == ids


@pytest.mark.parametrize("data", [[], {"models": []}, {"data": {}}, None])
def test_parse_model_list_refuses_non_lists(data: object) -> None:
    with pytest.raises(ValueError, match="not an OpenAI list"):
        parse_model_list("p", data)


async def test_a_failing_refresh_does_not_stop_the_refresh_loop(
    upstream: UpstreamFactory, session: aiohttp.ClientSession
) -> None:
    box = await upstream("box")
    reg = parse_registry(registry_for({"id": "box", "baseUrl": box.url}), "t", {})
    catalog = Catalog(session, RegistryBox(reg), refresh_s=0.01, timeout_s=2, offline_after_s=60)
    calls = 0
    again = asyncio.Event()

    async def flaky_hook(_: Catalog) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a refresh hook")
        again.set()

    catalog.on_refresh.append(flaky_hook)
    task = asyncio.ensure_future(catalog.run())
    try:
        await asyncio.wait_for(again.wait(), 5)  # the loop went on after the failure
    finally:
        task.cancel()
    assert calls >= 2

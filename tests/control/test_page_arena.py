"""The page's Arena and Bench sections in a real headless Chromium (the fixtures and patterns of
test_page.py), desktop and phone width: pick models (favorites first), both answers stream side
by side with their speed, a blind vote reveals the names and ranks them; Stop cancels every
contestant; the bench table per machine and model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import GatewayFactory, UpstreamFactory, registry_for
from tests.control.test_page import ARTIFACTS, open_page
from tests.control.test_page import artifacts as artifacts  # (its fixtures, used here)
from tests.control.test_page import browser as browser

DESKTOP = {"width": 1100, "height": 1000}
# The right edge of the widest element of the Arena and Bench sections (the Usage table above
# may be wider than a phone when it has rows: it is not these sections').
WIDEST = """Math.max(...[...document.querySelectorAll('#arena-section *, #bench-section *')]
  .map(e => e.getBoundingClientRect().right))"""
PHONE = {"width": 390, "height": 844}


async def arena_fleet(upstream: UpstreamFactory, gateway: GatewayFactory, **fakes: Any) -> Any:
    a = await upstream("machine-a", models=["qwen3", "gemma", "phi"], timings=(5, 0, 3), **fakes)
    b = await upstream("machine-b", models=["qwen3", "llama"], chunks=4, chunk_delay=0.05, **fakes)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}),
        offline_after_s=0.000001,
    )
    return gw, a, b


async def picks(page: Any) -> list[str]:
    return list(
        await page.locator("[data-arena-pick]").evaluate_all("els => els.map(e => e.value)")
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_a_blind_battle_streams_side_by_side_and_the_vote_ranks_them(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory, viewport: dict[str, int]
) -> None:
    gw, a, b = await arena_fleet(upstream, gateway)
    await gw.patch("/api/settings", json={"favorite_models": ["b/qwen3"]})
    page = await open_page(browser, gw, viewport=viewport)
    await page.locator('[data-arena-pick="b/qwen3"]').wait_for()
    assert (await picks(page))[0] == "b/qwen3"  # favorites first
    await page.locator('[data-arena-pick="a/qwen3"]').check()
    await page.locator('[data-arena-pick="b/qwen3"]').check()
    await page.locator("#arena-blind").check()
    await page.locator("#arena-start").click()
    col_a, col_b = page.locator('[data-arena-col="0"]'), page.locator('[data-arena-col="1"]')
    await col_a.locator(".reply", has_text="machine-a-2").wait_for()
    await col_b.locator(".reply", has_text="machine-b-3").wait_for()
    assert await col_a.locator("h3").inner_text() == "Model A"  # hidden until the vote
    assert await col_b.locator("h3").inner_text() == "Model B"
    await col_a.locator(".figures", has_text="tok/s").wait_for()
    await col_b.locator(".figures", has_text="tok/s").wait_for()
    assert "on a" not in await col_a.locator(".figures").inner_text()  # the machine names it
    assert "3 tokens" in await col_a.locator(".figures").inner_text()
    box_a, box_b = await col_a.bounding_box(), await col_b.bounding_box()
    if viewport is PHONE:  # stacked, one under the other
        assert box_b["y"] >= box_a["y"] + box_a["height"]
    else:  # side by side
        assert box_b["x"] >= box_a["x"] + box_a["width"] and box_a["y"] == box_b["y"]
    await page.screenshot(path=ARTIFACTS / f"arena-{viewport['width']}.png", full_page=True)
    await page.locator('[data-vote="b/qwen3"]').click()
    await page.locator("#arena-voted", has_text="b/qwen3 won").wait_for()
    assert await col_b.locator("h3").inner_text() == "B · b/qwen3"  # revealed
    assert "on b" in await col_b.locator(".figures").inner_text()
    ranked = page.locator("#leaderboard tbody tr")
    assert await ranked.first.get_attribute("data-rank") == "b/qwen3"
    assert await ranked.nth(0).locator("td").all_text_contents() == [
        "1", "b/qwen3", "1016", "1", "0", "0"
    ]  # fmt: skip
    board = await (await gw.get("/api/arena/leaderboard")).json()
    assert [r["model"] for r in board["rows"]] == ["b/qwen3", "a/qwen3"]
    assert len(a.inference()) == 1 and len(b.inference()) == 1
    assert await page.evaluate(WIDEST) <= viewport["width"]  # nothing wider than the screen
    await page.screenshot(path=ARTIFACTS / f"arena-voted-{viewport['width']}.png", full_page=True)


async def test_at_most_four_one_is_too_few_and_stop_cancels_every_answer(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, a, b = await arena_fleet(upstream, gateway, stall_after=1)
    page = await open_page(browser, gw, viewport=PHONE)
    await page.locator('[data-arena-pick="b/llama"]').wait_for()
    await page.locator('[data-arena-pick="a/qwen3"]').check()
    await page.locator("#arena-start").click()
    await page.locator("#arena-error", has_text="Pick 2 to 4 models").wait_for()
    for model in ("a/gemma", "a/phi", "b/qwen3"):
        await page.locator(f'[data-arena-pick="{model}"]').check()
    assert await page.locator('[data-arena-pick="b/llama"]').is_disabled()  # four picked
    await page.locator('[data-arena-pick="a/phi"]').uncheck()
    assert not await page.locator('[data-arena-pick="b/llama"]').is_disabled()
    await page.locator("#arena-start").click()
    await page.locator('[data-arena-col="2"] .reply', has_text="machine-b-0").wait_for()
    await page.locator('[data-arena-col="0"] .reply', has_text="machine-a-0").wait_for()
    await page.locator("#arena-stop").click()
    await page.locator("#arena-error", has_text="Stopped").wait_for()
    async with asyncio.timeout(10):  # the page hung up: the gateway cancelled each contestant
        await a.cancelled.wait()
        await b.cancelled.wait()
        await a.idle.wait()
        await b.idle.wait()
    assert await page.locator("#arena-vote").is_hidden()


async def test_the_bench_table_shows_each_machine_and_model(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await arena_fleet(upstream, gateway)
    result = {"promptTokens": 64, "genTokens": 8, "promptPerSecond": 812.4,
              "tokensPerSecond": 95.3, "ttftMs": 80.0, "firstTtftMs": 2400.0,
              "source": "timings"}  # fmt: skip
    stored = await gw.post("/api/bench", json={"results": [
        {**result, "model": "b/qwen3", "provider": "b", "loaded": False},
        {**result, "model": "a/qwen3", "provider": "a", "loaded": True},
    ]})  # fmt: skip
    assert stored.status == 200
    page = await open_page(browser, gw, viewport=PHONE)
    rows = page.locator("#bench tbody tr")
    await rows.nth(1).wait_for()
    assert await rows.evaluate_all("els => els.map(e => e.dataset.bench)") == [
        "a a/qwen3", "b b/qwen3"
    ]  # fmt: skip
    cells = await rows.nth(0).locator("td").all_text_contents()
    assert cells[:5] == ["a", "a/qwen3", "812.4", "95.3", "80 ms"]
    assert cells[5].endswith("ago") and cells[6] == "loaded first (2.4 s)"  # (hidden on a phone)
    assert await page.evaluate(WIDEST) <= PHONE["width"]
    await page.screenshot(path=ARTIFACTS / "bench-390.png", full_page=True)

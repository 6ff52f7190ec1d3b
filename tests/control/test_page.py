"""The fleet page in a real headless Chromium (Debian's), driven by Playwright, against a gateway
in front of fake upstreams. Screenshots land in artifacts/ (kept by CI as test artifacts)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayFactory, UpstreamFactory, catalog_of, registry_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BOOCODE_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser(artifacts: Path) -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            raise AssertionError("chromium is missing: ./dev installs it with apt")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


async def fleet(
    upstream: UpstreamFactory, gateway: GatewayFactory, **settings: Any
) -> tuple[Any, Any, Any]:
    a = await upstream("machine-a", models=["qwen3", "gemma"], n_ctx=32768)
    b = await upstream("machine-b", models=["qwen3"], n_ctx=8192, chunks=4, chunk_delay=0.05)
    settings.setdefault("offline_after_s", 0.000001)
    gw = await gateway(
        registry_for(
            {"id": "a", "label": "Box A", "baseUrl": a.url},
            {"id": "b", "label": "Box B", "baseUrl": b.url, "maxConcurrent": 2},
        ),
        **settings,
    )
    return gw, a, b


async def open_page(browser: Any, gw: Any, query: str = "?refresh=0.3", **ctx: Any) -> Any:
    context = await browser.new_context(**ctx)
    page = await context.new_page()
    await page.goto(str(gw.make_url("/" + query)))
    return page


async def favorites_on_page(page: Any) -> list[str]:
    return list(await page.locator("#favorites [data-pick]").all_text_contents())


async def test_page_lists_every_provider_and_model(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await fleet(upstream, gateway)
    page = await open_page(browser, gw, viewport={"width": 1100, "height": 900})
    card_a = page.locator('[data-provider="a"]')
    await card_a.locator(".badge.online").wait_for()
    assert "Box A" in await card_a.inner_text()
    assert "2 models" in await card_a.inner_text()
    assert "0 running / 2, 0 queued" in await page.locator('[data-provider="b"]').inner_text()
    assert await page.locator('[data-group="a"] [data-pick]').all_text_contents() == [
        "a/qwen3",
        "a/gemma",
    ]
    assert await page.locator('[data-group="b"] [data-pick]').all_text_contents() == ["b/qwen3"]
    assert "32k ctx" in await page.locator('[data-group="a"]').inner_text()
    await page.screenshot(path=ARTIFACTS / "fleet-page.png", full_page=True)


async def test_star_moves_a_model_to_favorites_and_survives_reload(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await fleet(upstream, gateway)
    page = await open_page(browser, gw)
    await page.locator('[data-group="b"] [data-star="b/qwen3"]').click()
    await page.locator('#favorites [data-pick="b/qwen3"]').wait_for()
    # still in its provider group, now starred there too
    assert (
        await page.locator('[data-group="b"] [data-star="b/qwen3"]').get_attribute("aria-pressed")
        == "true"
    )
    assert (await (await gw.get("/api/settings")).json())["favorite_models"] == ["b/qwen3"]
    await page.reload()
    await page.locator('#favorites [data-pick="b/qwen3"]').wait_for()
    assert await favorites_on_page(page) == ["b/qwen3"]


async def test_keyboard_toggles_a_favorite(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await fleet(upstream, gateway)
    page = await open_page(browser, gw)
    star = page.locator('[data-group="a"] [data-star="a/gemma"]')
    await star.focus()
    await page.keyboard.press("Enter")
    await page.locator('#favorites [data-pick="a/gemma"]').wait_for()
    await page.keyboard.press("Space")  # focus stayed on the same star across the re-render
    await page.locator("#favorites [data-pick]").first.wait_for(state="detached")
    assert (await (await gw.get("/api/settings")).json())["favorite_models"] == []


async def test_offline_provider_hides_its_favorite_until_it_returns(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, b = await fleet(upstream, gateway)
    await gw.patch("/api/settings", json={"favorite_models": ["b/qwen3", "a/gemma"]})
    page = await open_page(browser, gw)
    await page.locator('#favorites [data-pick="b/qwen3"]').wait_for()
    b.down = True
    await catalog_of(gw).refresh()
    await page.locator('[data-provider="b"] .badge.offline').wait_for()
    await page.locator('#favorites [data-pick="b/qwen3"]').wait_for(state="detached")
    assert await favorites_on_page(page) == ["a/gemma"]
    assert await page.locator('[data-group="b"]').count() == 0
    await page.screenshot(path=ARTIFACTS / "fleet-page-offline.png", full_page=True)
    b.down = False
    await catalog_of(gw).refresh()
    await page.locator('[data-provider="b"] .badge.online').wait_for()
    await page.locator('#favorites [data-pick="b/qwen3"]').wait_for()
    assert await favorites_on_page(page) == ["b/qwen3", "a/gemma"]


async def test_prompt_streams_a_reply_and_names_the_machine(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, a, b = await fleet(upstream, gateway)
    await gw.patch("/api/settings", json={"favorite_models": ["b/qwen3"]})
    page = await open_page(browser, gw, viewport={"width": 1100, "height": 900})
    await page.locator('[data-group="b"] [data-pick="b/qwen3"]').click()
    assert await page.locator("#model").input_value() == "b/qwen3"
    await page.locator("#send").click()
    await page.locator("#reply", has_text="machine-b-3").wait_for()
    assert await page.locator("#stat-machine").inner_text() == "b"
    assert (await page.locator("#stat-ttft").inner_text()).endswith(" ms")
    # tokens/s is shown once the stream has ended, which may be a moment after the last token
    await page.wait_for_function("document.getElementById('stat-tps').textContent !== '…'")
    assert float(await page.locator("#stat-tps").inner_text()) > 0
    assert b.inference() and not a.inference()
    await page.screenshot(path=ARTIFACTS / "fleet-page-reply.png", full_page=True)


async def test_errors_show_the_gateway_message(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, b = await fleet(upstream, gateway)
    page = await open_page(browser, gw)
    await page.locator('[data-pick="b/qwen3"]').click()
    b.status = 503
    await page.locator("#send").click()
    await page.locator("#try-error", has_text="machine-b refused").wait_for()


async def test_page_works_when_the_gateway_checks_keys(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await fleet(upstream, gateway, api_keys=("page-key",))
    page = await open_page(browser, gw, viewport={"width": 390, "height": 844})  # a phone
    await page.locator("#fleet-error", has_text="needs an API key").wait_for()
    await page.locator("#api-key").fill("page-key")
    await page.locator("#key-form button").click()
    await page.locator('[data-provider="a"] .badge.online').wait_for()
    assert await page.evaluate("localStorage.getItem('boocode-gateway.key')") == "page-key"
    await page.reload()  # the key is remembered
    await page.locator('[data-provider="b"] .badge.online').wait_for()
    await page.locator('[data-pick="a/qwen3"]').click()
    await page.locator("#send").click()
    await page.locator("#reply", has_text="machine-a").wait_for()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone's screen
    await page.screenshot(path=ARTIFACTS / "fleet-page-phone.png", full_page=True)


async def test_pools_show_their_members_and_answer_a_prompt(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, a, b = await fleet(upstream, gateway)
    a.status = 503  # a fails before answering: the pool hands the prompt to b
    page = await open_page(browser, gw, viewport={"width": 1100, "height": 1100})
    card = page.locator('[data-pool="any/qwen3"]')
    await card.wait_for()
    assert await card.locator("[data-member]").evaluate_all(
        "els => els.map(e => e.dataset.member)"
    ) == ["a/qwen3", "b/qwen3"]
    assert "8k ctx" in await card.inner_text()  # the smaller window of the two
    await page.locator('[data-group="pools"] [data-pick="any/qwen3"]').click()
    assert await page.locator("#model").input_value() == "any/qwen3"
    await page.locator("#send").click()
    await page.locator("#reply", has_text="machine-b-3").wait_for()
    assert await page.locator("#stat-machine").inner_text() == "b"
    assert len(a.inference()) == 1 and len(b.inference()) == 1
    # the failed machine shows as cooling down, within the page's refresh
    await card.locator('[data-member="a/qwen3"]', has_text="cooling down").wait_for()
    await page.screenshot(path=ARTIFACTS / "fleet-page-pools.png", full_page=True)


async def test_usage_panel_counts_the_prompt_just_sent(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, b = await fleet(upstream, gateway)
    b.timings = (12, 30, 4)  # llama-server's accounting on b's replies
    page = await open_page(browser, gw, viewport={"width": 1100, "height": 1300})
    await page.locator("#usage-empty").wait_for()  # nothing counted yet
    await page.locator('[data-pick="b/qwen3"]').click()
    await page.locator("#send").click()
    row = page.locator('[data-usage="b/qwen3"]')
    await row.wait_for()
    cells = await row.locator("td").all_text_contents()
    assert cells == ["b", "qwen3", "1", "42", "71%", "4", "421.1"]  # 4 tokens in 9.5 ms
    await page.locator('[data-since="7d"]').click()
    assert await page.locator('[data-since="7d"]').get_attribute("aria-pressed") == "true"
    await row.wait_for()
    await page.screenshot(path=ARTIFACTS / "fleet-page-usage.png", full_page=True)


@pytest.mark.parametrize(
    "viewport", [{"width": 1100, "height": 900}, {"width": 390, "height": 844}]
)
async def test_a_running_request_is_listed_live_and_cancelled_from_the_page(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory, viewport: dict[str, int]
) -> None:
    a = await upstream("machine-a", models=["qwen3"], chunks=5, stall_after=1)
    gw = await gateway(registry_for({"id": "a", "label": "Box A", "baseUrl": a.url}))
    page = await open_page(browser, gw, viewport=viewport)
    payload = {"model": "a/qwen3", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    headers = {"X-Request-Id": "page-live", "User-Agent": "curl/8.5.0"}
    async with gw.post("/v1/chat/completions", json=payload, headers=headers) as resp:
        await resp.content.readuntil(b"\n\n")
        row = page.locator('tr[data-request="page-live"]')
        await row.locator(".state.streaming").wait_for()  # appeared without a reload
        assert "curl" in (await row.text_content() or "")  # (a hidden column on a phone)
        await page.screenshot(path=ARTIFACTS / f"requests-{viewport['width']}.png", full_page=True)
        await row.get_by_role("button", name="Cancel request page-live").click()
        await row.locator(".state.cancelled").wait_for()
        rest = await resp.content.read()
    assert b"request_cancelled" in rest  # the client was told
    assert a.cancelled.is_set()  # and the machine's request was dropped


async def test_load_and_unload_buttons(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    r = await upstream(
        "r", router={"smol-a": "loaded", "smol-b": "unloaded", "bad": "unloaded"},
        router_load_s=0.3, router_failing={"bad"},
    )  # fmt: skip
    plain = await upstream("plain", models=["m"])
    gw = await gateway(
        registry_for({"id": "r", "baseUrl": r.url}, {"id": "plain", "baseUrl": plain.url})
    )
    # (no timed refresh: it would clear the error line this test reads)
    page = await open_page(browser, gw, "?refresh=600", viewport={"width": 1100, "height": 900})
    assert "r · llama-server, router mode" in await page.locator('[data-provider="r"]').inner_text()
    group = page.locator('[data-group="r"]')
    await group.locator('[data-load="r/smol-b"][data-action="load"]').click()
    await group.locator('[data-load="r/smol-b"][data-action="unload"]').wait_for()
    assert await group.locator('[data-state="r/smol-b"]').inner_text() == "loaded"
    assert await group.locator('[data-state="r/smol-a"]').inner_text() == "unloaded"  # models-max
    assert r.router is not None and r.router["smol-b"] == "loaded"
    await page.screenshot(path=ARTIFACTS / "fleet-page-loading.png", full_page=True)
    await group.locator('[data-load="r/smol-b"][data-action="unload"]').click()
    await group.locator('[data-load="r/smol-b"][data-action="load"]').wait_for()
    assert r.router["smol-b"] == "unloaded"
    # a plain llama-server's model: loaded, no button
    plain_group = page.locator('[data-group="plain"]')
    assert await plain_group.locator('[data-state="plain/m"]').inner_text() == "loaded"
    assert await plain_group.locator("[data-load]").count() == 0
    # a load that fails says why, and the model stays unloaded
    await group.locator('[data-load="r/bad"]').click()
    error = page.locator("#fleet-error")
    await error.wait_for()
    assert "load r/bad:" in await error.inner_text() and "exit code 1" in await error.inner_text()
    assert await group.locator('[data-state="r/bad"]').inner_text() == "unloaded"


async def test_keys_section_shows_labels_limits_and_use_never_a_secret(
    browser: Any, upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    import asyncio
    import time

    from gateway.access.keys import digest, new_secret
    from gateway.control.state import STATE
    from gateway.store.tables import KeyRecord

    gw, _, _ = await fleet(upstream, gateway, api_keys=("page-key",), keys_refresh_s=0.2)
    secret = new_secret()
    record = KeyRecord(
        "team-alice", digest(secret.encode()), 30, 50_000, ("any/*",), time.time() + 86400 * 9,
        time.time(),
    )  # fmt: skip
    await asyncio.to_thread(gw.app[STATE].keys_table.add, record)
    page = await open_page(browser, gw)
    await page.locator("#api-key").fill("page-key")
    await page.locator("#key-form button").click()
    row = page.locator("#keys tbody tr", has_text="team-alice")
    await row.wait_for()
    cells = await row.locator("td").all_text_contents()
    assert cells[:6] == ["team-alice", "any/*", "30", "50k", "0", "0"], cells
    html = await page.content()
    assert secret not in html and digest(secret.encode()) not in html

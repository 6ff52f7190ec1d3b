"""The fleet benchmark: which models it asks for (only those named), what it sends, how it
tells a load; the CLI against a gateway in front of fake machines; /api/bench."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.arena.bench import Listed, fleet_listing, had_to_load, prompt_of
from gateway.cli import bench as bench_cli
from gateway.cli.main import _parser
from gateway.core.config import load_settings
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for

SETTINGS = load_settings({})  # (no GATEWAY_API_KEYS: no key sent)


@pytest.mark.parametrize(
    ("state", "first", "warm", "loaded"),
    [
        ("unloaded", 50.0, 40.0, True),  # the gateway said so: believed
        ("loaded", 5000.0, 40.0, False),
        (None, 2500.0, 40.0, True),  # a second and 3x slower to start
        (None, 900.0, 40.0, False),  # slower, but not by a second
        (None, 1500.0, 800.0, False),  # a second slower, but not 3x
        (None, None, 40.0, None),
    ],
)
def test_had_to_load(state: str | None, first: float | None, warm: float, loaded: bool) -> None:
    assert had_to_load(state, first, warm) is loaded


def test_fleet_listing_reads_models_states_and_pools() -> None:
    data = {
        "providers": [
            {"id": "a", "group": "local", "models": [
                {"id": "a/x", "state": "loaded"}, {"id": "a/y", "state": "weird"}, {"id": "a/z"}]},
            {"id": "deepseek", "group": "cloud", "models": [{"id": "deepseek/chat"}]},
        ],
        "pools": [{"id": "any/x"}],
    }  # fmt: skip
    assert fleet_listing(data) == {
        "a/x": Listed("a", True, "loaded"), "a/y": Listed("a", True, None),
        "a/z": Listed("a", True, None), "deepseek/chat": Listed("deepseek", False, None),
        "any/x": Listed("", True, None),
    }  # fmt: skip
    assert fleet_listing({"nope": 1}) == {}


def test_prompts_differ_run_to_run_and_grow_with_the_size() -> None:
    assert prompt_of(64) != prompt_of(64)
    assert len(prompt_of(512).split()) > 4 * len(prompt_of(64).split())


async def machines(upstream: UpstreamFactory, gateway: GatewayFactory) -> tuple[Gateway, Any, Any]:
    a = await upstream("machine-a", models=["qwen3"], timings=(30, 0, 4))
    b = await upstream("machine-b", models=["qwen3", "gemma"], chunks=4)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    return gw, a, b


async def test_the_cli_measures_each_named_model_on_its_machine_and_stores_it(
    upstream: UpstreamFactory, gateway: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw, a, b = await machines(upstream, gateway)
    base = str(gw.make_url("/"))
    args = _parser().parse_args(
        ["bench", "--base-url", base, "--prompt-tokens", "32", "--gen-tokens", "4",
         "a/qwen3", "b/qwen3"]
    )  # fmt: skip
    assert await bench_cli.run(SETTINGS, args) == 0
    out, err = capsys.readouterr()
    assert "[1/2] a/qwen3 on a: prompt 20000.0 t/s (30 tokens), generation 421.1 t/s" in err
    assert "[2/2] b/qwen3 on b:" in err and "[wall]" in err
    (head,) = [line for line in out.splitlines() if line.startswith("MACHINE")]  # (and logs)
    assert head.split() == [
        "MACHINE", "MODEL", "PROMPT", "T/S", "GEN", "T/S", "FIRST", "TOKEN", "LOADED", "FROM"
    ]  # fmt: skip
    # two runs each, only the models named, each sent to generate them all, uncached
    assert [r.json()["model"] for r in a.inference()] == ["qwen3", "qwen3"]
    assert [r.json()["model"] for r in b.inference()] == ["qwen3", "qwen3"]
    sent = a.inference()[0].json()
    assert (sent["max_tokens"], sent["ignore_eos"], sent["cache_prompt"]) == (4, True, False)
    assert sent["messages"][0]["content"] != a.inference()[1].json()["messages"][0]["content"]
    stored = (await (await gw.get("/api/bench")).json())["results"]
    assert [(r["provider"], r["model"], r["source"]) for r in stored] == [
        ("a", "a/qwen3", "timings"), ("b", "b/qwen3", "wall")
    ]  # fmt: skip
    assert stored[0]["tokensPerSecond"] == pytest.approx(4 / 9.5 * 1000, abs=0.1)
    assert stored[0]["promptPerSecond"] == 20000.0 and stored[0]["genTokens"] == 4
    assert stored[1]["genTokens"] == 4 and stored[1]["ttftMs"] is not None


async def test_the_cli_json_and_an_unknown_id_measures_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw, a, b = await machines(upstream, gateway)
    base = str(gw.make_url("/"))
    args = _parser().parse_args(["bench", "--base-url", base, "a/qwen3", "b/nope"])
    assert await bench_cli.run(SETTINGS, args) == 1
    assert "not in the gateway's fleet: b/nope" in capsys.readouterr().err
    assert not a.inference() and not b.inference()
    args = _parser().parse_args(
        ["bench", "--json", "--base-url", base, "--gen-tokens", "2", "a/qwen3"]
    )
    assert await bench_cli.run(SETTINGS, args) == 0
    out = capsys.readouterr().out
    assert '"provider": "a"' in out and '"source": "timings"' in out


async def test_the_cli_says_when_a_machine_fails(
    upstream: UpstreamFactory, gateway: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw, _, b = await machines(upstream, gateway)
    b.status = 503
    args = _parser().parse_args(
        ["bench", "--base-url", str(gw.make_url("/")), "a/qwen3", "b/qwen3"]
    )
    assert await bench_cli.run(SETTINGS, args) == 1
    err = capsys.readouterr().err
    assert "[2/2] b/qwen3: failed: HTTP 503: machine-b refused" in err
    stored = (await (await gw.get("/api/bench")).json())["results"]
    assert [r["model"] for r in stored] == ["a/qwen3"]


async def test_the_cli_without_a_gateway_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["bench", "--base-url", "http://127.0.0.1:9", "a/x"])
    assert await bench_cli.run(SETTINGS, args) == 1
    assert "cannot reach the gateway" in capsys.readouterr().err


GOOD = {"model": "a/x", "provider": "a", "promptTokens": 10, "genTokens": 5,
        "promptPerSecond": 100.0, "tokensPerSecond": 20, "ttftMs": 30.0, "firstTtftMs": None,
        "loaded": None, "source": "wall", "measured": 1_800_000_000}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"results": []},
        {"results": [GOOD, {**GOOD, "source": "guess"}]},  # one bad: none stored
        {"results": [{**GOOD, "model": ""}]},
        {"results": [{**GOOD, "tokensPerSecond": "fast"}]},
        {"results": [{**GOOD, "genTokens": 1.5}]},
        {"results": [{**GOOD, "loaded": "yes"}]},
        {"results": ["a/x"]},
    ],
)
async def test_bad_bench_results_are_a_400_and_store_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory, body: dict[str, Any]
) -> None:
    gw, _, _ = await machines(upstream, gateway)
    resp = await gw.post("/api/bench", json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_bench"
    assert (await (await gw.get("/api/bench")).json())["results"] == []


async def test_bench_results_round_trip(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    gw, _, _ = await machines(upstream, gateway)
    resp = await gw.post("/api/bench", json={"results": [GOOD]})
    assert resp.status == 200 and (await resp.json())["stored"] == 1
    (row,) = (await (await gw.get("/api/bench")).json())["results"]
    assert row == {**GOOD, "tokensPerSecond": 20.0, "measured": "2027-01-15T08:00:00+00:00"}

"""The fleet benchmark, llama-bench's pp/tg idea over HTTP: for each model named, two streamed
requests through the running gateway (one at a time, so no two measurements share a machine),
each with a prompt of about `prompt_tokens` tokens and `gen_tokens` to generate. The second,
warm, run gives the figures — prompt processing and generation tokens/s and time to first
token, from llama-server's `timings` when it sends them, else the client's clock. The first
run's time to first token is kept too: when the model had to load, it includes the load.

Only the models named are ever requested. Whether one had to load: its `state` in the gateway's
/api/models before the first run ("loaded" / "unloaded") when the gateway says it; else a first
run far slower to its first token than the warm one."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.arena.stream import Figures, Reading

LOAD_EXTRA_MS = 1000.0  # a first token this much later than the warm run's (and 3x) is a load
WORDS = (
    "river", "stone", "light", "market", "window", "garden", "paper", "silver", "morning",
    "table", "forest", "engine", "winter", "yellow", "music", "corner", "island", "letter",
)  # fmt: skip


class BenchError(Exception):
    """The gateway refused or broke a run (its message says which and why)."""


@dataclass(frozen=True, slots=True)
class Listed:
    """A model as the gateway's /api/models lists it."""

    provider: str
    local: bool  # a machine of the fleet (a cloud is sent no llama-server-only fields)
    state: str | None  # "loaded" / "unloaded" when the gateway says; None: not known


@dataclass(frozen=True, slots=True)
class Result:
    model: str
    provider: str  # the machine that answered (X-Gateway-Provider)
    warm: Figures
    first_ttft_ms: float | None
    loaded: bool | None  # it had to load first (the first run's TTFT includes the load)
    measured: float  # unix time

    def json(self) -> dict[str, Any]:
        w = self.warm
        return {
            "model": self.model, "provider": self.provider, "measured": self.measured,
            "promptTokens": w.prompt_tokens, "genTokens": w.completion_tokens,
            "promptPerSecond": w.prompt_per_second, "tokensPerSecond": w.tokens_per_second,
            "ttftMs": w.ttft_ms, "firstTtftMs": self.first_ttft_ms, "loaded": self.loaded,
            "source": w.source,
        }  # fmt: skip


def fleet_listing(data: Any) -> dict[str, Listed]:
    """/api/models JSON -> every model id listed, with its provider, kind and state."""
    out: dict[str, Listed] = {}
    providers = data.get("providers") if isinstance(data, dict) else None
    for p in providers if isinstance(providers, list) else []:
        if not isinstance(p, dict):
            continue
        for m in p.get("models") or []:
            if isinstance(m, dict) and isinstance(m.get("id"), str):
                state = m.get("state")
                out[m["id"]] = Listed(
                    str(p.get("id")),
                    p.get("group") != "cloud",
                    state if state in ("loaded", "unloaded") else None,
                )
    pools = data.get("pools") if isinstance(data, dict) else None
    for pool in pools if isinstance(pools, list) else []:
        if isinstance(pool, dict) and isinstance(pool.get("id"), str):
            out[pool["id"]] = Listed("", True, None)
    return out


def had_to_load(
    state: str | None, first_ttft: float | None, warm_ttft: float | None
) -> bool | None:
    """What the state before said; else whether the first run was far slower to start."""
    if state is not None:
        return state == "unloaded"
    if first_ttft is None or warm_ttft is None:
        return None
    return first_ttft >= warm_ttft + LOAD_EXTRA_MS and first_ttft >= 3 * warm_ttft


def prompt_of(tokens: int) -> str:
    """About `tokens` tokens of plain words, opened by a nonce so no run reuses the machine's
    prompt cache (a cached prompt would measure nothing)."""
    words = " ".join(WORDS[i % len(WORDS)] for i in range(max(1, tokens - 12)))
    return f"[{secrets.token_hex(4)}] Write a long story using these words: {words}"


async def run_once(
    session: aiohttp.ClientSession,
    root: str,
    headers: Mapping[str, str],
    model: str,
    listed: Listed,
    prompt_tokens: int,
    gen_tokens: int,
) -> tuple[Figures, str]:
    """One streamed request; its figures and the machine that answered."""
    body: dict[str, Any] = {
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": gen_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": prompt_of(prompt_tokens)}],
    }  # fmt: skip
    if listed.local:
        body.update(ignore_eos=True, cache_prompt=False)  # llama-server: generate them all
    reading = Reading()
    try:
        async with session.post(
            root + "/v1/chat/completions",
            data=orjson.dumps(body),
            headers={**headers, "Content-Type": "application/json"},
        ) as resp:
            provider = resp.headers.get("X-Gateway-Provider") or listed.provider
            if resp.status != 200:
                raise BenchError(f"HTTP {resp.status}: {_message(await resp.read())}")
            async for line in resp.content:
                reading.feed_line(line)
            end = time.perf_counter()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"the request failed: {exc or type(exc).__name__}") from None
    if reading.error is not None:
        raise BenchError(str(reading.error.get("message") or reading.error.get("code")))
    if reading.first is None:
        raise BenchError("the reply had no text")
    return reading.figures(end), provider


async def measure(
    session: aiohttp.ClientSession,
    root: str,
    headers: Mapping[str, str],
    model: str,
    listed: Listed,
    prompt_tokens: int,
    gen_tokens: int,
) -> Result:
    """Two runs of `model`: the first (a load, if it needed one), then the warm one."""
    measured = time.time()
    first, _ = await run_once(session, root, headers, model, listed, prompt_tokens, gen_tokens)
    warm, provider = await run_once(
        session, root, headers, model, listed, prompt_tokens, gen_tokens
    )
    loaded = had_to_load(listed.state, first.ttft_ms, warm.ttft_ms)
    return Result(model, provider, warm, first.ttft_ms, loaded, measured)


def _message(raw: bytes) -> str:
    try:
        return str(orjson.loads(raw)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace")

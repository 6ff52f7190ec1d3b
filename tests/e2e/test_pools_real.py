"""Pools on real llama-servers, through the real `openai` SDK (its own retries off, so every
error the gateway lets through is seen): failover when a machine is killed mid-run, sticky
conversations, and the prompt cache they keep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.cli.launcher import Fleet, registry_for_fleet, start_fleet
from tests.e2e.conftest import ALIAS, _require_real_parts
from tests.gwproc import running_gateway

pytestmark = pytest.mark.e2e
POOL = f"any/{ALIAS}"


@dataclass
class Outcome:
    stream: bool
    ok: bool
    started: bool  # reply content had reached the client before any error
    error: str = ""


def _metric(base: str, prefix: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in resp.read().decode().splitlines()
            if line.startswith(prefix)
        )


@pytest.fixture
def doomed_fleet(tmp_path: Path) -> Iterator[tuple[Fleet, str]]:
    """Its own two machines (one is killed) and a gateway in front of them."""
    _require_real_parts()
    (tmp_path / "logs").mkdir()
    with start_fleet(["pool-a", "pool-b"], ALIAS, log_dir=tmp_path / "logs") as fleet:
        registry = tmp_path / "llama-providers.json"
        registry.write_text(json.dumps(registry_for_fleet(fleet)))
        env = {"LLAMA_PROVIDERS_PATH": str(registry), "GATEWAY_DATA_DIR": str(tmp_path / "data")}
        with running_gateway(["serve"], env, cwd=tmp_path) as gw:
            yield fleet, gw.base


async def _one(client: openai.AsyncOpenAI, i: int, stream: bool) -> Outcome:
    messages: list[Any] = [{"role": "user", "content": f"Count from {i} to {i + 5}."}]
    started = False
    try:
        if stream:
            chunks = await client.chat.completions.create(
                model=POOL,
                messages=messages,
                max_tokens=12,
                stream=True,
            )
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    started = True
        else:
            reply = await client.chat.completions.create(
                model=POOL,
                messages=messages,
                max_tokens=12,
            )
            assert reply.choices[0].message.content is not None
    except openai.APIError as exc:
        return Outcome(stream, False, started, f"{type(exc).__name__}: {exc}")
    return Outcome(stream, True, started)


def test_a_machine_killed_mid_run_costs_no_request_that_had_not_started(
    doomed_fleet: tuple[Fleet, str],
) -> None:
    """A long stream starts on one machine; when its first tokens arrive that machine is killed
    (SIGKILL) while three clients keep asking the pool. The stream ends with the gateway's error
    event; no request that had not started streaming sees an error."""
    fleet, base = doomed_fleet
    servers = {s.name: s for s in fleet.servers}
    total, workers = 36, 3

    async def long_stream(killed: asyncio.Event) -> tuple[str, list[bytes]]:
        body = {"model": POOL, "stream": True, "max_tokens": 400,
                "messages": [{"role": "user", "content": "Tell a long story."}]}  # fmt: skip
        events: list[bytes] = []
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.post(base + "/v1/chat/completions", json=body) as resp,
        ):
            machine = resp.headers["x-gateway-provider"]
            async for line in resp.content:
                if line.startswith(b"data: "):
                    events.append(line[6:].strip())
                    if b'"content"' in events[-1] and not killed.is_set():
                        os.kill(servers[machine].process.pid, signal.SIGKILL)
                        killed.set()
        return machine, events

    async def run() -> tuple[tuple[str, list[bytes]], list[Outcome]]:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        outcomes: list[Outcome] = []
        queue = iter(range(total))
        killed = asyncio.Event()
        cut = asyncio.ensure_future(long_stream(killed))

        async def worker() -> None:
            for i in queue:
                outcomes.append(await _one(client, i, stream=i % 2 == 0))

        async with client:
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), 240)
        return await asyncio.wait_for(cut, 60), outcomes

    (victim, events), outcomes = asyncio.run(run())
    survivor = next(name for name in servers if name != victim)
    servers[victim].process.wait(10)
    failed = [o for o in outcomes if not o.ok]
    not_started = [o for o in failed if not o.started]
    failovers = _metric(base, "gateway_pool_failovers_total")
    print(
        f"\nthe long stream on {victim}: {len(events)} events, the last {events[-1][:80]!r}; "
        f"{len(outcomes)} other requests, {len(failed)} errors "
        f"({len(failed) - len(not_started)} streams already running on {victim}), "
        f"{failovers:g} failovers"
    )
    assert json.loads(events[-1])["error"]["code"] == "upstream_error"  # cut: the error event
    assert len(outcomes) == total
    assert not_started == [], not_started  # failover: nobody who had no reply yet saw an error
    for o in failed:  # a stream cut mid-way ends with the gateway's error event
        assert o.stream and o.started, o
    # after the kill the pool still answers, on the survivor
    reply = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    raw = reply.chat.completions.with_raw_response.create(
        model=POOL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert raw.headers["x-gateway-provider"] == survivor


def _turn(
    client: openai.OpenAI, model: str, messages: list[Any]
) -> tuple[str, str, dict[str, float]]:
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=messages,
        max_tokens=8,
        temperature=0,
    )
    reply = raw.parse()
    timings = (reply.model_extra or {}).get("timings") or {}
    return raw.headers["x-gateway-provider"], reply.choices[0].message.content or "", timings


def _system(n: int) -> str:
    return f"Conversation {n}. You are a terse assistant; you answer in a few words. " * 6


def test_follow_up_turns_stay_on_their_machine(real_gateway: str) -> None:
    """Conversations started concurrently spread over both machines; every follow-up turn goes
    back to the machine of its first turn, busy or not."""
    conversations, rounds = 8, 3

    async def run() -> dict[int, list[str]]:
        client = openai.AsyncOpenAI(base_url=real_gateway + "/v1", api_key="u", max_retries=0)
        history: dict[int, list[Any]] = {
            n: [{"role": "system", "content": _system(n)}, {"role": "user", "content": "Hi."}]
            for n in range(conversations)
        }
        machines: dict[int, list[str]] = {n: [] for n in range(conversations)}

        async def turn(n: int) -> None:
            raw = await client.chat.completions.with_raw_response.create(
                model=POOL,
                messages=history[n],
                max_tokens=6,
            )
            machines[n].append(raw.headers["x-gateway-provider"])
            text = raw.parse().choices[0].message.content or ""
            history[n] += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "And then?"},
            ]

        async with client:
            for _ in range(rounds):  # all conversations at once, round after round
                await asyncio.wait_for(asyncio.gather(*map(turn, range(conversations))), 240)
        return machines

    machines = asyncio.run(run())
    first = Counter(m[0] for m in machines.values())
    follow_ups = [(m[0], later) for m in machines.values() for later in m[1:]]
    same = sum(a == b for a, b in follow_ups)
    print(f"\nfirst turns per machine {dict(first)}; follow-ups on the same machine "
          f"{same}/{len(follow_ups)}")  # fmt: skip
    assert len(first) == 2  # both machines served first turns: the choice was not trivial
    assert same == len(follow_ups)


def test_the_second_turn_reuses_the_prompt_cache_of_its_machine(real_gateway: str) -> None:
    """What stickiness buys: turn 2 on the machine of turn 1 finds its prompt cached
    (llama-server's `timings.cache_n`); the same turn sent to the other machine does not."""
    client = openai.OpenAI(base_url=real_gateway + "/v1", api_key="u", max_retries=0)
    messages: list[Any] = [
        {"role": "system", "content": _system(99)},
        {"role": "user", "content": "Hi."},
    ]
    machine, text, first = _turn(client, POOL, messages)
    messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "More?"}]
    again, _, second = _turn(client, POOL, messages)
    other = "machine-b" if machine == "machine-a" else "machine-a"
    _, _, elsewhere = _turn(client, f"{other}/{ALIAS}", messages)
    shown = [(machine, first), (again, second), (other, elsewhere)]
    lines = [
        f"turn {1 if i == 0 else 2} on {m}: prompt_n {t['prompt_n']}, cache_n {t['cache_n']}"
        for i, (m, t) in enumerate(shown)
    ]
    print("\n" + "; ".join(lines))
    assert again == machine
    assert second["cache_n"] >= first["prompt_n"] + first["cache_n"] - 1  # all of turn 1's prompt
    assert second["prompt_n"] < second["cache_n"]  # only the new tokens were evaluated
    assert elsewhere["cache_n"] < second["cache_n"]

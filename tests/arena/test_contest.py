"""The merge itself (gateway.arena.contest), straight against a fake machine: every
contestant's text comes through, each ends with its figures or its error, keep-alives fill the
silence, and closing the merged stream cancels every contestant's request (both were streaming
at once: each had sent its first piece and stalled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from gateway.arena.contest import contest
from tests.conftest import UpstreamFactory

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def collect(events: AsyncGenerator[dict[str, Any] | None, None]) -> list[Any]:
    return [event async for event in events]


async def test_every_contestants_text_comes_through_and_each_ends_once(
    upstream: UpstreamFactory,
) -> None:
    fake = await upstream("machine", chunks=3, chunk_delay=0.05, timings=(4, 0, 3))
    async with aiohttp.ClientSession() as session:
        events = await collect(
            contest(session, fake.url + "/v1/chat/completions", {}, ["m1", "m2"], BODY,
                    ["r1", "r2"])
        )  # fmt: skip
    texts = [(e["model"], e["text"]) for e in events if "text" in e]
    assert sorted(texts) == sorted(
        (m, f"machine-{i} ") for m in ("m1", "m2") for i in range(3)
    )  # fmt: skip
    done = [e for e in events if e.get("done")]
    assert sorted(e["model"] for e in done) == ["m1", "m2"] and events[-1] in done
    assert {e["requestId"] for e in done} == {"r1", "r2"}
    assert all(e["completionTokens"] == 3 and e["source"] == "timings" for e in done)
    sent = [r.json() for r in fake.inference()]
    assert {s["model"] for s in sent} == {"m1", "m2"}
    assert all(s["stream"] and s["stream_options"] == {"include_usage": True} for s in sent)
    assert {r.headers["X-Request-Id"] for r in fake.inference()} == {"r1", "r2"}


async def test_errors_and_keepalives(upstream: UpstreamFactory) -> None:
    slow = await upstream("slow", first_byte_delay=0.3)
    async with aiohttp.ClientSession() as session:
        events = await collect(
            contest(session, slow.url + "/v1/chat/completions", {}, ["m1"], BODY, ["r"], 0.05)
        )
        assert None in events and events[-1]["done"]  # silence filled, then the answer
        slow.status = 500
        (failed,) = await collect(
            contest(session, slow.url + "/x", {}, ["m1"], BODY, ["r"])
        )  # fmt: skip
        assert failed["error"] == {"code": "fake", "message": "slow refused"}
        slow.status, slow.midstream_reset, slow.first_byte_delay = 200, True, 0
        (*_, broken) = await collect(contest(session, slow.url + "/x", {}, ["m1"], BODY, ["r"]))
        assert broken["error"]["code"] == "arena_upstream_error"
        (unreachable,) = await collect(
            contest(session, "http://127.0.0.1:9/x", {}, ["m1"], BODY, ["r"])
        )
        assert unreachable["error"]["code"] == "arena_upstream_error"


async def test_closing_the_merged_stream_cancels_every_contestant(
    upstream: UpstreamFactory,
) -> None:
    fake = await upstream("machine", stall_after=1)
    async with aiohttp.ClientSession() as session:
        events = contest(session, fake.url + "/x", {}, ["m1", "m2"], BODY, ["r1", "r2"])
        started: set[str] = set()
        async with asyncio.timeout(10):
            async for event in events:
                if event and "text" in event:
                    started.add(event["model"])
                if started == {"m1", "m2"}:
                    break
            await events.aclose()  # the client hung up
            await fake.cancelled.wait()
            await fake.idle.wait()  # both requests ended on the machine
    assert fake.active == 0

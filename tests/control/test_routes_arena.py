"""The arena over the real front and control plane, in front of fake upstreams: both answers
stream side by side in one SSE response, each contestant is a normal request (listed, counted,
cancellable), a hang-up cancels all of them; votes and the leaderboard; bad input is a 400 in
the OpenAI envelope and records nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from gateway.control.state import STATE
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for
from tests.fakes import FakeUpstream

PROMPT = [{"role": "user", "content": "hi"}]


async def two_machines(
    upstream: UpstreamFactory, gateway: GatewayFactory, **fakes: Any
) -> tuple[Gateway, FakeUpstream, FakeUpstream]:
    a = await upstream("machine-a", models=["qwen3"], timings=(5, 0, 3), **fakes)
    b = await upstream("machine-b", models=["qwen3", "gemma"], chunks=4, **fakes)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}),
        sse_keepalive_s=0.2,
    )
    return gw, a, b


def events_of(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
                out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


async def _until(ready: Callable[[], bool]) -> None:
    """Poll a condition (the caller bounds the wait)."""
    while not ready():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def battle(gw: Gateway, models: list[str], **body: Any) -> list[Any]:
    async with gw.post("/api/arena", json={"models": models, "messages": PROMPT, **body}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        return events_of(await r.read())


async def test_both_answers_stream_in_one_response_with_their_figures(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, a, b = await two_machines(upstream, gateway)
    events = await battle(gw, ["a/qwen3", "b/gemma"], max_tokens=8)
    first, *rest, last = events
    assert set(first) == {"battle", "models"} and first["models"] == ["a/qwen3", "b/gemma"]
    assert last == "[DONE]"
    text = {m: "".join(e.get("text", "") for e in rest if e["model"] == m) for m in first["models"]}
    assert text == {"a/qwen3": "machine-a-0 machine-a-1 machine-a-2 ",
                    "b/gemma": "machine-b-0 machine-b-1 machine-b-2 machine-b-3 "}  # fmt: skip
    done = {e["model"]: e for e in rest if e.get("done")}
    assert done["a/qwen3"]["provider"] == "a" and done["b/gemma"]["provider"] == "b"
    assert done["a/qwen3"]["completionTokens"] == 3  # llama-server's usage
    assert done["a/qwen3"]["tokensPerSecond"] == pytest.approx(3 / 9.5 * 1000, abs=0.1)
    assert done["a/qwen3"]["source"] == "timings"
    assert done["b/gemma"]["source"] == "wall" and done["b/gemma"]["completionTokens"] == 4
    assert all(d["ttftMs"] is not None and "error" not in d for d in done.values())
    # each contestant was a normal streamed request: the machine got the caller's options
    (seen_a,) = a.inference()
    assert seen_a.json()["max_tokens"] == 8 and seen_a.json()["stream"] is True
    assert seen_a.json()["stream_options"] == {"include_usage": True}
    assert seen_a.headers["X-Request-Id"] == f"arena-{first['battle']}-1"
    assert b.inference()[0].json()["model"] == "gemma"
    recent = (await (await gw.get("/api/requests")).json())["recent"]
    listed = {r["id"]: r for r in recent}
    assert listed[f"arena-{first['battle']}-2"]["provider"] == "b"
    assert listed[f"arena-{first['battle']}-1"]["client"] == "arena"


async def test_a_machine_that_fails_is_that_contestants_error_only(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, b = await two_machines(upstream, gateway)
    b.status = 503
    events = await battle(gw, ["a/qwen3", "b/qwen3"])
    done = {e["model"]: e for e in events[1:-1] if e.get("done")}
    assert done["b/qwen3"]["error"]["message"] == "machine-b refused"
    assert done["b/qwen3"]["provider"] == "b"
    assert "error" not in done["a/qwen3"] and done["a/qwen3"]["completionTokens"] == 3


async def test_a_client_that_hangs_up_cancels_every_contestant(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, a, b = await two_machines(upstream, gateway, stall_after=1)
    async with gw.post(
        "/api/arena", json={"models": ["a/qwen3", "b/qwen3"], "messages": PROMPT}
    ) as r:
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while seen != {"a/qwen3", "b/qwen3"}:
                line = await r.content.readline()
                if line.startswith(b"data: {") and b'"text"' in line:
                    seen.add(orjson.loads(line[6:])["model"])
        r.connection.transport.abort()  # the client hangs up
    async with asyncio.timeout(10):
        await a.cancelled.wait()
        await b.cancelled.wait()
        await a.idle.wait()
        await b.idle.wait()
        await _until(lambda: not gw.app[STATE].activity.snapshot()["active"])
    recent = gw.app[STATE].activity.snapshot()["recent"]
    assert sorted(r["provider"] for r in recent) == ["a", "b"]  # both ended on the gateway too


async def test_a_contestant_cancelled_on_the_gateway_ends_alone(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", models=["qwen3"], stall_after=1)
    b = await upstream("machine-b", models=["qwen3"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}))
    async with gw.post(
        "/api/arena", json={"models": ["a/qwen3", "b/qwen3"], "messages": PROMPT}
    ) as r:
        head = orjson.loads((await r.content.readline())[6:])
        async with asyncio.timeout(10):
            await a.arrived.wait()
            activity = gw.app[STATE].activity
            await _until(  # a's stream is under way: cancel it from the API
                lambda: (
                    getattr(activity.find(f"arena-{head['battle']}-1"), "state", "") == "streaming"
                )
            )
        cancel = await gw.post(f"/api/requests/arena-{head['battle']}-1/cancel")
        assert cancel.status == 200
        events = events_of(await r.read())
    done = {e["model"]: e for e in events if isinstance(e, dict) and e.get("done")}
    assert done["a/qwen3"]["error"]["code"] == "request_cancelled"
    assert "error" not in done["b/qwen3"]
    assert events[-1] == "[DONE]"


async def test_votes_rank_the_models_and_refuse_what_the_battle_did_not_have(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    gw, _, _ = await two_machines(upstream, gateway)
    one = (await battle(gw, ["a/qwen3", "b/qwen3"]))[0]["battle"]
    two = (await battle(gw, ["a/qwen3", "b/qwen3", "b/gemma"]))[0]["battle"]
    refused = [
        ({"battle": one, "winner": "b/gemma"}, 400, "invalid_vote"),  # not in that battle
        ({"battle": one}, 400, "invalid_vote"),  # no winner (null is a tie: say it)
        ({"winner": "a/qwen3"}, 400, "invalid_vote"),
        ({"battle": "nope", "winner": "a/qwen3"}, 404, "battle_not_found"),
        ({"battle": one, "winner": "a/qwen3", "models": ["a/qwen3"]}, 400, "invalid_vote"),
    ]
    for body, status, code in refused:
        resp = await gw.post("/api/arena/votes", json=body)
        assert resp.status == status, body
        assert (await resp.json())["error"]["code"] == code
    assert (await (await gw.get("/api/arena/leaderboard")).json())["rows"] == []
    ok = await gw.post("/api/arena/votes", json={"battle": one, "winner": "b/qwen3"})
    assert ok.status == 200
    again = await gw.post("/api/arena/votes", json={"battle": one, "winner": "a/qwen3"})
    assert again.status == 409 and (await again.json())["error"]["code"] == "battle_already_voted"
    tie = await gw.post("/api/arena/votes", json={"battle": two, "winner": None})
    assert tie.status == 200
    board = await (await gw.get("/api/arena/leaderboard")).json()
    assert board["rating"] == "elo"
    rows = {r["model"]: r for r in board["rows"]}
    assert board["rows"][0]["model"] == "b/qwen3"
    assert rows["b/qwen3"] | {"rating": 0} == {
        "model": "b/qwen3", "wins": 1, "losses": 0, "ties": 2, "rating": 0,
    }  # fmt: skip
    assert rows["a/qwen3"]["losses"] == 1 and rows["b/gemma"]["ties"] == 2


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"models": ["a/qwen3"]}, "invalid_arena", "models"),
        ({"models": ["a/qwen3", "b/qwen3", "b/gemma", "a/x", "b/y"]}, "invalid_arena", "models"),
        ({"models": ["a/qwen3", "a/qwen3"]}, "invalid_arena", "models"),
        ({"models": ["a/qwen3", "nowhere/qwen3"]}, "model_not_found", "model"),
        ({"models": ["a/qwen3", "a/gemma"]}, "model_not_found", "models"),  # a does not list it
        ({"models": ["a/qwen3", 7]}, "invalid_arena", "models"),
        ({"models": ["a/qwen3", "b/qwen3"], "messages": []}, "invalid_arena", "messages"),
        ({"models": ["a/qwen3", "b/qwen3"], "max_tokens": 0}, "invalid_arena", "max_tokens"),
        ({"models": ["a/qwen3", "b/qwen3"], "temperature": "hot"}, "invalid_arena", "temperature"),
    ],
)
async def test_bad_arenas_are_a_400_and_record_nothing(
    upstream: UpstreamFactory, gateway: GatewayFactory, body: dict[str, Any], code: str, param: str
) -> None:
    gw, a, b = await two_machines(upstream, gateway)
    resp = await gw.post("/api/arena", json={"messages": PROMPT, **body})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert not a.inference() and not b.inference()
    assert gw.app[STATE].arena.table.file.query("SELECT count(*) FROM battles") == [(0,)]  # type: ignore[attr-defined]


async def test_not_json_is_a_400(upstream: UpstreamFactory, gateway: GatewayFactory) -> None:
    gw, _, _ = await two_machines(upstream, gateway)
    for path in ("/api/arena", "/api/arena/votes"):
        resp = await gw.post(path, data=b"{nope")
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"


async def test_the_callers_key_goes_with_every_contestant(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("machine-a", models=["qwen3"], timings=(5, 0, 3))
    b = await upstream("machine-b", models=["qwen3"], timings=(5, 0, 3))
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}, {"id": "b", "baseUrl": b.url}),
        api_keys=("alice:k-alice",),
    )
    body = {"models": ["a/qwen3", "b/qwen3"], "messages": PROMPT}
    assert (await gw.post("/api/arena", json=body)).status == 401
    async with gw.post("/api/arena", json=body, headers={"Authorization": "Bearer k-alice"}) as r:
        events = events_of(await r.read())
    assert all("error" not in e for e in events[1:-1])
    await gw.app[STATE].usage.flush()
    usage = await (await gw.get(
        "/api/usage?group_by=key", headers={"Authorization": "Bearer k-alice"}
    )).json()  # fmt: skip
    assert [(r["key"], r["requests"]) for r in usage["rows"]] == [("alice", 2)]

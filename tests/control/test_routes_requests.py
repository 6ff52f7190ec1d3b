"""GET /api/requests, GET /api/requests/{id}, POST /api/requests/{id}/cancel, through a running
gateway in front of fake machines: what is listed, what a cancel does on both sides."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.conftest import *  # noqa: F403
from tests.conftest import Gateway, GatewayFactory, UpstreamFactory, registry_for

CHAT = "/v1/chat/completions"


def body(model: str = "a/m", stream: bool = True, text: str = "hi") -> bytes:
    return orjson.dumps(
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    )


async def requests_now(gw: Gateway, query: str = "") -> dict[str, Any]:
    async with gw.get("/api/requests" + query) as resp:
        assert resp.status == 200
        listed: dict[str, Any] = await resp.json()
        return listed


async def until(gw: Gateway, rid: str, state: str) -> dict[str, Any]:
    """The request as listed once it reaches `state` (bounded)."""
    for _ in range(500):
        listed = await requests_now(gw)
        for entry in listed["active"] + listed["recent"]:
            if entry["id"] == rid and entry["state"] == state:
                return entry  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{rid} never reached {state}: {await requests_now(gw)}")


async def test_a_live_stream_is_listed_cancelled_and_its_upstream_dropped(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"], chunks=5, stall_after=1)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    headers = {"X-Request-Id": "live-1", "User-Agent": "OpenAI/Python 1.99.0"}
    async with gw.post(CHAT, data=body(), headers=headers) as resp:
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        assert b"a-0" in first
        live = await until(gw, "live-1", "streaming")
        assert live["model"] == "a/m" and live["provider"] == "a"
        assert live["client"] == "openai-python" and live["stream"] is True
        assert live["ttftMs"] is not None and live["bytes"] > 0

        async with gw.post("/api/requests/live-1/cancel") as cancel:
            assert cancel.status == 200
            assert (await cancel.json())["state"] == "cancelled"
        rest = await asyncio.wait_for(resp.content.read(), 5)  # the stream ends...
    # ...with one error event that says so, and nothing after it
    assert rest.startswith(b"data: ") and rest.endswith(b"\n\n"), rest
    error = orjson.loads(rest[len(b"data: ") :])["error"]
    assert error["code"] == "request_cancelled" and "cancelled" in error["message"]
    await asyncio.wait_for(a.cancelled.wait(), 5)  # the machine saw its request dropped
    listed = await requests_now(gw)
    assert listed["active"] == []
    (recent,) = [e for e in listed["recent"] if e["id"] == "live-1"]
    assert recent["state"] == "cancelled" and recent["error"] == "request_cancelled"


async def test_a_second_client_taking_a_running_id_gets_a_new_one_and_the_cancel_misses_it(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"], chunks=5, stall_after=1)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    headers = {"X-Request-Id": "job-7"}
    async with gw.post(CHAT, data=body(), headers=headers) as victim:
        await victim.content.readuntil(b"\n\n")
        async with gw.post(CHAT, data=body(), headers=headers) as impostor:
            await impostor.content.readuntil(b"\n\n")
            assert victim.headers["X-Request-Id"] == "job-7"
            renamed = impostor.headers["X-Request-Id"]
            assert renamed != "job-7"
            assert [s.headers["X-Request-Id"] for s in a.inference()] == ["job-7", renamed]
            async with gw.post("/api/requests/job-7/cancel") as cancel:
                assert cancel.status == 200
            rest = await asyncio.wait_for(victim.content.read(), 5)
            assert b"request_cancelled" in rest  # the one that had the id first
            assert (await until(gw, renamed, "streaming"))["id"] == renamed  # still running
            async with gw.post(f"/api/requests/{renamed}/cancel") as cancel:
                assert cancel.status == 200
            assert b"request_cancelled" in await asyncio.wait_for(impostor.content.read(), 5)


async def test_a_queued_request_cancelled_gets_a_499_and_never_reaches_the_machine(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"], chunks=5, stall_after=1)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url, "maxConcurrent": 1}))
    async with gw.post(CHAT, data=body(), headers={"X-Request-Id": "busy"}) as busy:
        await busy.content.readuntil(b"\n\n")  # the one slot is taken
        waiting = asyncio.ensure_future(
            gw.post(CHAT, data=body(stream=False), headers={"X-Request-Id": "q-1"})
        )
        await until(gw, "q-1", "queued")
        async with gw.post("/api/requests/q-1/cancel") as cancel:
            assert cancel.status == 200
        resp = await asyncio.wait_for(waiting, 5)
        async with resp:
            assert resp.status == 499
            assert (await resp.json())["error"]["code"] == "request_cancelled"
    assert len(a.inference()) == 1  # only "busy" ever reached it


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}))
    async with gw.post(CHAT, data=body(stream=False), headers={"X-Request-Id": "done-1"}) as r:
        assert r.status == 200
    for method, path, status, code in [
        ("GET", "/api/requests/nope", 404, "request_not_found"),
        ("POST", "/api/requests/nope/cancel", 404, "request_not_found"),
        ("POST", "/api/requests/done-1/cancel", 409, "request_not_running"),
        ("GET", "/api/requests?recent=-1", 400, "invalid_parameter"),
        ("GET", "/api/requests?recent=x", 400, "invalid_parameter"),
        ("DELETE", "/api/requests/done-1", 405, "method_not_allowed"),
    ]:
        async with gw.request(method, path) as resp:
            assert resp.status == status, (method, path)
            assert (await resp.json())["error"]["code"] == code, (method, path)
    listed = await requests_now(gw)
    assert [e["state"] for e in listed["recent"]] == ["done"]  # still done, not cancelled
    assert (await requests_now(gw, "?recent=0"))["recent"] == []


async def test_the_ring_keeps_the_newest_and_captures_are_off_by_default(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"])
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url}), recent_requests=3)
    for i in range(5):
        async with gw.post(CHAT, data=body(stream=False), headers={"X-Request-Id": f"r{i}"}):
            pass
    listed = await requests_now(gw)
    assert [e["id"] for e in listed["recent"]] == ["r4", "r3", "r2"]  # newest first
    async with gw.get("/api/requests/r4") as resp:
        one = await resp.json()
    assert one["state"] == "done" and one["status"] == 200 and one["capture"] is None


async def test_captures_keep_the_body_and_the_reply_never_a_credential(
    gateway: GatewayFactory, upstream: UpstreamFactory
) -> None:
    a = await upstream("a", models=["m"])
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url}), capture=True, capture_count=2,
        capture_bytes=1024,
    )  # fmt: skip
    headers = {
        "X-Request-Id": "c1", "Authorization": "Bearer sk-secret", "X-Api-Key": "k-secret",
        "Cookie": "s=secret", "X-Custom": "kept",
    }  # fmt: skip
    async with gw.post(CHAT, data=body(stream=False, text="capture me"), headers=headers) as r:
        assert r.status == 200
    async with gw.get("/api/requests/c1") as resp:
        capture = (await resp.json())["capture"]
    assert "capture me" in capture["body"] and capture["bodyTruncated"] is False
    assert "hi from a" in capture["reply"] and capture["replyTruncated"] is False
    names = {n.lower() for n, _ in capture["headers"]}
    assert "x-custom" in names
    assert not names & {"authorization", "x-api-key", "cookie"}
    assert "secret" not in orjson.dumps(capture).decode()
    # a body past the limit is cut; only the last two requests keep their capture
    async with gw.post(
        CHAT, data=body(stream=False, text="x" * 5000), headers={"X-Request-Id": "c2"}
    ):
        pass
    async with gw.post(CHAT, data=body(stream=False), headers={"X-Request-Id": "c3"}):
        pass
    async with gw.get("/api/requests/c2") as resp:
        c2 = (await resp.json())["capture"]
    assert c2["bodyTruncated"] is True and len(c2["body"]) == 1024
    async with gw.get("/api/requests/c1") as resp:
        assert (await resp.json())["capture"] is None  # the oldest capture was dropped

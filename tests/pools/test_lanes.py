"""Per-provider lanes: FIFO order, 429 past the queue, a hang-up leaves the queue."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.core.errors import GatewayError
from gateway.pools.lanes import Lane, Lanes
from tests.conftest import GatewayFactory, UpstreamFactory, registry_for


async def test_fifo_order_and_handover() -> None:
    lane = Lane("box", max_concurrent=1, max_queue=10, queue_timeout_s=5)
    order: list[int] = []
    gate = asyncio.Event()

    async def job(i: int) -> None:
        async with lane.slot():
            order.append(i)
            await gate.wait()

    first = asyncio.ensure_future(job(0))
    await asyncio.sleep(0)
    rest = []
    for i in range(1, 6):
        rest.append(asyncio.ensure_future(job(i)))
        await asyncio.sleep(0)  # arrive in order
    assert (lane.in_flight, lane.queued) == (1, 5)
    gate.set()
    await asyncio.gather(first, *rest)
    assert order == [0, 1, 2, 3, 4, 5]
    assert (lane.in_flight, lane.queued) == (0, 0)


async def test_past_max_queue_is_429_with_retry_after() -> None:
    lane = Lane("box", max_concurrent=1, max_queue=1, queue_timeout_s=20)
    hold = asyncio.Event()

    async def job() -> None:
        async with lane.slot():
            await hold.wait()

    running, waiting = asyncio.ensure_future(job()), asyncio.ensure_future(job())
    await asyncio.sleep(0)
    with pytest.raises(GatewayError) as info:
        async with lane.slot():
            pass
    assert (info.value.status, info.value.code) == (429, "provider_busy")
    assert info.value.headers == {"Retry-After": "5"}
    hold.set()
    await asyncio.gather(running, waiting)


async def test_queue_timeout_is_429() -> None:
    lane = Lane("box", max_concurrent=1, max_queue=5, queue_timeout_s=0.05)
    hold = asyncio.Event()

    async def job() -> None:
        async with lane.slot():
            await hold.wait()

    running = asyncio.ensure_future(job())
    await asyncio.sleep(0)
    with pytest.raises(GatewayError, match=r"waited 0\.05s in the queue"):
        async with lane.slot():
            pass
    assert lane.queued == 0
    hold.set()
    await running


async def test_cancelled_waiter_leaves_the_queue() -> None:
    lanes = Lanes()
    lane = lanes.get("box", 1, 5, 5)
    hold = asyncio.Event()
    order: list[str] = []

    async def job(name: str) -> None:
        async with lane.slot():
            order.append(name)
            await hold.wait()

    running = asyncio.ensure_future(job("a"))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(job("b"))
    stays = asyncio.ensure_future(job("c"))
    await asyncio.sleep(0)
    assert lane.queued == 2
    gone.cancel()  # b's client hung up while waiting
    await asyncio.sleep(0)
    assert lane.queued == 1
    hold.set()
    await asyncio.gather(running, stays)
    assert order == ["a", "c"]
    assert lanes.in_flight == 0 and lanes.idle.is_set()


async def test_strictly_serial_machine_over_http(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", chunks=3, chunk_delay=0.05)
    gw = await gateway(
        registry_for({"id": "a", "baseUrl": a.url, "maxConcurrent": 1, "maxQueue": 2})
    )
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, a.active)
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    resps = await asyncio.gather(
        *(gw.post("/v1/chat/completions", json={"model": "a/m", "stream": True}) for _ in range(4))
    )
    watcher.cancel()
    statuses = sorted(r.status for r in resps)
    assert statuses == [200, 200, 200, 429]  # one running, two queued, one refused
    busy = next(r for r in resps if r.status == 429)
    assert busy.headers["Retry-After"]
    assert (await busy.json())["error"]["code"] == "provider_busy"
    for r in resps:
        await r.read()
    assert peak == 1  # never two at once on the machine
    assert len(a.inference()) == 3


async def test_queue_and_in_flight_visible(
    upstream: UpstreamFactory, gateway: GatewayFactory
) -> None:
    a = await upstream("a", first_byte_delay=0.5)
    gw = await gateway(registry_for({"id": "a", "baseUrl": a.url, "maxConcurrent": 1}))
    async with aiohttp.ClientSession() as client:
        tasks = [
            asyncio.ensure_future(
                client.post(gw.make_url("/v1/chat/completions"), json={"model": "a/m"})
            )
            for _ in range(3)
        ]
        await asyncio.wait_for(a.arrived.wait(), 5)
        await asyncio.sleep(0.05)  # the other two reach the queue
        body = await (await gw.get("/api/models")).json()
        row = body["providers"][0]
        assert (row["inFlight"], row["queued"], row["maxConcurrent"]) == (1, 2, 1)
        metrics = await (await gw.get("/metrics")).text()
        assert 'gateway_in_flight{provider="a"} 1.0' in metrics
        assert 'gateway_queued{provider="a"} 2.0' in metrics
        for t in tasks:
            (await t).close()

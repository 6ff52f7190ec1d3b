"""The one sweep that keeps the deadlines of every exchange in flight (gateway.edge.streams)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.edge.errors import GatewayError
from gateway.edge.streams import MAX_GRAIN_S, MIN_GRAIN_S, Streams, grain_of


class Fake:
    """An exchange as the sweep sees it: records when it was ticked; `then` says what a tick
    does (a later `due`, or the end of the exchange)."""

    def __init__(self, streams: Streams, due: float, grain: float, then: float | None) -> None:
        self.streams = streams
        self.due = due
        self.grain = grain
        self.then = then  # the next due after a tick (None: the tick ends it)
        self.ticks: list[float] = []
        self.failed: GatewayError | None = None

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if self.then is None:
            self.streams.unwatch(self)
        else:
            self.due = self.then

    def fail(self, err: GatewayError) -> None:
        self.failed = err
        self.streams.unwatch(self)


def test_the_grain_is_an_eighth_of_the_shortest_limit_within_bounds() -> None:
    assert grain_of(600, 120, 0) == MAX_GRAIN_S  # (0: no keep-alive comments)
    assert grain_of(600, 120, 15) == MAX_GRAIN_S
    assert grain_of(1.0, 2.0, 0) == pytest.approx(0.125)
    assert grain_of(0.01, 5, 0) == MIN_GRAIN_S
    assert grain_of(0, 0, 0) == MAX_GRAIN_S


async def test_a_due_exchange_is_ticked_within_its_grain_and_the_sweep_then_stops() -> None:
    loop = asyncio.get_running_loop()
    streams = Streams()
    start = loop.time()
    ex = Fake(streams, due=start + 0.1, grain=0.02, then=None)
    streams.watch(ex, loop)
    await asyncio.sleep(0.05)
    assert ex.ticks == []  # not due yet
    await asyncio.sleep(0.15)
    assert len(ex.ticks) == 1
    assert ex.ticks[0] >= start + 0.1
    assert ex not in streams.active
    await asyncio.sleep(0.05)  # the sweep saw nothing left and was not armed again
    assert streams._sweep is None


async def test_an_exchange_that_needs_a_finer_grain_arms_the_sweep_sooner() -> None:
    loop = asyncio.get_running_loop()
    streams = Streams()
    coarse = Fake(streams, due=loop.time() + 60, grain=MAX_GRAIN_S, then=loop.time() + 60)
    streams.watch(coarse, loop)
    fine = Fake(streams, due=loop.time() + 0.03, grain=0.01, then=None)
    streams.watch(fine, loop)
    await asyncio.sleep(0.1)  # long before the coarse sweep (0.5 s) would have come
    assert len(fine.ticks) == 1
    assert coarse.ticks == []
    assert streams.active == {coarse}
    for exchange in list(streams.active):
        streams.unwatch(exchange)


async def test_an_exchange_is_ticked_again_at_its_next_due() -> None:
    loop = asyncio.get_running_loop()
    streams = Streams()
    ex = Fake(streams, due=loop.time() + 0.02, grain=0.01, then=loop.time() + 0.08)
    streams.watch(ex, loop)
    await asyncio.sleep(0.05)
    assert len(ex.ticks) == 1
    ex.then = None
    await asyncio.sleep(0.1)
    assert len(ex.ticks) == 2
    assert ex.ticks[1] >= ex.ticks[0] + 0.04


async def test_watching_many_arms_one_sweep_and_end_all_fails_every_one() -> None:
    loop = asyncio.get_running_loop()
    streams = Streams()
    many = [Fake(streams, due=loop.time() + 60, grain=0.25, then=None) for _ in range(100)]
    for ex in many:
        streams.watch(ex, loop)
    sweep = streams._sweep
    assert sweep is not None
    for ex in many:
        streams.watch(ex, loop)  # (a second attempt watches again: nothing new is armed)
    assert streams._sweep is sweep
    streams.end_all()
    assert streams.shutting_down
    assert all(ex.failed is not None and ex.failed.status == 503 for ex in many)
    assert not streams.active

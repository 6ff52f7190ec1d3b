"""The exchanges in flight, and the one timer that keeps all their deadlines.

Each exchange says when it next needs looking at (`due`: its first-byte or idle limit, or its
next SSE keep-alive comment) and how late that may be (`grain`: an eighth of its shortest limit,
at most MAX_GRAIN_S). One sweep timer, armed only while exchanges are in flight, looks at the
ones that are due at the finest grain among them; so a request costs a set insert and a set
removal, not a timer of its own (a timer armed and cancelled per request was ~2.8 % of a plain
request's instructions: bench/README.md). A deadline is acted on at most one grain after it.

A shutdown ends them all cleanly after its grace period (`end_all`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from gateway.edge.errors import GatewayError

MAX_GRAIN_S = 0.5  # the sweep's longest interval (a 15 s keep-alive comment is ≤ 0.5 s late)
MIN_GRAIN_S = 0.005


def grain_of(first_byte_s: float, idle_s: float, keepalive_s: float) -> float:
    """How late a deadline may be acted on, for an exchange with these limits (0: none).
    (Once per request: plain comparisons, no generator.)"""
    shortest = MAX_GRAIN_S * 8
    if 0 < first_byte_s < shortest:
        shortest = first_byte_s
    if 0 < idle_s < shortest:
        shortest = idle_s
    if 0 < keepalive_s < shortest:
        shortest = keepalive_s
    grain = shortest / 8
    return MIN_GRAIN_S if grain < MIN_GRAIN_S else grain


class Watched(Protocol):
    """An exchange as the sweep sees it (`relay.Exchange`)."""

    due: float  # loop time when it next needs a `tick`
    grain: float

    def tick(self, now: float) -> None: ...
    def fail(self, err: GatewayError) -> None: ...


@dataclass(slots=True)
class Streams:
    active: set[Watched] = field(default_factory=set)
    shutting_down: bool = False
    _sweep: asyncio.TimerHandle | None = None
    _grain: float = 0.0  # the armed sweep's interval

    def watch(self, exchange: Watched, loop: asyncio.AbstractEventLoop) -> None:
        """`exchange` is in flight: its `due` is looked at from now on (no timer work while a
        sweep is armed at least as finely as it needs)."""
        self.active.add(exchange)
        sweep = self._sweep
        if sweep is None or exchange.grain < self._grain:
            if sweep is not None:
                sweep.cancel()
            self._arm(loop, loop.time(), exchange.grain)

    def unwatch(self, exchange: Watched) -> None:
        self.active.discard(exchange)  # (the sweep stops by itself when none is left)

    def end_all(self) -> None:
        self.shutting_down = True
        err = GatewayError(
            503, "gateway_shutdown", "the gateway is shutting down; retry the request"
        )
        for exchange in list(self.active):
            exchange.fail(err)

    def _arm(self, loop: asyncio.AbstractEventLoop, now: float, grain: float) -> None:
        self._grain = grain
        self._sweep = loop.call_at(now + grain, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        if not self.active:
            return
        now = loop.time() + 0.001  # timers may fire a hair early
        grain = MAX_GRAIN_S
        active = self.active
        for exchange in list(active):  # (a tick may end the exchange: it leaves the set)
            if exchange.due <= now:
                exchange.tick(now)
            if exchange.grain < grain and exchange in active:
                grain = exchange.grain
        if active and self._sweep is None:  # (a tick's failover may have armed one)
            self._arm(loop, now, grain)

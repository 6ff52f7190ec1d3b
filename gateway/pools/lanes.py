"""Per-provider lanes: in-flight counting for every provider, and for providers with
`maxConcurrent` a FIFO queue of at most `maxQueue` waiters.

A waiter whose client hangs up (its task is cancelled) leaves the queue; a slot freed by a
finished request goes straight to the oldest waiter, so order is strictly first come, first served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from gateway.core.errors import GatewayError


class Lane:
    def __init__(
        self,
        provider_id: str,
        max_concurrent: int | None,
        max_queue: int,
        queue_timeout_s: float,
        on_count: Callable[[int], None] = lambda delta: None,
    ) -> None:
        self.provider_id = provider_id
        self._on_count = on_count
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def limits(self) -> tuple[int | None, int, float]:
        return self.max_concurrent, self.max_queue, self.queue_timeout_s

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def try_acquire(self) -> bool:
        """Take a slot now if one is free (the usual case: no await, no context manager)."""
        if self.max_concurrent is None or (
            self.in_flight < self.max_concurrent and not self._waiters
        ):
            self.in_flight += 1
            self._on_count(1)
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_queue:
            raise self._full(f"{self.max_queue} requests already waiting")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter  # release hands the slot over: in_flight already counts us
        except BaseException as exc:  # cancelled (client gone) or timed out
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot reached us just as we gave up: pass it on
            else:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise self._full(f"waited {self.queue_timeout_s:g}s in the queue") from None
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the oldest waiter
                return
        self.in_flight -= 1
        self._on_count(-1)

    def _full(self, why: str) -> GatewayError:
        retry = max(1, min(60, round(self.queue_timeout_s / 4)))
        return GatewayError(
            429,
            "provider_busy",
            f"provider {self.provider_id!r} is busy ({self.in_flight} running, {why}); "
            f"retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )


class Lanes:
    """One lane per provider id, rebuilt when a registry reload changes its limits (requests
    in flight keep the lane they started in)."""

    def __init__(self) -> None:
        self._lanes: dict[str, Lane] = {}
        self.in_flight = 0  # across every lane, old ones included
        self.idle = asyncio.Event()  # set while nothing is in flight
        self.idle.set()

    def _count(self, delta: int) -> None:
        self.in_flight += delta
        if self.in_flight:
            self.idle.clear()
        else:
            self.idle.set()

    def get(
        self, provider_id: str, max_concurrent: int | None, max_queue: int, queue_timeout_s: float
    ) -> Lane:
        lane = self._lanes.get(provider_id)
        if lane is None or lane.limits() != (max_concurrent, max_queue, queue_timeout_s):
            lane = Lane(provider_id, max_concurrent, max_queue, queue_timeout_s, self._count)
            self._lanes[provider_id] = lane
        return lane

    def in_flight_of(self, provider_id: str) -> int:
        lane = self._lanes.get(provider_id)
        return 0 if lane is None else lane.in_flight

    def snapshot(self) -> dict[str, Lane]:
        return dict(self._lanes)

"""The managed keys kept current off the request path: every GATEWAY_KEYS_REFRESH_S the keys
and each key's tokens today are read from the store; about once a second the per-minute
limits' leases are renewed (`gateway.store.leases`). The request path reads only memory.

A store that does not answer leaves the last keys in force (chat goes on for known keys), the
limits counted per replica, and /health saying so; the next answer puts things back."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable

import structlog

from gateway.access.keys import KeyCheck
from gateway.control.state import StoreStatus
from gateway.store.tables import KeysTable
from gateway.usage.history import UsageHistory

log = structlog.get_logger("gateway.keys")
LEASE_S = 1.0  # how often the per-minute leases are renewed
DAY_S = 86400


class KeyKeeper:
    def __init__(
        self,
        access: KeyCheck,
        table: KeysTable,
        history: UsageHistory,
        status: StoreStatus,
        refresh_s: float,
        clock: Callable[[], float] = time.time,
        *,
        heartbeat: bool = False,
    ) -> None:
        self.access = access
        self.table = table
        self.history = history
        self.status = status
        self.refresh_s = refresh_s
        self.clock = clock
        self.heartbeat = heartbeat  # lease even with no limits: the others count this replica
        self.replica = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._next_refresh = 0.0

    async def refresh(self) -> None:
        """The keys, then the day's tokens per label (the store's and the unflushed ones)."""
        records = await asyncio.to_thread(self.table.listing)
        self.access.load(records)
        now = self.clock()
        day = int(now // DAY_S)
        rows = await self.history.query(day * DAY_S, now, ["key"])
        # (no await from here: what is counted after the query adds to what it found)
        self.access.limits.tokens_read(
            {str(r["key"]): int(r["promptTokens"]) + int(r["completionTokens"]) for r in rows},  # type: ignore[call-overload]
            day,
        )

    async def lease(self) -> None:
        limits = self.access.limits
        if not limits.rates and not self.heartbeat:
            return
        returned, wanted = limits.lease_asked()
        now = self.clock()
        try:
            leases = await asyncio.to_thread(
                self.table.lease, self.replica, now, returned, wanted
            )
        except BaseException:
            limits.unleased(self.clock())
            raise
        limits.leased(leases, self.clock())

    async def tick(self) -> None:
        """One round: the keys when due, then the leases. Never raises (but cancellation)."""
        try:
            if time.monotonic() >= self._next_refresh:
                await self.refresh()
                self._next_refresh = time.monotonic() + self.refresh_s
            await self.lease()
        except Exception as exc:
            self._failed(exc)
        else:
            if not self.status.reachable:
                log.info("store_reachable_again", kind=self.status.kind)
            self.status.reachable, self.status.error, self.status.since = True, None, None

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if self.status.reachable:
            log.warning("store_unreachable", kind=self.status.kind, error=error)
            self.status.since = self.clock()
        self.status.reachable, self.status.error = False, error

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S)
            await self.tick()

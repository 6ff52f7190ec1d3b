"""A compact usage history in the store: one row per hour, machine, model and key label.

Requests add to an in-memory table (a dict update: nothing on the request path touches the
disk); every FLUSH_S the sums are added to the file in one transaction, and rows older than the
retention are deleted. Reads merge what is not flushed yet, so they are always current. The key
is never stored: only its label (GATEWAY_API_KEYS `label:key`), or "" when the gateway is open.
The same sums, totalled since start-up per machine and model, are /metrics' token counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from pathlib import Path

import structlog

from gateway.core.values import iso_utc
from gateway.store.tables import UsageRow, UsageTable
from gateway.store.usage import DB_NAME, SqliteUsage
from gateway.usage.extract import Usage

log = structlog.get_logger("gateway.usage")

__all__ = ["DB_NAME", "GROUPS", "Sums", "UsageHistory"]
FLUSH_S = 10.0
MAX_PENDING = 100_000  # rows kept unwritten while the store is down (then the oldest hours go)
MAX_RETENTION_DAYS = 36_500
BIGGEST = 2**62  # a sum is written at most this (SQLite integers are 64-bit; and sums add up)
GROUPS = ("provider", "model", "key", "hour", "day")

Key = tuple[int, str, str, str]  # hour (unix time / 3600), provider, model, key label


@dataclass(slots=True)
class Sums:
    requests: int = 0
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    seconds: float = 0.0  # generating (llama-server's predicted_ms), else the whole request
    said_cached: int = 0  # prompt tokens of the replies that said how many were cached

    def add(self, other: Sums) -> None:
        self.requests += other.requests
        self.prompt += other.prompt
        self.completion += other.completion
        self.cached += other.cached
        self.seconds += other.seconds
        self.said_cached += other.said_cached


class UsageHistory:
    """`table`: where the sums are kept (a path: a SQLite file there)."""

    def __init__(
        self,
        table: UsageTable | Path,
        retention_days: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = SqliteUsage(table) if isinstance(table, Path) else table
        self.retention_days = retention_days
        self._clock = clock
        self._pending: dict[Key, Sums] = {}
        self._totals: dict[tuple[str, str], Sums] = {}  # flushed since start: (provider, model)
        self._turn = asyncio.Lock()  # a flush and a query, one after the other

    def record(self, provider: str, model: str, key: str, usage: Usage, seconds: float) -> None:
        """One reply's usage (on the request path: a dict update)."""
        k = (int(self._clock() // 3600), provider, model, key)
        sums = self._pending.get(k)
        if sums is None:
            sums = self._pending[k] = Sums()
        sums.requests += 1
        sums.prompt += usage.prompt
        sums.completion += usage.completion
        if usage.cached is not None:
            sums.cached += usage.cached
            sums.said_cached += usage.prompt
        sums.seconds += seconds

    def _flush(self, pending: dict[Key, Sums]) -> None:
        """(In a worker thread.) One transaction: the sums added, the retention applied."""
        oldest = int(self._clock() // 3600 - min(self.retention_days, MAX_RETENTION_DAYS) * 24)
        rows: list[UsageRow] = [
            (*k, min(s.requests, BIGGEST), min(s.prompt, BIGGEST), min(s.completion, BIGGEST),
             min(s.cached, BIGGEST), min(s.seconds, float(BIGGEST))) for k, s in pending.items()
        ]  # fmt: skip
        self.table.add(rows, oldest)

    async def flush(self) -> None:
        """Add what was recorded since the last flush to the file (and apply the retention)."""
        async with self._turn:
            pending, self._pending = self._pending, {}
            if not pending:
                return
            for (_, provider, model, _), sums in pending.items():  # (a counter never goes back)
                self._totals.setdefault((provider, model), Sums()).add(sums)
            try:
                await asyncio.to_thread(self._flush, pending)
            except Exception:  # not written: kept for the next flush (already in the totals)
                for k, s in pending.items():
                    self._pending.setdefault(k, Sums()).add(s)
                    self._totals[(k[1], k[2])].add(_negative(s))
                self._bound()
                raise

    def _bound(self) -> None:
        """Unwritten rows past MAX_PENDING (a store down for long): the oldest hours go."""
        over = len(self._pending) - MAX_PENDING
        if over <= 0:
            return
        for k in sorted(self._pending)[:over]:
            self._totals.setdefault((k[1], k[2]), Sums()).add(self._pending.pop(k))
        log.warning("usage_dropped_unwritten", rows=over, kept=MAX_PENDING)

    def totals(self) -> dict[tuple[str, str], Sums]:
        """Since start-up, per (provider, model): what was flushed and what is pending."""
        out = {k: Sums(*astuple(s)) for k, s in self._totals.items()}
        for (_, provider, model, _), sums in list(self._pending.items()):
            out.setdefault((provider, model), Sums()).add(sums)
        return out

    def generated(self) -> dict[str, int]:
        """Completion tokens per machine since start-up (flushed and pending)."""
        out: dict[str, int] = {}
        for (provider, _), sums in self.totals().items():
            out[provider] = out.get(provider, 0) + sums.completion
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every FLUSH_S until `stop` is set, then once more. Never cancelled: a write
        under way always finishes (a cancelled one would be written twice). A failed write is
        logged and its rows wait for the next one."""
        while True:
            stopping = stop.is_set()  # (read before the flush: what it misses, the next gets)
            try:
                await self.flush()
            except Exception as exc:  # the file is busy, full, gone: try again next time
                log.warning("usage_flush_failed", error=f"{type(exc).__name__}: {exc}")
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_S)

    def _rows(self, since_hour: int, until_hour: int) -> list[tuple[Key, Sums]]:
        """(In a worker thread.) The stored rows."""
        rows = self.table.rows(since_hour, until_hour)
        return [((r[0], r[1], r[2], r[3]), Sums(*r[4:])) for r in rows]  # (said_cached: 0)

    async def query(
        self, since: float, until: float, group_by: Iterable[str]
    ) -> list[dict[str, object]]:
        """Sums per group over [since, until) (whole hours), flushed and pending alike."""
        wanted = tuple(group_by)
        since_hour, until_hour = int(since // 3600), int(-(-until // 3600))
        async with self._turn:  # (a flush between reading the store and the pending sums would
            # leave its batch in neither; a flush under way is over before this starts)
            rows = await asyncio.to_thread(self._rows, since_hour, until_hour)
            rows += [(k, s) for k, s in self._pending.items() if since_hour <= k[0] < until_hour]
        groups: dict[tuple[object, ...], Sums] = {}
        for (hour, provider, model, key), sums in rows:
            fields = {"provider": provider, "model": model, "key": key,
                      "hour": iso_utc(hour * 3600), "day": iso_utc(hour // 24 * 86400)}  # fmt: skip
            groups.setdefault(tuple(fields[g] for g in wanted), Sums()).add(sums)
        out: list[dict[str, object]] = []
        for values, s in sorted(groups.items(), key=lambda item: str(item[0])):
            row: dict[str, object] = dict(zip(wanted, values, strict=True))
            row.update(
                requests=s.requests, promptTokens=s.prompt, completionTokens=s.completion,
                cachedTokens=s.cached,
                tokensPerSecond=round(s.completion / s.seconds, 1) if s.seconds > 0 else None,
            )  # fmt: skip
            out.append(row)
        return out

    def close(self) -> None:
        self.table.close()


def _negative(s: Sums) -> Sums:
    return Sums(*(-v for v in astuple(s)))

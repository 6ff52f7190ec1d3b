"""The hourly usage history: sums per group, pending and flushed alike, retention, no key."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store.usage import SqliteUsage
from gateway.usage.extract import Usage
from gateway.usage.history import Sums, UsageHistory

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC

    def __call__(self) -> float:
        return self.now


async def test_sums_per_group_before_and_after_a_flush(tmp_path: Path) -> None:
    clock = Clock()
    history = UsageHistory(tmp_path / "usage.sqlite3", retention_days=90, clock=clock)
    history.record("a", "m", "alice", Usage(100, 10, 80), 0.5)
    history.record("a", "m", "ci", Usage(50, 5, None), 0.5)
    history.record("b", "m", "alice", Usage(10, 20, 0), 2.0)
    pending = await history.query(clock.now - 3 * HOUR, clock.now, ["provider"])
    await history.flush()
    history.record("a", "m", "alice", Usage(1, 1, 1), 1.0)  # after the flush: pending again
    rows = await history.query(clock.now - 3 * HOUR, clock.now, ["provider"])
    assert pending == [
        {"provider": "a", "requests": 2, "promptTokens": 150, "completionTokens": 15,
         "cachedTokens": 80, "tokensPerSecond": 15.0},
        {"provider": "b", "requests": 1, "promptTokens": 10, "completionTokens": 20,
         "cachedTokens": 0, "tokensPerSecond": 10.0},
    ]  # fmt: skip
    assert rows[0]["requests"] == 3 and rows[0]["promptTokens"] == 151
    by_key = await history.query(clock.now - HOUR, clock.now, ["key"])
    assert [(r["key"], r["requests"]) for r in by_key] == [("alice", 3), ("ci", 1)]
    history.close()


async def test_hours_and_days_and_what_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "usage.sqlite3"
    history = UsageHistory(path, retention_days=90, clock=clock)
    history.record("a", "m", "", Usage(1, 1, None), 1.0)
    clock.now += HOUR
    history.record("a", "m", "", Usage(2, 2, None), 1.0)
    await history.flush()
    history.close()
    again = UsageHistory(path, retention_days=90, clock=clock)
    rows = await again.query(clock.now - 2 * HOUR, clock.now, ["hour"])
    assert [(r["hour"], r["promptTokens"]) for r in rows] == [
        ("2026-11-18T11:00:00+00:00", 1), ("2026-11-18T12:00:00+00:00", 2)
    ]  # fmt: skip
    assert (await again.query(clock.now - 2 * HOUR, clock.now, ["day"]))[0]["requests"] == 2
    again.close()


async def test_rows_past_the_retention_are_deleted(tmp_path: Path) -> None:
    clock = Clock()
    history = UsageHistory(tmp_path / "usage.sqlite3", retention_days=1, clock=clock)
    history.record("a", "m", "", Usage(1, 1, None), 1.0)
    await history.flush()
    clock.now += 3 * 86400
    history.record("a", "m", "", Usage(5, 5, None), 1.0)
    await history.flush()
    rows = await history.query(clock.now - 10 * 86400, clock.now, ["provider"])
    assert rows[0]["promptTokens"] == 5
    history.close()


async def test_a_flush_during_a_query_loses_nothing_from_it(tmp_path: Path) -> None:
    """The file is read in a worker thread; a flush meanwhile must not leave its batch in
    neither the rows read nor the pending sums."""
    clock = Clock()
    history = UsageHistory(tmp_path / "usage.sqlite3", retention_days=90, clock=clock)
    history.record("a", "m", "", Usage(7, 1, None), 1.0)
    read = history._rows

    def slow_read(since: int, until: int) -> list[tuple[tuple[int, str, str, str], Sums]]:
        rows = read(since, until)
        time.sleep(0.2)  # (the flush below runs after the file was read, before pending is)
        return rows

    history._rows = slow_read  # type: ignore[method-assign,assignment]

    async def flush_soon() -> None:
        await asyncio.sleep(0.05)
        await history.flush()

    rows, _ = await asyncio.gather(
        history.query(clock.now - HOUR, clock.now + HOUR, ["provider"]), flush_soon()
    )
    assert [r["promptTokens"] for r in rows] == [7]
    history.close()


async def test_totals_since_start_never_go_back_across_flushes(tmp_path: Path) -> None:
    """/metrics' counters come from here: pending and flushed together, monotonic."""
    clock = Clock()
    history = UsageHistory(tmp_path / "usage.sqlite3", retention_days=90, clock=clock)
    history.record("a", "m", "alice", Usage(10, 2, 6), 0.1)
    before = history.totals()[("a", "m")]
    await history.flush()
    history.record("a", "m", "ci", Usage(5, 1, None), 0.1)
    after = history.totals()[("a", "m")]
    assert (before.prompt, before.completion, before.cached) == (10, 2, 6)
    assert (after.prompt, after.completion, after.cached, after.said_cached) == (15, 3, 6, 10)
    history.close()


async def test_a_failed_write_keeps_the_rows_for_the_next_one(tmp_path: Path) -> None:
    clock = Clock()
    history = UsageHistory(tmp_path / "usage.sqlite3", retention_days=90, clock=clock)
    history.record("a", "m", "", Usage(1, 1, None), 0.1)
    assert isinstance(history.table, SqliteUsage)
    history.table.file.db.execute("DROP TABLE usage")  # the write fails
    with pytest.raises(sqlite3.OperationalError):
        await history.flush()
    assert history.totals()[("a", "m")].prompt == 1  # counted once, not lost, not doubled
    assert len(history._pending) == 1
    history.close()

"""What the fleet's servers said about their models, kept across restarts.

A llama-swap machine's `/props` is only asked for a model that is loaded (asking about another
would load it), so after a restart the gateway would not know the context window or what an
unloaded model can do until it is loaded again — and a sync in that time would write agents'
configs without them. What `/props` said is kept here, per composite id, in
the store (`$GATEWAY_DATA_DIR/learned.sqlite3`), and used wherever the live fleet says nothing
newer.

Written after a catalog refresh that learned something new (in a worker thread, one
transaction); a row that does not read as a window and capabilities is passed over; a file that
is not a database is reported once and the gateway runs on with what it learns in memory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway.core.values import MAX_COUNT, positive_int
from gateway.fleet.context import Capabilities
from gateway.store.facts import DB_NAME, SqliteFacts
from gateway.store.tables import FactRow, FactsTable

log = structlog.get_logger("gateway.learned")

__all__ = ["DB_NAME", "MAX_ROWS", "Fact", "Learned"]
MAX_ROWS = 10_000  # models remembered (the most recently learned): a fleet has far fewer
Fact = tuple[int | None, Capabilities | None]  # context window, capabilities


class Learned:
    """`table`: where the facts are kept; a path: a SQLite file there, which `write=False` only
    reads, never changes (a CLI beside a running gateway: the gateway's file is its own)."""

    def __init__(self, table: FactsTable | Path, *, write: bool = True) -> None:
        self.facts: dict[str, Fact] = {}  # composite id -> the last thing /props said
        self._dirty: set[str] = set()  # ids whose fact is newer than the store's
        self._flushing = asyncio.Lock()  # one flush at a time: a newer fact is never overwritten
        self._table: FactsTable | None = None
        self._where = str(table) if isinstance(table, Path) else type(table).__name__
        opened: FactsTable | None = None
        try:
            opened = SqliteFacts(table, read_only=not write) if isinstance(table, Path) else table
            rows = opened.recent(MAX_ROWS)
        except (sqlite3.Error, OSError) as exc:
            log.warning("learned_unreadable", path=self._where, error=str(exc))
            if opened is not None:
                opened.close()
            return
        if write:
            self._table = opened
        else:
            opened.close()
        for cid, n_ctx, caps in rows:
            fact = _fact(n_ctx, caps)
            if isinstance(cid, str) and fact is not None:
                self.facts[cid] = fact

    def remember(self, cid: str, n_ctx: int | None, capabilities: Capabilities | None) -> None:
        """What `/props` said about `cid` now (kept with the next `flush` when it is news)."""
        n_ctx = positive_int(n_ctx, MAX_COUNT)  # else not a window (or not one SQLite can hold)
        known = self.facts.get(cid)
        fact = (
            n_ctx if n_ctx is not None else known[0] if known else None,
            capabilities if capabilities is not None else known[1] if known else None,
        )
        if fact != known and fact != (None, None):
            self.facts[cid] = fact
            self._dirty.add(cid)

    async def flush(self, now: int) -> None:
        """Write what was learned since the last flush (`now`: unix time, for its rows). A
        failed write is tried again with the next flush; it never raises."""
        async with self._flushing:
            dirty, self._dirty = self._dirty, set()
            table = self._table
            if not dirty or table is None:
                return
            rows = [(cid, *self.facts[cid]) for cid in dirty]  # (the newest facts, now)
            try:
                await asyncio.to_thread(table.put, _encoded(rows), now, MAX_ROWS)
            except (sqlite3.Error, OSError, OverflowError, ValueError) as exc:  # (OSError: a
                # database that is down)
                log.warning("learned_write_failed", path=self._where, error=str(exc))
                self._dirty |= dirty  # again, with the next flush (as they are then)

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None


def _encoded(rows: list[tuple[str, int | None, Capabilities | None]]) -> list[FactRow]:
    return [
        (cid, n_ctx, None if caps is None else orjson.dumps(caps.json()).decode())
        for cid, n_ctx, caps in rows
    ]


def _fact(n_ctx: Any, caps: Any) -> Fact | None:
    """A row as a fact, or None when it does not read as one."""
    window = positive_int(n_ctx, MAX_COUNT)
    capabilities = None
    if isinstance(caps, str):
        try:
            said = orjson.loads(caps)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(said, dict) or not all(type(v) is bool for v in said.values()):
            return None
        capabilities = Capabilities(*(said.get(k) for k in Capabilities._fields))
    if window is None and (capabilities is None or capabilities == (None,) * 4):
        return None
    return window, capabilities

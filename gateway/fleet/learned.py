"""What the fleet's servers said about their models, kept across restarts.

A llama-swap machine's `/props` is only asked for a model that is loaded (asking about another
would load it), so after a restart the gateway would not know the context window or what an
unloaded model can do until it is loaded again — and a sync in that time would write agents'
configs without them. What `/props` said is kept here, per composite id, in
`$GATEWAY_DATA_DIR/learned.sqlite3`, and used wherever the live fleet says nothing newer.

Written after a catalog refresh that learned something new (in a worker thread, one
transaction); a row that does not read as a window and capabilities is passed over; a file that
is not a database is reported once and the gateway runs on with what it learns in memory.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway.fleet.context import MAX_COUNT, Capabilities

log = structlog.get_logger("gateway.learned")

DB_NAME = "learned.sqlite3"
MAX_ROWS = 10_000  # models remembered (the most recently learned): a fleet has far fewer
Fact = tuple[int | None, Capabilities | None]  # context window, capabilities


class Learned:
    """`write=False`: read the file if it is there, never change it (a CLI beside a running
    gateway: the gateway's file is its own)."""

    def __init__(self, path: Path, *, write: bool = True) -> None:
        self.path = path
        self.facts: dict[str, Fact] = {}  # composite id -> the last thing /props said
        self._dirty: set[str] = set()  # ids whose fact is newer than the file's
        self._lock = threading.Lock()  # the connection (used from worker threads)
        self._flushing = asyncio.Lock()  # one flush at a time: a newer fact is never overwritten
        self._db: sqlite3.Connection | None = None
        db = None
        try:
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA busy_timeout=5000")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS learned (id TEXT PRIMARY KEY, context INTEGER, "
                    "capabilities TEXT, learned_at INTEGER NOT NULL)"
                )
            else:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            rows = db.execute(
                "SELECT id, context, capabilities FROM learned ORDER BY learned_at DESC LIMIT ?",
                (MAX_ROWS,),
            ).fetchall()
        except (sqlite3.Error, OSError) as exc:
            log.warning("learned_unreadable", path=str(path), error=str(exc))
            if db is not None:
                db.close()
            return
        if write:
            self._db = db
        else:
            db.close()
        for cid, n_ctx, caps in rows:
            fact = _fact(n_ctx, caps)
            if isinstance(cid, str) and fact is not None:
                self.facts[cid] = fact

    def remember(self, cid: str, n_ctx: int | None, capabilities: Capabilities | None) -> None:
        """What `/props` said about `cid` now (kept with the next `flush` when it is news)."""
        if n_ctx is not None and not 0 < n_ctx <= MAX_COUNT:
            n_ctx = None  # not a window (and not a number SQLite can hold)
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
            if not dirty or self._db is None:
                return
            rows = [(cid, *self.facts[cid]) for cid in dirty]  # (the newest facts, now)
            try:
                await asyncio.to_thread(self._write, rows, now)
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                log.warning("learned_write_failed", path=str(self.path), error=str(exc))
                self._dirty |= dirty  # again, with the next flush (as they are then)

    def _write(self, rows: list[tuple[str, int | None, Capabilities | None]], now: int) -> None:
        encoded = [
            (cid, n_ctx, None if caps is None else orjson.dumps(caps.json()).decode(), now)
            for cid, n_ctx, caps in rows
        ]
        with self._lock:
            db = self._db
            if db is None:  # (closed meanwhile: the gateway is stopping)
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO learned VALUES (?, ?, ?, ?)", encoded)
                db.execute(
                    "DELETE FROM learned WHERE id NOT IN "
                    "(SELECT id FROM learned ORDER BY learned_at DESC LIMIT ?)", (MAX_ROWS,),
                )  # fmt: skip
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _fact(n_ctx: Any, caps: Any) -> Fact | None:
    """A row as a fact, or None when it does not read as one."""
    window = n_ctx if type(n_ctx) is int and 0 < n_ctx <= MAX_COUNT else None
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

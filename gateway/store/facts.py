"""Learned model facts (context window, capabilities per composite id) in a SQLite file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.store.sqlite import SqliteFile
from gateway.store.tables import FactRow

DB_NAME = "learned.sqlite3"


class SqliteFacts:
    """`read_only`: read an existing file, never change it (a CLI beside a running gateway)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        schema = [
            "CREATE TABLE IF NOT EXISTS learned (id TEXT PRIMARY KEY, context INTEGER, "
            "capabilities TEXT, learned_at INTEGER NOT NULL)"
        ]
        self.file = SqliteFile(path, schema, read_only=read_only)

    def recent(self, limit: int) -> list[FactRow]:
        return self.file.query(
            "SELECT id, context, capabilities FROM learned ORDER BY learned_at DESC LIMIT ?",
            (limit,),
        )

    def put(self, rows: Sequence[FactRow], now: int, keep: int) -> None:
        if self.file.closed:  # (closed meanwhile: the gateway is stopping)
            return
        with self.file.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO learned VALUES (?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )
            db.execute(
                "DELETE FROM learned WHERE id NOT IN "
                "(SELECT id FROM learned ORDER BY learned_at DESC LIMIT ?)", (keep,),
            )  # fmt: skip

    def close(self) -> None:
        self.file.close()

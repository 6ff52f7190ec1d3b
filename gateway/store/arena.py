"""Arena battles and their votes in a SQLite file: one row per battle (its models), its vote
(winner, or a tie) set once. A vote names its battle, so a vote for a model that was not in it,
or a second vote, is refused before anything is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import orjson

from gateway.store.sqlite import SqliteFile
from gateway.store.tables import ArenaTable, VoteRow

DB_NAME = "arena.sqlite3"
KEEP_UNVOTED = 1000  # battles not voted on (yet) kept; votes are kept for good


class SqliteArena:
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(
            path,
            [
                "CREATE TABLE IF NOT EXISTS battles (id TEXT PRIMARY KEY, models TEXT NOT NULL, "
                "created REAL NOT NULL, voted REAL, winner TEXT)",
                "CREATE INDEX IF NOT EXISTS battles_voted ON battles (voted)",
            ],
            durable=True,
        )

    def open_battle(self, battle: str, models: Sequence[str], now: float, keep: int) -> None:
        with self.file.transaction() as db:
            db.execute(
                "INSERT INTO battles (id, models, created) VALUES (?, ?, ?)",
                (battle, orjson.dumps(list(models)).decode(), now),
            )
            db.execute(
                "DELETE FROM battles WHERE voted IS NULL AND id NOT IN (SELECT id FROM battles "
                "WHERE voted IS NULL ORDER BY created DESC, rowid DESC LIMIT ?)",
                (keep,),
            )

    def battle(self, battle: str) -> tuple[tuple[str, ...], bool] | None:
        rows = self.file.query("SELECT models, voted FROM battles WHERE id = ?", (battle,))
        if not rows:
            return None
        models, voted = rows[0]
        return tuple(orjson.loads(models)), voted is not None

    def vote(self, battle: str, winner: str | None, now: float) -> bool:
        with self.file.transaction() as db:
            cursor = db.execute(
                "UPDATE battles SET voted = ?, winner = ? WHERE id = ? AND voted IS NULL",
                (now, winner, battle),
            )
            return cursor.rowcount == 1

    def votes(self) -> list[VoteRow]:
        rows = self.file.query(
            "SELECT models, winner FROM battles WHERE voted IS NOT NULL ORDER BY voted, rowid"
        )
        return [(tuple(orjson.loads(models)), winner) for models, winner in rows]

    def close(self) -> None:
        self.file.close()


class ArenaStore:
    """The arena's table as the event loop uses it: every call runs in a worker thread."""

    def __init__(self, table: ArenaTable | Path) -> None:
        self.table = SqliteArena(table) if isinstance(table, Path) else table

    async def open_battle(self, battle: str, models: Sequence[str], now: float) -> None:
        await asyncio.to_thread(self.table.open_battle, battle, list(models), now, KEEP_UNVOTED)

    async def battle(self, battle: str) -> tuple[tuple[str, ...], bool] | None:
        return await asyncio.to_thread(self.table.battle, battle)

    async def vote(self, battle: str, winner: str | None, now: float) -> bool:
        return await asyncio.to_thread(self.table.vote, battle, winner, now)

    async def votes(self) -> list[VoteRow]:
        return await asyncio.to_thread(self.table.votes)

    def close(self) -> None:
        self.table.close()

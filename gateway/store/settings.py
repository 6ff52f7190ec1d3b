"""User settings (favorites among them): one row per key, values stored as JSON.

A change replaces the keys it names in one transaction; every other key is left as it was.
Writes are serialised (one connection, one lock), so concurrent PATCHes never interleave, and a
process killed mid-write restarts with the last committed settings (`synchronous=FULL`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.store.sqlite import SqliteFile
from gateway.store.tables import SettingsLimit, SettingsTable

__all__ = ["DB_NAME", "SettingsLimit", "SettingsStore", "SqliteSettings"]

DB_NAME = "settings.sqlite3"
MAX_KEYS = 64
MAX_VALUE_BYTES = 64 * 1024
MAX_TOTAL_BYTES = 1024 * 1024


def encoded(changes: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The changes as (key, JSON text); SettingsLimit for a value past MAX_VALUE_BYTES."""
    out = [(key, orjson.dumps(value).decode()) for key, value in changes.items()]
    for key, value in out:
        if len(value) > MAX_VALUE_BYTES:
            raise SettingsLimit(f"{key[:64]}: over {MAX_VALUE_BYTES} bytes as JSON")
    return out


def check_totals(keys: int, size: int) -> None:
    """After a change, inside its transaction: SettingsLimit (so it rolls back) past the bounds."""
    if keys > MAX_KEYS or size > MAX_TOTAL_BYTES:
        raise SettingsLimit(
            f"at most {MAX_KEYS} settings and {MAX_TOTAL_BYTES} bytes in all "
            f"(this change would make {keys} and {size}); nothing was stored"
        )


class SqliteSettings:
    """The settings table in a SQLite file (WAL, `synchronous=FULL`)."""

    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(
            path,
            ["CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"],
            durable=True,
        )

    def read_all(self) -> dict[str, Any]:
        rows = self.file.query("SELECT key, value FROM settings ORDER BY key")
        return {key: orjson.loads(value) for key, value in rows}

    def put(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        rows = encoded(changes)
        with self.file.transaction() as db:
            db.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                rows,
            )
            keys, size = db.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM settings"
            ).fetchone()
            check_totals(keys, size)
        return self.read_all()

    def close(self) -> None:
        self.file.close()


class SettingsStore:
    """The settings as the event loop uses them: every call runs in a worker thread."""

    def __init__(self, table: SettingsTable | Path) -> None:
        self.table = SqliteSettings(table) if isinstance(table, Path) else table

    async def read(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.table.read_all)

    async def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the named keys atomically; return all settings after the change."""
        return await asyncio.to_thread(self.table.put, dict(changes))

    def close(self) -> None:
        self.table.close()

"""User settings in SQLite (WAL): one row per key, values stored as JSON.

A PATCH replaces the keys it names in one transaction; every other key is left as it was.
Writes are serialised (one connection, one lock), so concurrent PATCHes never interleave, and a
process killed mid-write restarts with the last committed settings.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

DB_NAME = "settings.sqlite3"


MAX_KEYS = 64
MAX_VALUE_BYTES = 64 * 1024
MAX_TOTAL_BYTES = 1024 * 1024


class SettingsLimit(ValueError):
    """A change that would take the settings past their bounds; nothing was stored."""


class SettingsStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        return {key: orjson.loads(value) for key, value in rows}

    def _write(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        encoded = [(key, orjson.dumps(value).decode()) for key, value in changes.items()]
        for key, value in encoded:
            if len(value) > MAX_VALUE_BYTES:
                raise SettingsLimit(f"{key[:64]}: over {MAX_VALUE_BYTES} bytes as JSON")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    encoded,
                )
                keys, size = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(value)), 0) FROM settings"
                ).fetchone()
                if keys > MAX_KEYS or size > MAX_TOTAL_BYTES:
                    raise SettingsLimit(
                        f"at most {MAX_KEYS} settings and {MAX_TOTAL_BYTES} bytes in all "
                        f"(this change would make {keys} and {size}); nothing was stored"
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return self._read()

    async def read(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._read)

    async def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the named keys atomically; return all settings after the change."""
        return await asyncio.to_thread(self._write, dict(changes))

"""Hourly usage sums in a SQLite file: one row per hour, machine, model and key label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.store.sqlite import SqliteFile
from gateway.store.tables import UsageRow

DB_NAME = "usage.sqlite3"


class SqliteUsage:
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(
            path,
            [
                "CREATE TABLE IF NOT EXISTS usage (hour INTEGER NOT NULL, provider TEXT NOT NULL, "
                "model TEXT NOT NULL, key TEXT NOT NULL, requests INTEGER NOT NULL, "
                "prompt INTEGER NOT NULL, completion INTEGER NOT NULL, cached INTEGER NOT NULL, "
                "seconds REAL NOT NULL, PRIMARY KEY (hour, provider, model, key)) WITHOUT ROWID"
            ],
        )

    def add(self, rows: Sequence[UsageRow], keep_from_hour: int) -> None:
        with self.file.transaction() as db:
            db.executemany(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (hour, provider, model, key) DO UPDATE SET "
                "requests = requests + excluded.requests, prompt = prompt + excluded.prompt, "
                "completion = completion + excluded.completion, "
                "cached = cached + excluded.cached, seconds = seconds + excluded.seconds",
                rows,
            )
            db.execute("DELETE FROM usage WHERE hour < ?", (keep_from_hour,))

    def rows(self, since_hour: int, until_hour: int) -> list[UsageRow]:
        return self.file.query(
            "SELECT hour, provider, model, key, requests, prompt, completion, cached, seconds "
            "FROM usage WHERE hour >= ? AND hour < ?",
            (since_hour, until_hour),
        )

    def close(self) -> None:
        self.file.close()

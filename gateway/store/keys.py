"""Managed keys in a SQLite file (`keys.sqlite3`): the keys (label, SHA-256 of the secret,
limits) and the request counts their per-minute limits are leased from (`store.leases`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.store.leases import ALIVE_S, FORGET_S, bucket, first_counted, plan
from gateway.store.sqlite import SqliteFile
from gateway.store.tables import KeyExists, KeyRecord, Leases

DB_NAME = "keys.sqlite3"


def models_text(models: tuple[str, ...]) -> str:
    return ",".join(models)


def models_of(text: str) -> tuple[str, ...]:
    return tuple(m for m in text.split(",") if m)


class SqliteKeys:
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(
            path,
            [
                "CREATE TABLE IF NOT EXISTS keys (label TEXT PRIMARY KEY, "
                "digest TEXT NOT NULL UNIQUE, requests_per_minute INTEGER, "
                "tokens_per_day INTEGER, models TEXT NOT NULL, expires REAL, "
                "created REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS key_requests (label TEXT NOT NULL, "
                "bucket INTEGER NOT NULL, requests INTEGER NOT NULL, "
                "PRIMARY KEY (label, bucket)) WITHOUT ROWID",
                "CREATE TABLE IF NOT EXISTS replicas (id TEXT PRIMARY KEY, seen REAL NOT NULL)",
            ],
            durable=True,
        )

    def listing(self) -> list[KeyRecord]:
        rows = self.file.query(
            "SELECT label, digest, requests_per_minute, tokens_per_day, models, expires, "
            "created FROM keys ORDER BY label"
        )
        return [KeyRecord(r[0], r[1], r[2], r[3], models_of(r[4]), r[5], r[6]) for r in rows]

    def add(self, key: KeyRecord) -> None:
        with self.file.transaction() as db:
            taken = db.execute("SELECT 1 FROM keys WHERE label = ?", (key.label,)).fetchone()
            if taken:
                raise KeyExists(f"a key labelled {key.label!r} exists (revoke it first)")
            db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.label, key.digest, key.requests_per_minute, key.tokens_per_day,
                 models_text(key.models), key.expires, key.created),
            )  # fmt: skip

    def remove(self, label: str) -> bool:
        with self.file.transaction() as db:
            gone = db.execute("DELETE FROM keys WHERE label = ?", (label,)).rowcount
            db.execute("DELETE FROM key_requests WHERE label = ?", (label,))
        return bool(gone)

    def lease(
        self,
        replica: str,
        now: float,
        returned: Mapping[str, tuple[int, int]],
        wanted: Mapping[str, tuple[int, bool]],
    ) -> Leases:
        with self.file.transaction() as db:  # (BEGIN IMMEDIATE: one writer at a time)
            db.execute(
                "INSERT INTO replicas VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
                "seen = excluded.seen",
                (replica, now),
            )
            db.execute("DELETE FROM replicas WHERE seen < ?", (now - FORGET_S,))
            (live,) = db.execute(
                "SELECT count(*) FROM replicas WHERE seen >= ?", (now - ALIVE_S,)
            ).fetchone()
            db.executemany(
                "UPDATE key_requests SET requests = max(requests - ?, 0) "
                "WHERE label = ? AND bucket = ?",
                [(unused, label, at) for label, (at, unused) in returned.items()],
            )
            first = first_counted(now)
            db.execute("DELETE FROM key_requests WHERE bucket < ?", (first,))
            rows = db.execute(
                "SELECT label, bucket, requests FROM key_requests WHERE bucket >= ? "
                "ORDER BY bucket",
                (first,),
            ).fetchall()
            granted, window = plan(rows, wanted, live, now)
            db.executemany(
                "INSERT INTO key_requests VALUES (?, ?, ?) ON CONFLICT (label, bucket) "
                "DO UPDATE SET requests = requests + excluded.requests",
                [(label, bucket(now), n) for label, n in granted.items() if n],
            )
        return Leases(live, granted, window)

    def close(self) -> None:
        self.file.close()

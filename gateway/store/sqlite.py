"""One SQLite file as the gateway uses it: WAL, one connection shared by worker threads under
one lock, transactions that roll back on any error. Every table of the store sits on one."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class SqliteFile:
    """`schema`: statements run once on open (`CREATE TABLE IF NOT EXISTS ...`).
    `read_only`: open an existing file for reading and never change it (no schema, no WAL)."""

    def __init__(
        self,
        path: Path,
        schema: Sequence[str] = (),
        *,
        durable: bool = False,
        read_only: bool = False,
    ) -> None:
        self.path = path
        self.lock = threading.Lock()
        if read_only:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if durable:  # every commit reaches the disk before it returns
                db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            for statement in schema:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"{self.path.name} is closed")
        return self._db

    @property
    def closed(self) -> bool:
        return self._db is None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT` under the lock; `ROLLBACK` if the block raises."""
        with self.lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

"""Fleet benchmark results in a SQLite file: one row per model measured on a machine, the
newest `KEEP` kept; readers get the newest of each machine and model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

from gateway.store.sqlite import SqliteFile
from gateway.store.tables import BenchRow, BenchTable

DB_NAME = "bench.sqlite3"
KEEP = 1000
_COLUMNS = (
    "model, provider, measured, prompt_tokens, gen_tokens, pp_tps, tg_tps, ttft_ms, "
    "first_ttft_ms, loaded, source"
)


class SqliteBench:
    def __init__(self, path: Path) -> None:
        self.file = SqliteFile(
            path,
            [
                "CREATE TABLE IF NOT EXISTS bench (model TEXT NOT NULL, provider TEXT NOT NULL, "
                "measured REAL NOT NULL, prompt_tokens INTEGER, gen_tokens INTEGER, pp_tps REAL, "
                "tg_tps REAL, ttft_ms REAL, first_ttft_ms REAL, loaded INTEGER, "
                "source TEXT NOT NULL)",
            ],
        )

    def add(self, rows: Sequence[BenchRow], keep: int) -> None:
        with self.file.transaction() as db:
            db.executemany(
                f"INSERT INTO bench ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                [astuple(row) for row in rows],
            )
            db.execute(
                "DELETE FROM bench WHERE rowid NOT IN "
                "(SELECT rowid FROM bench ORDER BY measured DESC, rowid DESC LIMIT ?)",
                (keep,),
            )

    def latest(self) -> list[BenchRow]:
        rows = self.file.query(
            f"SELECT {_COLUMNS} FROM bench AS b WHERE rowid = (SELECT rowid FROM bench "  # noqa: S608
            "WHERE provider = b.provider AND model = b.model ORDER BY measured DESC, rowid DESC "
            "LIMIT 1) ORDER BY provider, model"
        )
        return [_row(*r) for r in rows]

    def close(self) -> None:
        self.file.close()


def _row(
    model: str, provider: str, measured: float, prompt_tokens: int | None,
    gen_tokens: int | None, pp_tps: float | None, tg_tps: float | None, ttft_ms: float | None,
    first_ttft_ms: float | None, loaded: int | None, source: str,
) -> BenchRow:  # fmt: skip
    return BenchRow(
        model, provider, measured, prompt_tokens, gen_tokens, pp_tps, tg_tps, ttft_ms,
        first_ttft_ms, None if loaded is None else bool(loaded), source,
    )  # fmt: skip


class BenchStore:
    """The bench table as the event loop uses it: every call runs in a worker thread."""

    def __init__(self, table: BenchTable | Path) -> None:
        self.table = SqliteBench(table) if isinstance(table, Path) else table

    async def add(self, rows: Sequence[BenchRow]) -> None:
        await asyncio.to_thread(self.table.add, list(rows), KEEP)

    async def latest(self) -> list[BenchRow]:
        return await asyncio.to_thread(self.table.latest)

    def close(self) -> None:
        self.table.close()

"""Which implementation of the store's tables a gateway (or its CLI) uses: SQLite files in the
data directory (the default), or one PostgreSQL database replicas share
(GATEWAY_DATABASE_URL). Each call opens a table; its owner closes it."""

from __future__ import annotations

from pathlib import Path

from gateway.store import arena, bench, facts, keys, settings, usage
from gateway.store.tables import (
    ArenaTable,
    BenchTable,
    FactsTable,
    KeysTable,
    SettingsTable,
    UsageTable,
)


class Backend:
    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        self.data_dir = data_dir
        self.url = database_url.strip()
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("GATEWAY_DATABASE_URL must be a postgresql:// URL")

    @property
    def kind(self) -> str:
        return "postgresql" if self.url else "sqlite"

    def settings(self) -> SettingsTable:
        if self.url:
            from gateway.store.pg_tables import PgSettings

            return PgSettings(self.url)
        return settings.SqliteSettings(self.data_dir / settings.DB_NAME)

    def usage(self) -> UsageTable:
        if self.url:
            from gateway.store.pg_tables import PgUsage

            return PgUsage(self.url)
        return usage.SqliteUsage(self.data_dir / usage.DB_NAME)

    def facts(self) -> FactsTable:
        if self.url:
            from gateway.store.pg_tables import PgFacts

            return PgFacts(self.url)
        return facts.SqliteFacts(self.data_dir / facts.DB_NAME)

    def keys(self) -> KeysTable:
        if self.url:
            from gateway.store.pg_tables import PgKeys

            return PgKeys(self.url)
        return keys.SqliteKeys(self.data_dir / keys.DB_NAME)

    def arena(self) -> ArenaTable:
        if self.url:
            from gateway.store.pg_tables import PgArena

            return PgArena(self.url)
        return arena.SqliteArena(self.data_dir / arena.DB_NAME)

    def bench(self) -> BenchTable:
        if self.url:
            from gateway.store.pg_tables import PgBench

            return PgBench(self.url)
        return bench.SqliteBench(self.data_dir / bench.DB_NAME)

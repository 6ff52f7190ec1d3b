"""Which implementation of the store's tables a gateway (or its CLI) uses: SQLite files in the
data directory (the default), or one PostgreSQL database replicas share
(GATEWAY_DATABASE_URL). Each call opens a table; its owner closes it."""

from __future__ import annotations

from pathlib import Path

from gateway.store import facts, keys, settings, usage
from gateway.store.tables import FactsTable, KeysTable, SettingsTable, UsageTable


class Backend:
    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        self.data_dir = data_dir
        self.url = database_url.strip()
        if self.url:
            raise ValueError("GATEWAY_DATABASE_URL: PostgreSQL is not supported yet")

    @property
    def kind(self) -> str:
        return "postgresql" if self.url else "sqlite"

    def settings(self) -> SettingsTable:
        return settings.SqliteSettings(self.data_dir / settings.DB_NAME)

    def usage(self) -> UsageTable:
        return usage.SqliteUsage(self.data_dir / usage.DB_NAME)

    def facts(self) -> FactsTable:
        return facts.SqliteFacts(self.data_dir / facts.DB_NAME)

    def keys(self) -> KeysTable:
        return keys.SqliteKeys(self.data_dir / keys.DB_NAME)

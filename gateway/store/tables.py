"""The store's one small interface: what the gateway keeps, as three tables. SQLite files in the
data directory implement them (`SqliteSettings`, `SqliteUsage`, `SqliteFacts`, the embedded
default); another backend (a shared database for replicas) is another implementation of the same
three, and nothing above the store changes: `SettingsStore`, `UsageHistory` and `Learned` take a
table, or a path for the SQLite default.

Methods are synchronous and called from worker threads (`asyncio.to_thread`), never on the
event loop; each write is one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# hour (unix time / 3600), provider, model, key label; requests, prompt, completion, cached
# tokens, seconds
UsageRow = tuple[int, str, str, str, int, int, int, int, float]
# composite model id, context window, capabilities (JSON text)
FactRow = tuple[str, int | None, str | None]


class SettingsLimit(ValueError):
    """A change that would take the settings past their bounds; nothing was stored."""


class SettingsTable(Protocol):
    def read_all(self) -> dict[str, Any]:
        """Every setting, by key."""
        ...

    def put(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the named keys in one transaction (SettingsLimit: nothing stored); return
        every setting after the change."""
        ...

    def close(self) -> None: ...


class UsageTable(Protocol):
    def add(self, rows: Sequence[UsageRow], keep_from_hour: int) -> None:
        """Add the rows' sums to the stored ones and delete hours before `keep_from_hour`."""
        ...

    def rows(self, since_hour: int, until_hour: int) -> list[UsageRow]:
        """The stored rows of hours in [since_hour, until_hour)."""
        ...

    def close(self) -> None: ...


class FactsTable(Protocol):
    def recent(self, limit: int) -> list[FactRow]:
        """The `limit` facts learned last, newest first."""
        ...

    def put(self, rows: Sequence[FactRow], now: int, keep: int) -> None:
        """Store the facts (learned at `now`), keeping only the `keep` newest."""
        ...

    def close(self) -> None: ...

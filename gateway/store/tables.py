"""The store's one small interface: what the gateway keeps, as five tables. SQLite files in the
data directory implement them (`SqliteSettings`, `SqliteUsage`, `SqliteFacts`, `SqliteArena`,
`SqliteBench`, the embedded default); another backend (a shared database for replicas) is another
implementation of the same five, and nothing above the store changes: `SettingsStore`,
`UsageHistory`, `Learned`, `ArenaStore` and `BenchStore` take a table, or a path for the SQLite
default.

Methods are synchronous and called from worker threads (`asyncio.to_thread`), never on the
event loop; each write is one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# hour (unix time / 3600), provider, model, key label; requests, prompt, completion, cached
# tokens, seconds
UsageRow = tuple[int, str, str, str, int, int, int, int, float]
# composite model id, context window, capabilities (JSON text)
FactRow = tuple[str, int | None, str | None]
# an arena battle's models (composite ids, as the battle named them) and the winner (None: a tie)
VoteRow = tuple[tuple[str, ...], str | None]


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One benchmark of one model on one machine (`gateway.arena.bench`)."""

    model: str  # the composite id measured
    provider: str  # the machine that answered (X-Gateway-Provider)
    measured: float  # unix time
    prompt_tokens: int | None  # the prompt as the machine counted it
    gen_tokens: int | None  # tokens generated
    pp_tps: float | None  # prompt processing, tokens/s
    tg_tps: float | None  # generation, tokens/s
    ttft_ms: float | None  # first token of the warm run
    first_ttft_ms: float | None  # first token of the first run (includes a load when there was)
    loaded: bool | None  # the model had to load first (None: not known)
    source: str  # "timings" (llama-server's own) or "wall" (the client's clock)


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


class ArenaTable(Protocol):
    def open_battle(self, battle: str, models: Sequence[str], now: float, keep: int) -> None:
        """Record a battle (its id and models); battles not voted on past the `keep` newest are
        dropped."""
        ...

    def battle(self, battle: str) -> tuple[tuple[str, ...], bool] | None:
        """A battle's models and whether it has its vote; None: no such battle."""
        ...

    def vote(self, battle: str, winner: str | None, now: float) -> bool:
        """Record the battle's one vote; False (nothing stored) when it already has one."""
        ...

    def votes(self) -> list[VoteRow]:
        """Every vote, oldest first."""
        ...

    def close(self) -> None: ...


class BenchTable(Protocol):
    def add(self, rows: Sequence[BenchRow], keep: int) -> None:
        """Store the results, keeping only the `keep` newest."""
        ...

    def latest(self) -> list[BenchRow]:
        """The newest result of each machine and model, by machine then model."""
        ...

    def close(self) -> None: ...


# -- managed keys (`boocode-gateway keys ...`) and the shared request counts of their limits


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A managed key as stored: never the secret, only its SHA-256 (hex)."""

    label: str
    digest: str
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    models: tuple[str, ...] = ()  # globs over the model id a request names; empty: any
    expires: float | None = None  # unix time it stops working
    created: float = 0.0


class KeyExists(ValueError):
    """`add` with a label that is already a key's; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Leases:
    """What one `lease` call found and granted: replicas alive, the requests each label may
    admit until the next call, and each label's counts per bucket in the window."""

    live: int
    granted: dict[str, int]
    window: dict[str, list[tuple[int, int]]]


class KeysTable(Protocol):
    def listing(self) -> list[KeyRecord]:
        """Every key, by label."""
        ...

    def add(self, key: KeyRecord) -> None:
        """Store a new key (KeyExists: the label is taken; nothing stored)."""
        ...

    def remove(self, label: str) -> bool:
        """Delete the key; False when there was none."""
        ...

    def lease(
        self,
        replica: str,
        now: float,
        returned: Mapping[str, tuple[int, int]],
        wanted: Mapping[str, tuple[int, bool]],
    ) -> Leases:
        """One transaction, serialised across replicas: note `replica` alive at `now`; give
        back the unused part of its last grants (label -> (bucket, unused)); for each label in
        `wanted` (-> (requests per minute, active here lately)) grant a share of what the
        window has left (`gateway.store.leases.share`) and count it in the bucket of `now`."""
        ...

    def close(self) -> None: ...

"""The application's state: one typed object, built by `create_app` and completed by its
cleanup contexts at start-up, read by the control routes and by the edge's inference path alike.
Under one `web.AppKey` (`STATE`), so a reader sees in one place what the gateway holds while it
runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway.access.keys import GatewayKey, KeyCheck
from gateway.activity.log import ActivityLog
from gateway.activity.rate import Throughput
from gateway.control.metrics import Metrics
from gateway.core.config import Settings
from gateway.edge.relay import Timing
from gateway.edge.streams import Streams
from gateway.edge.upstream import Connections
from gateway.fleet.catalog import Catalog
from gateway.fleet.registry import RegistryBox
from gateway.fleet.reload import Reloader
from gateway.pools.lanes import Lanes
from gateway.pools.members import Pools
from gateway.store.arena import ArenaStore
from gateway.store.bench import BenchStore
from gateway.store.settings import SettingsStore
from gateway.store.tables import KeysTable
from gateway.usage.history import UsageHistory


@dataclass(eq=False)
class State:
    # Built by create_app.
    settings: Settings
    env: Mapping[str, str]
    registry: RegistryBox
    access: KeyCheck  # admin keys (GATEWAY_API_KEYS) and the managed keys, with their limits
    lanes: Lanes
    timing: Timing  # the defaults; a provider may override first_byte_s
    streams: Streams
    connections: Connections  # the relay's pooled upstream connections
    metrics: Metrics
    activity: ActivityLog  # requests running now and the recent ones
    throughput: Throughput  # generation tokens per machine, the last hour
    background: list[asyncio.Task[None]] = field(default_factory=list)
    reloader: Reloader | None = None  # set at start-up
    # The front's own URL (loopback when it listens on every address), set once it listens:
    # the arena sends its contestants there, as a client would.
    front_url: str = ""
    # Opened by the cleanup contexts, at start-up (reading one before is a bug: AttributeError).
    settings_store: SettingsStore = field(init=False)
    usage: UsageHistory = field(init=False)
    http: aiohttp.ClientSession = field(init=False)  # the catalog's client
    catalog: Catalog = field(init=False)
    pools: Pools = field(init=False)
    arena: ArenaStore = field(init=False)
    bench: BenchStore = field(init=False)
    keys_table: KeysTable = field(init=False)  # the managed keys in the store
    database: StoreStatus = field(default_factory=lambda: StoreStatus("sqlite"))

    @property
    def keys(self) -> tuple[GatewayKey, ...]:
        """GATEWAY_API_KEYS with their labels (the admin keys)."""
        return self.access.admin

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """The admin keys' secrets, for the constant-time check."""
        return self.access.secrets


@dataclass(eq=False)
class StoreStatus:
    """Whether the store answered the last time the keys were refreshed (for /health)."""

    kind: str  # "sqlite" or "postgresql"
    reachable: bool = True
    error: str | None = None
    since: float | None = None  # unix time it stopped answering


STATE = web.AppKey("state", State)

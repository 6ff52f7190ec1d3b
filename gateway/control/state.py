"""The application's state, by typed key: every resource `create_app` builds (or its cleanup
contexts open) and the handlers read — the control routes and the edge's inference path alike.
One module, so a reader sees in one place what the gateway holds while it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from gateway.access.keys import GatewayKey
from gateway.control.metrics import Metrics
from gateway.core.config import Settings
from gateway.edge.relay import Streams, Timing
from gateway.edge.upstream import Pool
from gateway.fleet.catalog import Catalog
from gateway.fleet.registry import RegistryBox
from gateway.fleet.reload import Reloader
from gateway.pools.lanes import Lanes
from gateway.pools.members import Pools
from gateway.store.settings import SettingsStore
from gateway.usage.history import UsageHistory

# Built by create_app.
SETTINGS = web.AppKey("settings", Settings)
ENV = web.AppKey("env", Mapping[str, str])
REGISTRY = web.AppKey("registry", RegistryBox)
API_KEYS = web.AppKey("api_keys", tuple[bytes, ...])  # the secrets, for the constant-time check
GATEWAY_KEYS = web.AppKey("gateway_keys", tuple[GatewayKey, ...])  # with their labels
GATEWAY_CHECKS_KEYS = web.AppKey("gateway_checks_keys", bool)
LANES = web.AppKey("lanes", Lanes)
TIMING = web.AppKey("timing", Timing)  # the defaults; a provider may override first_byte_s
STREAMS = web.AppKey("streams", Streams)
POOL = web.AppKey("pool", Pool)  # the inference relay's upstream connections
METRICS = web.AppKey("metrics", Metrics)
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])

# Opened by the cleanup contexts, at start-up.
SETTINGS_STORE = web.AppKey("settings_store", SettingsStore)
USAGE_HISTORY = web.AppKey("usage_history", UsageHistory)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)  # the catalog's client
CATALOG = web.AppKey("catalog", Catalog)
POOLS = web.AppKey("pools", Pools)  # set when the catalog starts
RELOADER = web.AppKey("reloader", Reloader)

"""create_app(): the route table, middlewares and the resources each app owns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import structlog
from aiohttp import web

from gateway.access.keys import parse_keys
from gateway.control import middleware
from gateway.control.metrics import Metrics
from gateway.control.routes import fleet, health, models, page
from gateway.control.routes import settings as settings_routes
from gateway.control.routes import usage as usage_routes
from gateway.control.state import (
    API_KEYS,
    BACKGROUND,
    CATALOG,
    ENV,
    GATEWAY_CHECKS_KEYS,
    GATEWAY_KEYS,
    HTTP_CLIENT,
    LANES,
    METRICS,
    POOL,
    POOLS,
    REGISTRY,
    RELOADER,
    SETTINGS,
    SETTINGS_STORE,
    STREAMS,
    TIMING,
    USAGE_HISTORY,
)
from gateway.core.config import Settings
from gateway.edge.relay import Streams, Timing
from gateway.edge.upstream import Pool
from gateway.fleet.catalog import Catalog
from gateway.fleet.learned import DB_NAME as LEARNED_DB
from gateway.fleet.learned import Learned
from gateway.fleet.registry import Registry, RegistryBox
from gateway.fleet.reload import Reloader
from gateway.pools.lanes import Lanes
from gateway.pools.members import Pools
from gateway.store.settings import DB_NAME, SettingsStore
from gateway.sync.run import AutoSync
from gateway.usage.history import DB_NAME as USAGE_DB
from gateway.usage.history import UsageHistory

log = structlog.get_logger("gateway.app")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def metrics_page(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


# The control plane. Inference (POST /v1/chat/completions, ...) is served by the front
# (gateway/server.py) before a request reaches aiohttp.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v1/models", models.list_models),
    ("GET", "/api/models", fleet.api_models),
    ("GET", "/api/usage", usage_routes.api_usage),
    ("GET", "/api/settings", settings_routes.get_settings),
    ("PATCH", "/api/settings", settings_routes.patch_settings),
    ("GET", "/health", health.health),
    ("GET", "/metrics", metrics_page),
    ("GET", "/", page.index),
    ("GET", "/static/{name}", page.static),
]


def create_app(
    settings: Settings, registry: Registry, env: Mapping[str, str] | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[middleware.observe],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[ENV] = os.environ if env is None else env
    app[REGISTRY] = RegistryBox(registry)
    keys = parse_keys(settings.api_keys)
    app[API_KEYS] = tuple(k.secret for k in keys)
    app[GATEWAY_KEYS] = keys
    app[GATEWAY_CHECKS_KEYS] = bool(keys)
    app[LANES] = Lanes()
    app[TIMING] = Timing(
        settings.first_byte_timeout_s, settings.idle_timeout_s, settings.sse_keepalive_s
    )
    app[STREAMS] = Streams()
    app[POOL] = Pool(settings.connect_timeout_s)
    app[METRICS] = Metrics()
    app[BACKGROUND] = []
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.on_response_prepare.append(middleware.add_request_id)
    app.on_shutdown.append(_drain)
    app.cleanup_ctx.append(_settings_store)
    app.cleanup_ctx.append(_usage_history)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_catalog)
    app.cleanup_ctx.append(_reloader)
    return app


def _spawn(app: web.Application, coro: Awaitable[None], name: str) -> None:
    """A named background task, referenced until cleanup cancels it."""
    app[BACKGROUND].append(asyncio.ensure_future(coro))
    app[BACKGROUND][-1].set_name(name)


async def _cancel_background(app: web.Application) -> None:
    for task in app[BACKGROUND]:
        task.cancel()
    for task in app[BACKGROUND]:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[BACKGROUND].clear()


async def _usage_history(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    history = UsageHistory(settings.data_dir / USAGE_DB, settings.usage_retention_days)
    app[USAGE_HISTORY] = history
    app[METRICS].usage = history
    stop = asyncio.Event()
    flusher = asyncio.ensure_future(history.run(stop))
    flusher.set_name("usage-flush")
    yield
    stop.set()  # its last flush writes what the last seconds recorded
    try:
        await flusher
    finally:
        history.close()


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    """The catalog's client session (model lists, props): keep-alive to every upstream."""
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
    # Reads are bounded per request by the proxy: first byte, then idle between chunks.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,  # bytes pass through; Content-Encoding goes back to the client
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        raise_for_status=False,
    ) as session:
        app[HTTP_CLIENT] = session
        yield


async def _settings_store(app: web.Application) -> AsyncIterator[None]:
    store = SettingsStore(app[SETTINGS].data_dir / DB_NAME)
    app[SETTINGS_STORE] = store
    yield
    store.close()


async def _catalog(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    catalog = Catalog(
        app[HTTP_CLIENT],
        app[REGISTRY],
        refresh_s=settings.refresh_s,
        timeout_s=settings.models_timeout_s,
        offline_after_s=settings.offline_after_s,
        learned=Learned(settings.data_dir / LEARNED_DB),
    )
    if settings.sync:
        catalog.on_refresh.append(AutoSync(settings.sync, settings))
    app[CATALOG] = catalog
    app[POOLS] = Pools(catalog, app[LANES])
    app[METRICS].watch(app[LANES], catalog)
    _spawn(app, catalog.run(), "catalog-refresh")
    yield
    await _cancel_background(app)
    if catalog.learned is not None:
        catalog.learned.close()


async def _reloader(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    catalog = app[CATALOG]
    reloader = Reloader(app[REGISTRY], settings.providers_path, app[ENV], catalog.refresh)
    app[RELOADER] = reloader
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    if settings.reload_poll_s > 0:
        _spawn(app, reloader.watch(settings.reload_poll_s), "registry-watch")
    yield
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGHUP)
    await reloader.close()


async def _drain(app: web.Application) -> None:
    """on_shutdown (listening has stopped): let in-flight requests finish for the grace period,
    then end the streams still open with a final error event."""
    lanes = app[LANES]
    grace = app[SETTINGS].shutdown_grace_s
    if lanes.in_flight:
        log.info("draining", in_flight=lanes.in_flight, grace_s=grace)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lanes.idle.wait(), grace)
    if lanes.in_flight:
        log.warning("shutdown_grace_over", in_flight=lanes.in_flight)
        app[STREAMS].end_all()

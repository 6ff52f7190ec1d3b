"""create_app(): the route table, middlewares and the resources each app owns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from gateway import middleware
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.proxy import HTTP_CLIENT
from gateway.registry import Registry, RegistryBox
from gateway.routes import fleet, health, inference, models
from gateway.routes import settings as settings_routes
from gateway.settings_store import DB_NAME, SettingsStore
from gateway.sync.run import AutoSync

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: list[tuple[str, str, Handler]] = [
    *(("POST", path, inference.handle) for path in inference.INFERENCE_PATHS),
    ("GET", "/v1/models", models.list_models),
    ("GET", "/api/models", fleet.api_models),
    ("GET", "/api/settings", settings_routes.get_settings),
    ("PATCH", "/api/settings", settings_routes.patch_settings),
    ("GET", "/health", health.health),
]

SETTINGS = web.AppKey("settings", Settings)
CATALOG_TASK = web.AppKey("catalog_task", asyncio.Task[None])


def create_app(settings: Settings, registry: Registry) -> web.Application:
    app = web.Application(
        middlewares=[middleware.observe, middleware.require_key],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[inference.REGISTRY] = RegistryBox(registry)
    app[middleware.API_KEYS] = tuple(k.encode() for k in settings.api_keys)
    app[inference.GATEWAY_CHECKS_KEYS] = bool(settings.api_keys)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.on_response_prepare.append(middleware.add_request_id)
    app.cleanup_ctx.append(_settings_store)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_catalog)
    return app


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    """One pooled client session per app, keep-alive to every upstream."""
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
    )
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
    app[settings_routes.SETTINGS_STORE] = store
    yield
    store.close()


async def _catalog(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    catalog = Catalog(
        app[HTTP_CLIENT],
        app[inference.REGISTRY],
        refresh_s=settings.refresh_s,
        timeout_s=settings.models_timeout_s,
        offline_after_s=settings.offline_after_s,
    )
    if settings.sync:
        catalog.on_refresh.append(AutoSync(settings.sync, settings))
    app[models.CATALOG] = catalog
    task = asyncio.create_task(catalog.run(), name="catalog-refresh")
    app[CATALOG_TASK] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
